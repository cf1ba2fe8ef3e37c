"""Scoring with the official SWE-bench harness: ``python -m swebench.harness.run_evaluation``.

It runs as a subprocess in the output folder: the harness writes its logs under ``./logs`` of its
working directory, raises the process's open-file limit and prints freely, none of which should
touch the caller. Images must be local (the harness would pull a missing one; we refuse first, so
an offline run fails with the image's name instead of a registry timeout). The harness removes
its own containers (``sweb.eval.<id>.<run_id>``; it does not label them); whatever of this run's is
left after it exits is removed here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..jsonl import JsonlError, decode, read_jsonl
from .data import DatasetError, missing_for_scoring, write_rows

LOG_DIR = Path("logs") / "run_evaluation"  # swebench.harness.constants.RUN_EVALUATION_LOG_DIR, relative to cwd


class ScoringError(RuntimeError):
    """The harness could not score the predictions; the message says why (and where its log is)."""


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Predictions from ``.jsonl`` or ``.json`` (a list, or swebench's {instance_id: prediction}). A file
    that is not that, a line or prediction without ``instance_id`` / ``model_patch``, and an instance id
    given twice are a ``DatasetError`` naming the file and the line (JSONL) or index."""
    path = Path(path)
    if path.suffix == ".jsonl":
        try:
            numbered = list(read_jsonl(path))
        except JsonlError as e:
            raise DatasetError(str(e)) from None
        where = [f"{path}:{n}" for n, _ in numbered]
        preds = [p for _, p in numbered]
    else:
        try:
            data = json.loads(decode(path.read_bytes()))
        except OSError as e:
            raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
        except UnicodeDecodeError as e:
            raise DatasetError(f"{path}: not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})") from None
        except (ValueError, RecursionError) as e:
            raise DatasetError(f"{path}: not JSON ({type(e).__name__}: {e})") from None
        if isinstance(data, dict):
            data = list(data.values())
        if not isinstance(data, list):
            raise DatasetError(f"{path}: holds {type(data).__name__}, not a list of predictions or "
                               "{instance_id: prediction}")
        preds, where = data, [f"{path}: prediction {n}" for n in range(len(data))]
    seen: dict[str, str] = {}
    for p, at in zip(preds, where, strict=True):
        if not isinstance(p, dict) or not isinstance(p.get("instance_id"), str) or "model_patch" not in p:
            raise DatasetError(f"{at}: a prediction needs instance_id (text) and model_patch")
        if not isinstance(p["model_patch"], (str, type(None))):
            raise DatasetError(f"{at}: model_patch is {type(p['model_patch']).__name__}, not text")
        if p["instance_id"] in seen:
            raise DatasetError(f"{at}: instance_id {p['instance_id']!r} again (first at {seen[p['instance_id']]})")
        seen[p["instance_id"]] = at
        p.setdefault("model_name_or_path", "unknown")
        p["model_patch"] = p["model_patch"] or ""
    return preds


