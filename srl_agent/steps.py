"""The SRL decomposition: one training instance per expert step.

Instance k of a trajectory: the system prompt, the issue, and the previous K expert
action–observation pairs as chat turns (K=2 as in the paper); the target is the expert's tool call
at k, as canonical text and structured, with the expert's thought kept for SFT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .actions import render
from .jsonl import read_jsonl
from .prompts import ISSUE_TEMPLATE, OMITTED_TEMPLATE, SYSTEM_PROMPT
from .schema import Trajectory

# Without a tokenizer, a token is taken as 4 characters: close enough for a budget on English and
# code, and O(1), so truncation costs nothing next to JSON encoding.
CHARS_PER_TOKEN = 4


@dataclass
class StepConfig:
    context_steps: int | None = 2  # previous action–observation pairs; None = all
    observation_tokens: int = 1024  # budget per observation, truncated in the middle past it
    issue_tokens: int = 4096
    drop_legacy: bool = False  # skip steps whose target is an old SWE-agent command
    system_prompt: str = SYSTEM_PROMPT


class Truncator:
    """Middle truncation to a token budget, with a marker saying how much was cut.

    With a ``tokenizer`` (anything with ``encode``/``decode``) the budget is exact; without one it is
    approximated by characters.
    """

    def __init__(self, tokenizer: Any = None):
        self.tokenizer = tokenizer

    def __call__(self, text: str, budget: int) -> str:
        if self.tokenizer is None:
            limit = budget * CHARS_PER_TOKEN
            if len(text) <= limit:
                return text
            head, tail = limit // 2, limit - limit // 2
            return f"{text[:head]}\n[... {len(text) - limit} characters truncated ...]\n{text[len(text) - tail:]}"
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= budget:
            return text
        head, tail = budget // 2, budget - budget // 2
        cut = len(ids) - budget
        return (
            f"{self.tokenizer.decode(ids[:head])}\n[... {cut} tokens truncated ...]\n"
            f"{self.tokenizer.decode(ids[len(ids) - tail:])}"
        )


def issue_turn(problem_statement: str, config: StepConfig, truncate: Callable[[str, int], str]) -> str:
    """The user turn that states the task: the issue, truncated to its budget, in the issue template."""
    return ISSUE_TEMPLATE.format(issue=truncate(problem_statement, config.issue_tokens))


def prompt_messages(issue: str, pairs: Sequence[tuple[str, str]], config: StepConfig) -> list[dict[str, str]]:
    """The chat prompt for the step after ``pairs``: the one place that decides what the policy sees.

    ``issue`` is the issue turn (``issue_turn``); ``pairs`` are every earlier (canonical action text,
    truncated observation) of the episode, oldest first, so the step's index is ``len(pairs)``. SRL
    training (``step_instances``) and the agent loop (evaluation, RLVR) both call this, so a policy
    is evaluated on exactly the prompt format it was trained on.
    """
    k = len(pairs)
    start = 0 if config.context_steps is None else max(0, k - config.context_steps)
    if start:
        issue = issue + "\n\n" + OMITTED_TEMPLATE.format(n=start)
    messages = [{"role": "system", "content": config.system_prompt}, {"role": "user", "content": issue}]
    for action, observation in pairs[start:]:
        messages.append({"role": "assistant", "content": action})
        messages.append({"role": "user", "content": observation})
    return messages


def step_instances(
    traj: Trajectory, config: StepConfig | None = None, truncate: Callable[[str, int], str] | None = None
) -> Iterator[dict[str, Any]]:
    """The step instances of one trajectory, as JSON-ready rows."""
    config = config or StepConfig()
    truncate = truncate or Truncator()
    issue = issue_turn(traj.task.problem_statement, config, truncate)
    actions = [render(s.action) for s in traj.steps]
    # Each observation is truncated once, though up to K instances show it.
    pairs = [(a, truncate(s.observation or "", config.observation_tokens)) for a, s in zip(actions, traj.steps, strict=True)]
    n = len(traj.steps)
    for k, step in enumerate(traj.steps):
        if config.drop_legacy and step.legacy:
            continue
        yield {
            "instance_id": traj.instance_id,
            "step_index": k,
            "num_steps": n,
            "prompt": prompt_messages(issue, pairs[:k], config),
            "expert_action": actions[k],
            "expert_tool_call": step.action.to_dict(),
            "expert_thought": step.thought,
            "legacy": step.legacy,
            "file_snapshot": step.snapshot,
            "step_diff": step.diff,
            "source_format": traj.source_format,
            "source": traj.source,
        }


def iter_step_instances(
    trajectories: Iterable[Trajectory], config: StepConfig | None = None, tokenizer: Any = None
) -> Iterator[dict[str, Any]]:
    truncate = Truncator(tokenizer)
    for traj in trajectories:
        yield from step_instances(traj, config, truncate)


def read_step_file(path: str | Path, check: Callable[[dict[str, Any]], Any]) -> Iterator[tuple[dict[str, Any], Any]]:
    """Rows of a step-instance file (``srl-agent prepare`` output) with what ``check(row)`` makes of each.

    ``check`` raises KeyError / TypeError / ValueError for a row it cannot use; that, like invalid
    JSON (``JsonlError``), becomes a ValueError naming the file and line."""
    for line_no, row in read_jsonl(path):
        try:
            yield row, check(row)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path}:{line_no}: not a step instance ({type(e).__name__}: {e})") from None
