"""The evaluation agent: a model policy driving the episode engine (``srl_agent.engine``).

Each turn the policy sees exactly the prompt SRL trained it on (``steps.prompt_messages``: system
prompt, issue, the previous K action–observation pairs, the actions in canonical text, observations
truncated once), writes ``<think>…</think>`` and one call, which the engine parses and runs. With
``history="episode"`` the policy sees RLVR's chat instead (the whole episode, its own completions, a
format-error notice after a malformed turn), the prompts a policy trained with RLVR acted on.

Budgets, statuses and records are the engine's: an episode ends on ``submit`` (``submitted``), at
``step_limit`` executed calls, after ``format_error_limit`` malformed turns in a row (a malformed turn
is not a step: the same prompt is asked again, round r with seed + r), past ``episode_timeout``, or
when the sandbox fails (``error``). Whatever the work tree holds at the end is the submission, as
SWE-agent does; the official harness grades it (``srl_agent.evaluation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .actions import render
from .engine import (
    ERROR,
    FORMAT_ERRORS,
    STEP_LIMIT,
    SUBMITTED,
    EpisodeConfig,
    EpisodeRecord,
    SandboxEnvironment,
    SandboxPool,
    run_episodes,
)
from .model_settings import HISTORIES
from .policy import Policy
from .steps import StepConfig, Truncator, issue_turn, prompt_messages

__all__ = ["ERROR", "FORMAT_ERRORS", "HISTORIES", "STEP_LIMIT", "SUBMITTED", "Agent", "AgentConfig"]


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
    episode_timeout: float = 1800.0
    """Wall seconds per episode; past it the episode ends (``timeout``)."""
    batch_size: int = 4
    """Episodes run side by side (sandboxes open at once; prompts per generate call)."""
    prompt: StepConfig = field(default_factory=StepConfig)
    """The prompt settings; keep them equal to the ones the policy was trained with."""
    history: str = "window"
    """``window``: each turn is an SRL step prompt (issue + the last K canonical actions and observations).
    ``episode``: the RLVR chat, the whole episode with the policy's own completions and a format-error
    notice after a malformed turn (``srl_agent.train.rollouts``): for a policy trained with RLVR."""

    def __post_init__(self) -> None:
        from .rewards.completion import STYLES

        if self.style not in STYLES:
            raise ValueError(f"style {self.style!r}; known: {', '.join(STYLES)}")
        if self.history not in HISTORIES:
            raise ValueError(f"history {self.history!r}; known: {', '.join(HISTORIES)}")
        for name in ("max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        self.episode()  # the engine checks the budgets

    def episode(self) -> EpisodeConfig:
        return EpisodeConfig(step_limit=self.step_limit, format_error_limit=self.format_error_limit,
                             command_timeout=self.command_timeout, episode_timeout=self.episode_timeout)


class Agent:
    """Runs a policy on task rows (swebench-5 rows with ``image``); returns one ``EpisodeRecord`` per row."""

    def __init__(self, policy: Policy, config: AgentConfig | None = None, truncate: Any = None):
        self.policy = policy
        self.config = config or AgentConfig()
        self.truncate = truncate or Truncator()
        self._round = 0

    def issue(self, row: dict[str, Any]) -> str:
        """The issue turn. The statement is stripped: SWE-bench rows end it with a newline, while the
        readers of harness transcripts (SWE-smith, the bundled experts) extract it stripped."""
        return issue_turn(row.get("problem_statement", "").strip(), self.config.prompt, self.truncate)

    def prompt(self, episode: EpisodeRecord) -> list[dict[str, str]]:
        memo = episode.memo
        if "issue" not in memo:
            memo.update(issue=self.issue(episode.task), pairs=[], chat=[], seen=0, errors_seen=0)
        if self.config.history == "episode":
            return [{"role": "system", "content": self.config.prompt.system_prompt},
                    {"role": "user", "content": memo["issue"]}, *memo["chat"]]
        for step in episode.steps[memo["seen"]:]:  # observations are truncated once, as in the step instances
            memo["pairs"].append((render(step.action), self.truncate(step.observation,
                                                                   self.config.prompt.observation_tokens)))
        memo["seen"] = len(episode.steps)
        return prompt_messages(memo["issue"], memo["pairs"], self.config.prompt)

    # ------------------------------------------------------------------ the engine's driver protocol
    def act(self, episodes: list[EpisodeRecord]) -> list[str]:
        cfg = self.config
        seed = None if cfg.seed is None else cfg.seed + self._round
        self._round += 1
        return self.policy.generate([self.prompt(ep) for ep in episodes], max_new_tokens=cfg.max_new_tokens,
                                    temperature=cfg.temperature, seed=seed)

    def observe(self, episode: EpisodeRecord, answer: str) -> None:
        if self.config.history != "episode":
            return
        malformed = len(episode.format_errors) > episode.memo["errors_seen"]
        episode.memo["errors_seen"] = len(episode.format_errors)
        completion = episode.format_errors[-1]["response"] if malformed else episode.steps[-1].response
        shown = answer if malformed else self.truncate(answer, self.config.prompt.observation_tokens)
        episode.memo["chat"] += [{"role": "assistant", "content": completion}, {"role": "user", "content": shown}]

    def run(self, rows: list[dict[str, Any]], *, client: Any = None, labels: dict[str, str] | None = None,
            progress: Any = None, runner: Any = None) -> list[EpisodeRecord]:
        """Each row's episode in a fresh sandbox (removed when it ends), up to ``batch_size`` side by side;
        with ``runner`` (``engine.cluster.ClusterRunner``) on the cluster's nodes, as many side by side as
        they have slots, every pending turn generated here in one call."""
        cfg = self.config
        self._round = 0
        episode = cfg.episode()
        if runner is not None:
            return runner.run(rows, self, episode, environment={"grade": False}, style=cfg.style, progress=progress)
        with SandboxPool(cfg.batch_size, warm=False, client=client, timeout=cfg.command_timeout,
                         labels=labels) as pool:
            return run_episodes(rows, self, lambda: SandboxEnvironment(pool, episode, grade=False), episode,
                                batch_size=cfg.batch_size, style=cfg.style, progress=progress)
