"""The inspector's summary: SQL over the reward store, one dict (the ``--json`` output, the tables, the page).

Step-level tables count candidates that name a step (``step_index`` set: scorings, SRL completions);
episodes (evaluation, RLVR) are summarised apart. The trend over training steps covers both (SRL
completions and RLVR episodes carry ``global_step``). Means are over candidates; a step's mean is over
the candidates of that step.
"""

from __future__ import annotations

import sqlite3
from typing import Any

# Step positions, grouped: the first steps one by one, then wider bands.
POSITIONS = ((0, 0), (1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, 49), (50, None))


def position_label(lo: int, hi: int | None) -> str:
    return str(lo) if lo == hi else f"{lo}+" if hi is None else f"{lo}–{hi}"


_POSITION_SQL = "CASE " + " ".join(
    f"WHEN c.step_index >= {lo}{'' if hi is None else f' AND c.step_index <= {hi}'} THEN {i}"
    for i, (lo, hi) in enumerate(POSITIONS)) + " END"


class Selection:
    """Which candidates a summary covers: all runs, or the named ones."""

    def __init__(self, conn: sqlite3.Connection, runs: list[str] | None = None):
        self.conn = conn
        known = {r[0]: r[1] for r in conn.execute("SELECT name, id FROM runs")}
        unknown = [r for r in runs or () if r not in known]
        if unknown:
            raise ValueError(f"no run {', '.join(map(repr, unknown))} in the store; runs: {', '.join(known) or 'none'}")
        self.ids = [known[r] for r in runs] if runs else list(known.values())
        self.where = f"c.run_id IN ({', '.join(map(str, self.ids))})" if self.ids else "0"

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql.format(sel=self.where), args)]

    def one(self, sql: str, *args: Any) -> dict[str, Any]:
        return self.rows(sql, *args)[0]


_FROM = ("FROM candidates c JOIN tasks t ON t.id = c.task_id "
         "LEFT JOIN steps s ON s.task_id = c.task_id AND s.step_index = c.step_index")
_STEPWISE = "{sel} AND c.step_index IS NOT NULL"


def summarize(conn: sqlite3.Connection, runs: list[str] | None = None, worst: int = 10) -> dict[str, Any]:
    sel = Selection(conn, runs)
    step = _STEPWISE
    totals = sel.one(
        f"SELECT count(*) AS candidates, count(DISTINCT c.task_id || ':' || c.step_index) AS steps, "
        f"count(DISTINCT c.task_id) AS tasks, avg(c.reward) AS mean_reward, "
        f"sum(c.format_error IS NOT NULL) AS format_errors {_FROM} WHERE {step}")
    n = totals["candidates"]
    totals["format_errors"] = totals["format_errors"] or 0
    totals["format_error_rate"] = totals["format_errors"] / n if n else 0.0
    summary: dict[str, Any] = {
        "runs": sel.rows("SELECT r.name, r.kind, r.source, count(c.id) AS candidates, avg(c.reward) AS mean_reward "
                         "FROM runs r LEFT JOIN candidates c ON c.run_id = r.id WHERE r.id IN "
                         f"({', '.join(map(str, sel.ids)) or 'NULL'}) GROUP BY r.id ORDER BY r.id"),
        **totals,
        "format_errors_by_reason": {r["format_error"]: r["n"] for r in sel.rows(
            f"SELECT c.format_error, count(*) AS n {_FROM} WHERE {step} AND c.format_error IS NOT NULL "
            "GROUP BY c.format_error ORDER BY n DESC, c.format_error")},
        "by_tool": sel.rows(
            f"SELECT coalesce(s.expert_tool, '(expert unknown)') AS tool, count(*) AS candidates, "
            f"count(DISTINCT c.task_id || ':' || c.step_index) AS steps, avg(c.reward) AS mean_reward, "
            f"sum(c.format_error IS NOT NULL) AS format_errors, avg(c.tool_match) AS tool_match_rate "
            f"{_FROM} WHERE {step} GROUP BY 1 ORDER BY 1"),
        "by_position": [dict(r, position=position_label(*POSITIONS[r.pop("bucket")])) for r in sel.rows(
            f"SELECT {_POSITION_SQL} AS bucket, count(*) AS candidates, avg(c.reward) AS mean_reward, "
            f"sum(c.format_error IS NOT NULL) AS format_errors {_FROM} WHERE {step} GROUP BY 1 ORDER BY 1")],
        "by_task": sel.rows(
            f"SELECT t.instance_id, t.source, count(*) AS candidates, count(DISTINCT c.step_index) AS steps, "
            f"t.num_steps, avg(c.reward) AS mean_reward, sum(c.format_error IS NOT NULL) AS format_errors "
            f"{_FROM} WHERE {step} GROUP BY t.id ORDER BY mean_reward, t.instance_id"),
        "worst_steps": sel.rows(
            f"SELECT t.instance_id, t.source, c.step_index, s.expert_tool, count(*) AS candidates, "
            f"avg(c.reward) AS mean_reward, min(c.reward) AS min_reward, max(c.reward) AS max_reward "
            f"{_FROM} WHERE {step} GROUP BY c.task_id, c.step_index "
            "ORDER BY mean_reward, min_reward, candidates DESC, t.instance_id, c.step_index LIMIT ?", worst),
        "trend": sel.rows(
            f"SELECT r.name AS run, c.global_step, count(*) AS candidates, avg(c.reward) AS mean_reward, "
            f"min(c.reward) AS min_reward, max(c.reward) AS max_reward, "
            f"avg(c.format_error IS NOT NULL) AS format_error_rate, avg(c.dropped) AS dropped_rate, "
            f"avg(abs(c.advantage)) AS mean_abs_advantage "
            f"{_FROM} JOIN runs r ON r.id = c.run_id WHERE {{sel}} AND c.global_step IS NOT NULL "
            "GROUP BY c.run_id, c.global_step ORDER BY c.run_id, c.global_step"),
        "episodes": sel.rows(
            "SELECT r.name AS run, c.kind, count(*) AS episodes, avg(c.reward) AS mean_reward, "
            "sum(c.status = 'resolved') AS resolved FROM candidates c JOIN runs r ON r.id = c.run_id "
            "WHERE {sel} AND c.step_index IS NULL GROUP BY c.run_id ORDER BY c.run_id"),
    }
    return summary


def heatmap(conn: sqlite3.Connection, runs: list[str] | None = None) -> list[dict[str, Any]]:
    """Per trajectory: its length and each scored step's mean reward and candidate count."""
    sel = Selection(conn, runs)
    tasks: dict[int, dict[str, Any]] = {}
    for r in sel.rows(
            f"SELECT c.task_id, t.instance_id, t.source, t.num_steps, c.step_index, count(*) AS candidates, "
            f"avg(c.reward) AS mean_reward {_FROM} WHERE {_STEPWISE} GROUP BY c.task_id, c.step_index "
            "ORDER BY t.instance_id, t.source, c.step_index"):
        task = tasks.setdefault(r["task_id"], {"task_id": r["task_id"], "instance_id": r["instance_id"],
                                               "source": r["source"], "num_steps": r["num_steps"], "steps": {}})
        task["steps"][r["step_index"]] = {"candidates": r["candidates"], "mean_reward": r["mean_reward"]}
    return list(tasks.values())
