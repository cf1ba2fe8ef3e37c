"""Replay expert trajectories in their tasks' sandboxes: the episode engine driven by a script.

Any trajectory the readers read, matched by instance id to a row of any SWE-bench-style dataset (the
bundled pack by default), runs again through the tools in a fresh sandbox of its row's image
(``engine.run_episodes`` with ``ScriptedDriver``), with the source harness's shell semantics:
mini-swe-agent ran each command in a new shell at the work tree, SWE-agent and OpenHands kept one
session. Old SWE-agent commands with no equivalent among our tools (``legacy`` steps) are not run as
something else: they are skipped, counted and reported. Per step we compare the regenerated
observation with the recorded one (``observations``: unwrapped, normalised), keep the file snapshot
before each edit and what the step changed in the work tree (so bash edits can be rewarded like editor
edits), and the episode's patch is graded as every episode is, in a pristine container of the task
image. The verdict is set against the outcome recorded beside the trajectory (a SWE-bench
``report.json``, a ``resolved`` field) where there is one. ``write_verified`` writes the replayed
trajectories, snapshots, diffs and verdict included, for ``prepare`` (``--only-verified``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import observations
from .actions import render
from .engine import RESOLVED, EpisodeConfig, EpisodeRecord, SandboxEnvironment, SandboxPool, run_episodes
from .prompts import EXPERT_TASK_TEMPLATE, SYSTEM_PROMPT
from .readers import NOT_A_TRAJECTORY, ReadReport, read_trajectories
from .readers.base import ReadError
from .schema import Task, ToolCall, Trajectory
from .tools import FRESH, SESSION

ROOT = Path(__file__).resolve().parents[1]
TRAJECTORY_DIR = ROOT / "trajectories"
DIVERGENCE = 0.9  # a step whose observation matches the recording less than this is where replay diverged
NO_ROW = "no row in the dataset"
# The harnesses whose commands each ran in a new shell (source_format's prefix); the others kept one session.
FRESH_SHELL_FORMATS = ("minisweagent",)


def shell_of(traj: Trajectory) -> str:
    return FRESH if traj.source_format.split(":")[0] in FRESH_SHELL_FORMATS else SESSION


@dataclass
class StepReplay:
    index: int  # the step's index in the trajectory (legacy steps, not run, keep their places)
    tool: str
    summary: str  # the command or "editor view /path", for tables
    match: float | None  # similarity of regenerated and recorded observation (None: nothing recorded)
    snapshot: bool  # whether a file snapshot was taken before this editor edit
    exit_code: int | None = None  # the replayed command's
    recorded_exit_code: int | None = None  # the recording's, where the harness wrote it (mini-swe-agent)
    changed: bool = False  # whether the step changed the work tree


@dataclass
class ReplayReport:
    instance_id: str
    path: str
    steps: list[StepReplay] = field(default_factory=list)
    resolved: bool = False
    grade: dict[str, Any] = field(default_factory=dict)
    diff: str = ""
    recorded_resolved: bool | None = None  # the outcome recorded beside the trajectory
    source_format: str = ""
    shell: str = SESSION
    script_steps: int = 0  # the steps replay was to run
    legacy_skipped: list[int] = field(default_factory=list)  # legacy steps' indices, not run

    @property
    def mean_match(self) -> float | None:
        matches = [s.match for s in self.steps if s.match is not None]
        return sum(matches) / len(matches) if matches else None

    @property
    def first_divergence(self) -> dict[str, Any] | None:
        """The first step whose observation or exit code differs from the recording's."""
        for s in self.steps:
            code_differs = None not in (s.exit_code, s.recorded_exit_code) and s.exit_code != s.recorded_exit_code
            if (s.match is not None and s.match < DIVERGENCE) or code_differs:
                return {"step": s.index, "tool": s.tool, "action": s.summary,
                        "match": None if s.match is None else round(s.match, 4),
                        "exit_code": s.exit_code, "recorded_exit_code": s.recorded_exit_code}
        return None

    @property
    def agrees(self) -> bool:
        """The verdict is what was recorded (or, with nothing recorded, the expert's fix resolves), and
        every step of the script ran."""
        executed = len(self.steps) == self.script_steps
        expected = True if self.recorded_resolved is None else self.recorded_resolved
        return executed and self.resolved == expected and not self.grade.get("error")

    def summary(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "steps": len(self.steps),
            "resolved": self.resolved,
            "recorded_resolved": self.recorded_resolved,
            "mean_observation_match": None if self.mean_match is None else round(self.mean_match, 4),
            "first_divergence": self.first_divergence,
            "edits": sum(s.snapshot for s in self.steps),
            "legacy_skipped": len(self.legacy_skipped),
            "agrees": self.agrees,
        }

    def to_dict(self) -> dict[str, Any]:
        grade = {k: v for k, v in self.grade.items() if k != "log"}
        return {**self.summary(), "path": self.path, "source_format": self.source_format, "shell": self.shell,
                "legacy_steps": self.legacy_skipped, "per_step": [asdict(s) for s in self.steps],
                "grade": grade, "diff": self.diff}


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


