"""``srl-agent inspect RUN``: summary tables, ``--json``, ``--html report.html``, ``--export rows.parquet``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..cli_util import emit, fail

console = Console(stderr=True)
MAX_ROWS = 25  # long tables (tasks, training steps) are cut to this many rows on the terminal


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _table(title: str, cols: list[tuple[str, str]], rows: list[dict[str, Any]], total: int | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for key, header in cols:
        text = key in ("tool", "instance_id", "run", "position", "reason", "name", "kind", "expert_tool")
        table.add_column(header, justify="left" if text else "right", overflow="fold")
    shown = rows if len(rows) <= MAX_ROWS else rows[: MAX_ROWS - 5] + rows[-5:]
    for i, r in enumerate(shown):
        if len(rows) > MAX_ROWS and i == MAX_ROWS - 5:
            table.add_row(f"… {len(rows) - MAX_ROWS} more (--json for all)", *[""] * (len(cols) - 1))
        table.add_row(*[_f(r.get(k)) for k, _ in cols])
    return table


def print_tables(s: dict[str, Any]) -> None:
    out = Console()
    overview = Table(title=f"reward store {s['store']}", title_justify="left")
    overview.add_column("")
    overview.add_column("value", justify="right")
    for label, value in (("scored completions", s["candidates"]), ("steps", s["steps"]), ("trajectories", s["tasks"]),
                         ("mean reward", s["mean_reward"]), ("format errors", s["format_errors"]),
                         ("format-error rate", f"{s['format_error_rate']:.1%}")):
        overview.add_row(label, _f(value))
    for reason, n in s["format_errors_by_reason"].items():
        overview.add_row(f"  {reason}", str(n))
    out.print(overview)
    out.print(_table("runs", [("name", "run"), ("kind", "kind"), ("candidates", "records"),
                              ("mean_reward", "mean reward")], s["runs"]))
    out.print(_table("mean reward by expert tool", [("tool", "tool"), ("steps", "steps"), ("candidates", "candidates"),
                                                    ("mean_reward", "mean reward"), ("format_errors", "format errors")],
                     s["by_tool"]))
    out.print(_table("mean reward by step position", [("position", "step"), ("candidates", "candidates"),
                                                      ("mean_reward", "mean reward"), ("format_errors", "format errors")],
                     s["by_position"]))
    out.print(_table("mean reward by trajectory", [("instance_id", "trajectory"), ("steps", "steps"),
                                                   ("candidates", "candidates"), ("mean_reward", "mean reward"),
                                                   ("format_errors", "format errors")], s["by_task"]))
    out.print(_table("worst-scored steps", [("instance_id", "trajectory"), ("step_index", "step"),
                                            ("expert_tool", "expert tool"), ("candidates", "candidates"),
                                            ("mean_reward", "mean"), ("min_reward", "min"), ("max_reward", "max")],
                     s["worst_steps"]))
    if s["trend"]:
        out.print(_table("trend over training steps", [("run", "run"), ("global_step", "step"),
                                                        ("candidates", "candidates"), ("mean_reward", "mean reward"),
                                                        ("min_reward", "min"), ("max_reward", "max"),
                                                        ("format_error_rate", "format errors"),
                                                        ("mean_abs_advantage", "mean |advantage|")], s["trend"]))
    if s["episodes"]:
        out.print(_table("episodes", [("run", "run"), ("kind", "kind"), ("episodes", "episodes"),
                                      ("resolved", "resolved"), ("mean_reward", "mean reward")], s["episodes"]))


def inspect_command(
    run: Path = typer.Argument(..., help="Run folder (its rewards.sqlite, or rewards.jsonl / scored JSONL to import), "
                                         "a .sqlite store, or one reward JSONL."),
    steps: list[Path] = typer.Option(None, "--steps", help="Step-instance file(s) for the expert steps and the "
                                     "context (default: step files in RUN and its parent)."),
    runs: list[str] = typer.Option(None, "--run", help="Only these runs of the store (repeatable)."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
    export_to: Path | None = typer.Option(None, "--export", help="Write one row per candidate (.parquet or .jsonl)."),
    db: Path | None = typer.Option(None, "--db", help="Where the store lives [default: RUN/rewards.sqlite]."),
    worst: int = typer.Option(10, help="How many worst-scored steps to list."),
    max_steps: int = typer.Option(500, help="Steps with a detail panel in the HTML report (the lowest-scored first)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Why steps got their rewards: summary tables, an HTML report, exports (imports the run's records first)."""
    import sqlite3

    from ..store import export, open_run
    from ..store.db import StoreError
    from .summary import summarize

    try:
        conn, info = open_run(run, steps or (), db)
        summary = {"store": info["store"], **summarize(conn, runs or None, worst)}
    except (FileNotFoundError, ValueError, StoreError, sqlite3.DatabaseError) as e:
        where = f"{run}: " if isinstance(e, sqlite3.DatabaseError) else ""  # the others name their file
        fail(f"{where}{e}")
    summary["imported"] = info["imported"]
    summary["missing_steps"] = info["missing_steps"]
    if html is not None:
        from .page import write_report

        summary["html"] = write_report(conn, html, runs=runs or None, title=str(run), max_steps=max_steps)["html"]
    if export_to is not None:
        try:
            summary["export"] = export(conn, export_to, runs=runs or None)
        except ValueError as e:
            fail(f"--export: {e}")
    conn.close()
    if as_json:
        emit(summary, True)
        return
    for imp in info["imported"]:
        console.print(f"imported {imp['imported']} records of run [bold]{imp['run']}[/bold] from {imp['path']}"
                      + (f" ({imp['skipped']} skipped)" if imp.get("skipped") else ""))
        for problem in imp.get("problems", []):
            console.print(f"[yellow]skipped:[/yellow] {problem}")
    if info["missing_steps"]:
        console.print(f"[yellow]{info['missing_steps']} steps have no expert step in the store[/yellow] "
                      "(give the step file with --steps)")
    print_tables(summary)
    for key in ("html", "export"):
        if key in summary:
            console.print(f"{key}: {summary[key] if key == 'html' else summary[key]['out']}")
