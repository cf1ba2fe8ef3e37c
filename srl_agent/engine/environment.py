"""The engine's environment: a task row's sandbox from a pool, the tools on it, and pristine grading.

``SandboxEnvironment`` is what the episode loop drives (``start`` → ``execute`` per call → ``finish``).
``finish`` takes the work tree's diff against the base commit, gives the sandbox back to the pool (which
replaces it if the episode changed it outside the work tree) and grades the diff in a pristine
container of the task image (``grading.evaluate``): the container the policy acted in never grades,
so nothing it planted outside its patch (a plugin in site-packages, a process, a shell function)
reaches the tests; test-infrastructure edits in the patch are left out and listed
(``engine.integrity``). Timed-out and crashed episodes score 0 ungraded and their containers go.

``SWEEnvironment`` is the same thing in the shape TRL's ``environment_factory`` expects: the tools as
public methods with type hints and docstrings (``transformers.utils.get_json_schema`` reads them),
``reset(**row)`` returning the issue turn, ``get_reward()``.
"""

from __future__ import annotations

import threading
import time
import traceback
import weakref
from typing import Any

from ..prompts import ISSUE_TEMPLATE
from ..sandbox import DiskBudgetExceeded
from ..schema import EDITOR_COMMANDS, ToolCall
from ..tools import SESSION, Tools
from .pool import SandboxPool
from .records import (
    BROKEN,
    DISK_LIMIT,
    EMPTY_PATCH,
    ERROR,
    RESOLVED,
    RUNNING,
    STOPPED,
    UNGRADED,
    UNRESOLVED,
    EpisodeConfig,
    EpisodeRecord,
    StepRecord,
)

EPISODE_OVER = "The episode is over ({status}); no more tool calls are run."
EDITS = tuple(c for c in EDITOR_COMMANDS if c != "view")  # the editor commands that change a file


