"""The ``srl-agent`` command: a thin layer over library functions (heavy imports stay inside commands)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .cli_util import bad_input_exits, emit, fail, instance_ids

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train code agents on expert trajectories with SRL.")
console = Console(stderr=True)
SHOWN_PROBLEMS = 5  # skipped records printed by `prepare`


@app.callback()
def _root() -> None:
    """srl-agent: train code agents on expert trajectories with Supervised Reinforcement Learning."""


@app.command()
@bad_input_exits
def prepare(
    inputs: list[str] = typer.Argument(..., help="Trajectory files, folders, or hub datasets (owner/name[:split])."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL of step instances."),
    context_steps: str = typer.Option("2", help="Previous action–observation pairs in each prompt, or 'all'."),
    fmt: str | None = typer.Option(None, "--format", help="Force a reader instead of detecting the format."),
    observation_tokens: int = typer.Option(1024, help="Token budget per observation (middle-truncated past it)."),
    tokenizer: str | None = typer.Option(None, help="Tokenizer (hub id or path) for exact token budgets."),
    drop_legacy: bool = typer.Option(False, help="Skip steps whose target is an old SWE-agent command."),
    only_verified: bool = typer.Option(False, help="Keep only trajectories that replay ran and resolved "
                                       "(`srl-agent replay --write-verified`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Split expert trajectories into SRL step instances."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .prepare import prepare as run_prepare
    from .readers import FORMATS
    from .steps import StepConfig

    if fmt is not None and fmt not in FORMATS:
        fail(f"--format: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if context_steps != "all" and not context_steps.isdigit():
        fail(f"--context-steps: a number or 'all', got {context_steps!r}")
    config = StepConfig(
        context_steps=None if context_steps == "all" else int(context_steps),
        observation_tokens=observation_tokens,
        drop_legacy=drop_legacy,
    )
    tok = None
    if tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer)
    # Transient: the table after it says what was read, and an error stays the one line on stderr.
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} trajectories"),
        TimeElapsedColumn(), console=console, disable=as_json, transient=True,
    ) as bar:
        task = bar.add_task("reading", total=None)
        summary = run_prepare(inputs, out, config, fmt, tok, progress=lambda n: bar.update(task, completed=n),
                              only_verified=only_verified)
    table = Table(title=f"prepare → {out}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("files", str(summary["files"]))
    table.add_row("records", str(summary["records"]))
    for name, n in sorted(summary["read_by_format"].items()):
        table.add_row(f"trajectories read ({name})", str(n))
    table.add_row("steps written", str(summary["steps_written"]))
    table.add_row("turns dropped (format errors)", str(summary["turns_dropped"]))
    for reason, n in sorted(summary["skipped_by_reason"].items()):
        table.add_row(f"skipped: {reason}", str(n))
    if drop_legacy:
        table.add_row("legacy steps dropped", str(summary["legacy_steps_dropped"]))
    emit(summary, as_json, table)
    problems = summary.get("problems") or []
    for problem in problems[:SHOWN_PROBLEMS]:  # the first few here; every one in --json
        console.print(f"[yellow]skipped[/yellow] {problem}", markup=True, highlight=False, soft_wrap=True)
    more = len(problems) - SHOWN_PROBLEMS + summary.get("problems_omitted", 0)
    if more > 0:
        console.print(f"… and {more} more skipped record(s): --json lists them")


env_app = typer.Typer(no_args_is_help=True, help="The bundled task pack: images and the swebench dataset.")
app.add_typer(env_app, name="env")


@env_app.command("build")
@bad_input_exits
def env_build(
    instances: list[str] = typer.Option(None, "--instance", help="Only this task (instance id, project/task or "
                                        "task name); repeat, or a comma-separated list. Default: all."),
    force: bool = typer.Option(False, help="Rebuild images that exist already."),
    swebench: Path | None = typer.Option(None, help="Instead: offline images of the real SWE-bench instances in this "
                                         "folder (rows.jsonl, environments.json, repos/), e.g. ../shared/swebench, "
                                         "tagged as their rows name them."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Build the task images (wheelhouse filled on the host; no network inside Docker)."""
    from .images import build_images

    if swebench is not None:
        from .swebench_images import build_swebench_images

        summary = _images_summary(build_swebench_images(swebench, instance_ids(instances), force=force,
                                                        progress=not as_json))
    else:
        summary = build_images(instance_ids(instances), force=force, progress=not as_json)
    table = Table(title=f"task images ({summary['built']} built, {summary['existing']} existing, {summary['seconds']} s)")
    for col in ("instance", "image", "built", "MB"):
        table.add_column(col)
    for i in summary["images"]:
        table.add_row(i["instance_id"], i["image"], "yes" if i["built"] else "existing", str(i["size_mb"]))
    emit(summary, as_json, table)


def _images_summary(images: list[dict]) -> dict:
    built = sum(i["built"] for i in images)
    return {"built": built, "existing": len(images) - built, "seconds": round(sum(i["seconds"] for i in images), 1),
            "images": images}


