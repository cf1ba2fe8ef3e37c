"""The engine's one record type, its statuses and its one budget rule.

Every consumer reads an ``EpisodeRecord``: the reward store and ``rewards.jsonl`` (``to_dict``), the
``.traj`` writer (evaluation), replay's report, RLVR's trainer. An episode ends with one exit status;
once graded it also has an outcome (``outcome``: resolved, unresolved, empty_patch, error, timeout,
disk_limit, or ungraded when someone else grades it, as the official harness does in evaluation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..schema import Step, Task, ToolCall, Trajectory

# Exit statuses: how the episode ended.
RUNNING = "running"
SUBMITTED = "submitted"  # the policy called submit
STEP_LIMIT = "step_limit"  # step_limit tool calls ran
FORMAT_ERRORS = "format_errors"  # format_error_limit malformed turns in a row
LENGTH = "length"  # the driver's token budget ran out (RLVR)
STOPPED = "stopped"  # the driver had nothing more to do (a script ran out, TRL stopped calling tools)
TIMEOUT = "timeout"  # past episode_timeout: scored 0 without grading
DISK_LIMIT = "disk_limit"  # the sandbox wrote past its disk budget: scored 0 without grading
ERROR = "error"  # the sandbox or a tool failed: scored 0 without grading
EXIT_STATUSES = (SUBMITTED, STEP_LIMIT, FORMAT_ERRORS, LENGTH, STOPPED, TIMEOUT, DISK_LIMIT, ERROR)
BROKEN = (TIMEOUT, DISK_LIMIT, ERROR)  # never graded; their containers are not trusted again

# Outcomes: what grading said.
RESOLVED, UNRESOLVED, EMPTY_PATCH, UNGRADED = "resolved", "unresolved", "empty_patch", "ungraded"


@dataclass
class EpisodeConfig:
    """The one budget rule, for every driver."""

    step_limit: int = 30
    """Tool calls executed; reaching it ends the episode (``step_limit``), whose work tree is still graded."""
    format_error_limit: int = 3
    """Malformed turns in a row before the episode ends (``format_errors``); a malformed turn is not a step."""
    command_timeout: float = 60.0
    """Seconds per tool command."""
    episode_timeout: float = 1800.0
    """Wall seconds from the sandbox being ready; past it the episode ends with reward 0 (``timeout``)."""
    eval_timeout: float = 900.0
    """Seconds for the task's eval script in the grading container."""

    def __post_init__(self) -> None:
        for name in ("step_limit", "format_error_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("command_timeout", "episode_timeout", "eval_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class StepRecord:
    """One executed tool call."""

    action: ToolCall
    observation: str
    thought: str = ""
    response: str = ""  # the completion behind it ("" for scripted drivers)
    seconds: float = 0.0
    snapshot: str | None = None  # the edited file before an editor edit (``snapshots=True``); None: no file
    snapshot_taken: bool = False
    diff: str | None = None  # what the step changed in the work tree, zero-context (``step_diffs=True``)
    exit_code: int | None = None  # a bash command's exit status (None: timed out, or not bash)

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.action.name, "arguments": dict(self.action.arguments), "observation": self.observation,
                "seconds": self.seconds}


@dataclass
class EpisodeRecord:
    """One task's episode: what the policy did, how it ended, and its grade."""

    task: dict[str, Any]
    steps: list[StepRecord] = field(default_factory=list)
    format_errors: list[dict[str, Any]] = field(default_factory=list)  # {turn, step, reason, message, response}
    turns: int = 0  # driver turns, malformed ones included
    exit_status: str = RUNNING
    error: str | None = None
    traceback: str | None = None
    patch: str = ""  # the work tree against the base commit when the episode ended
    outcome: str = UNGRADED
    reward: float = 0.0
    grade: dict[str, Any] = field(default_factory=dict)  # FAIL_TO_PASS, PASS_TO_PASS, tests_ran, reason
    edited_test_files: list[str] = field(default_factory=list)  # test infrastructure restored before grading
    container: dict[str, Any] = field(default_factory=dict)  # reused, replaced (changed outside the work tree)
    seconds: dict[str, float] = field(default_factory=dict)  # ready, episode, grading, tests
    memo: dict[str, Any] = field(default_factory=dict, repr=False)  # the driver's per-episode state
    errors_in_a_row: int = field(default=0, repr=False)
    started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def instance_id(self) -> str:
        return self.task["instance_id"]

    @property
    def running(self) -> bool:
        return self.exit_status == RUNNING

    @property
    def submission(self) -> str:
        return self.patch

    def stop(self, status: str, error: str | None = None) -> None:
        """End the episode (first status wins)."""
        if self.running:
            self.exit_status, self.error = status, error

    # ------------------------------------------------------------------ the budget rule
    def took_step(self, step: StepRecord, config: EpisodeConfig) -> None:
        self.steps.append(step)
        self.errors_in_a_row = 0
        if step.action.name == "submit":
            self.stop(SUBMITTED)
        elif len(self.steps) >= config.step_limit:
            self.stop(STEP_LIMIT)

    def malformed(self, reason: str, message: str, response: str, config: EpisodeConfig) -> None:
        self.format_errors.append({"turn": self.turns - 1, "step": len(self.steps), "reason": reason,
                                   "message": message, "response": response})
        self.errors_in_a_row += 1
        if self.errors_in_a_row >= config.format_error_limit:
            self.stop(FORMAT_ERRORS)

    def out_of_time(self, config: EpisodeConfig) -> bool:
        ready = self.seconds.get("ready", 0.0)
        if self.running and time.monotonic() - self.started - ready > config.episode_timeout:
            self.stop(TIMEOUT, f"the episode ran past {config.episode_timeout:g} s")
        return self.exit_status == TIMEOUT

    # ------------------------------------------------------------------ views
    def to_dict(self, kind: str = "episode") -> dict[str, Any]:
        """The record as ``rewards.jsonl`` and the reward store hold it."""
        out: dict[str, Any] = {
            "kind": kind, "instance_id": self.task.get("instance_id"), "reward": self.reward, "status": self.outcome,
            "exit_status": self.exit_status, "steps": [s.to_dict() for s in self.steps],
            "format_errors": len(self.format_errors),
            "format_error_reasons": [e["reason"] for e in self.format_errors], "turns": self.turns,
            "patch": self.patch, "edited_test_files": list(self.edited_test_files), "error": self.error,
            "container": dict(self.container), "seconds": dict(self.seconds), **self.grade,
        }
        if self.traceback:
            out["traceback"] = self.traceback
        return out

    def trajectory(self, style: str = "xml", system_prompt: str = "") -> Trajectory:
        steps = [Step(s.thought, s.action, raw_action=s.response.split("</think>", 1)[-1].strip(),
                      observation=s.observation) for s in self.steps]
        return Trajectory(Task.from_dict(self.task), steps, f"srl-agent:{style}", submission=self.patch,
                          source=f"agent:{self.instance_id}", system_prompt=system_prompt,
                          dropped_turns=len(self.format_errors))