@dataclass
class Script:
    """What replay runs for one trajectory: its calls in order, in its harness's shell."""

    calls: list[ToolCall]
    shell: str = SESSION


def script_of(traj: Trajectory) -> Script:
    return Script([s.action for s in traj.steps if not s.legacy], shell_of(traj))


class ScriptedDriver:
    """The engine's driver for recorded trajectories: each episode plays its script's calls in order, then
    stops (a script that ends without ``submit`` is still graded on its work tree). Scripts are taken in
    row order, one per episode, so one instance may be replayed from several trajectories in a run."""

    def __init__(self, scripts: Iterable[Script]):
        self.scripts = list(scripts)
        self._next = 0

    def begin(self, episode: EpisodeRecord) -> None:
        script = self.scripts[self._next]
        self._next += 1
        episode.memo.update(script=script.calls, shell=script.shell)

    def act(self, episodes: list[EpisodeRecord]) -> list[ToolCall | None]:
        out: list[ToolCall | None] = []
        for ep in episodes:
            script = ep.memo["script"]
            out.append(script[len(ep.steps)] if len(ep.steps) < len(script) else None)
        return out


def _source_file(source: str) -> Path:
    """The file a trajectory came from (``source`` may end in ``:record``)."""
    path = Path(source)
    if not path.exists() and ":" in source:
        path = Path(source.rsplit(":", 1)[0])
    return path


def _report_resolved(report: Any, instance_id: str) -> bool | None:
    """``resolved`` from a SWE-bench report: the harness's ``{instance_id: {...}}`` or one instance's."""
    if isinstance(report, dict) and isinstance(report.get(instance_id), dict):
        report = report[instance_id]
    value = report.get("resolved") if isinstance(report, dict) else None
    return value if isinstance(value, bool) else None


def recorded_resolved(traj: Trajectory) -> bool | None:
    """The outcome recorded with a trajectory: its own ``resolved`` field (SWE-smith, SWE-Gym, nebius), else
    a SWE-bench ``report.json`` beside it (``<name>.report.json``, or the run folder's ``report.json``)."""
    if traj.resolved is not None:
        return traj.resolved
    path = _source_file(traj.source)
    stem = path.name.split(".traj")[0].removesuffix(".json")
    for candidate in (path.with_name(f"{stem}.report.json"), path.with_name("report.json")):
        try:
            found = _report_resolved(json.loads(candidate.read_text(encoding="utf-8")), traj.instance_id)
        except (OSError, ValueError):
            continue
        if found is not None:
            return found
    return None


def _editor_snapshot(step: Any) -> bool:
    return step.snapshot_taken and step.action.name == "str_replace_editor"


