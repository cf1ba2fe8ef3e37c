"""``train_sft``: supervised fine-tuning on the expert steps (the SFT baseline, and the tiny model's warm-up).

Each step becomes prompt → ``<think>{expert thought}</think>\\n{expert action}``, conversational
prompt–completion rows, so TRL's ``SFTTrainer`` puts the loss on the completion only.

The model folder and each checkpoint get ``srl-agent.json`` (``srl_agent.model_settings``): the prompt
settings ``data`` was prepared with, as the caller gives them (the pipeline), else as ``srl-agent
prepare`` left them beside the file, else the defaults (the rows cannot say; the file records which).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model_settings import PromptSettings, save_callback, training_settings, write_settings
from .common import is_main_process, log_series, resolve_checkpoint
from .data import read_steps, sft_dataset
from .recipe import lora_config, resolve_recipe, sft_config


def train_sft(
    data: str | Path,
    output_dir: str | Path,
    model: str | Path | None = None,
    recipe: str | Path | dict[str, Any] = "srl",
    overrides: dict[str, Any] | None = None,
    resume: bool | str | Path = False,
    settings: PromptSettings | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` on the expert thought + action of every step in ``data``; the result lands in ``output_dir``."""
    from trl import SFTTrainer

    from ..models import resolve_model

    recipe = resolve_recipe(recipe, overrides)
    model_name = resolve_model(model or recipe.get("model"))
    checkpoint = resolve_checkpoint(output_dir, resume)
    dataset, skipped = sft_dataset(read_steps(data))
    settings, source = training_settings(data, settings)
    trainer = SFTTrainer(model=model_name, args=sft_config(recipe, output_dir), train_dataset=dataset,
                         peft_config=lora_config(recipe), callbacks=[save_callback(settings, source)])
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(output_dir))
    if is_main_process():
        write_settings(output_dir, settings, source)
    losses = log_series(trainer, "loss")
    return {
        "output_dir": str(output_dir),
        "model": model_name,
        "examples": len(dataset),
        "skipped_without_thought": skipped,
        "steps": trainer.state.global_step,
        "train_seconds": result.metrics.get("train_runtime", 0.0),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "losses": losses,
        "prompt_settings": source,
    }
