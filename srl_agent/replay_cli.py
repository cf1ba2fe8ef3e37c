"""``srl-agent replay``: expert trajectories replayed in their tasks' sandboxes and graded (``replay.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .cli_util import (
    EVAL_SCRIPTS_FROM,
    INSTANCE_HELP,
    PRUNE_IMAGES,
    PULL,
    RAY,
    bad_input_exits,
    emit,
    fail,
    instance_ids,
)

console = Console(stderr=True)
SHOWN_PROBLEMS = 5


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _yes(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "NO"


@bad_input_exits
def replay_command(
    trajectories: list[str] = typer.Argument(None, help="Trajectory files, folders or hub datasets, any format the "
                                             "readers read. Default: the bundled trajectories."),
    dataset: str | None = typer.Option(None, help="The tasks' dataset (swebench-5 rows: a file, or a hub id such as "
                                       "SWE-bench/SWE-bench_Verified). Default: the bundled tasks."),
    instances: list[str] = typer.Option(None, "--instance", help=INSTANCE_HELP),
    all_tasks: bool = typer.Option(False, "--all", help="Replay every bundled trajectory."),
    record: bool = typer.Option(False, "--record", help="Write regenerated observations and file snapshots back "
                                "into the bundled trajectory files."),
    report: Path = typer.Option(Path("runs/replay/report.json"), help="Where the per-step JSON report goes."),
    folder: Path | None = typer.Option(None, "--trajectories", hidden=True, help="Older spelling of TRAJECTORY."),
    write_verified: Path | None = typer.Option(None, help="Write the replayed trajectories (snapshots, per-step diffs, "
                                               "verdict) as JSONL, which `prepare` reads (--only-verified)."),
    repeat: int = typer.Option(0, help="Also grade each task's gold patch N times and report the FAIL_TO_PASS / "
                               "PASS_TO_PASS tests whose outcome changes (flaky)."),
    pull: str = PULL,
    prune_images: bool = PRUNE_IMAGES,
    eval_scripts_from: str | None = EVAL_SCRIPTS_FROM,
    ray_address: str | None = RAY,
    batch_size: int = typer.Option(2, help="Trajectories replayed side by side."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Replay expert trajectories in their tasks' sandboxes and grade the result. Exit 1 when a verdict differs
    from the outcome recorded beside its trajectory (or, with none recorded, does not resolve)."""
    from .replay import replay_trajectories

    ids = instance_ids(instances)
    inputs = list(trajectories or []) + ([str(folder)] if folder else [])
    if not inputs and not ids and not all_tasks:
        fail("name trajectories (files or folders), or tasks with --instance ID, or pass --all")
    if record and (inputs and folder is None or dataset):
        fail("--record writes into the bundled trajectory files; it takes no other trajectories or dataset")
    progress = None if as_json else lambda n, total: console.print(f"replayed {n}/{total}")
    try:
        run = replay_trajectories(inputs or None, dataset=dataset, instance_ids=ids, pull=pull,
                                  prune_images=prune_images, eval_scripts_from=eval_scripts_from,
                                  ray_address=ray_address, record_observations=record, batch_size=batch_size,
                                  progress=progress)
    except RuntimeError as e:  # no cluster answers, an engine that failed: the run could not go on
        fail(str(e), code=1)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps([r.to_dict() for r in run.reports], indent=1), encoding="utf-8")
    summary = {**run.summary(), "report": str(report)}
    if write_verified is not None:
        from .replay import write_verified as write

        summary["verified"] = {"path": str(write_verified), "trajectories": write(write_verified, run.replayed)}
    if repeat:
        summary["flaky"] = _flaky(run.rows, repeat, as_json)
    if not as_json:
        _print_steps(run.reports)
        for problem in run.read.errors[:SHOWN_PROBLEMS]:
            console.print(f"skipped: {problem}")
    emit(summary, as_json, _table(summary))
    if summary["agree"] < summary["total"] or not summary["total"]:
        raise typer.Exit(1)


def _flaky(rows: list[dict], repeat: int, as_json: bool) -> list[dict]:
    from .flaky import flaky_tests

    out = []
    for i, row in enumerate(rows, 1):
        if not as_json:
            console.print(f"gold patch of {row['instance_id']}: {repeat} grades ({i}/{len(rows)})")
        out.append(flaky_tests(row, repeat))
    return out


def _print_steps(reports) -> None:
    for r in reports:
        verdict = "resolved" if r.resolved else "NOT resolved"
        recorded = "" if r.recorded_resolved is None else f" (recorded: {'resolved' if r.recorded_resolved else 'not'})"
        steps = Table(title=f"{r.instance_id}: {verdict}{recorded}")
        for col in ("step", "tool", "action", "observation match", "exit", "snapshot", "changed"):
            steps.add_column(col)
        for s in r.steps:
            code = "" if s.exit_code is None else str(s.exit_code)
            if s.recorded_exit_code is not None and s.recorded_exit_code != s.exit_code:
                code += f" (was {s.recorded_exit_code})"
            steps.add_row(str(s.index), s.tool, s.summary, _fmt(s.match), code, "yes" if s.snapshot else "",
                          "yes" if s.changed else "")
        Console().print(steps)


def _table(summary: dict) -> Table:
    table = Table(title=f"replay: {summary['resolved']}/{summary['total']} resolved, {summary['agree']} as recorded, "
                        f"{summary['skipped']} skipped (report: {summary['report']})")
    for col in ("task", "steps", "edits", "mean observation match", "first divergence", "resolved", "recorded"):
        table.add_column(col)
    for t in summary["tasks"]:
        first = t["first_divergence"]
        table.add_row(t["instance_id"], str(t["steps"]), str(t["edits"]), _fmt(t["mean_observation_match"]),
                      "" if first is None else f"step {first['step']}", _yes(t["resolved"]), _yes(t["recorded_resolved"]))
    return table