class SandboxEnvironment:
    """One episode at a time on a task row (swebench-5: ``image``, ``base_commit``, ``eval_script``, …).

    ``grade=False``: the episode ends with its patch and is graded by someone else (evaluation's official
    harness). ``snapshots=True``: each editor edit's file is read first into its step (replay).
    ``step_diffs=True``: each step that changed the work tree gets that change as a patch, and a bash
    step that changed a file gets the first such file's content from before the step as its snapshot,
    so that edits made with sed or a heredoc can be rewarded like editor edits (replay).
    ``shell``: the tools' shell semantics (``tools.SHELLS``); an episode's ``memo["shell"]``, set by its
    driver, overrides it (replay keeps each source harness's)."""

    def __init__(self, pool: SandboxPool, config: EpisodeConfig | None = None, *, grade: bool = True,
                 snapshots: bool = False, step_diffs: bool = False, shell: str = SESSION):
        self.pool, self.config = pool, config or EpisodeConfig()
        self.grade, self.snapshots, self.step_diffs, self.shell = grade, snapshots, step_diffs, shell
        self._tree: str | None = None  # the work tree's last checkpoint (step_diffs)
        self.sandbox: Any = None
        self.tools: Any = None
        self._lease: Any = None

    def start(self, episode: EpisodeRecord) -> None:
        """A sandbox of the episode's task at its base commit; a failure ends the episode (``error``)."""
        if not episode.running:  # its driver could not begin it
            return
        try:
            self.sandbox = self.pool.acquire(episode.task)
            # An environment dropped without finish/close must not hold its pool slot for ever.
            self._lease = weakref.finalize(self, _reclaim, self.pool, self.sandbox)
            self.tools = Tools(self.sandbox, timeout=self.config.command_timeout,
                               shell=episode.memo.get("shell", self.shell))
            self._tree = self.sandbox.checkpoint() if self.step_diffs else None
            episode.container["reused"] = self.sandbox.episodes > 0
            self.sandbox.episodes += 1
        except Exception as e:
            episode.stop(ERROR, f"sandbox: {type(e).__name__}: {e}")
            episode.traceback = traceback.format_exc(limit=-8)
        episode.seconds["ready"] = round(time.monotonic() - episode.started, 3)

    def execute(self, episode: EpisodeRecord, call: ToolCall, *, thought: str = "", response: str = "") -> str:
        """Run one call and record it under the budget rule; a broken sandbox ends the episode (``error``)."""
        if not episode.running:
            return EPISODE_OVER.format(status=episode.exit_status)
        if episode.out_of_time(self.config):
            return EPISODE_OVER.format(status=episode.exit_status)
        start = time.monotonic()
        step = StepRecord(call, "", thought=thought, response=response)
        try:
            if self.snapshots and call.name == "str_replace_editor" and call.arguments.get("command") in EDITS:
                path = str(call.arguments.get("path", ""))
                step.snapshot = self.sandbox.read_file(path) if self.sandbox.path_kind(path) == "file" else None
                step.snapshot_taken = True
            step.observation = self.tools.execute(call)
            step.exit_code = self.tools.exit_code
            if self.step_diffs and _may_change_files(call):
                self._record_change(step)
        except DiskBudgetExceeded as e:
            episode.stop(DISK_LIMIT, str(e))
            return EPISODE_OVER.format(status=episode.exit_status)
        except Exception as e:  # the sandbox broke under the command
            episode.stop(ERROR, f"{call.name}: {type(e).__name__}: {e}")
            episode.traceback = traceback.format_exc(limit=-8)
            return EPISODE_OVER.format(status=episode.exit_status)
        step.seconds = round(time.monotonic() - start, 3)
        episode.took_step(step, self.config)
        return step.observation

    def _record_change(self, step: StepRecord) -> None:
        tree = self.sandbox.checkpoint()
        if tree == self._tree:
            return
        step.diff = self.sandbox.tree_diff(self._tree, tree)
        if step.action.name == "bash" and not step.snapshot_taken:
            changed = _snapshot_path(step.diff)
            if changed is not None:
                step.snapshot, step.snapshot_taken = self.sandbox.tree_file(self._tree, changed), True
        self._tree = tree

    def finish(self, episode: EpisodeRecord) -> EpisodeRecord:
        """End the episode: its patch, the sandbox back to the pool, the pristine grade. Idempotent."""
        from ..grading import evaluate

        if episode.running:
            episode.stop(STOPPED)
        if self.sandbox is None:  # it never started (or finish ran already): nothing to diff or grade
            if episode.exit_status in BROKEN:
                episode.outcome, episode.reward = episode.exit_status, 0.0
            if "episode" not in episode.seconds:
                self._time(episode, 0.0, 0.0)
            return episode
        broken = episode.exit_status in BROKEN
        if not broken:
            try:
                self.sandbox.check_disk()  # what the last quick commands wrote
                episode.patch = self.sandbox.diff()
            except DiskBudgetExceeded as e:
                episode.exit_status, episode.error = DISK_LIMIT, str(e)
                broken = True
            except Exception as e:  # the container is gone or broken: no patch to grade
                episode.exit_status, episode.error = ERROR, f"diff: {type(e).__name__}: {e}"
                broken = True
        # The pool's hygiene check asks the engine for the container's changes (~0.4 s): in parallel with grading.
        sandbox = self._take()
        checked: dict[str, Any] = {}
        release = threading.Thread(target=lambda: checked.update(changed=self.pool.release(sandbox, broken=broken)),
                                   name="srl-agent-release", daemon=True)
        release.start()
        start, tests = time.monotonic(), 0.0
        if broken:
            episode.outcome, episode.reward = episode.exit_status, 0.0
        elif self.grade:
            try:
                report = evaluate(episode.task, episode.patch, client=self.pool.client, labels=self.pool.labels,
                                  timeout=self.config.eval_timeout, restore_test_files=True)
                resolved = bool(report["resolved"])
                episode.reward = 1.0 if resolved else 0.0
                episode.outcome = RESOLVED if resolved else EMPTY_PATCH if not episode.patch.strip() else UNRESOLVED
                episode.edited_test_files = list(report["edited_test_files"])
                episode.grade = {k: report[k] for k in ("resolved", "tests_ran", "reason", "FAIL_TO_PASS",
                                                        "PASS_TO_PASS")}
                tests = report["script_seconds"]
            except Exception as e:  # grading itself failed: no reward
                episode.outcome, episode.reward = ERROR, 0.0
                episode.error = episode.error or f"grading: {type(e).__name__}: {e}"
        else:
            episode.outcome = UNGRADED
        grading = time.monotonic() - start
        release.join()
        changed = checked.get("changed") or []
        episode.container["replaced"] = bool(changed)
        if changed:
            episode.container["changed_outside"] = changed
        self._time(episode, grading, tests)
        return episode

    @staticmethod
    def _time(episode: EpisodeRecord, grading: float, tests: float) -> None:
        ready = episode.seconds.get("ready", 0.0)
        if "episode" not in episode.seconds:
            episode.seconds["episode"] = round(time.monotonic() - episode.started - ready - grading, 3)
        episode.seconds.update(grading=round(grading, 3), tests=round(tests, 3))

    def close(self, broken: bool = True) -> None:
        """Give an unfinished episode's sandbox back: as broken (a crashed driver), or through the pool's
        hygiene check (``broken=False``: an episode abandoned ungraded)."""
        if self.sandbox is not None:
            self.pool.release(self._take(), broken=broken)

    def _take(self) -> Any:
        """The sandbox, no longer this environment's (its lease ends)."""
        sandbox, self.sandbox, self.tools = self.sandbox, None, None
        if self._lease is not None:
            self._lease.detach()
            self._lease = None
        return sandbox


