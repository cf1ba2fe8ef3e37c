"""``SWEEnvironment``: one task episode in a sandbox, in the shape TRL's ``environment_factory`` expects.

Its public methods are the tools (``bash``, ``str_replace_editor``, ``submit``, with type hints and
docstrings that ``transformers.utils.get_json_schema`` reads); ``reset(**row)`` takes a sandbox of the
row's task from the pool and returns the issue turn; ``get_reward()`` grades the work tree with the
task's eval script and swebench's ``make_test_spec`` + ``get_eval_report``: 1.0 when resolved, else 0.0.
``srl_agent.rlvr.rollout`` drives it through ``execute(call)`` with the project's own parser.

Budgets: ``step_limit`` tool calls (then the episode ends and its work tree is graded, as SWE-agent
submits what is there), ``command_timeout`` per command, ``episode_timeout`` of wall time. An episode
that crashes (the sandbox or a tool fails) or runs out of wall time scores 0 without grading; its
container is removed, not returned to the pool.

Reward integrity: grading happens in a new shell with every process the agent started killed; the
test files the agent edited (the task's test patch and eval script files, and anything that looks
like a test) are restored to the base commit first and listed in the record (``edited_test_files``);
the eval script checks its own test files out again; the image carries no history beyond the base
commit.
"""

from __future__ import annotations

import re
import shlex
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from ..prompts import ISSUE_TEMPLATE
from ..schema import ToolCall
from .pool import SandboxPool

RUNNING, SUBMITTED, STEP_LIMIT, TIMEOUT, ERROR = "running", "submitted", "step_limit", "timeout", "error"
LENGTH = "length"  # the rollout's token budget ended the episode
EPISODE_OVER = "The episode is over ({status}); no more tool calls are run."

# Paths that hold tests in Python projects: restored before grading even when the eval script does not run them.
_TEST_PATH = re.compile(r"(^|/)(tests?|testing)/|(^|/)test_[^/]*\.py$|_tests?\.py$|(^|/)conftest\.py$")
_CHECKOUT = re.compile(r"^git checkout \S+ -- (.+)$", re.M)


@dataclass
class EpisodeConfig:
    step_limit: int = 30
    """Tool calls per episode; reaching it ends the episode, whose work tree is still graded."""
    command_timeout: float = 60.0
    """Seconds per tool command."""
    episode_timeout: float = 1800.0
    """Wall seconds from ``reset``; past it the episode ends with reward 0 (status ``timeout``)."""
    eval_timeout: float = 900.0
    """Seconds for the task's eval script."""


def task_test_files(row: dict[str, Any]) -> set[str]:
    """The files the task's tests live in: those of its test patch and those its eval script checks out."""
    files: set[str] = set()
    if row.get("test_patch"):
        from unidiff import PatchSet

        for f in PatchSet(row["test_patch"]):
            files.add(f.path)
    for m in _CHECKOUT.finditer(row.get("eval_script") or ""):
        files.update(shlex.split(m.group(1)))
    return files


def patch_files(patch: str) -> list[str]:
    """The paths a unified diff touches (sources and targets, ``a/``/``b/`` stripped)."""
    from unidiff import PatchSet

    out: list[str] = []
    for f in PatchSet(patch):
        for name in (f.source_file, f.target_file):
            if name and name != "/dev/null":
                path = name[2:] if name[:2] in ("a/", "b/") else name
                if path not in out:
                    out.append(path)
    return out


@dataclass
class _Episode:
    row: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    status: str = RUNNING
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    format_errors: int = 0
    ready_seconds: float = 0.0
    record: dict[str, Any] | None = None  # set once graded
    traceback: str | None = None  # where a crash happened


