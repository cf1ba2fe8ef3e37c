"""Evaluation datasets: swebench-5 rows from a local file or the hub, older SWE-bench rows converted.

swebench 5 grades a row through per-instance data (``image``, ``eval_script``, ``log_parser``,
``eval_type``). Older SWE-bench rows (SWE-bench, Lite, Verified before v5) carry none of these. What
swebench 5.0.2 ships lets us fill three of them:

- ``image``: the published ``swebench/sweb.eval.x86_64.<id>`` image (``__`` → ``_1776_``, lower case),
  named by ``swebench.task.checks.expected_image``;
- ``log_parser``: the repository's parser from the harness's ``MAP_REPO_TO_PARSER_*`` tables;
- ``eval_type``: ``fail_only`` for the harness's ``FAIL_ONLY_REPOS``, else ``pass_and_fail``.

It does not ship the per-repository/version test specifications (``MAP_REPO_VERSION_TO_SPECS`` of
swebench < 5: test command, environment setup, pre-install steps) from which the older harness wrote
each eval script, so a converted row keeps ``eval_script`` empty unless the row has one. Such rows
still run in agent and oracle mode (they need only the image and the issue); scoring them refuses
with ``missing_for_scoring`` naming what is missing. ``load_rows(..., eval_scripts_from=V5)`` takes
the four fields from a swebench-5 dataset (``SWE-bench/SWE-bench_Verified``, a rows file) by instance id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..jsonl import JsonlError, read_jsonl
from ..schema import _test_list

BUNDLED = Path(__file__).resolve().parents[2] / "environments" / "tasks.jsonl"
V5_FIELDS = ("image", "eval_script", "log_parser", "eval_type")
_LANGUAGES = ("python", "javascript", "c", "go", "java", "php", "ruby", "rust")


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file or hub name and the field."""


def repo_log_parser(repo: str) -> str:
    """The name of swebench's log parser for ``repo`` (a key of ``PARSER_REGISTRY``), or "" if none."""
    import importlib

    from swebench.harness.log_parsers import PARSER_REGISTRY

    for language in _LANGUAGES:
        module = importlib.import_module(f"swebench.harness.log_parsers.{language}")
        table = next((v for k, v in vars(module).items() if k.startswith("MAP_REPO_TO_PARSER")), {})
        parser = table.get(repo)
        if parser is not None:
            # Several registry keys alias one function; the function's own name is always among them.
            return parser.__name__ if parser.__name__ in PARSER_REGISTRY else \
                next(k for k, v in PARSER_REGISTRY.items() if v is parser)
    return ""


