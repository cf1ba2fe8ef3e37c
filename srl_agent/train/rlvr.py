"""``train_rlvr``: GRPO on whole episodes in task sandboxes, rewarded 1/0 by the task's tests.

Each prompt of the batch is a task row; TRL repeats it G times and hands the batch to ``rollout_func``,
which runs every episode through the episode engine in a sandbox from a warm pool (``srl_agent.engine``) and returns each episode as
one token sequence with the environment's tokens masked out of the loss. The reward is the grade that
the engine computed in a pristine container; group advantages and the update are TRL's own. Every episode's
record (tool calls, observations, final diff, FAIL_TO_PASS / PASS_TO_PASS, flagged test edits, status,
seconds) goes to ``RUN/rewards.jsonl`` with ``kind: "rlvr"``, its training step, group and advantage,
where ``srl-agent inspect RUN`` finds it.

The recipe's ``rlvr`` section: ``tasks_per_step`` (prompts per optimizer step), ``grpo`` (keys that
replace the ``grpo`` section's for this stage), ``rollout`` (``RolloutConfig``: style, token budgets,
sampling, ``episode`` limits), ``max_sandboxes`` (the pool's bound) and ``tasks`` (instance ids; empty:
all of the task file).

Prompt settings: what ``model`` saved (``srl-agent.json``, ``srl_agent.model_settings``) fills in the
style and ``prompt`` keys the ``rollout`` section leaves out; the run saves its own (the episode chat,
token budgets) with the model and each checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trl import GRPOTrainer

from ..engine.records import ERROR
from ..model_settings import episode_settings, save_callback, with_saved_prompt, write_settings
from .common import TrainError, checkpoint_step, is_main_process, log_series, resolve_checkpoint
from .recipe import grpo_config, lora_config, resolve_recipe
from .reward_log import JsonlRewardLog

REWARD_LOG = "rewards.jsonl"


def tests_resolved(prompts=None, completions=None, test_reward=None, **_: Any) -> list[float | None]:
    """The reward TRL sees: the grade each episode's environment computed (1.0 resolved, else 0.0), None
    for an episode that ended in ``error``, which TRL leaves out of its group's baseline (advantage 0)."""
    return [None if r is None else float(r) for r in test_reward]


def episode_reward(record: dict[str, Any]) -> float | None:
    """None for an episode whose sandbox, node or grading failed: no verdict on the policy, no signal."""
    return None if record.get("status") == ERROR else float(record["reward"])


def _rollout(prompts: list, trainer: RLVRTrainer) -> dict[str, Any]:
    return trainer.rollout(prompts)


