"""``open_run``: a run folder (or file) as a store, importing what the folder holds on the fly.

A folder's store is ``RUN/rewards.sqlite``. Each reward JSONL (scored rows, ``rewards.jsonl``) and
each evaluation folder (``summary.json`` with ``instances``) found up to two levels down becomes a
run named after its path (``srl`` for ``srl/rewards.jsonl``, ``heldout-before`` for
``heldout-before.jsonl``). A source imported before is skipped while its size and time are unchanged,
and imported again when they change (a training run still writing). Runs written live (no source)
are never replaced. Step-instance files in the folder and its parent (``steps.jsonl``, ``train.jsonl``,
…) then supply the expert steps that are still missing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from .db import DB_NAME, connect, delete_run
from .importers import import_eval, import_records, sniff
from .steps import attach_steps, missing_steps

MAX_DEPTH = 2
_SKIP = ("logs", "trajs", "oracle", "__pycache__")


def _walk(folder: Path, depth: int) -> list[Path]:
    out = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return out
    for p in entries:
        if p.is_dir():
            if depth > 0 and not p.name.startswith((".", "checkpoint-")) and p.name not in _SKIP:
                out += _walk(p, depth - 1)
        else:
            out.append(p)
    return out


def _is_eval_summary(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")).get("instances"), list)
    except (OSError, ValueError, AttributeError):
        return False


def discover(folder: str | Path) -> dict[str, list[tuple[str, Path]] | list[Path]]:
    """The sources in a run folder: reward files and eval folders (with run names), and step files."""
    folder = Path(folder)
    records: list[tuple[str, Path]] = []
    evals: list[tuple[str, Path]] = []
    steps: list[Path] = []
    for p in _walk(folder, MAX_DEPTH):
        rel = p.relative_to(folder)
        if p.suffix == ".jsonl":
            what = sniff(p)
            if what == "steps":
                steps.append(p)
            elif what in ("scored", "rewards"):
                records.append((_name(folder, rel), p))
        elif p.name == "summary.json" and _is_eval_summary(p):
            evals.append((_name(folder, rel), p.parent))
    if folder.parent != folder:
        steps += [p for p in _walk(folder.parent, 0) if p.suffix == ".jsonl" and sniff(p) == "steps"]
    return {"records": records, "evals": evals, "steps": steps}


def _name(folder: Path, rel: Path) -> str:
    if rel.stem in ("rewards", "summary"):
        return rel.parent.as_posix() if rel.parent != Path(".") else folder.resolve().name
    return rel.with_suffix("").as_posix()


def _fresh(conn: sqlite3.Connection, name: str, source: Path) -> bool:
    """True when the store holds ``source`` as it is now, or a live writer mirrored it; else drop the stale run."""
    path = str(source.resolve())
    if conn.execute("SELECT 1 FROM runs WHERE live = 1 AND source = ?", (path,)).fetchone():
        return True  # a StoreWriter wrote these records beside the JSONL log during the run
    row = conn.execute("SELECT id, source, live, source_size, source_mtime FROM runs WHERE name = ?", (name,)).fetchone()
    if row is None:
        return False
    if row["live"]:
        return True  # a live run of that name: never replaced by an import
    st = source.stat()
    if row["source"] == path and row["source_size"] == st.st_size and row["source_mtime"] == st.st_mtime:
        return True
    conn.execute("BEGIN IMMEDIATE")
    delete_run(conn, row["id"])
    conn.execute("COMMIT")
    return False


def _store_path(folder: Path) -> str:
    path = folder / DB_NAME
    writable = os.access(path, os.W_OK) if path.exists() else os.access(folder, os.W_OK)
    return str(path) if writable else ":memory:"


def open_run(target: str | Path, steps: list[str | Path] = (), db: str | Path | None = None,
             refresh: bool = True) -> tuple[sqlite3.Connection, dict[str, Any]]:
    """The store for ``target`` (a run folder, a ``.sqlite`` file, or one reward JSONL) and what was imported."""
    target = Path(target)
    if not target.exists():
        raise FileNotFoundError(f"no such run folder or file: {target}")
    found: dict[str, Any] = {"records": [], "evals": [], "steps": []}
    if target.is_dir():
        path = str(db) if db else _store_path(target)
        if refresh:
            found = discover(target)
    elif target.suffix in (".sqlite", ".db"):
        path = str(target)
    else:
        what = sniff(target)
        if what not in ("scored", "rewards"):
            raise ValueError(f"{target}: not a reward file (scored JSONL or rewards.jsonl) nor a store")
        path = str(db) if db else ":memory:"
        found["records"] = [(target.stem, target)]
        found["steps"] = [p for p in _walk(target.parent, 0) if p.suffix == ".jsonl" and sniff(p) == "steps"]
    conn = connect(path)
    info: dict[str, Any] = {"store": path, "imported": [], "steps_attached": 0}
    for name, source in found["records"]:
        if not _fresh(conn, name, source):
            info["imported"].append({"run": name, **import_records(conn, source, name)})
    for name, folder in found["evals"]:
        if not _fresh(conn, name, folder / "summary.json"):
            info["imported"].append({"run": name, **import_eval(conn, folder, name)})
    for step_file in [*map(Path, steps), *found["steps"]]:
        if not missing_steps(conn):
            break
        info["steps_attached"] += attach_steps(conn, step_file)
    info["missing_steps"] = missing_steps(conn)
    return conn, info
