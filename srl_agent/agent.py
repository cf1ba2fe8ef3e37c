"""The agent loop: a policy works on a task in its sandbox until it submits or runs out of budget.

Used by evaluation. Each turn the policy sees exactly the prompt SRL trained it
on (``steps.prompt_messages``: system prompt, issue, the previous K action–observation pairs, the
actions in canonical text, observations truncated once), writes ``<think>…</think>`` and one call,
which ``rewards.completion.parse_completion`` reads and ``Tools`` executes.

Stopping is flow control by small exceptions, as in mini-swe-agent: ``Submitted`` (the policy called
``submit``), ``LimitsExceeded`` (step limit, or too many format errors in a row). A completion that
breaks the format is not a step (training never shows one in a prompt either): it is recorded with
its reason code and the same prompt is asked again, with a new seed. With ``history="episode"`` the
policy sees RLVR's chat instead (the whole episode, its own completions, a format-error notice after a
malformed turn), the prompts a policy trained with RLVR acted on.

Several tasks' episodes run side by side, one ``generate`` call per round for all of them, so batched
backends (transformers, vLLM, an OpenAI server) see batches.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from .actions import render
from .policy import Policy
from .prompts import FORMAT_ERROR_TEMPLATE
from .rewards.completion import FormatError, parse_completion
from .schema import Step, Task, ToolCall, Trajectory
from .steps import StepConfig, Truncator, issue_turn, prompt_messages

SUBMITTED, STEP_LIMIT, FORMAT_ERRORS, ERROR = "submitted", "step_limit", "format_errors", "error"
HISTORIES = ("window", "episode")


class Submitted(Exception):
    """The policy called ``submit``."""


class LimitsExceeded(Exception):
    """The episode ran out of budget; the message is its exit status."""


@dataclass
class AgentConfig:
    step_limit: int = 30
    """Most actions executed per episode; the episode ends (``step_limit``) when it is reached."""
    format_error_limit: int = 3
    """Consecutive completions that break the format before the episode ends (``format_errors``)."""
    style: str = "xml"
    """The tool-call style completions must use (``parse_completion``): xml, json, bash or any."""
    max_new_tokens: int = 1024
    temperature: float = 0.0
    """0 = greedy."""
    seed: int | None = 0
    """Seed of the first round; round r uses seed + r, so a resampled turn differs when sampling."""
    command_timeout: float = 60.0
    """Seconds per tool command in the sandbox."""
    batch_size: int = 4
    """Episodes run side by side (sandboxes open at once; prompts per generate call)."""
    prompt: StepConfig = field(default_factory=StepConfig)
    """The prompt settings; keep them equal to the ones the policy was trained with."""
    history: str = "window"
    """``window``: each turn is an SRL step prompt (issue + the last K canonical actions and observations).
    ``episode``: the RLVR chat, the whole episode with the policy's own completions and a format-error
    notice after a malformed turn (``srl_agent.rlvr.rollout``): for a policy trained with RLVR."""

    def __post_init__(self) -> None:
        from .rewards.completion import STYLES

        if self.style not in STYLES:
            raise ValueError(f"style {self.style!r}; known: {', '.join(STYLES)}")
        if self.history not in HISTORIES:
            raise ValueError(f"history {self.history!r}; known: {', '.join(HISTORIES)}")
        for name in ("step_limit", "format_error_limit", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class Episode:
    """One task's run: the steps taken, the raw completions, the format errors, how it ended."""

    task: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)  # the completion behind each step
    format_errors: list[dict[str, Any]] = field(default_factory=list)  # {turn, reason, message, response}
    exit_status: str = ""
    error: str | None = None
    submission: str = ""
    seconds: float = 0.0
    turns: int = 0  # policy calls, format errors included

    @property
    def instance_id(self) -> str:
        return self.task["instance_id"]

    def trajectory(self, style: str = "xml", system_prompt: str = "") -> Trajectory:
        return Trajectory(Task.from_dict(self.task), list(self.steps), f"srl-agent:{style}", submission=self.submission,
                          source=f"agent:{self.instance_id}", system_prompt=system_prompt,
                          dropped_turns=len(self.format_errors))


class TaskEnvironment:
    """A task's sandbox and tools: ``execute(call) -> observation`` and ``diff()``. A context manager."""

    def __init__(self, row: dict[str, Any], *, client: Any = None, timeout: float = 60.0,
                 labels: dict[str, str] | None = None):
        from .sandbox import Sandbox, SandboxConfig
        from .tools import Tools

        config = SandboxConfig(image=row["image"], base_commit=row.get("base_commit") or None, timeout=timeout,
                               labels=dict(labels or {}))
        self.sandbox = Sandbox(config, client=client)
        self.tools = Tools(self.sandbox)

    def __enter__(self) -> TaskEnvironment:
        self.sandbox.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sandbox.close()

    def execute(self, call: ToolCall) -> str:
        return self.tools.execute(call)

    def diff(self) -> str:
        return self.sandbox.diff()


