"""Importers: the artefacts runs leave behind, into the store.

- ``import_records``: a JSONL of reward records — ``srl-agent score`` output and held-out scorings
  (kind ``score``), a training run's ``rewards.jsonl`` (``srl``, or each record's own ``kind``);
- ``import_eval``: an ``srl-agent eval`` folder (``summary.json``, the predictions the harness graded,
  ``trajs/``), one episode per instance, reward 1 when the harness resolved it.

Step-instance files (the expert steps candidates name) are attached by ``steps.attach_steps``.

A line that cannot be read is skipped, counted by reason, and named (file:line) in ``problems``.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from ..jsonl import JsonlError, read_jsonl
from .db import KINDS, StoreError
from .writer import StoreWriter

MAX_PROBLEMS = 20


def sniff(path: str | Path) -> str | None:
    """What a JSONL file holds, from its first record: 'steps', 'rewards' (training log), 'scored', or None."""
    try:
        for _, first in read_jsonl(path, errors="yield"):
            if not isinstance(first, dict):
                return None
            if "prompt" in first and "expert_action" in first:
                return "steps"
            if "breakdown" in first or "format_error" in first or first.get("kind") in ("rlvr", "eval", "srl"):
                return "rewards" if "global_step" in first or first.get("kind") in ("rlvr", "srl") else "scored"
            return None
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _summary(path: Path, imported: int, skipped: Counter, problems: list[str]) -> dict[str, Any]:
    return {"path": str(path), "imported": imported, "skipped": sum(skipped.values()),
            "skipped_by_reason": dict(skipped), "problems": problems}


def _default_kind(path: Path) -> str:
    """A file's record kind, from its first record: its ``kind``, else ``srl`` for a training log, else ``score``."""
    for _, first in read_jsonl(path, errors="yield"):
        if isinstance(first, dict) and first.get("kind") in KINDS:
            return first["kind"]
        return "srl" if isinstance(first, dict) and "global_step" in first else "score"
    return "score"


def import_records(conn: sqlite3.Connection, path: str | Path, run: str, kind: str | None = None,
                   batch_size: int = 2000) -> dict[str, Any]:
    """Every record of a reward JSONL into run ``run`` (``kind``: the records' default, from the file when
    None); returns what was imported and skipped."""
    path = Path(path)
    kind = kind or _default_kind(path)
    writer = StoreWriter(conn, run=run, kind=kind, batch_size=batch_size, source=path, live=False)
    skipped: Counter = Counter()
    problems: list[str] = []
    for line_no, record in read_jsonl(path, errors="yield"):
        try:
            if isinstance(record, JsonlError):
                raise StoreError(record.what, "bad_json")
            writer.write(record)
        except StoreError as e:
            skipped[e.reason] += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(f"{path}:{line_no}: {e}")
    writer.flush()
    return _summary(path, writer.written, skipped, problems)


def _eval_patches(folder: Path) -> dict[str, Any]:
    """instance_id → model_patch: what the harness graded (``predictions.scored.jsonl``, the only predictions
    file of ``--predictions`` and ``--gold`` runs), else the model's ``predictions.jsonl``."""
    for name in ("predictions.scored.jsonl", "predictions.jsonl"):
        if (folder / name).is_file():
            return {p.get("instance_id"): p.get("model_patch") for _, p in read_jsonl(folder / name, errors="yield")
                    if isinstance(p, dict)}
    return {}


def import_eval(conn: sqlite3.Connection, folder: str | Path, run: str = "eval") -> dict[str, Any]:
    """An evaluation folder: one ``eval`` episode per instance of ``summary.json``.

    A ``.traj`` that cannot be read leaves its episode without the agent's counts and is named in ``problems``."""
    folder = Path(folder)
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    instances = summary.get("instances")
    if not isinstance(instances, list):
        raise StoreError(f"{summary_path}: no 'instances' list (was the run scored?)")
    patches = _eval_patches(folder)
    meta = {k: summary.get(k) for k in ("model", "mode", "dataset", "resolve_rate", "run_id")}
    writer = StoreWriter(conn, run=run, kind="eval", source=summary_path, meta=meta, live=False)
    skipped: Counter = Counter()
    problems: list[str] = []
    for n, inst in enumerate(instances):
        try:
            iid = inst["instance_id"]
            record = {"kind": "eval", "instance_id": iid, "reward": 1.0 if inst.get("resolved") else 0.0,
                      "status": inst.get("status"), "completion": patches.get(iid)}
            record.update({k: v for k, v in inst.items() if k not in ("instance_id", "resolved", "status")})
        except (KeyError, TypeError, AttributeError):
            skipped["no_instance_id"] += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(f"{summary_path}: instance {n} has no instance_id")
            continue
        traj = folder / "trajs" / f"{iid}.traj"
        if traj.is_file():
            try:
                data = json.loads(traj.read_text(encoding="utf-8"))
                info = data.get("info") or {}
                record["agent_steps"] = len(data.get("trajectory") or [])
                record["agent_format_errors"] = len((info.get("srl_agent") or {}).get("format_errors") or [])
                record["exit_status"] = info.get("exit_status")
                if (info.get("srl_agent") or {}).get("error"):  # the sandbox failed: why
                    record["error"] = info["srl_agent"]["error"]
            except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError) as e:
                if len(problems) < MAX_PROBLEMS:
                    problems.append(f"{traj}: not a readable .traj ({type(e).__name__}: {e})")
        try:
            writer.write(record)
        except StoreError as e:
            skipped[e.reason] += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(f"{summary_path}: instance {n} ({iid}): {e}")
    writer.flush()
    return _summary(summary_path, writer.written, skipped, problems)
