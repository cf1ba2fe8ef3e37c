"""``StoreWriter``: the reward-log protocol (``write(record)``) onto the SQLite store, in batches.

Records are buffered and inserted ``batch_size`` at a time with ``executemany`` in one transaction,
so a training step pays a list append per completion and one short transaction per batch.

A record is a dict. Recognised fields (anything else is kept as JSON in ``extra``):

- ``kind``: one of ``KINDS`` (default: the writer's);
- ``instance_id`` (required), ``source``, ``step_index`` (absent for an episode);
- ``global_step``, ``round``, ``group``, ``generation``, ``advantage``, ``group_std``, ``dropped``, ``in_batch``;
- ``completion`` (text, or TRL's list of messages), ``reward``, ``status`` (episodes);
- ``breakdown``: a reward ``Breakdown.to_dict()`` (``srl-agent score`` rows, ``RUN/rewards.jsonl``), or
  the breakdown's fields at the top level (what ``SRLReward(log=...)`` hands over).
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

from .db import KINDS, StoreError, TaskIds, connect, run_id, tool_key
from .steps import attach_steps

_BREAKDOWN = ("mode", "similarity", "reward", "call", "style", "tool_match", "components", "format_error", "error",
              "fallback")
_TOP = ("kind", "instance_id", "source", "step_index", "global_step", "round", "group", "generation", "completion",
        "reward", "advantage", "group_std", "dropped", "in_batch", "status", "breakdown")
COLUMNS = ("id", "run_id", "kind", "task_id", "step_index", "global_step", "round", "group_index", "generation",
           "completion", "call", "tool", "reward", "advantage", "group_std", "dropped", "in_batch", "mode",
           "similarity", "style", "tool_match", "format_error", "error", "fallback", "status", "extra")
_INSERT = f"INSERT INTO candidates ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    """A finite number, or None; Infinity and NaN (which JSON cannot carry) are a bad value."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _text(completion: Any) -> str | None:
    if completion is None or isinstance(completion, str):
        return completion
    from ..rewards.completion import completion_text

    return completion_text(completion)


def split_record(record: dict[str, Any], default_kind: str) -> tuple[dict[str, Any], dict[str, Any], list[tuple]]:
    """A record as (candidate columns without ids, the task key, component rows without the candidate id)."""
    if not isinstance(record, dict):
        raise StoreError(f"a reward record must be an object, not {type(record).__name__}", "not_an_object")
    if record.get("instance_id") is None:
        raise StoreError("a reward record needs an instance_id", "no_instance_id")
    breakdown = record.get("breakdown")
    if not isinstance(breakdown, dict):  # SRLReward's own log: the breakdown's fields at the top level
        breakdown = {k: record[k] for k in _BREAKDOWN if k in record}
    kind = record.get("kind") or default_kind
    if kind not in KINDS:
        raise StoreError(f"unknown record kind {kind!r}; known: {', '.join(KINDS)}", "unknown_kind")
    try:
        return _split(record, breakdown, kind)
    except (TypeError, ValueError, AttributeError) as e:
        raise StoreError(f"a field has the wrong type ({type(e).__name__}: {e})", "bad_value") from None


def _split(record: dict[str, Any], breakdown: dict[str, Any], kind: str) -> tuple[dict, dict, list[tuple]]:
    call = breakdown.get("call")
    reward = record.get("reward") if record.get("reward") is not None else breakdown.get("reward")
    extra = {k: v for k, v in record.items() if k not in _TOP and k not in _BREAKDOWN}
    row = {
        "kind": kind, "step_index": _int(record.get("step_index")), "global_step": _int(record.get("global_step")),
        "round": _int(record.get("round")), "group_index": _int(record.get("group")),
        "generation": _int(record.get("generation")), "completion": _text(record.get("completion")),
        "call": None if call is None else json.dumps(call, ensure_ascii=False), "tool": tool_key(call),
        "reward": _float(reward), "advantage": _float(record.get("advantage")),
        "group_std": _float(record.get("group_std")), "dropped": _int(record.get("dropped")),
        "in_batch": _int(record.get("in_batch")), "mode": breakdown.get("mode"),
        "similarity": breakdown.get("similarity"), "style": breakdown.get("style"),
        "tool_match": _int(breakdown.get("tool_match")), "format_error": breakdown.get("format_error"),
        "error": breakdown.get("error"), "fallback": _int(breakdown.get("fallback")),
        "status": record.get("status"),
        "extra": json.dumps(extra, ensure_ascii=False, default=str) if extra else None,
    }
    components = []
    for name, value in (breakdown.get("components") or {}).items():
        if isinstance(value, (bool, int, float)):
            components.append((str(name), _float(value), None))
        else:
            components.append((str(name), None, json.dumps(value, ensure_ascii=False, default=str)))
    task = {"instance_id": str(record["instance_id"]), "source": str(record.get("source") or "")}
    return row, task, components