def report_of(traj: Trajectory, episode: EpisodeRecord) -> ReplayReport:
    """Replay's view of an episode: each step's observation against the recorded one, and the grade."""
    report = ReplayReport(episode.instance_id, traj.source, recorded_resolved=recorded_resolved(traj),
                          source_format=traj.source_format, shell=shell_of(traj))
    run = [(k, step) for k, step in enumerate(traj.steps) if not step.legacy]
    report.legacy_skipped = [k for k, step in enumerate(traj.steps) if step.legacy]
    report.script_steps = len(run)
    for (k, step), done in zip(run, episode.steps, strict=False):
        match = recorded_code = None
        if step.observation is not None and step.observation.strip():
            match = observations.similarity(step.observation, done.observation)
            recorded_code = observations.recorded_exit_code(step.observation)
        report.steps.append(StepReplay(k, done.action.name, _summary(done.action), match, _editor_snapshot(done),
                                       done.exit_code, recorded_code, bool(done.diff)))
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
    runner: Any = None,
) -> list[tuple[ReplayReport, EpisodeRecord]]:
    """Run each trajectory's actions in a fresh sandbox of its row (same order); each graded episode. With
    ``runner`` (an ``engine.cluster.ClusterRunner``) the episodes run on a Ray cluster's engines instead."""
    scripts = [script_of(traj) for traj in trajectories]
    if len(scripts) != len(task_rows):
        raise ValueError(f"{len(scripts)} trajectories for {len(task_rows)} rows")
    config = EpisodeConfig(step_limit=max([len(s.calls) for s in scripts] + [1]), command_timeout=timeout)
    if runner is not None:
        episodes = runner.run(task_rows, ScriptedDriver(scripts), config, progress=progress,
                              environment={"snapshots": True, "step_diffs": True})
        return [(report_of(traj, ep), ep) for traj, ep in zip(trajectories, episodes, strict=True)]
    with SandboxPool(batch_size, warm=False, client=client, timeout=timeout) as pool:
        episodes = run_episodes(task_rows, ScriptedDriver(scripts),
                                lambda: SandboxEnvironment(pool, config, snapshots=True, step_diffs=True), config,
                                batch_size=batch_size, progress=progress)
    return [(report_of(traj, ep), ep) for traj, ep in zip(trajectories, episodes, strict=True)]


def verified(traj: Trajectory, report: ReplayReport, episode: EpisodeRecord) -> Trajectory:
    """The trajectory with what replay learnt: each run step's snapshot and diff, and the verdict."""
    done = iter(episode.steps)
    steps = []
    for step in traj.steps:
        ran = None if step.legacy else next(done, None)
        steps.append(replace(step, snapshot=ran.snapshot if ran is not None and ran.snapshot_taken else step.snapshot,
                             diff=ran.diff if ran is not None else None))
    # The row knows what the trajectory may not (repo, base commit, tests): kept where the trajectory is silent.
    known = traj.task.to_dict()
    task = {**{k: v for k, v in episode.task.items() if k in known}, **{k: v for k, v in known.items() if v}}
    return replace(traj, task=Task.from_dict(task), steps=steps,
                   verified={**report.summary(), "source": traj.source, "patch": report.diff,
                             "outcome": episode.outcome, "exit_status": episode.exit_status})


