"""SRL step rewards as TRL reward functions.

TRL calls a reward as ``f(prompts=…, completions=…, **columns) -> list[float | None]``, where the
columns are the dataset's (repeated per generation) plus a few of its own (``trainer_state``,
``log_extra``, ``log_metric``, …). Configurable rewards are factories returning picklable callable
classes, so ``srl_reward(...)`` returns an ``SRLReward``::

    from trl import GRPOTrainer
    from srl_agent.rewards import srl_reward

    trainer = GRPOTrainer(model, reward_funcs=[srl_reward(mode="tool-aware")], train_dataset=steps, ...)

It reads the step dataset's expert columns (``expert_action``, ``expert_tool_call``, and
``file_snapshot`` where replay recorded one, ``step_diff`` for an expert bash step that changed files) and hands each completion's breakdown to ``log``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .completion import REASONS, STYLES, FormatError, parse_completion, read_text
from .similarity import SIMILARITIES, get_similarity
from .step_reward import DEFAULT_MODE, MODES, UNSCORABLE, Breakdown, StepReward

__all__ = [
    "DEFAULT_MODE", "MODES", "REASONS", "SIMILARITIES", "STYLES", "UNSCORABLE", "Breakdown", "FormatError",
    "RewardLog", "SRLReward", "StepReward", "get_similarity", "parse_completion", "srl_reward",
]

# Dataset columns copied into each log record, so a record names its step.
_ID_COLUMNS = ("instance_id", "step_index", "source")


class RewardLog(Protocol):
    """Where breakdowns go: anything with ``write(record)``; a plain callable ``log(record)`` also works."""

    def write(self, record: dict[str, Any]) -> None: ...


class SRLReward:
    """The SRL step reward as a TRL reward function (picklable; ``__name__`` names it in TRL's logs)."""

    def __init__(
        self,
        mode: str = DEFAULT_MODE,
        similarity: str = "difflib",
        style: str = "xml",
        log: RewardLog | Callable[[dict[str, Any]], None] | None = None,
    ):
        self.scorer = StepReward(mode, similarity, style)
        self.log = log
        self.__name__ = f"srl_{mode.replace('-', '_')}_{similarity}"

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] = (),
        expert_action: Sequence[str] | None = None,
        expert_tool_call: Sequence[dict[str, Any] | None] | None = None,
        file_snapshot: Sequence[str | None] | None = None,
        step_diff: Sequence[str | None] | None = None,
        **columns: Any,
    ) -> list[float]:
        if expert_action is None:
            raise ValueError(f"{self.__name__} needs the step dataset's 'expert_action' column (srl-agent prepare writes it)")
        n = len(completions)
        tool_calls = expert_tool_call if expert_tool_call is not None else [None] * n
        snapshots = file_snapshot if file_snapshot is not None else [None] * n
        diffs = step_diff if step_diff is not None else [None] * n
        # The G completions of a prompt often repeat one another (every rollout says "submit"):
        # score each distinct (completion, step) once per batch.
        rows = zip(completions, expert_action, tool_calls, snapshots, diffs, strict=True)
        if self.log is None and not callable(columns.get("log_metric")) and not callable(columns.get("log_extra")):
            return self.scorer.rewards(rows)  # nobody reads the breakdowns: skip making them
        seen: dict[tuple, Breakdown] = {}
        breakdowns = []
        for c, a, t, s, d in rows:
            try:
                key = (read_text(c), a, s, d)
                b = seen.get(key)
                if b is None:
                    b = seen[key] = self.scorer(key[0], a, t, s, d)
            except Exception:  # no text, or a column that does not hash: scored alone, as the scorer never raises
                b = self.scorer(c, a, t, s, d)
            breakdowns.append(b)
        if self.log is not None:
            self._write(breakdowns, columns)
        self._report_to_trainer(breakdowns, columns)
        return [b.reward for b in breakdowns]

    def _write(self, breakdowns: list[Breakdown], columns: dict[str, Any]) -> None:
        write = self.log.write if hasattr(self.log, "write") else self.log
        state = columns.get("trainer_state")
        for i, b in enumerate(breakdowns):
            record = {k: columns[k][i] for k in _ID_COLUMNS if isinstance(columns.get(k), (list, tuple))}
            if state is not None:
                record["global_step"] = getattr(state, "global_step", None)
            record.update(b.to_dict())
            write(record)

    def _report_to_trainer(self, breakdowns: list[Breakdown], columns: dict[str, Any]) -> None:
        """TRL's hooks: a format-error rate beside its own metrics, the reason beside each completion."""
        if not breakdowns:
            return
        if callable(columns.get("log_metric")):
            errors = sum(b.format_error is not None for b in breakdowns)
            columns["log_metric"](f"{self.__name__}/format_error_rate", errors / len(breakdowns))
        if callable(columns.get("log_extra")):
            columns["log_extra"](f"{self.__name__}_format_error", [b.format_error or "" for b in breakdowns])


def srl_reward(
    mode: str = DEFAULT_MODE,
    similarity: str = "difflib",
    style: str = "xml",
    log: RewardLog | Callable[[dict[str, Any]], None] | None = None,
) -> SRLReward:
    """The SRL step reward for ``GRPOTrainer(reward_funcs=[...])``; see ``SRLReward``."""
    return SRLReward(mode, similarity, style, log)
