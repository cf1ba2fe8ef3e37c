"""The reward store's SQLite schema: runs, tasks (expert trajectories), steps, candidates, components.

One database per run folder (``RUN/rewards.sqlite``) may hold several runs: a training run's
completions, held-out scorings before and after, an evaluation. A candidate is one scored completion;
it names its step by ``(task_id, step_index)``, so the expert's step (action and the prompt the model
saw) can be attached later, and only for the steps some candidate refers to. Episode-level records
(evaluation, RLVR) are candidates with no ``step_index``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DB_NAME = "rewards.sqlite"
# What a record is: an offline scoring (`srl-agent score`, held-out scores), an SRL training completion,
# an RLVR episode, an evaluation episode.
KINDS = ("score", "srl", "rlvr", "eval")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,       -- e.g. 'srl', 'heldout-before', 'eval'
    kind TEXT NOT NULL,              -- one of KINDS: what the run's records are by default
    source TEXT,                     -- the file it was imported from (live: the log it mirrors, if any)
    live INTEGER NOT NULL DEFAULT 0, -- written by a StoreWriter during the run, not imported
    source_size INTEGER,
    source_mtime REAL,
    created REAL NOT NULL,
    meta TEXT                        -- JSON
);
CREATE TABLE IF NOT EXISTS tasks (   -- an expert trajectory
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '', -- the trajectory's file/record, where several share an instance id
    num_steps INTEGER,
    UNIQUE (instance_id, source)
);
CREATE TABLE IF NOT EXISTS steps (   -- an expert step and the context the model saw
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    step_index INTEGER NOT NULL,
    expert_action TEXT,
    expert_tool TEXT,                -- 'bash', 'str_replace_editor:view', 'submit', ...
    expert_call TEXT,                -- JSON {name, arguments}
    expert_thought TEXT,
    prompt TEXT,                     -- JSON list of chat messages
    legacy INTEGER,
    has_snapshot INTEGER,
    PRIMARY KEY (task_id, step_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS candidates (  -- one scored completion (or one episode)
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    step_index INTEGER,              -- NULL for an episode
    global_step INTEGER,             -- optimizer steps done when it was generated (training)
    round INTEGER,                   -- dynamic sampling's generation round
    group_index INTEGER,             -- the prompt group within the step
    generation INTEGER,              -- index within the group
    completion TEXT,
    call TEXT,                       -- JSON: the parsed candidate call, NULL on a format error
    tool TEXT,                       -- the candidate's tool, as expert_tool
    reward REAL,
    advantage REAL,
    group_std REAL,
    dropped INTEGER,                 -- the group had zero reward variance (dynamic sampling)
    in_batch INTEGER,                -- used for the update
    mode TEXT, similarity TEXT, style TEXT,
    tool_match INTEGER,
    format_error TEXT,               -- reason code, NULL when the format was fine
    error TEXT,
    fallback INTEGER,
    status TEXT,                     -- episodes: resolved / unresolved / empty_patch / ...
    extra TEXT                       -- JSON: the record's other fields
);
CREATE TABLE IF NOT EXISTS components (  -- the breakdown's components, one row each
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    name TEXT NOT NULL,
    value REAL,                      -- numbers and booleans (0/1)
    text TEXT,                       -- anything else, as JSON
    PRIMARY KEY (candidate_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS candidates_step ON candidates (task_id, step_index);
CREATE INDEX IF NOT EXISTS candidates_run_step ON candidates (run_id, global_step);
CREATE INDEX IF NOT EXISTS candidates_reward ON candidates (reward);
CREATE INDEX IF NOT EXISTS candidates_format_error ON candidates (format_error);
CREATE INDEX IF NOT EXISTS steps_tool ON steps (expert_tool);
"""


class StoreError(RuntimeError):
    """A store that cannot be opened or a record that cannot be stored; ``reason`` is a short code."""

    def __init__(self, message: str, reason: str = "store"):
        super().__init__(message)
        self.reason = reason


def connect(path: str | Path = ":memory:") -> sqlite3.Connection:
    """Open (creating if needed) a reward store; rows come back as ``sqlite3.Row``."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)  # transactions are explicit
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # readers (the inspector) never block the training writer
        conn.execute("PRAGMA synchronous=NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise StoreError(f"{path}: reward store schema {version}, this srl-agent reads {SCHEMA_VERSION}")
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        if str(path) != ":memory:":
            problem = conn.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(problem)
    except sqlite3.DatabaseError as e:  # a corrupted or foreign file
        conn.close()
        raise StoreError(f"{path}: not a readable reward store ({e}); move it away and the run folder is "
                         "imported again", "corrupt") from None
    return conn


def tool_key(call: Any) -> str | None:
    """'bash', 'submit', or 'str_replace_editor:<command>' for a ``{name, arguments}`` call."""
    if isinstance(call, str):
        try:
            call = json.loads(call)
        except json.JSONDecodeError:
            return None
    if not isinstance(call, dict) or not call.get("name"):
        return None
    name = str(call["name"])
    command = (call.get("arguments") or {}).get("command") if name == "str_replace_editor" else None
    return f"{name}:{command}" if command else name


def run_id(conn: sqlite3.Connection, name: str, kind: str, source: str | Path | None = None,
           meta: dict[str, Any] | None = None, live: bool = False) -> int:
    """The id of run ``name``, created if new (an existing run keeps its kind and source)."""
    import time

    row = conn.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return row[0]
    size = mtime = None
    if source is not None:
        source = str(Path(source).resolve())
        if not live and Path(source).exists():
            st = Path(source).stat()
            size, mtime = st.st_size, st.st_mtime
    cur = conn.execute(
        "INSERT INTO runs (name, kind, source, live, source_size, source_mtime, created, meta) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (name, kind, source, int(live), size, mtime, time.time(), json.dumps(meta or {})))
    return cur.lastrowid


def delete_run(conn: sqlite3.Connection, run: int) -> None:
    """Remove a run and its candidates (tasks and steps stay: other runs may share them)."""
    conn.execute("DELETE FROM components WHERE candidate_id IN (SELECT id FROM candidates WHERE run_id = ?)", (run,))
    conn.execute("DELETE FROM candidates WHERE run_id = ?", (run,))
    conn.execute("DELETE FROM runs WHERE id = ?", (run,))


class TaskIds:
    """(instance_id, source) → task id, cached; new tasks are inserted on first sight."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.cache: dict[tuple[str, str], int] = {}

    def __call__(self, instance_id: str, source: str = "") -> int:
        key = (instance_id, source or "")
        if key not in self.cache:
            row = self.conn.execute("SELECT id FROM tasks WHERE instance_id = ? AND source = ?", key).fetchone()
            self.cache[key] = row[0] if row else self.conn.execute(
                "INSERT INTO tasks (instance_id, source) VALUES (?, ?)", key).lastrowid
        return self.cache[key]
