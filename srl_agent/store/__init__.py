"""The reward store: every reward record of a run in an embedded SQLite database (``RUN/rewards.sqlite``).

- ``db``: the schema (runs, tasks, steps, candidates, components) and ``connect``;
- ``writer``: ``StoreWriter``, the reward-log protocol (``write(record)``) in batched transactions;
- ``importers``: scored JSONL, training ``rewards.jsonl``, evaluation folders;
- ``steps``: ``attach_steps``, the expert steps of a step-instance file (context for candidates);
- ``folder``: ``open_run``, a run folder as a store, importing its artefacts on the fly;
- ``export``: Parquet / JSONL, one flat row per candidate.

The inspector (``srl_agent.inspector``) reads it.
"""

from __future__ import annotations

from .db import DB_NAME, KINDS, SCHEMA_VERSION, StoreError, connect, tool_key
from .export import export
from .folder import discover, open_run
from .importers import import_eval, import_records, sniff
from .steps import attach_steps
from .writer import StoreWriter, Tee

__all__ = [
    "DB_NAME", "KINDS", "SCHEMA_VERSION", "StoreError", "StoreWriter", "Tee", "attach_steps", "connect", "discover",
    "export", "import_eval", "import_records", "open_run", "sniff", "tool_key",
]
