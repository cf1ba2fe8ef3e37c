"""The ``srl-agent`` command: a thin layer over library functions (heavy imports stay inside commands)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train code agents on expert trajectories with SRL.")
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """srl-agent: train code agents on expert trajectories with Supervised Reinforcement Learning."""


def _emit(summary: dict, as_json: bool, table: Table) -> None:
    """The ``--json`` convention: one JSON object on stdout, or a human-readable table."""
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        Console().print(table)


@app.command()
def prepare(
    inputs: list[str] = typer.Argument(..., help="Trajectory files, folders, or hub datasets (owner/name[:split])."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL of step instances."),
    context_steps: str = typer.Option("2", help="Previous action–observation pairs in each prompt, or 'all'."),
    fmt: str | None = typer.Option(None, "--format", help="Force a reader instead of detecting the format."),
    observation_tokens: int = typer.Option(1024, help="Token budget per observation (middle-truncated past it)."),
    tokenizer: str | None = typer.Option(None, help="Tokenizer (hub id or path) for exact token budgets."),
    drop_legacy: bool = typer.Option(False, help="Skip steps whose target is an old SWE-agent command."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Split expert trajectories into SRL step instances."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .prepare import prepare as run_prepare
    from .readers import FORMATS
    from .steps import StepConfig

    if fmt is not None and fmt not in FORMATS:
        raise typer.BadParameter(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}", param_hint="--format")
    if context_steps != "all" and not context_steps.isdigit():
        raise typer.BadParameter("a number or 'all'", param_hint="--context-steps")
    config = StepConfig(
        context_steps=None if context_steps == "all" else int(context_steps),
        observation_tokens=observation_tokens,
        drop_legacy=drop_legacy,
    )
    tok = None
    if tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} trajectories"),
        TimeElapsedColumn(), console=console, disable=as_json,
    ) as bar:
        task = bar.add_task("reading", total=None)
        try:
            summary = run_prepare(inputs, out, config, fmt, tok, progress=lambda n: bar.update(task, completed=n))
        except FileNotFoundError as e:
            raise typer.BadParameter(str(e), param_hint="INPUTS") from None
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
    _emit(summary, as_json, table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