def _may_change_files(call: ToolCall) -> bool:
    return call.name == "bash" or (call.name == "str_replace_editor" and call.arguments.get("command") in EDITS)


def _snapshot_path(diff: str) -> str | None:
    """The file whose content before a bash step the reward applies a candidate's edit to (the first the
    patch changes and does not add: ``rewards.patch.diff_files``, which reads it back)."""
    from ..rewards.patch import diff_files

    try:
        return diff_files(diff)[1]
    except Exception:  # a patch unidiff cannot read (binary sections, odd names): no snapshot, not a failure
        return None


def _reclaim(pool: SandboxPool, sandbox: Any) -> None:
    """The garbage collector's last word on a lease: the sandbox goes back broken (removed)."""
    try:
        pool.release(sandbox, broken=True)
    except Exception:  # at interpreter exit the engine may be gone; the atexit hook removes containers
        pass


class SWEEnvironment:
    """TRL's ``environment_factory`` shape over the engine: ``reset(**row)``, the tools, ``get_reward``."""

    def __init__(self, pool: SandboxPool | None = None, config: EpisodeConfig | None = None, *,
                 issue_turn: Any = None, log: Any = None):
        self.config = config or EpisodeConfig()
        self._own_pool = pool is None
        self.pool = pool or SandboxPool(1, timeout=self.config.command_timeout)
        self.issue_turn = issue_turn or (lambda text: ISSUE_TEMPLATE.format(issue=text))
        self.log = log  # anything with write(record): gets each graded episode's record
        self._env = SandboxEnvironment(self.pool, self.config)
        self.episode: EpisodeRecord | None = None
        self._finished = False

    @property
    def sandbox(self) -> Any:
        return self._env.sandbox

    def reset(self, **row: Any) -> str:
        """Start an episode on ``row`` in a sandbox at the task's base commit; returns the issue turn."""
        self._env.close(broken=False)
        self.episode, self._finished = EpisodeRecord(task=row), False
        self._env.start(self.episode)
        return self.issue_turn((row.get("problem_statement") or "").strip())

    @property
    def status(self) -> str:
        return self.episode.exit_status if self.episode else RUNNING

    @property
    def done(self) -> bool:
        return self.episode is None or not self.episode.running

    def bash(self, command: str) -> str:
        """Run a command in a persistent bash session in the repository at /testbed.

        Args:
            command: The bash command to run.
        """
        return self.execute(ToolCall("bash", {"command": command}))

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
        return self.execute(ToolCall("str_replace_editor", {k: v for k, v in args.items() if v is not None}))

    def submit(self) -> str:
        """Submit the changes in the repository as the answer; this ends the episode."""
        return self.execute(ToolCall("submit", {}))

    def execute(self, call: ToolCall) -> str:
        if self.episode is None:
            raise RuntimeError("call reset(**row) before the tools")
        return self._env.execute(self.episode, call)

    def get_reward(self) -> float:
        """1.0 when the task's tests, run on the episode's patch in a pristine container, pass; else 0.0."""
        return float(self.finish()["reward"])

    def finish(self) -> dict[str, Any]:
        """Grade the episode (once), hand the record to the log; the record as a dict."""
        if self.episode is None:
            raise RuntimeError("no episode: call reset(**row) first")
        if not self._finished:
            self._env.finish(self.episode)
            self._finished = True
            if self.log is not None:
                self.log.write(self.episode.to_dict("rlvr"))
        return self.episode.to_dict("rlvr")

    def close(self) -> None:
        self._env.close()
        if self._own_pool:
            self.pool.close()

    def __enter__(self) -> SWEEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
