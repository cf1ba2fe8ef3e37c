"""Replay expert trajectories in their tasks' sandboxes.

Each action of a bundled trajectory runs again through the tools in a fresh sandbox of its task.
Per step we compare the regenerated observation with the recorded one and, before every editor call
that changes a file, record the file's content (the patch-similarity reward applies both the
candidate's and the expert's edit to it). At the end the work tree is graded with swebench's
functions on the task's eval script. ``record=True`` writes the fresh observations and the snapshots
back into the trajectory file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rapidfuzz.distance import Indel

from .actions import render
from .grading import evaluate_in
from .prompts import EXPERT_TASK_TEMPLATE, SYSTEM_PROMPT
from .readers import read_file
from .schema import ToolCall, Trajectory

ROOT = Path(__file__).resolve().parents[1]
TRAJECTORY_DIR = ROOT / "trajectories"
EDITS = ("create", "str_replace", "insert", "undo_edit")


@dataclass
class StepReplay:
    index: int
    tool: str
    summary: str  # the command or "editor view /path", for tables
    match: float | None  # similarity of regenerated and recorded observation (None: nothing recorded)
    snapshot: bool  # whether a file snapshot was taken before this step


@dataclass
class ReplayReport:
    instance_id: str
    path: str
    steps: list[StepReplay] = field(default_factory=list)
    resolved: bool = False
    grade: dict[str, Any] = field(default_factory=dict)
    diff: str = ""

    @property
    def mean_match(self) -> float | None:
        matches = [s.match for s in self.steps if s.match is not None]
        return sum(matches) / len(matches) if matches else None

    def summary(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "steps": len(self.steps),
            "mean_observation_match": None if self.mean_match is None else round(self.mean_match, 4),
            "edits": sum(s.snapshot for s in self.steps),
            "resolved": self.resolved,
        }

    def to_dict(self) -> dict[str, Any]:
        grade = {k: v for k, v in self.grade.items() if k != "log"}
        return {**self.summary(), "path": self.path, "per_step": [asdict(s) for s in self.steps], "grade": grade,
                "diff": self.diff}


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def _summary(call: ToolCall) -> str:
    args = call.arguments
    if call.name == "bash":
        return args.get("command", "").splitlines()[0][:80] if args.get("command") else ""
    if call.name == "str_replace_editor":
        return f"{args.get('command')} {args.get('path')}"
    return call.name


def expert_row(task_row: dict[str, Any], turns: Iterable[tuple[str, ToolCall]]) -> dict[str, Any]:
    """A trajectory file's row (SWE-smith message format) from (thought, call) turns, observations empty
    until ``replay(record=True)`` fills them."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": EXPERT_TASK_TEMPLATE.format(issue=task_row["problem_statement"])},
    ]
    for thought, call in turns:
        messages.append({"role": "assistant", "content": f"{thought}\n\n{render(call)}"})
        messages.append({"role": "user", "content": "OBSERVATION:\n"})
    return {"instance_id": task_row["instance_id"], "messages": messages}


def trajectory_path(instance_id: str, folder: Path = TRAJECTORY_DIR) -> Path:
    return folder / f"{instance_id}.jsonl"


def replay(
    traj: Trajectory,
    task_row: dict[str, Any],
    *,
    client: Any = None,
    timeout: float = 120,
) -> tuple[ReplayReport, list[str], dict[int, str | None]]:
    """Run ``traj``'s actions in a fresh sandbox of ``task_row``; grade the result.

    Returns the report, the regenerated observations and the snapshots ({step index: content before
    the edit, None when the file did not exist})."""
    from .sandbox import Sandbox, SandboxConfig
    from .tools import Tools

    report = ReplayReport(task_row["instance_id"], traj.source)
    observations: list[str] = []
    snapshots: dict[int, str | None] = {}
    config = SandboxConfig(image=task_row["image"], base_commit=task_row["base_commit"], timeout=timeout)
    with Sandbox(config, client=client) as sandbox:
        tools = Tools(sandbox)
        for k, step in enumerate(traj.steps):
            call = step.action
            took = call.name == "str_replace_editor" and call.arguments.get("command") in EDITS
            if took:
                path = call.arguments.get("path", "")
                snapshots[k] = sandbox.read_file(path) if sandbox.path_kind(path) == "file" else None
            observation = tools.execute(call)
            observations.append(observation)
            match = None
            if step.observation is not None and step.observation.strip():
                match = Indel.normalized_similarity(_normalise(step.observation), _normalise(observation))
            report.steps.append(StepReplay(k, call.name, _summary(call), match, took))
        report.diff = sandbox.diff()
        report.grade = evaluate_in(sandbox, task_row)
        report.resolved = bool(report.grade["resolved"])
    return report, observations, snapshots


def record(path: Path, observations: list[str], snapshots: dict[int, str | None], report: ReplayReport) -> None:
    """Write regenerated observations and snapshots into a trajectory file (one SWE-smith row): each
    assistant turn is followed by exactly one ``OBSERVATION:`` user turn."""
    row = json.loads(path.read_text(encoding="utf-8"))
    messages, out, k = row["messages"], [], 0
    for m in messages:
        if m["role"] == "user" and k > 0:
            continue  # old observations: replaced below
        out.append(m)
        if m["role"] == "assistant":
            out.append({"role": "user", "content": "OBSERVATION:\n" + observations[k]})
            k += 1
    row.update(messages=out, snapshots={str(i): s for i, s in snapshots.items()}, patch=report.diff,
               resolved=report.resolved)
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")


def replay_tasks(
    task_ids: list[str] | None = None,
    *,
    record_observations: bool = False,
    folder: Path = TRAJECTORY_DIR,
    dataset: Path | str | None = None,
    progress: Any = None,
) -> list[ReplayReport]:
    """Replay the bundled trajectory of each task (all that have one when ``task_ids`` is None)."""
    from .images import build_images
    from .tasks import load_dataset

    rows = {r["instance_id"]: r for r in load_dataset(dataset)}
    wanted = task_ids or sorted(i for i in rows if trajectory_path(i, folder).exists())
    unknown = [i for i in wanted if i not in rows]
    if unknown:
        raise KeyError(f"no task {', '.join(unknown)} in the dataset")
    missing = [i for i in wanted if not trajectory_path(i, folder).exists()]
    if missing:
        raise FileNotFoundError(f"no trajectory for {', '.join(missing)} in {folder}")
    build_images(wanted, progress=False)
    reports = []
    for n, instance_id in enumerate(wanted, 1):
        path = trajectory_path(instance_id, folder)
        (traj,) = read_file(path)
        report, observations, snapshots = replay(traj, rows[instance_id])
        if record_observations:
            record(path, observations, snapshots, report)
        reports.append(report)
        if progress is not None:
            progress(n, len(wanted))
    return reports
