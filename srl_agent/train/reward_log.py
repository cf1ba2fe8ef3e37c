"""The run's reward log: one record per scored completion, for the inspector.

A record (``kind`` "srl"): ``global_step`` (optimizer steps done when the batch was generated), ``round`` (dynamic
sampling's generation round), ``group`` (the prompt group within the step's draws), ``generation``
(index within the group), ``instance_id``, ``step_index``, ``source``, ``completion``, ``reward``,
``advantage``, ``group_std``, ``dropped`` (zero-variance group), ``in_batch`` (used for the update),
and the reward's breakdown (``mode``, ``call``, ``components``, ``format_error``, …).

The sink is anything with ``write(record)``; ``JsonlRewardLog`` (``RUN/rewards.jsonl``) is the default.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..rewards.completion import completion_text


class JsonlRewardLog:
    """Append-only JSONL. On resume, ``keep_before_step`` drops the records an interrupted run wrote
    after its last checkpoint (they are generated again), so each step appears once."""

    def __init__(self, path: str | Path, keep_before_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_before_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("global_step", 0) < keep_before_step]
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self._fh = None

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class CollectingReward:
    """The SRL reward as the trainer calls it: decodes the JSON ``expert_tool_call`` column, times each
    call, and keeps every completion's breakdown until the trainer joins it with group and advantage.

    Picklable, and named after the wrapped reward so TRL's metrics keep their names.
    """

    def __init__(self, reward: Any):
        self.reward = reward
        self.reward.log = self  # SRLReward hands each breakdown to log.write
        self.__name__ = getattr(reward, "__name__", type(reward).__name__)
        self.records: list[dict[str, Any]] = []
        self.seconds = 0.0
        self.calls = 0

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def __call__(self, prompts=None, completions=(), expert_tool_call=None, **columns: Any) -> list[float]:
        start = time.perf_counter()
        calls = None
        if expert_tool_call is not None:
            calls = [json.loads(c) if isinstance(c, str) else c for c in expert_tool_call]
        first = len(self.records)
        rewards = self.reward(prompts=prompts, completions=completions, expert_tool_call=calls, **columns)
        for record, completion in zip(self.records[first:], completions, strict=False):
            record["completion"] = completion_text(completion)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return rewards

    def take(self) -> list[dict[str, Any]]:
        records, self.records = self.records, []
        return records
