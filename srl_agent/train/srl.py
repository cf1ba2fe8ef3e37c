"""``train_srl``: SRL on step instances with TRL's GRPO, the step reward and dynamic sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model_settings import PromptSettings, save_callback, training_settings, write_settings
from .common import TrainError, checkpoint_step, is_main_process, log_series, require_vllm, resolve_checkpoint
from .data import read_steps, srl_dataset
from .dynamic_sampling import DynamicSampling, SRLTrainer
from .recipe import grpo_config, lora_config, resolve_recipe
from .reward_log import CollectingReward, JsonlRewardLog

REWARD_LOG = "rewards.jsonl"


def train_srl(
    data: str | Path,
    output_dir: str | Path,
    model: str | Path | None = None,
    recipe: str | Path | dict[str, Any] = "srl",
    overrides: dict[str, Any] | None = None,
    resume: bool | str | Path = False,
    reward_log: Any = None,
    callbacks: list[Any] | None = None,
    settings: PromptSettings | None = None,
) -> dict[str, Any]:
    """Train ``model`` (default: the recipe's, else the tiny model) on the step file ``data``; return a summary.

    The final model lands in ``output_dir``; checkpoints in ``output_dir/checkpoint-N``; every scored
    completion in ``output_dir/rewards.jsonl`` (or ``reward_log``, anything with ``write(record)``).
    ``callbacks`` are transformers ``TrainerCallback``s (progress, early stop, …).

    The model folder and each checkpoint get ``srl-agent.json`` (``srl_agent.model_settings``): the
    prompt settings ``data`` was prepared with (``settings``, else the sidecar ``srl-agent prepare``
    wrote beside it, else the defaults, which the rows cannot confirm), with the recipe's reward style,
    the style this run rewarded.
    """
    import dataclasses

    from ..models import resolve_model
    from ..rewards import srl_reward

    recipe = resolve_recipe(recipe, overrides)
    require_vllm(recipe.get("grpo") or {})
    model_name = resolve_model(model or recipe.get("model"))
    output_dir = Path(output_dir)
    checkpoint = resolve_checkpoint(output_dir, resume)
    args = grpo_config(recipe, output_dir)
    dataset = srl_dataset(read_steps(data))
    reward = CollectingReward(srl_reward(**(recipe.get("reward") or {})))
    settings, source = training_settings(data, settings)
    settings = dataclasses.replace(settings, style=reward.reward.scorer.style)
    if reward_log is None and is_main_process():
        # A fresh run starts a fresh log; a resumed one keeps the records up to its checkpoint.
        reward_log = JsonlRewardLog(output_dir / REWARD_LOG, keep_before_step=checkpoint_step(checkpoint))
    trainer = SRLTrainer(
        model=model_name, reward_funcs=[reward], args=args, train_dataset=dataset,
        peft_config=lora_config(recipe), dynamic_sampling=DynamicSampling(**(recipe.get("dynamic_sampling") or {})),
        reward_log=reward_log, callbacks=[*(callbacks or []), save_callback(settings, source)],
    )
    try:
        result = trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        if hasattr(reward_log, "close"):
            reward_log.close()
    trainer.save_model(str(output_dir))
    if is_main_process():
        write_settings(output_dir, settings, source)
    runtime = result.metrics.get("train_runtime", 0.0)
    return {
        "output_dir": str(output_dir),
        "model": model_name,
        "steps": trainer.state.global_step,
        "resumed_from": checkpoint,
        "train_seconds": runtime,
        "reward_seconds": reward.seconds,
        "reward_share": reward.seconds / runtime if runtime else None,
        "reward_mean": log_series(trainer, "reward"),
        "dynamic_sampling": dict(trainer.sampling_stats) if trainer.dynamic_sampling else None,
        "reward_log": str(output_dir / REWARD_LOG) if isinstance(reward_log, JsonlRewardLog) else None,
        "prompt_settings": source,
    }


__all__ = ["REWARD_LOG", "TrainError", "train_srl"]
