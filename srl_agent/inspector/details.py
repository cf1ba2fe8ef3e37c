"""Per-step detail for the report: the expert step, the context the model saw, and its candidates.

Identical completions of a step are shown once with a count; past ``max_candidates`` distinct ones,
an even spread over the reward order is kept (the worst and the best always).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .summary import Selection

_CANDIDATES = """
SELECT c.id, r.name AS run, c.kind, c.global_step, c.round, c.group_index, c.generation, c.completion, c.call,
       c.reward, c.advantage, c.dropped, c.in_batch, c.mode, c.similarity, c.style, c.tool_match,
       c.format_error, c.error, c.fallback, c.extra
FROM candidates c JOIN runs r ON r.id = c.run_id
WHERE {sel} AND c.task_id = ? AND c.step_index = ? ORDER BY c.reward, c.id
"""


def spread(items: list[Any], k: int) -> list[Any]:
    """``k`` items evenly spaced over ``items`` (first and last included)."""
    if len(items) <= k:
        return items
    if k == 1:
        return items[:1]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def step_id(task_id: int, step_index: int) -> str:
    return f"s-{task_id}-{step_index}"


def choose_steps(conn: sqlite3.Connection, runs: list[str] | None, max_steps: int) -> list[tuple[int, int]]:
    """The steps that get a detail panel: all of them, or the ``max_steps`` worst by mean reward."""
    sel = Selection(conn, runs)
    rows = sel.rows("SELECT c.task_id, c.step_index, avg(c.reward) AS m FROM candidates c WHERE {sel} "
                    "AND c.step_index IS NOT NULL GROUP BY c.task_id, c.step_index ORDER BY m, c.task_id, c.step_index")
    return [(r["task_id"], r["step_index"]) for r in rows[:max_steps]]


def step_detail(conn: sqlite3.Connection, sel: Selection, task_id: int, step_index: int,
                max_candidates: int = 12) -> dict[str, Any]:
    task = dict(conn.execute("SELECT instance_id, source, num_steps FROM tasks WHERE id = ?", (task_id,)).fetchone())
    expert = conn.execute("SELECT * FROM steps WHERE task_id = ? AND step_index = ?", (task_id, step_index)).fetchone()
    expert = None if expert is None else {**dict(expert), "expert_call": json.loads(expert["expert_call"] or "null"),
                                          "prompt": json.loads(expert["prompt"] or "null")}
    rows = sel.rows(_CANDIDATES, task_id, step_index)
    groups: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = (r["completion"], r["mode"], r["similarity"], r["reward"])
        if key in groups:
            g = groups[key]
            g["count"] += 1
            g["runs"].add(r["run"])
            continue
        r["call"] = json.loads(r["call"]) if r["call"] else None
        r["extra"] = json.loads(r["extra"]) if r["extra"] else {}
        r["count"], r["runs"] = 1, {r["run"]}
        groups[key] = r
    distinct = sorted(groups.values(), key=lambda g: (g["reward"] is None, g["reward"] or 0.0, g["id"]))
    shown = spread(distinct, max_candidates)
    ids = [g["id"] for g in shown]
    comps: dict[int, dict[str, Any]] = {}
    if ids:
        for cid, name, value, text in conn.execute(
                f"SELECT candidate_id, name, value, text FROM components WHERE candidate_id IN ({', '.join('?' * len(ids))})",
                ids):
            comps.setdefault(cid, {})[name] = value if text is None else json.loads(text)
    for g in shown:
        g["components"] = comps.get(g["id"], {})
        g["runs"] = sorted(g["runs"])
    rewards = [r["reward"] for r in rows if r["reward"] is not None]
    return {"id": step_id(task_id, step_index), "task_id": task_id, "step_index": step_index, **task,
            "expert": expert, "candidates": shown, "total": len(rows), "distinct": len(distinct),
            "mean_reward": sum(rewards) / len(rewards) if rewards else None}


def step_details(conn: sqlite3.Connection, runs: list[str] | None = None, max_steps: int = 500,
                 max_candidates: int = 12) -> list[dict[str, Any]]:
    sel = Selection(conn, runs)
    return [step_detail(conn, sel, t, k, max_candidates) for t, k in choose_steps(conn, runs, max_steps)]