class StoreWriter:
    """Reward records → the store. ``write`` checks and buffers; every ``batch_size`` records go in one
    transaction (``executemany``). Use it as the trainer's ``reward_log`` (or beside the JSONL log with ``Tee``).

    ``store``: a database path or an open connection. ``run`` names the run (created if new); ``kind``
    is its records' default kind. ``steps``: a step-instance file whose expert steps (action, prompt)
    are attached, for the steps the records name, on ``close``. ``source``: the JSONL log that gets the
    same records (so ``open_run`` does not import them a second time); importers pass the file they
    read with ``live=False``. ``keep_before_step``: on resume, drop the run's records from that training
    step on (they are generated again), as ``JsonlRewardLog`` does.
    """

    def __init__(self, store: str | Path | sqlite3.Connection, run: str = "srl", kind: str = "srl",
                 batch_size: int = 1000, steps: str | Path | None = None, source: str | Path | None = None,
                 meta: dict[str, Any] | None = None, live: bool = True, keep_before_step: int | None = None):
        if kind not in KINDS:
            raise StoreError(f"unknown run kind {kind!r}; known: {', '.join(KINDS)}")
        self.own = not isinstance(store, sqlite3.Connection)
        self.conn = connect(store) if self.own else store
        self.kind, self.batch_size, self.steps = kind, max(1, batch_size), steps
        self.run = run_id(self.conn, run, kind, source, meta, live)
        if keep_before_step is not None:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("DELETE FROM components WHERE candidate_id IN (SELECT id FROM candidates "
                              "WHERE run_id = ? AND global_step >= ?)", (self.run, keep_before_step))
            self.conn.execute("DELETE FROM candidates WHERE run_id = ? AND global_step >= ?",
                              (self.run, keep_before_step))
            self.conn.execute("COMMIT")
        self.tasks = TaskIds(self.conn)
        self.buffer: list[tuple[dict[str, Any], dict[str, Any], list[tuple]]] = []
        self.written = 0

    def write(self, record: dict[str, Any]) -> None:
        """Check and buffer one record (``StoreError`` names what is wrong with it)."""
        self.buffer.append(split_record(record, self.kind))
        if len(self.buffer) >= self.batch_size:
            self.flush()

    __call__ = write  # a plain callable log works too

    def flush(self) -> None:
        if not self.buffer:
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            next_id = (conn.execute("SELECT max(id) FROM candidates").fetchone()[0] or 0) + 1
            rows, comps = [], []
            for i, (row, task, components) in enumerate(self.buffer):
                cid = next_id + i
                row = {**row, "id": cid, "run_id": self.run, "task_id": self.tasks(task["instance_id"], task["source"])}
                rows.append(tuple(row[c] for c in COLUMNS))
                comps += [(cid, *c) for c in components]
            conn.executemany(_INSERT, rows)
            conn.executemany("INSERT INTO components (candidate_id, name, value, text) VALUES (?, ?, ?, ?)", comps)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self.tasks.cache.clear()  # ids of tasks inserted in the rolled-back transaction are gone
            raise
        self.buffer = []
        self.written += len(rows)

    def close(self) -> None:
        self.flush()
        if self.steps is not None:
            attach_steps(self.conn, self.steps)
        if self.own:
            self.conn.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Tee:
    """Hand every record to several logs (e.g. ``rewards.jsonl`` and the store); flush/close them all."""

    def __init__(self, *logs: Any):
        self.logs = logs

    def write(self, record: dict[str, Any]) -> None:
        for log in self.logs:
            (log.write if hasattr(log, "write") else log)(record)

    def flush(self) -> None:
        for log in self.logs:
            if hasattr(log, "flush"):
                log.flush()

    def close(self) -> None:
        for log in self.logs:
            if hasattr(log, "close"):
                log.close()