def write_predictions(preds: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for p in preds:
            fh.write(json.dumps({k: p[k] for k in ("instance_id", "model_name_or_path", "model_patch")},
                                ensure_ascii=False) + "\n")
    return path


def check_gradable(rows: list[dict[str, Any]]) -> None:
    """Raise ``ScoringError`` naming the rows the harness cannot grade (no eval script, image, …)."""
    missing = missing_for_scoring(rows)
    if missing:
        first = ", ".join(f"{i} (no {', '.join(f)})" for i, f in list(missing.items())[:3])
        raise ScoringError(f"{len(missing)} row(s) cannot be graded: {first}. swebench 5 grades from each row's "
                           "eval_script; it ships no per-repository test specs to write one for older-format rows "
                           "(--eval-scripts-from a swebench-5 dataset that holds them fills them in).")


def _remove_leftovers(client: Any, run_id: str) -> int:
    removed = 0
    for c in client.containers.list(all=True, filters={"name": "sweb.eval."}):
        if c.name.startswith("sweb.eval.") and c.name.endswith(f".{run_id}"):
            c.remove(force=True)
            removed += 1
    return removed


def score(rows: list[dict[str, Any]], preds: list[dict[str, Any]], output_dir: Path, run_id: str, *,
          max_workers: int = 2, timeout: int = 1800, client: Any = None) -> dict[str, Any]:
    """Grade ``preds`` on ``rows`` with the official harness; per-instance status and the resolve rate.

    ``total`` is the number of rows: a row without a prediction counts as not resolved, as in the
    SWE-bench leaderboard. Predictions for instances outside ``rows`` are left out (the harness
    would refuse the whole file).
    """
    import docker

    from ..image_supply import missing_images

    output_dir = Path(output_dir).resolve()
    check_gradable(rows)
    ids = {r["instance_id"] for r in rows}
    preds = [p for p in preds if p["instance_id"] in ids]
    dataset = write_rows(rows, output_dir / "dataset.jsonl")
    predictions = write_predictions(preds, output_dir / "predictions.scored.jsonl")
    log = output_dir / "harness.log"
    own = client is None
    client = client or docker.from_env()
    try:
        patched = {p["instance_id"] for p in preds if p["model_patch"]}
        wanted = {r["image"] for r in rows if r["instance_id"] in patched}
        absent = missing_images(client, sorted(wanted))
        if absent:
            raise ScoringError(f"image(s) not on this engine: {', '.join(absent)} (srl-agent env build for the "
                               "bundled tasks; docker pull for published ones)")
        report: dict[str, Any] = {}
        if preds:  # the harness's report needs at least one prediction
            argv = [sys.executable, "-m", "srl_agent.evaluation.harness_main", "--dataset_name", str(dataset),
                    "--predictions_path", str(predictions), "--run_id", run_id, "--max_workers", str(max_workers),
                    "--timeout", str(timeout), "--report_dir", str(output_dir)]
            with log.open("w", encoding="utf-8") as fh:
                r = subprocess.run(argv, cwd=output_dir, stdout=fh, stderr=subprocess.STDOUT)
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            if r.returncode != 0:
                raise ScoringError(f"the harness exited {r.returncode} (log: {log}):\n{tail}")
            name = preds[0]["model_name_or_path"].replace("/", "__")
            path = output_dir / f"{name}.{run_id}.json"
            if not path.is_file():
                raise ScoringError(f"the harness wrote no report {path} (log: {log}):\n{tail}")
            report = json.loads(path.read_text(encoding="utf-8"))
    finally:
        _remove_leftovers(client, run_id)
        if own:
            client.close()
    summary = _summary(rows, preds, report, output_dir, run_id)
    summary["harness_log"] = str(log) if preds else None
    return summary


def _instance(row: dict[str, Any], pred: dict[str, Any] | None, report: dict[str, Any], output_dir: Path,
              run_id: str) -> dict[str, Any]:
    iid = row["instance_id"]
    status = ("no_prediction" if pred is None else
              "resolved" if iid in report.get("resolved_ids", []) else
              "empty_patch" if not pred["model_patch"] else
              "unresolved" if iid in report.get("unresolved_ids", []) else "error")
    out: dict[str, Any] = {"instance_id": iid, "status": status, "resolved": status == "resolved"}
    if pred is not None and pred["model_patch"]:
        per = output_dir / LOG_DIR / run_id / pred["model_name_or_path"].replace("/", "__") / iid / "report.json"
        if per.is_file():
            tests = json.loads(per.read_text(encoding="utf-8")).get(iid, {}).get("tests_status") or {}
            for key in ("FAIL_TO_PASS", "PASS_TO_PASS"):
                t = tests.get(key) or {}
                ok, bad = len(t.get("success", [])), len(t.get("failure", []))
                out[key] = f"{ok}/{ok + bad}"
        if iid in report.get("failure_reasons", {}):
            out["reason"] = report["failure_reasons"][iid]
    return out


def _summary(rows, preds, report, output_dir: Path, run_id: str) -> dict[str, Any]:
    by_id = {p["instance_id"]: p for p in preds}
    instances = [_instance(r, by_id.get(r["instance_id"]), report, output_dir, run_id) for r in rows]
    count = {s: sum(i["status"] == s for i in instances)
             for s in ("resolved", "unresolved", "empty_patch", "error", "no_prediction")}
    total = len(rows)
    return {"run_id": run_id, "resolved": count["resolved"], "total": total,
            "resolve_rate": round(count["resolved"] / total, 4) if total else 0.0,
            "submitted": len(preds), **{k: v for k, v in count.items() if k != "resolved"},
            "instances": instances}
