"""Evaluation datasets and predictions files: older SWE-bench rows converted to swebench-5 rows
(checked on real SWE-bench Lite records), local files, instance selection."""

from __future__ import annotations

import json

import pytest

from srl_agent.evaluation.data import (
    BUNDLED,
    DatasetError,
    convert_legacy_row,
    load_rows,
    missing_for_scoring,
    select,
)
from srl_agent.evaluation.harness import ScoringError, read_predictions, score

# The harness's log parser per repository, as SWE-bench documents it (several names alias one function).
PARSERS = {
    "django/django": {"parse_log_django"},
    "sympy/sympy": {"parse_log_sympy"},
    "pytest-dev/pytest": {"parse_log_pytest"},
    "scikit-learn/scikit-learn": {"parse_log_scikit", "parse_log_pytest_v2"},
}


@pytest.fixture(scope="module")
def lite(shared_data):
    return json.loads((shared_data / "instances" / "sweagent" / "swe-bench-lite-test.json").read_text())


def test_converts_real_swe_bench_lite_rows(lite):
    from swebench.harness.log_parsers import PARSER_REGISTRY
    from swebench.harness.utils import make_test_spec

    assert len(lite) == 5
    for raw in lite:
        row = convert_legacy_row(raw)
        iid = raw["instance_id"]
        # The published image: owner__repo-N → owner_1776_repo-n, lower case, tag latest.
        assert row["image"] == "swebench/sweb.eval.x86_64." + iid.lower().replace("__", "_1776_") + ":latest"
        assert row["log_parser"] in PARSERS[raw["repo"]] and row["log_parser"] in PARSER_REGISTRY
        assert row["eval_type"] == "pass_and_fail"
        assert row["FAIL_TO_PASS"] == raw["FAIL_TO_PASS"] and row["FAIL_TO_PASS"]
        assert row["PASS_TO_PASS"] == raw["PASS_TO_PASS"]
        # The hub ships test lists as JSON strings, older dumps as Python-repr strings.
        for encode in (json.dumps, repr):
            again = convert_legacy_row(dict(raw, FAIL_TO_PASS=encode(raw["FAIL_TO_PASS"]),
                                            PASS_TO_PASS=encode(raw["PASS_TO_PASS"])))
            assert again == row
        assert row["version"] == str(raw["version"])
        for key in ("instance_id", "repo", "base_commit", "patch", "test_patch", "problem_statement", "hints_text"):
            assert row[key] == raw[key]
        # No eval script can be written from swebench 5.0.2 for such rows: it says so.
        assert row["eval_script"] == "" and missing_for_scoring([row]) == {iid: ["eval_script"]}
        spec = make_test_spec({**row, "eval_script": "#!/bin/bash\ntrue\n"})  # the rest is what swebench reads
        assert spec.image == row["image"] and spec.FAIL_TO_PASS == row["FAIL_TO_PASS"]
    assert convert_legacy_row(dict(lite[0], eval_script="x", image="mine:1"))["image"] == "mine:1"


def test_a_json_file_of_old_rows_loads_converted_and_refuses_to_score(lite, tmp_path):
    path = tmp_path / "lite.json"
    path.write_text(json.dumps(lite))
    rows = load_rows(path)
    assert [r["instance_id"] for r in rows] == [r["instance_id"] for r in lite]
    assert all(r["image"].startswith("swebench/sweb.eval.x86_64.") for r in rows)
    with pytest.raises(ScoringError, match="eval_script"):
        score(rows, [{"instance_id": rows[0]["instance_id"], "model_name_or_path": "m", "model_patch": ""}],
              tmp_path, "run")


def test_bundled_rows_load_unchanged():
    rows = load_rows()
    raw = [json.loads(line) for line in BUNDLED.read_text().splitlines() if line.strip()]
    assert rows == raw and len(rows) >= 8 and not missing_for_scoring(rows)
    assert load_rows(BUNDLED) == rows


def test_select_keeps_dataset_order_and_rejects_unknown_ids():
    rows = load_rows()
    ids = [rows[3]["instance_id"], rows[1]["instance_id"]]
    assert [r["instance_id"] for r in select(rows, ids)] == [rows[1]["instance_id"], rows[3]["instance_id"]]
    assert select(rows, None) == rows
    with pytest.raises(DatasetError, match="not in the dataset: nope"):
        select(rows, ["nope"])


def test_dataset_errors_name_the_input(tmp_path):
    with pytest.raises(DatasetError, match="not a hub dataset"):
        load_rows(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instance_id": "a", "repo": "o/r"}\nnot json\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2"):
        load_rows(bad)
    no_id = tmp_path / "noid.json"
    no_id.write_text('[{"repo": "o/r"}]')
    with pytest.raises(DatasetError, match="row 0 has no instance_id"):
        load_rows(no_id)


def test_predictions_files_in_every_shape(tmp_path):
    preds = [{"instance_id": "a", "model_name_or_path": "m", "model_patch": "diff"},
             {"instance_id": "b", "model_patch": None}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps(p) + "\n" for p in preds))
    as_dict = tmp_path / "p.json"
    as_dict.write_text(json.dumps({p["instance_id"]: p for p in preds}))  # SWE-agent's all_preds shape
    for path in (jsonl, as_dict):
        got = read_predictions(path)
        assert [(p["instance_id"], p["model_patch"], p["model_name_or_path"]) for p in got] == \
            [("a", "diff", "m"), ("b", "", "unknown")]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instance_id": "a"}\n')
    with pytest.raises(DatasetError, match=r"broken\.jsonl:1: a prediction needs instance_id"):  # file and line
        read_predictions(broken)


def test_hub_code_path_on_a_local_dataset_folder(lite, tmp_path):
    """No hub is reachable here; ``datasets`` loads a folder of split files through the same call."""
    folder = tmp_path / "swe-bench-lite"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lite))
    (folder / "dev.jsonl").write_text(json.dumps(lite[0]) + "\n")
    rows = load_rows(folder)
    json.dumps(rows)  # written back as the harness's dataset file
    # ``datasets`` parses created_at into a datetime; it comes back as ISO text.
    assert [r["created_at"] for r in rows] == [r["created_at"].rstrip("Z") for r in lite]
    assert [dict(r, created_at="") for r in rows] == [dict(convert_legacy_row(r), created_at="") for r in lite]
    assert [r["instance_id"] for r in load_rows(f"{folder}:validation")] == [lite[0]["instance_id"]]