@env_app.command("dataset")
def env_dataset(
    out: Path | None = typer.Option(None, "--out", "-o", help="The dataset file [default: environments/tasks.jsonl]."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Write the dataset: builds missing images, then derives PASS_TO_PASS from real runs."""
    from .images import write_dataset
    from .tasks import PackError

    try:
        summary = write_dataset(out, progress=not as_json)
    except PackError as e:
        fail(str(e), code=1)
    table = Table(title=f"{summary['path']}: {summary['tasks']} tasks, {summary['projects']} projects")
    for col in ("instance", "FAIL_TO_PASS", "PASS_TO_PASS"):
        table.add_column(col)
    for r in summary["rows"]:
        table.add_row(r["instance_id"], str(r["FAIL_TO_PASS"]), str(r["PASS_TO_PASS"]))
    emit(summary, as_json, table)


@app.command()
@bad_input_exits
def score(
    steps: Path = typer.Option(..., "--steps", help="Step instances (JSONL from `srl-agent prepare`)."),
    completions: Path = typer.Option(..., "--completions", help="JSONL rows: instance_id, step_index, completion."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL: the completion rows plus reward and breakdown."),
    reward: str = typer.Option("tool-aware", "--reward", help="Reward mode: paper | tool-aware."),
    similarity: str = typer.Option("difflib", "--similarity", help="Similarity backend: difflib | lcs."),
    style: str = typer.Option("xml", "--style", help="Tool-call style the completions must use: xml | json | bash | any."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Score completions against the expert's action at their step (the SRL step reward)."""
    from .rewards import MODES, SIMILARITIES, STYLES
    from .rewards.score import score_file

    for value, known, hint in ((reward, MODES, "--reward"), (similarity, SIMILARITIES, "--similarity"), (style, STYLES, "--style")):
        if value not in known:
            fail(f"{hint}: {value!r}; known: {', '.join(known)}")
    for path, hint in ((steps, "--steps"), (completions, "--completions")):
        if not path.is_file():
            fail(f"{hint}: no such file: {path}")
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.completed} completions"), TimeElapsedColumn(),
                  console=console, disable=as_json) as bar:
        task = bar.add_task("scoring", total=None)
        summary = score_file(steps, completions, out, reward, similarity, style,
                             progress=lambda n: bar.update(task, completed=n))
    table = Table(title=f"score ({reward}, {similarity}) → {out}")
    for col in ("expert tool", "completions", "mean reward"):
        table.add_column(col, justify="right" if col != "expert tool" else "left")
    for tool, t in summary["by_tool"].items():
        table.add_row(tool, str(t["count"]), f"{t['mean_reward']:.3f}")
    mean = summary["mean_reward"]
    table.add_row("all", str(summary["scored"]), "-" if mean is None else f"{mean:.3f}", end_section=True)
    table.add_row("format errors", str(summary["format_errors"]), f"{summary['format_error_rate']:.1%} of scored")
    for reason, n in sorted(summary["format_errors_by_reason"].items()):
        table.add_row(f"  {reason}", str(n), "")
    table.add_row("edit fallbacks (no snapshot)", str(summary["fallbacks"]), "")
    for reason, n in sorted(summary["skipped_by_reason"].items()):
        table.add_row(f"not scored: {reason}", str(n), "")
    emit(summary, as_json, table)
    if not as_json:
        for problem in summary["problems"]:
            console.print(f"[yellow]not scored:[/yellow] {problem}")


sandbox_app = typer.Typer(no_args_is_help=True, help="Docker sandboxes the agent works in.")
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("gc")
def sandbox_gc(
    label: str = typer.Option("srl-agent", help="Remove containers carrying this label (key or key=value)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Remove leftover sandbox containers (every container labelled srl-agent)."""
    from .sandbox import gc

    removed = gc(label=label)
    table = Table(title="sandbox gc")
    table.add_column("label")
    table.add_column("removed", justify="right")
    table.add_row(label, str(removed))
    emit({"removed": removed}, as_json, table)


# Replay (srl_agent/replay_cli.py): `srl-agent replay`.
from .replay_cli import replay_command  # noqa: E402

app.command("replay")(replay_command)


# Training (srl_agent/train/cli.py): `srl-agent train sft|srl` and `srl-agent pipeline`.
from .train.cli import pipeline_command, train_app  # noqa: E402

app.add_typer(train_app, name="train")
app.command("pipeline")(pipeline_command)


# Evaluation (srl_agent/evaluation/cli.py): `srl-agent eval`.
from .evaluation.cli import eval_command  # noqa: E402

app.command("eval")(eval_command)


# The reward inspector (srl_agent/inspector/cli.py): `srl-agent inspect RUN`.
from .inspector.cli import inspect_command  # noqa: E402

app.command("inspect")(inspect_command)


def main() -> None:
    from .signals import install

    install()  # SIGTERM / SIGHUP unwind like Ctrl-C: every container removed, exit code 128 + signal
    app()


if __name__ == "__main__":
    main()