def write_verified(path: Path, replayed: Iterable[Trajectory]) -> int:
    """The replayed trajectories as srl-agent rows (one JSON line each), which ``prepare`` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for traj in replayed:
            fh.write(traj.to_json() + "\n")
            n += 1
    return n


def record(path: Path, episode: EpisodeRecord, report: ReplayReport) -> None:
    """Write regenerated observations and snapshots into a trajectory file (one SWE-smith row): each
    assistant turn is followed by exactly one ``OBSERVATION:`` user turn."""
    observations = [s.observation for s in episode.steps]
    snapshots = {k: s.snapshot for k, s in enumerate(episode.steps) if _editor_snapshot(s)}
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


@dataclass
class ReplayRun:
    """A replay of many trajectories: a report and the verified trajectory for each that ran, and what
    was skipped (unreadable records, trajectories whose instance the dataset lacks), counted by reason."""

    reports: list[ReplayReport]
    replayed: list[Trajectory]
    read: ReadReport
    rows: list[dict[str, Any]] = field(default_factory=list)  # the dataset rows replayed, each once
    extra: dict[str, Any] = field(default_factory=dict)  # images pulled and pruned; the cluster ("ray")

    def summary(self) -> dict[str, Any]:
        skipped = {k: v for k, v in self.read.skipped.items() if k != NOT_A_TRAJECTORY}
        return {"tasks": [r.summary() for r in self.reports], "total": len(self.reports),
                "resolved": sum(r.resolved for r in self.reports), "agree": sum(r.agrees for r in self.reports),
                "skipped": sum(skipped.values()), "skipped_by_reason": skipped,
                "problems": list(self.read.errors), **self.extra}


def _select(trajectories: list[Trajectory], instance_ids: list[str] | None, where: str) -> list[Trajectory]:
    if not instance_ids:
        return trajectories
    found = {t.instance_id for t in trajectories}
    missing = [i for i in instance_ids if i not in found]
    if missing:
        raise FileNotFoundError(f"no trajectory for {', '.join(missing)} in {where}")
    return [t for t in trajectories if t.instance_id in set(instance_ids)]


def replay_trajectories(
    inputs: list[str | Path] | None = None,
    *,
    dataset: str | Path | None = None,
    instance_ids: list[str] | None = None,
    pull: str = "missing",
    prune_images: bool = False,
    eval_scripts_from: str | Path | None = None,
    ray_address: str | None = None,
    record_observations: bool = False,
    client: Any = None,
    batch_size: int = 2,
    timeout: float = 120,
    progress: Any = None,
) -> ReplayRun:
    """Replay trajectories (files, folders, hub names; the bundled ones when ``inputs`` is empty) against
    the rows of ``dataset`` (the bundled pack when None; older rows completed from ``eval_scripts_from``),
    each in its row's image, pulled as ``pull`` says (missing, never, always) and, with ``prune_images``,
    removed again at the end if this run pulled it; with ``ray_address`` on that Ray cluster's nodes
    (``engine.cluster``). ``record_observations`` writes the regenerated observations and snapshots back
    into bundled trajectory files."""
    from .evaluation.data import load_rows
    from .image_supply import ImageSupply

    read = ReadReport()
    where = ", ".join(map(str, inputs)) if inputs else str(TRAJECTORY_DIR)
    trajectories = _select(list(read_trajectories(inputs or [TRAJECTORY_DIR], report=read)), instance_ids, where)
    rows = {r["instance_id"]: r for r in load_rows(dataset, eval_scripts_from=eval_scripts_from)}
    matched = []
    for traj in trajectories:
        if traj.instance_id in rows:
            matched.append(traj)
        else:
            read.skip(NO_ROW, ReadError(f"instance {traj.instance_id} is not in the dataset "
                                        f"{dataset or 'of the bundled tasks'}", file=traj.source,
                                        field="instance_id", reason=NO_ROW))
    task_rows = [rows[t.instance_id] for t in matched]
    if not task_rows:
        return ReplayRun([], [], read)
    unique = list({r["instance_id"]: r for r in task_rows}.values())
    reports, replayed, cluster = [], [], {}
    with ImageSupply(client, pull=pull, prune=prune_images, progress=progress is not None) as images:
        images.ensure(unique, bundled=dataset is None)
        runner = None
        try:
            if ray_address:
                from .engine.cluster import ClusterRunner

                runner = ClusterRunner(ray_address, warm=False, timeout=timeout)  # fresh containers, as locally
            done = replay(matched, task_rows, client=images.client, batch_size=batch_size, timeout=timeout,
                          progress=progress, runner=runner)
        finally:
            if runner is not None:
                cluster = {"ray": runner.summary()}
                runner.close()
    for traj, (report, episode) in zip(matched, done, strict=True):
        if record_observations:
            record(_source_file(traj.source), episode, report)
        reports.append(report)
        replayed.append(verified(traj, report, episode))
    return ReplayRun(reports, replayed, read, unique, {**images.summary(), **cluster})


def replay_tasks(task_ids: list[str] | None = None, **kwargs: Any) -> list[ReplayReport]:
    """Replay the bundled trajectory of each task (all of them when ``task_ids`` is None)."""
    return replay_trajectories(None, instance_ids=task_ids, **kwargs).reports