def convert_legacy_row(row: dict[str, Any], namespace: str = "swebench") -> dict[str, Any]:
    """An older-format SWE-bench row as a swebench-5 row (pure: no Docker, no network).

    Fields the row already has win; test lists become lists (the hub ships them as JSON or Python-repr
    strings); ``version`` becomes a string. ``eval_script`` stays "" unless the row has one (see the
    module docstring for why).
    """
    from swebench.harness.constants import FAIL_ONLY_REPOS
    from swebench.task.checks import expected_image

    for key in ("instance_id", "repo"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise DatasetError(f"row {row.get('instance_id', '?')}: field {key!r} missing")
    out = dict(row)
    for key in ("FAIL_TO_PASS", "PASS_TO_PASS"):
        out[key] = _test_list(row.get(key))
    out["version"] = "" if row.get("version") is None else str(row["version"])
    out["image"] = row.get("image") or expected_image(row["instance_id"], namespace)
    out["log_parser"] = row.get("log_parser") or repo_log_parser(row["repo"])
    out["eval_type"] = row.get("eval_type") or ("fail_only" if row["repo"] in FAIL_ONLY_REPOS else "pass_and_fail")
    out["eval_script"] = row.get("eval_script") or ""
    return out


def is_v5_row(row: dict[str, Any]) -> bool:
    return all(row.get(k) for k in V5_FIELDS)


def missing_for_scoring(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{instance id: swebench-5 fields it lacks} for the rows the harness cannot grade."""
    return {r["instance_id"]: [k for k in V5_FIELDS if not r.get(k)] for r in rows if not is_v5_row(r)}


def _read_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        try:
            return [row for _, row in read_jsonl(path)]
        except JsonlError as e:
            raise DatasetError(str(e)) from None
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not JSON: {e.msg}") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of task rows, got {type(data).__name__}")
    return data


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """``datasets`` turns date-like strings into datetimes; rows are written back as JSON."""
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


def load_rows(dataset: str | Path | None = None, split: str = "test",
              eval_scripts_from: str | Path | None = None) -> list[dict[str, Any]]:
    """Task rows of a local ``.jsonl``/``.json`` file (default: the bundled tasks), or of a hub dataset
    (``owner/name[:split]``) or dataset folder through ``datasets``; every row in swebench-5 shape.

    ``eval_scripts_from``: a swebench-5 dataset (same forms) whose rows give older-format rows the
    fields they lack of ``V5_FIELDS``, by instance id (``with_v5_fields``)."""
    rows = _raw_rows(dataset, split)
    if eval_scripts_from is not None:
        rows = with_v5_fields(rows, v5_rows(eval_scripts_from, split), eval_scripts_from)
    from .swesmith import to_v5_row  # SWE-smith and SWE-Gym rows need more than convert_legacy_row

    return [row if is_v5_row(row) else to_v5_row(row, dataset) for row in rows]


def v5_rows(dataset: str | Path, split: str = "test") -> dict[str, dict[str, Any]]:
    """{instance id: row} of the swebench-5 rows (all of ``V5_FIELDS`` set) of ``dataset``."""
    rows = {r["instance_id"]: r for r in _raw_rows(dataset, split) if is_v5_row(r)}
    if not rows:
        raise DatasetError(f"{dataset}: no swebench-5 rows in it (rows with {', '.join(V5_FIELDS)})")
    return rows


def with_v5_fields(rows: list[dict[str, Any]], v5: dict[str, dict[str, Any]], source: Any = "") -> list[dict[str, Any]]:
    """Each row that lacks some of ``V5_FIELDS`` with them from its instance in ``v5`` (fields the row
    has win); rows ``v5`` lacks are left as they are. The eval script checks out its own base commit,
    so a row whose ``base_commit`` differs from its ``v5`` row's is refused."""
    out = []
    for row in rows:
        match = None if is_v5_row(row) else v5.get(row["instance_id"])
        if match is None:
            out.append(row)
            continue
        if row.get("base_commit") and row["base_commit"] != match.get("base_commit"):
            raise DatasetError(f"{row['instance_id']}: base_commit {row['base_commit']} differs from "
                               f"{match.get('base_commit')} in {source}; its eval_script is for that commit")
        out.append({**row, **{k: row.get(k) or match[k] for k in V5_FIELDS}})
    return out


def _raw_rows(dataset: str | Path | None, split: str) -> list[dict[str, Any]]:
    if dataset is None:
        rows = _read_file(BUNDLED)
    elif Path(dataset).is_file():
        rows = _read_file(Path(dataset))
    else:  # a hub name (owner/name[:split]) or a local dataset folder: what ``datasets`` loads
        name, _, named_split = str(dataset).partition(":")
        if not Path(name).is_dir() and name.count("/") != 1:
            raise DatasetError(f"{name}: no such file, and not a hub dataset name (owner/name)")
        from datasets import load_dataset

        try:
            rows = [_jsonable(dict(r)) for r in load_dataset(name, split=named_split or split)]
        except Exception as e:  # no network, no such dataset or split: say which
            raise DatasetError(f"{dataset}: cannot load with datasets ({type(e).__name__}: {e})") from None
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("instance_id"):
            raise DatasetError(f"{dataset or BUNDLED}: row {i} has no instance_id")
    return rows


def select(rows: list[dict[str, Any]], instance_ids: list[str] | None) -> list[dict[str, Any]]:
    """The rows named (dataset order kept); every name must exist."""
    if not instance_ids:
        return rows
    known = {r["instance_id"] for r in rows}
    unknown = [i for i in instance_ids if i not in known]
    if unknown:
        raise DatasetError(f"not in the dataset: {', '.join(unknown)}")
    wanted = set(instance_ids)
    return [r for r in rows if r["instance_id"] in wanted]


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
