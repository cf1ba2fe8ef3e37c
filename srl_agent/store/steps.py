"""Expert steps into the store: the rows of a step-instance file (``srl-agent prepare``) that
candidates name, with the expert action and the prompt the model saw.

``StoreWriter.close`` (its ``steps`` file) and ``open_run`` both attach steps. Here, apart from the
importers, so the writer need not import them: they build on the writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path

from ..jsonl import read_jsonl
from .db import StoreError, tool_key


def _step_keys(path: Path) -> dict[str, set[str]]:
    """instance_id → the trajectory sources a step file has for it (a cheap first pass)."""
    sources: dict[str, set[str]] = defaultdict(set)
    for _, row in read_jsonl(path, errors="yield"):
        if isinstance(row, dict) and "instance_id" in row:
            sources[str(row["instance_id"])].add(str(row.get("source") or ""))
    return sources


def _adopt_sources(conn: sqlite3.Connection, sources: dict[str, set[str]]) -> None:
    """Records that named no source join the one trajectory the step file has for their instance id."""
    for task_id, iid in conn.execute("SELECT id, instance_id FROM tasks WHERE source = ''").fetchall():
        known = sources.get(iid, set()) - {""}
        if len(known) != 1:
            continue
        (source,) = known
        other = conn.execute("SELECT id FROM tasks WHERE instance_id = ? AND source = ?", (iid, source)).fetchone()
        if other is None:
            conn.execute("UPDATE tasks SET source = ? WHERE id = ?", (source, task_id))
        else:
            conn.execute("UPDATE candidates SET task_id = ? WHERE task_id = ?", (other[0], task_id))
            conn.execute("DELETE FROM steps WHERE task_id = ?", (task_id,))
            conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))


def missing_steps(conn: sqlite3.Connection) -> int:
    """How many (task, step) pairs that candidates name have no expert step yet."""
    return conn.execute(
        "SELECT count(*) FROM (SELECT DISTINCT c.task_id, c.step_index FROM candidates c LEFT JOIN steps s "
        "ON s.task_id = c.task_id AND s.step_index = c.step_index "
        "WHERE c.step_index IS NOT NULL AND s.task_id IS NULL)").fetchone()[0]


def attach_steps(conn: sqlite3.Connection, path: str | Path) -> int:
    """Insert the expert steps of a step-instance file that candidates name and the store lacks; returns how many."""
    path = Path(path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        _adopt_sources(conn, _step_keys(path))
        tasks = {(r[1], r[2]): r[0] for r in conn.execute("SELECT id, instance_id, source FROM tasks")}
        have = set(conn.execute("SELECT task_id, step_index FROM steps").fetchall())
        wanted = {tuple(r) for r in conn.execute(
            "SELECT DISTINCT task_id, step_index FROM candidates WHERE step_index IS NOT NULL")} - {tuple(h) for h in have}
        rows, counts = [], {}
        for line_no, row in read_jsonl(path, errors="yield"):
            if not isinstance(row, dict) or "instance_id" not in row or "step_index" not in row:
                raise StoreError(f"{path}:{line_no}: not a step instance")
            task = tasks.get((str(row["instance_id"]), str(row.get("source") or "")))
            if task is None:
                continue
            if row.get("num_steps") is not None:
                counts[task] = int(row["num_steps"])
            key = (task, int(row["step_index"]))
            if key not in wanted:
                continue
            wanted.discard(key)
            call = row.get("expert_tool_call")
            rows.append((*key, row.get("expert_action"), tool_key(call), json.dumps(call, ensure_ascii=False),
                         row.get("expert_thought"), json.dumps(row.get("prompt"), ensure_ascii=False),
                         int(bool(row.get("legacy"))), int(row.get("file_snapshot") is not None)))
        conn.executemany("INSERT OR IGNORE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("UPDATE tasks SET num_steps = ? WHERE id = ?", [(n, t) for t, n in counts.items()])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)