class SWEEnvironment:
    """One episode at a time on a task row (swebench-5: ``image``, ``eval_script``, FAIL_TO_PASS, …)."""

    def __init__(self, pool: SandboxPool | None = None, config: EpisodeConfig | None = None, *,
                 issue_turn: Any = None, log: Any = None):
        self.config = config or EpisodeConfig()
        self._own_pool = pool is None
        self.pool = pool or SandboxPool(1, timeout=self.config.command_timeout)
        self.issue_turn = issue_turn or (lambda text: ISSUE_TEMPLATE.format(issue=text))
        self.log = log  # anything with write(record): gets each graded episode
        self.sandbox: Any = None
        self._tools: Any = None
        self._ep: _Episode | None = None

    # ------------------------------------------------------------------ episode lifecycle
    def reset(self, **row: Any) -> str:
        """Start an episode on ``row`` in a sandbox at the task's base commit; returns the issue turn."""
        from ..tools import Tools

        self._give_back()
        self._ep = ep = _Episode(row=row)
        try:
            self.sandbox = self.pool.acquire(row)
            self._tools = Tools(self.sandbox, timeout=self.config.command_timeout)
        except Exception as e:
            self._fail(ERROR, f"sandbox: {type(e).__name__}: {e}")
        ep.ready_seconds = time.monotonic() - ep.started
        return self.issue_turn((row.get("problem_statement") or "").strip())

    @property
    def status(self) -> str:
        return self._ep.status if self._ep else RUNNING

    @property
    def done(self) -> bool:
        return self._ep is None or self._ep.status != RUNNING

    def stop(self, status: str) -> None:
        """End the episode from outside (the policy's turn or token budget ran out); it is still graded."""
        if self._ep is not None and self._ep.status == RUNNING:
            self._ep.status = status

    def note_format_error(self) -> None:
        """The policy's turn broke the format (counted in the record; no tool ran)."""
        if self._ep is not None:
            self._ep.format_errors += 1

    # ------------------------------------------------------------------ the tools
    def bash(self, command: str) -> str:
        """Run a command in a persistent bash session in the repository at /testbed.

        Args:
            command: The bash command to run.
        """
        return self._call("bash", {"command": command})

    def str_replace_editor(self, command: str, path: str, file_text: str | None = None, old_str: str | None = None,
                           new_str: str | None = None, insert_line: int | None = None,
                           view_range: list[int] | None = None) -> str:
        """View, create and edit files.

        Args:
            command: One of view, create, str_replace, insert, undo_edit.
            path: Absolute path of the file or directory.
            file_text: The content of the file to create (create).
            old_str: The exact text to replace; it must occur exactly once (str_replace).
            new_str: The replacement text (str_replace), or the text to insert (insert).
            insert_line: Insert new_str after this line (insert).
            view_range: First and last line to show, e.g. [10, 40]; -1 as the last means to the end (view).
        """
        args = {"command": command, "path": path, "file_text": file_text, "old_str": old_str, "new_str": new_str,
                "insert_line": insert_line, "view_range": view_range}
        return self._call("str_replace_editor", {k: v for k, v in args.items() if v is not None})

    def submit(self) -> str:
        """Submit the changes in the repository as the answer; this ends the episode."""
        return self._call("submit", {})

    def execute(self, call: ToolCall) -> str:
        """Run one parsed tool call (what the rollout uses)."""
        return self._call(call.name, dict(call.arguments))

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        ep = self._ep
        if ep is None:
            raise RuntimeError("call reset(**row) before the tools")
        if ep.status != RUNNING:
            return EPISODE_OVER.format(status=ep.status)
        if time.monotonic() - ep.started > self.config.episode_timeout:
            self._fail(TIMEOUT, f"the episode ran past {self.config.episode_timeout:g} s")
            return EPISODE_OVER.format(status=ep.status)
        start = time.monotonic()
        try:
            observation = self._tools.execute(ToolCall(name, arguments))
        except Exception as e:  # the sandbox broke under the command
            self._fail(ERROR, f"{name}: {type(e).__name__}: {e}")
            ep.traceback = traceback.format_exc(limit=-8)
            return EPISODE_OVER.format(status=ep.status)
        ep.steps.append({"tool": name, "arguments": arguments, "observation": observation,
                         "seconds": round(time.monotonic() - start, 3)})
        if name == "submit":
            ep.status = SUBMITTED
        elif len(ep.steps) >= self.config.step_limit:
            ep.status = STEP_LIMIT
        return observation

    def _fail(self, status: str, error: str) -> None:
        self._ep.status, self._ep.error = status, error

    # ------------------------------------------------------------------ the reward
    def get_reward(self) -> float:
        """1.0 when the task's tests say the work tree resolves the issue, else 0.0 (graded once)."""
        return float(self.finish()["reward"])

    def finish(self) -> dict[str, Any]:
        """Grade the episode (once), hand the record to the log, give the sandbox back; the record."""
        ep = self._ep
        if ep is None:
            raise RuntimeError("no episode: call reset(**row) first")
        if ep.record is not None:
            return ep.record
        exit_status = ep.status if ep.status != RUNNING else "stopped"  # the policy stopped calling tools
        record: dict[str, Any] = {"kind": "rlvr", "instance_id": ep.row.get("instance_id"), "reward": 0.0,
                                  "exit_status": exit_status, "steps": ep.steps, "format_errors": ep.format_errors,
                                  "patch": "", "edited_test_files": [], "error": ep.error}
        if ep.traceback:
            record["traceback"] = ep.traceback
        episode_seconds = time.monotonic() - ep.started - ep.ready_seconds
        grading = 0.0
        broken = ep.status in (ERROR, TIMEOUT)
        if broken:
            record["status"] = ep.status
        else:
            start = time.monotonic()
            try:
                record.update(self._grade(ep.row))
            except Exception as e:  # grading itself failed: no reward, and the container is not trusted again
                record.update(status=ERROR, error=f"grading: {type(e).__name__}: {e}")
                broken = True
            grading = time.monotonic() - start
        record["seconds"] = {"ready": round(ep.ready_seconds, 3), "episode": round(episode_seconds, 3),
                             "grading": round(grading, 3), "tests": record.pop("test_seconds", 0.0)}
        ep.record = record
        self._give_back(broken=broken)
        if self.log is not None:
            self.log.write(record)
        return record

    def _grade(self, row: dict[str, Any]) -> dict[str, Any]:
        from ..grading import evaluate_in

        sandbox = self.sandbox
        sandbox.fresh_session()  # nothing the agent started or defined in its shell runs with the tests
        patch = sandbox.diff()
        protected = task_test_files(row)
        edited = [p for p in patch_files(patch) if p in protected or _TEST_PATH.search(p)] if patch else []
        if edited:
            base = shlex.quote(sandbox.base_commit)
            restore = " && ".join(
                f"{{ git cat-file -e {base}:{shlex.quote(p)} 2>/dev/null && git checkout -q {base} -- {shlex.quote(p)}"
                f" || rm -rf -- {shlex.quote(p)}; }}" for p in edited)
            result = sandbox.run(f"cd {shlex.quote(sandbox.config.workdir)} && {restore}", timeout=120)
            if result.exit_code != 0:
                raise RuntimeError(f"restoring test files failed: {result.output.strip()[-500:]}")
        report = evaluate_in(sandbox, row, timeout=self.config.eval_timeout)
        resolved = bool(report["resolved"])
        status = "resolved" if resolved else ("empty_patch" if not patch.strip() else "unresolved")
        return {"reward": 1.0 if resolved else 0.0, "status": status, "resolved": resolved, "patch": patch,
                "edited_test_files": edited, "tests_ran": report["tests_ran"], "reason": report["reason"],
                "test_seconds": report["script_seconds"],
                "FAIL_TO_PASS": report["FAIL_TO_PASS"], "PASS_TO_PASS": report["PASS_TO_PASS"]}

    # ------------------------------------------------------------------ cleanup
    def _give_back(self, broken: bool = False) -> None:
        if self.sandbox is not None:
            sandbox, self.sandbox, self._tools = self.sandbox, None, None
            self.pool.release(sandbox, broken=broken)

    def close(self) -> None:
        """Give the sandbox back ungraded (a crashed rollout) and close a pool of its own."""
        self._give_back(broken=self._ep is not None and self._ep.record is None)
        if self._own_pool:
            self.pool.close()

    def __enter__(self) -> SWEEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
