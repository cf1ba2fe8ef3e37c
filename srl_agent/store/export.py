"""Exports: one flat row per candidate (run, task, expert step, reward, breakdown) as Parquet or JSONL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMATS = ("parquet", "jsonl")

_QUERY = """
SELECT c.id, r.name AS run, c.kind, t.instance_id, t.source, c.step_index, t.num_steps,
       c.global_step, c.round, c.group_index, c.generation, c.completion, c.call, c.tool,
       c.reward, c.advantage, c.group_std, c.dropped, c.in_batch, c.mode, c.similarity, c.style,
       c.tool_match, c.format_error, c.error, c.fallback, c.status, c.extra,
       s.expert_action, s.expert_tool, s.expert_call, s.expert_thought, s.prompt
FROM candidates c JOIN runs r ON r.id = c.run_id JOIN tasks t ON t.id = c.task_id
LEFT JOIN steps s ON s.task_id = c.task_id AND s.step_index = c.step_index
{where} ORDER BY c.id
"""
_BOOLS = ("dropped", "in_batch", "tool_match", "fallback")
_JSON = ("call", "expert_call", "prompt", "extra")


def rows(conn: sqlite3.Connection, runs: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The flat export rows: JSON columns decoded, booleans as booleans, components as a dict."""
    where, args = (f"WHERE r.name IN ({', '.join('?' * len(runs))})", tuple(runs)) if runs else ("", ())
    comps: dict[int, dict[str, Any]] = {}
    for cid, name, value, text in conn.execute("SELECT candidate_id, name, value, text FROM components"):
        comps.setdefault(cid, {})[name] = value if text is None else json.loads(text)
    for r in conn.execute(_QUERY.format(where=where), args):
        row = dict(r)
        for k in _BOOLS:
            row[k] = None if row[k] is None else bool(row[k])
        for k in _JSON:
            row[k] = None if row[k] is None else json.loads(row[k])
        row["components"] = comps.get(row["id"], {})
        yield row


def export(conn: sqlite3.Connection, out: str | Path, fmt: str | None = None,
           runs: list[str] | None = None) -> dict[str, Any]:
    """Write the export to ``out`` (format from ``fmt`` or the suffix: .parquet / .jsonl); return a summary."""
    out = Path(out)
    fmt = fmt or out.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if fmt == "jsonl":
        with out.open("w", encoding="utf-8") as fh:
            for row in rows(conn, runs):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = []
        for row in rows(conn, runs):
            # Nested values whose shape differs row to row (calls, prompts, components) travel as JSON text.
            for k in (*_JSON, "components"):
                row[k] = None if row[k] is None else json.dumps(row[k], ensure_ascii=False)
            table.append(row)
        pq.write_table(pa.Table.from_pylist(table), out)
        n = len(table)
    return {"out": str(out), "format": fmt, "rows": n}
