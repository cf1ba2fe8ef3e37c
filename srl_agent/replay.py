"""Replay expert trajectories in their tasks' sandboxes: the episode engine driven by a script.

Each action of a bundled trajectory runs again through the tools in a fresh sandbox of its task
(``engine.run_episodes`` with ``ScriptedDriver``). Per step we compare the regenerated observation
with the recorded one and, before every editor call that changes a file, record the file's content
(the patch-similarity reward applies both the candidate's and the expert's edit to it). The episode's
patch is graded as every episode is, in a pristine container of the task image. ``record=True``
writes the fresh observations and the snapshots back into the trajectory file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rapidfuzz.distance import Indel

from .actions import render
from .engine import RESOLVED, EpisodeConfig, EpisodeRecord, SandboxEnvironment, SandboxPool, run_episodes
from .prompts import EXPERT_TASK_TEMPLATE, SYSTEM_PROMPT
from .readers import read_file
from .schema import ToolCall, Trajectory

ROOT = Path(__file__).resolve().parents[1]
TRAJECTORY_DIR = ROOT / "trajectories"


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


class ScriptedDriver:
    """The engine's driver for recorded trajectories: each episode plays its script's calls in order, then
    stops (a script that ends without ``submit`` is still graded on its work tree)."""

    def __init__(self, scripts: dict[str, list[ToolCall]]):
        self.scripts = scripts

    def act(self, episodes: list[EpisodeRecord]) -> list[ToolCall | None]:
        out: list[ToolCall | None] = []
        for ep in episodes:
            script = self.scripts[ep.instance_id]
            out.append(script[len(ep.steps)] if len(ep.steps) < len(script) else None)
        return out


def report_of(traj: Trajectory, episode: EpisodeRecord) -> ReplayReport:
    """Replay's view of an episode: each step's observation against the recorded one, and the grade."""
    report = ReplayReport(episode.instance_id, traj.source)
    for k, (step, done) in enumerate(zip(traj.steps, episode.steps, strict=False)):
        match = None
        if step.observation is not None and step.observation.strip():
            match = Indel.normalized_similarity(_normalise(step.observation), _normalise(done.observation))
        report.steps.append(StepReplay(k, done.action.name, _summary(done.action), match, done.snapshot_taken))
    report.diff = episode.patch
    report.grade = {**episode.grade, "outcome": episode.outcome, "exit_status": episode.exit_status,
                    "edited_test_files": episode.edited_test_files, "error": episode.error}
    report.resolved = episode.outcome == RESOLVED
    return report


def replay(
    trajectories: list[Trajectory],
    task_rows: list[dict[str, Any]],
    *,
    client: Any = None,
    timeout: float = 120,
    batch_size: int = 2,
    progress: Any = None,
) -> list[tuple[ReplayReport, EpisodeRecord]]:
    """Run each trajectory's actions in a fresh sandbox of its row (same order); each graded episode."""
    scripts = {row["instance_id"]: [s.action for s in traj.steps] for traj, row in zip(trajectories, task_rows,
                                                                                       strict=True)}
    config = EpisodeConfig(step_limit=max([len(v) for v in scripts.values()] + [1]), command_timeout=timeout)
    with SandboxPool(batch_size, warm=False, client=client, timeout=timeout) as pool:
        episodes = run_episodes(task_rows, ScriptedDriver(scripts),
                                lambda: SandboxEnvironment(pool, config, snapshots=True), config,
                                batch_size=batch_size, progress=progress)
    return [(report_of(traj, ep), ep) for traj, ep in zip(trajectories, episodes, strict=True)]


def record(path: Path, episode: EpisodeRecord, report: ReplayReport) -> None:
    """Write regenerated observations and snapshots into a trajectory file (one SWE-smith row): each
    assistant turn is followed by exactly one ``OBSERVATION:`` user turn."""
    observations = [s.observation for s in episode.steps]
    snapshots = {k: s.snapshot for k, s in enumerate(episode.steps) if s.snapshot_taken}
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
    from .evaluation.data import load_rows
    from .images import build_images

    rows = {r["instance_id"]: r for r in load_rows(dataset)}
    wanted = task_ids or sorted(i for i in rows if trajectory_path(i, folder).exists())
    unknown = [i for i in wanted if i not in rows]
    if unknown:
        raise KeyError(f"no task {', '.join(unknown)} in the dataset")
    missing = [i for i in wanted if not trajectory_path(i, folder).exists()]
    if missing:
        raise FileNotFoundError(f"no trajectory for {', '.join(missing)} in {folder}")
    build_images(wanted, progress=False)
    paths = [trajectory_path(i, folder) for i in wanted]
    trajectories = [read_file(path)[0] for path in paths]
    reports = []
    for path, (report, episode) in zip(paths, replay(trajectories, [rows[i] for i in wanted], progress=progress),
                                      strict=True):
        if record_observations:
            record(path, episode, report)
        reports.append(report)
    return reports