class _Run:
    """The state of one episode in progress."""

    def __init__(self, row: dict[str, Any], issue: str):
        self.episode = Episode(task=row)
        self.issue = issue
        self.pairs: list[tuple[str, str]] = []  # (canonical action, truncated observation)
        self.chat: list[dict[str, str]] = []  # history "episode": every turn as it was written and answered
        self.errors_in_a_row = 0
        self.env: Any = None
        self.stack = contextlib.ExitStack()  # the sandbox, closed as soon as the episode ends
        self.started = time.monotonic()


class Agent:
    """Runs a policy on task rows (swebench-5 rows with ``image``); returns one ``Episode`` per row."""

    def __init__(self, policy: Policy, config: AgentConfig | None = None, truncate: Any = None,
                 environment: Any = TaskEnvironment):
        self.policy = policy
        self.config = config or AgentConfig()
        self.truncate = truncate or Truncator()
        self.environment = environment  # (row, client=, timeout=, labels=) -> context manager with execute/diff

    def issue(self, row: dict[str, Any]) -> str:
        """The issue turn. The statement is stripped: SWE-bench rows end it with a newline, while the
        readers of harness transcripts (SWE-smith, the bundled experts) extract it stripped."""
        return issue_turn(row.get("problem_statement", "").strip(), self.config.prompt, self.truncate)

    def prompt(self, run: _Run) -> list[dict[str, str]]:
        if self.config.history == "episode":
            return [{"role": "system", "content": self.config.prompt.system_prompt},
                    {"role": "user", "content": run.issue}, *run.chat]
        return prompt_messages(run.issue, run.pairs, self.config.prompt)

    def run(self, rows: list[dict[str, Any]], *, client: Any = None, labels: dict[str, str] | None = None,
            progress: Any = None) -> list[Episode]:
        episodes: list[Episode] = []
        size = max(1, self.config.batch_size)
        for i in range(0, len(rows), size):
            episodes += self._run_batch(rows[i : i + size], client, labels)
            if progress is not None:
                progress(len(episodes), len(rows))
        return episodes

    def _run_batch(self, rows: list[dict[str, Any]], client: Any, labels: dict[str, str] | None) -> list[Episode]:
        cfg = self.config
        runs = [_Run(row, self.issue(row)) for row in rows]
        try:
            for run in runs:
                try:
                    run.env = run.stack.enter_context(
                        self.environment(run.episode.task, client=client, timeout=cfg.command_timeout, labels=labels))
                except Exception as e:  # e.g. a missing image: this episode fails, the others go on
                    self._finish(run, ERROR, f"{type(e).__name__}: {e}")
            active = [r for r in runs if not r.episode.exit_status]
            round_ = 0
            while active:
                seed = None if cfg.seed is None else cfg.seed + round_
                completions = self.policy.generate([self.prompt(r) for r in active], max_new_tokens=cfg.max_new_tokens,
                                                   temperature=cfg.temperature, seed=seed)
                for run, completion in zip(active, completions, strict=True):
                    try:
                        self._advance(run, completion)
                    except Submitted:
                        self._finish(run, SUBMITTED)
                    except LimitsExceeded as e:
                        self._finish(run, str(e))
                    except Exception as e:  # the sandbox broke: record it, keep the batch going
                        self._finish(run, ERROR, f"{type(e).__name__}: {e}")
                active = [r for r in active if not r.episode.exit_status]
                round_ += 1
        finally:  # a policy error (or Ctrl-C) still removes every sandbox of the batch
            for run in runs:
                run.stack.close()
        return [r.episode for r in runs]

    def _advance(self, run: _Run, completion: str) -> None:
        """One turn: parse the completion, execute its call, record the step; raises to stop."""
        cfg, ep = self.config, run.episode
        ep.turns += 1
        try:
            parsed = parse_completion(completion, cfg.style)
        except FormatError as e:
            ep.format_errors.append({"turn": ep.turns - 1, "step": len(ep.steps), "reason": e.reason,
                                     "message": e.message, "response": completion})
            run.chat += [{"role": "assistant", "content": completion}, {"role": "user", "content":
                         FORMAT_ERROR_TEMPLATE.format(reason=e.reason, message=e.message)}]
            run.errors_in_a_row += 1
            if run.errors_in_a_row >= cfg.format_error_limit:
                raise LimitsExceeded(FORMAT_ERRORS) from None
            return
        run.errors_in_a_row = 0
        call = parsed.call
        observation = run.env.execute(call)
        raw = completion.split("</think>", 1)[-1].strip()
        ep.steps.append(Step(parsed.thought, call, raw_action=raw, observation=observation))
        ep.responses.append(completion)
        shown = self.truncate(observation, cfg.prompt.observation_tokens)
        run.pairs.append((render(call), shown))
        run.chat += [{"role": "assistant", "content": completion}, {"role": "user", "content": shown}]
        if call.name == "submit":
            raise Submitted
        if len(ep.steps) >= cfg.step_limit:
            raise LimitsExceeded(STEP_LIMIT)

    def _finish(self, run: _Run, status: str, error: str | None = None) -> None:
        ep = run.episode
        ep.exit_status, ep.error = status, error
        if run.env is not None:
            try:  # whatever the policy left in the work tree is its answer, submitted or not (as SWE-agent)
                ep.submission = run.env.diff()
            except Exception as e:
                ep.error = ep.error or f"diff failed: {type(e).__name__}: {e}"
        run.stack.close()
        ep.seconds = round(time.monotonic() - run.started, 2)