class RLVRTrainer(GRPOTrainer):
    """TRL's GRPO with episodes from ``srl_agent.train.rollouts`` and one log record per episode."""

    def __init__(self, *, rows: list[dict[str, Any]], rollout_config: Any, pool: Any, reward_log: Any = None,
                 runner: Any = None, **kwargs: Any):
        from .rollouts import ConversationTokens

        self.task_rows = {r["instance_id"]: r for r in rows}
        self.rollout_config, self.pool, self.reward_log, self.runner = rollout_config, pool, reward_log, runner
        self.episodes_run = 0
        self._inputs: list[dict[str, Any]] = []
        self._records: list[dict[str, Any]] = []
        super().__init__(reward_funcs=[tests_resolved], rollout_func=_rollout, **kwargs)
        self.tokens = ConversationTokens(self.processing_class, rollout_config.prompt.system_prompt)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._inputs = inputs  # rollout_func receives the prompts only; the rows say which task each one is
        out = super()._generate_and_score_completions(inputs)
        self._log(out)
        return out

    def rollout(self, prompts: list) -> dict[str, Any]:
        from trl.models.utils import unwrap_model_for_generation

        from ..steps import Truncator
        from .rollouts import TransformersGenerator, run_rollouts

        if len(prompts) != len(self._inputs):
            raise TrainError(f"rollout got {len(prompts)} prompts for {len(self._inputs)} rows")
        rows = [self.task_rows[x["instance_id"]] for x in self._inputs]
        cfg = self.rollout_config
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator) as model:
            generate = TransformersGenerator(model, self.processing_class, self.tokens.stop_ids,
                                             temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
            runs = run_rollouts(rows, generate, self.tokens, self.pool, cfg, Truncator(self.processing_class),
                                runner=self.runner)
        self.episodes_run += len(runs)
        self._records = [r.record for r in runs]
        return {"prompt_ids": [r.prompt_ids for r in runs], "completion_ids": [r.completion_ids for r in runs],
                "logprobs": None, "env_mask": [r.env_mask for r in runs], "test_reward": [episode_reward(r.record) for r in runs]}

    def _log(self, out: dict[str, Any]) -> None:
        if self.reward_log is None:
            return
        g = self.num_generations
        advantages = out["advantages"].tolist()
        for i, record in enumerate(self._records):
            record.update(global_step=self.state.global_step, group=i // g, generation=i % g,
                          advantage=advantages[i] if i < len(advantages) else None)
            self.reward_log.write(record)
        if hasattr(self.reward_log, "flush"):
            self.reward_log.flush()
        self._records = []


def rlvr_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe as ``grpo_config`` reads it for this stage: ``rlvr.grpo`` over ``grpo``, tasks per step as prompts."""
    rlvr = recipe.get("rlvr") or {}
    return {**recipe, "grpo": {**(recipe.get("grpo") or {}), **(rlvr.get("grpo") or {})},
            "prompts_per_step": rlvr.get("tasks_per_step", recipe.get("prompts_per_step"))}


def load_tasks(path: str | Path | None, ids: list[str] | None = None,
               eval_scripts_from: str | Path | None = None) -> list[dict[str, Any]]:
    """Task rows as evaluation and replay load them (``evaluation.data.load_rows``: a swebench-5 file, a
    hub dataset, older rows converted, given eval scripts by ``eval_scripts_from``; default the bundled
    tasks), limited to ``ids``."""
    from ..evaluation.data import DatasetError, load_rows, missing_for_scoring, select

    try:
        rows = select(load_rows(path, eval_scripts_from=eval_scripts_from), ids)
    except DatasetError as e:
        raise TrainError(f"{path or 'bundled tasks'}: {e}") from None
    if ids:  # the recipe's order
        by_id = {r["instance_id"]: r for r in rows}
        rows = [by_id[i] for i in dict.fromkeys(ids)]
    missing = missing_for_scoring(rows)
    if missing:  # an episode could not be graded: say so before any training starts
        first = ", ".join(f"{i} ({', '.join(fields)})" for i, fields in list(missing.items())[:5])
        raise TrainError(f"{path or 'bundled tasks'}: {len(missing)} row(s) lack what grading needs: {first} "
                         "(--eval-scripts-from a swebench-5 dataset that holds them fills them in)")
    return rows


def train_rlvr(
    tasks: str | Path | None,
    output_dir: str | Path,
    model: str | Path | None = None,
    recipe: str | Path | dict[str, Any] = "srl",
    overrides: dict[str, Any] | None = None,
    resume: bool | str | Path = False,
    reward_log: Any = None,
    client: Any = None,
    labels: dict[str, str] | None = None,
    callbacks: list[Any] | None = None,
    pull: str = "missing",
    prune_images: bool = False,
    eval_scripts_from: str | Path | None = None,
    image_progress: bool = False,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """RLVR from ``model`` on the task rows in ``tasks`` (swebench-5 JSONL; None: the bundled tasks).

    The final model lands in ``output_dir``; every episode's record in ``output_dir/rewards.jsonl`` (or
    ``reward_log``). ``client``: a docker client (default: from the environment, ``DOCKER_HOST``).
    Task images, ``pull``, ``prune_images``, ``eval_scripts_from``, ``image_progress``: as ``run_eval``'s.
    ``ray_address`` (else the recipe's ``ray.address``): the episodes run on that Ray cluster's nodes
    (``engine.cluster``), generation stays here; images are supplied here, then shipped.
    """
    from datasets import Dataset

    from ..engine import SandboxPool
    from ..image_supply import ImageSupply
    from ..models import resolve_model
    from ..steps import issue_turn
    from .rollouts import RolloutConfig

    recipe = resolve_recipe(recipe, overrides)
    rlvr = recipe.get("rlvr") or {}
    if (recipe.get("grpo") or {}).get("use_vllm") or (rlvr.get("grpo") or {}).get("use_vllm"):
        raise TrainError("RLVR episodes generate with transformers; use_vllm is not supported for this stage yet")
    rows = load_tasks(tasks, rlvr.get("tasks"), eval_scripts_from)
    per_step = rlvr.get("tasks_per_step", recipe.get("prompts_per_step")) or 1
    if int(per_step) > len(rows):  # TRL would run 0 steps and exit as if it had trained
        where = f"{tasks or 'the bundled tasks'}{' (rlvr.tasks)' if rlvr.get('tasks') else ''}"
        raise TrainError(f"rlvr.tasks_per_step is {per_step} but {where} holds only {len(rows)} task(s): "
                         f"name more tasks or set rlvr.tasks_per_step to at most {len(rows)}")
    supply = ImageSupply(client, pull=pull, prune=prune_images, progress=image_progress)
    with supply:  # released last: pruning waits until the pool below has removed its sandboxes
        supply.ensure(rows, bundled=tasks is None)  # before any model work: a missing image stops the run here
        address = ray_address or (recipe.get("ray") or {}).get("address")
        if address:  # and a cluster that does not answer, too
            from ..engine.cluster import connect

            connect(address)
        stage = rlvr_recipe(recipe)
        model_name = resolve_model(model or recipe.get("model"))
        output_dir = Path(output_dir)
        checkpoint = resolve_checkpoint(output_dir, resume)
        args = grpo_config(stage, output_dir)
        # Sampling settings default to the stage's GRPO ones, so one temperature governs the stage.
        cfg = RolloutConfig.from_dict({"temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k or 0,
                                       **with_saved_prompt(model_name, rlvr.get("rollout") or {})})
        settings = episode_settings(cfg.prompt, cfg.style)
        # The prompt column shows the first turn, issue untruncated (the rollout builds every turn itself, with
        # the issue cut to its token budget).
        dataset = Dataset.from_list([
            {"instance_id": r["instance_id"],
             "prompt": [{"role": "system", "content": cfg.prompt.system_prompt},
                        {"role": "user", "content": issue_turn((r.get("problem_statement") or "").strip(), cfg.prompt,
                                                               lambda text, budget: text)}]}
            for r in rows])
        if reward_log is None and is_main_process():
            reward_log = JsonlRewardLog(output_dir / REWARD_LOG, keep_before_step=checkpoint_step(checkpoint))
        if address:
            from ..engine.cluster import ClusterRunner

            runner, pool = ClusterRunner(address, max_sandboxes=(recipe.get("ray") or {}).get("max_sandboxes"),
                                         timeout=cfg.episode.command_timeout, labels=labels), None
        else:
            runner, pool = None, SandboxPool(rlvr.get("max_sandboxes", 4), client=client,
                                             timeout=cfg.episode.command_timeout, labels=labels)
        try:
            trainer = RLVRTrainer(model=model_name, args=args, train_dataset=dataset, peft_config=lora_config(recipe),
                                  rows=rows, rollout_config=cfg, pool=pool, reward_log=reward_log, runner=runner,
                                  callbacks=[*(callbacks or []), save_callback(settings)])
            result = trainer.train(resume_from_checkpoint=checkpoint)
            trainer.save_model(str(output_dir))
            if is_main_process():
                write_settings(output_dir, settings)
        finally:
            (runner or pool).close()
            if hasattr(reward_log, "close"):
                reward_log.close()
        summary = {
            "output_dir": str(output_dir),
            "model": model_name,
            "tasks": [r["instance_id"] for r in rows],
            "steps": trainer.state.global_step,
            "episodes": trainer.episodes_run,
            "resumed_from": checkpoint,
            "train_seconds": result.metrics.get("train_runtime", 0.0),
            "reward_mean": log_series(trainer, "reward"),
            "pool": pool.stats.to_dict() if pool is not None else None,
            **({"ray": runner.summary()} if runner is not None else {}),
            "reward_log": str(output_dir / REWARD_LOG) if isinstance(reward_log, JsonlRewardLog) else None,
        }
    return {**summary, **supply.summary()}


def read_episodes(path: str | Path) -> list[dict[str, Any]]:
    """The episode records of an RLVR run's log."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = ["REWARD_LOG", "RLVRTrainer", "episode_reward", "load_tasks", "read_episodes", "rlvr_recipe", "tests_resolved", "train_rlvr"]
