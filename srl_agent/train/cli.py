"""``srl-agent train sft|srl`` and ``srl-agent pipeline``: thin wrappers over ``train_sft``, ``train_srl``, ``run_pipeline``.

Options map onto recipe keys; a flag that is not given changes nothing, so the recipe (and ``--set``)
keep their values. Precedence: recipe file < ``--set key=value`` < explicit flags. A recipe key that
does not exist, a missing file or checkpoint: one line on stderr, exit code 2 (``srl_agent.cli_util``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..cli_util import (
    BAD_INPUT,
    EVAL_SCRIPTS_FROM,
    INSTANCE_HELP,
    PRUNE_IMAGES,
    PULL,
    RAY,
    emit,
    fail,
    instance_ids,
    refuse,
    summary_table,
)

train_app = typer.Typer(no_args_is_help=True, help="Train a policy: SFT or SRL on step instances, RLVR on tasks.")
console = Console(stderr=True)

_MODEL = typer.Option(None, "--model", help="Hub id or local path (default: the recipe's, else the offline tiny model).")
_DATA = typer.Option(..., "--data", help="Step instances (JSONL from `srl-agent prepare`).")
_OUT = typer.Option(..., "--output-dir", "-o", help="Run folder: final model, checkpoint-N folders, rewards.jsonl.")
_RECIPE = typer.Option("srl", "--recipe", help="Bundled recipe (srl, tiny) or a YAML path.")
_SET = typer.Option(None, "--set", help="Override a recipe key, e.g. --set grpo.learning_rate=1e-6 (repeatable).")
_RESUME = typer.Option(False, "--resume", help="Continue from the last checkpoint-N in --output-dir.")
_RESUME_FROM = typer.Option(None, "--resume-from", help="Continue from this checkpoint folder.")
_JSON = typer.Option(False, "--json", help="Print the summary as one JSON object.")


def _overrides(sets: list[str] | None, section: str, flags: dict[str, Any]) -> dict[str, Any]:
    from .recipe import RecipeError, parse_assignments

    try:
        out = parse_assignments(sets)
    except RecipeError as e:
        fail(str(e))
    for key, value in flags.items():
        if value is not None:
            out[key if key in ("lora", "seed") else f"{section}.{key}"] = value
    return out


def _run(fn, **kwargs: Any) -> dict[str, Any]:
    from .common import TrainError, end_distributed
    from .recipe import RecipeError

    try:
        summary = fn(**kwargs)
    except (RecipeError, TrainError, *BAD_INPUT) as e:  # TrainError: the run could not start as asked
        refuse(e)
    end_distributed()
    return summary


def _show(summary: dict[str, Any], as_json: bool, title: str, skip: tuple[str, ...] = ()) -> None:
    from .common import is_main_process

    if not is_main_process():  # under a launcher, rank 0 reports for everyone
        return
    shown = {k: v for k, v in summary.items() if k not in skip}
    emit(shown, as_json, summary_table(title, shown))


def _shared_flags(learning_rate, max_steps, save_steps, report_to, lora, seed) -> dict[str, Any]:
    return {
        "learning_rate": learning_rate, "max_steps": max_steps, "save_steps": save_steps,
        "save_strategy": "steps" if save_steps else None,
        "report_to": [r.strip() for r in report_to.split(",")] if report_to else None,
        "lora": True if lora else None, "seed": seed,
    }


@train_app.command("srl")
def srl(
    data: Path = _DATA, output_dir: Path = _OUT, model: str | None = _MODEL, recipe: str = _RECIPE,
    sets: list[str] = _SET,
    learning_rate: float | None = typer.Option(None, help="grpo.learning_rate (paper: 5e-7)."),
    num_generations: int | None = typer.Option(None, help="grpo.num_generations, G (paper: 8)."),
    max_steps: int | None = typer.Option(None, help="grpo.max_steps (optimizer steps)."),
    save_steps: int | None = typer.Option(None, help="Save a checkpoint every N steps."),
    use_vllm: bool = typer.Option(False, "--use-vllm", help="Generate with vLLM (must be installed)."),
    vllm_mode: str | None = typer.Option(None, help="vLLM mode: colocate | server (TRL's options)."),
    lora: bool = typer.Option(False, "--lora", help="Train a LoRA adapter (peft) instead of all weights."),
    report_to: str | None = typer.Option(None, help="tensorboard, wandb, … (comma-separated)."),
    seed: int | None = typer.Option(None, help="Seed for data order, sampling and init."),
    resume: bool = _RESUME, resume_from: Path | None = _RESUME_FROM, as_json: bool = _JSON,
) -> None:
    """SRL: GRPO on step instances with the step-wise reward and dynamic sampling."""
    from .srl import train_srl

    if vllm_mode is not None and vllm_mode not in ("colocate", "server"):
        fail(f"--vllm-mode: colocate or server, got {vllm_mode!r}")
    flags = _shared_flags(learning_rate, max_steps, save_steps, report_to, lora, seed)
    flags.update(num_generations=num_generations, use_vllm=True if use_vllm or vllm_mode else None, vllm_mode=vllm_mode)
    summary = _run(train_srl, data=data, output_dir=output_dir, model=model, recipe=recipe,
                   overrides=_overrides(sets, "grpo", flags), resume=resume_from or resume)
    _show(summary, as_json, f"srl → {output_dir}", skip=("reward_mean",))


@train_app.command("sft")
def sft(
    data: Path = _DATA, output_dir: Path = _OUT, model: str | None = _MODEL, recipe: str = _RECIPE,
    sets: list[str] = _SET,
    learning_rate: float | None = typer.Option(None, help="sft.learning_rate."),
    epochs: float | None = typer.Option(None, help="sft.num_train_epochs."),
    max_steps: int | None = typer.Option(None, help="sft.max_steps (optimizer steps)."),
    save_steps: int | None = typer.Option(None, help="Save a checkpoint every N steps."),
    lora: bool = typer.Option(False, "--lora", help="Train a LoRA adapter (peft) instead of all weights."),
    report_to: str | None = typer.Option(None, help="tensorboard, wandb, … (comma-separated)."),
    seed: int | None = typer.Option(None, help="Seed for data order and init."),
    resume: bool = _RESUME, resume_from: Path | None = _RESUME_FROM, as_json: bool = _JSON,
) -> None:
    """SFT on the expert steps: prompt → <think>thought</think> action (the paper's baseline; the tiny model's warm-up)."""
    from .sft import train_sft

    flags = _shared_flags(learning_rate, max_steps, save_steps, report_to, lora, seed)
    flags["num_train_epochs"] = epochs
    summary = _run(train_sft, data=data, output_dir=output_dir, model=model, recipe=recipe,
                   overrides=_overrides(sets, "sft", flags), resume=resume_from or resume)
    _show(summary, as_json, f"sft → {output_dir}", skip=("losses",))


@train_app.command("rlvr")
def rlvr(
    tasks: Path | None = typer.Option(None, "--tasks", help="Task rows, swebench-5 JSONL (default: the bundled tasks)."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Run folder: final model, checkpoints, rewards.jsonl."),
    eval_scripts_from: str | None = EVAL_SCRIPTS_FROM, pull: str = PULL, prune_images: bool = PRUNE_IMAGES,
    ray_address: str | None = RAY,
    model: str | None = _MODEL, recipe: str = _RECIPE, sets: list[str] = _SET,
    instances: list[str] = typer.Option(None, "--instance", help=INSTANCE_HELP),
    old_instances: list[str] = typer.Option(None, "--instance-id", hidden=True),  # the older spelling
    learning_rate: float | None = typer.Option(None, help="rlvr.grpo.learning_rate."),
    num_generations: int | None = typer.Option(None, help="rlvr.grpo.num_generations: episodes per task and step."),
    max_steps: int | None = typer.Option(None, help="rlvr.grpo.max_steps (optimizer steps)."),
    max_sandboxes: int | None = typer.Option(None, help="rlvr.max_sandboxes: containers open at once."),
    step_limit: int | None = typer.Option(None, help="rlvr.rollout.episode.step_limit: turns per episode."),
    save_steps: int | None = typer.Option(None, help="Save a checkpoint every N steps."),
    lora: bool = typer.Option(False, "--lora", help="Train a LoRA adapter (peft) instead of all weights."),
    report_to: str | None = typer.Option(None, help="tensorboard, wandb, … (comma-separated)."),
    seed: int | None = typer.Option(None, help="Seed for data order and sampling."),
    resume: bool = _RESUME, resume_from: Path | None = _RESUME_FROM, as_json: bool = _JSON,
) -> None:
    """RLVR: GRPO on multi-turn episodes in task sandboxes, rewarded 1 when the task's tests pass."""
    from .rlvr import train_rlvr

    flags = _shared_flags(learning_rate, max_steps, save_steps, report_to, lora, seed)
    flags.update(num_generations=num_generations)
    overrides = _overrides(sets, "rlvr.grpo", flags)
    ids = instance_ids([*(instances or []), *(old_instances or [])])
    for key, value in (("rlvr.tasks", ids), ("rlvr.max_sandboxes", max_sandboxes),
                       ("rlvr.rollout.episode.step_limit", step_limit), ("ray.address", ray_address)):
        if value is not None:
            overrides[key] = value
    summary = _run(train_rlvr, tasks=tasks, output_dir=output_dir, model=model, recipe=recipe, overrides=overrides,
                   resume=resume_from or resume, pull=pull, prune_images=prune_images,
                   eval_scripts_from=eval_scripts_from, image_progress=True)
    _show(summary, as_json, f"rlvr → {output_dir}", skip=("reward_mean",))


def pipeline_command(
    trajectories: Path | None = typer.Option(None, help="Trajectory files or folder (default: the bundled ones)."),
    output_dir: Path = typer.Option(Path("runs/demo"), "--output-dir", "-o", help="Run folder for every stage."),
    model: str | None = _MODEL,
    recipe: str = typer.Option("tiny", "--recipe", help="Bundled recipe (tiny, srl) or a YAML path."),
    sets: list[str] = _SET,
    as_json: bool = typer.Option(False, "--json", help="Table on stderr; the summary as one JSON line on stdout."),
) -> None:
    """Prepare → SFT warm-up → SRL (held-out steps scored before and after) → RLVR → evaluation."""
    from ..models.tiny import TRAJECTORY_DIR
    from .pipeline import run_pipeline

    summary = _run(run_pipeline, trajectories=trajectories or TRAJECTORY_DIR, output_dir=output_dir, recipe=recipe,
                   model=model, overrides=_overrides(sets, "pipeline", {}), say=lambda m: console.print(f"[bold]» {m}"))
    table = Table(title=f"pipeline → {output_dir} ({summary['wall_seconds']:.0f} s)",
                  caption=f"{summary['heldout_steps']} held-out steps, {summary['train_steps']} training steps")
    for col in ("held-out", "after SFT warm-up", "after SRL"):
        table.add_column(col, justify="right")
    for label, key in (("mean step reward", "reward"), ("format errors", "format_error_rate"),
                       ("right tool", "tool_match_rate")):
        b, a = summary[f"heldout_{key}_before"], summary[f"heldout_{key}_after"]
        table.add_row(label, f"{b:.3f}", f"{a:.3f}")
    (console if as_json else Console()).print(table)
    if summary.get("rlvr_episodes") is not None or summary.get("eval_total") is not None:
        tasks = Table(title="task sandboxes")
        tasks.add_column("stage")
        tasks.add_column("resolved", justify="right")
        tasks.add_column("tool calls run", justify="right")
        if summary.get("rlvr_episodes") is not None:
            tasks.add_row("RLVR episodes", f"{summary['rlvr_resolved']}/{summary['rlvr_episodes']}",
                          str(summary["rlvr_tool_calls"]))
        if summary.get("eval_total") is not None:
            steps = (summary["stages"]["eval"].get("generation") or {}).get("steps", "")
            tasks.add_row("evaluation (agent)", f"{summary['eval_resolved']}/{summary['eval_total']}", str(steps))
        (console if as_json else Console()).print(tasks)
    if as_json:
        emit({k: v for k, v in summary.items() if k != "stages"}, True)
