"""Scoring through the official SWE-bench harness (``swebench.harness.run_evaluation``) on the bundled
tasks: the gold patches resolve every task, empty predictions none; ``srl-agent eval`` prints the summary."""

from __future__ import annotations

import json

import pytest

from srl_agent.tasks import load_dataset

ROWS = load_dataset()
IDS = [r["instance_id"] for r in ROWS]


@pytest.fixture(scope="module")
def task_images(docker_client):
    from srl_agent.images import build_images

    build_images(client=docker_client, progress=False)  # existing tags are skipped


def harness_containers(client, run_id: str) -> list[str]:
    return [c.name for c in client.containers.list(all=True) if c.name.endswith(f".{run_id}")]


def test_gold_patches_resolve_every_bundled_task(task_images, docker_client, tmp_path):
    from srl_agent.evaluation import run_eval

    summary = run_eval(gold=True, output_dir=tmp_path, run_id="gold-check", max_workers=2)
    assert (summary["resolved"], summary["total"], summary["resolve_rate"]) == (len(ROWS), len(ROWS), 1.0)
    by_id = {i["instance_id"]: i for i in summary["instances"]}
    assert sorted(by_id) == sorted(IDS)
    for row in ROWS:
        i = by_id[row["instance_id"]]
        assert i["status"] == "resolved"
        assert i["FAIL_TO_PASS"] == f"{len(row['FAIL_TO_PASS'])}/{len(row['FAIL_TO_PASS'])}"
        assert i["PASS_TO_PASS"] == f"{len(row['PASS_TO_PASS'])}/{len(row['PASS_TO_PASS'])}"
    # What the harness itself wrote agrees.
    report = json.loads((tmp_path / "gold.gold-check.json").read_text())
    assert sorted(report["resolved_ids"]) == sorted(IDS) and report["error_ids"] == []
    assert json.loads((tmp_path / "summary.json").read_text())["resolved"] == len(ROWS)
    assert harness_containers(docker_client, "gold-check") == []


def test_empty_predictions_resolve_nothing(task_images, tmp_path):
    from srl_agent.evaluation import run_eval

    preds = tmp_path / "empty.jsonl"
    preds.write_text("".join(json.dumps({"instance_id": i, "model_name_or_path": "empty", "model_patch": ""}) + "\n"
                             for i in IDS))
    summary = run_eval(predictions=preds, output_dir=tmp_path / "out")
    assert (summary["resolved"], summary["total"], summary["resolve_rate"]) == (0, len(ROWS), 0.0)
    assert {i["status"] for i in summary["instances"]} == {"empty_patch"}


def test_cli_json_summary_with_mixed_predictions(task_images, docker_client, tmp_path):
    from typer.testing import CliRunner

    from srl_agent.cli import app

    good, wrong, missing = ROWS[0], ROWS[1], ROWS[2]
    # The other task's gold patch: files of another repository, so it cannot apply here.
    foreign = next(r for r in ROWS if r["repo"] != wrong["repo"])
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([
        {"instance_id": good["instance_id"], "model_name_or_path": "org/model", "model_patch": good["patch"]},
        {"instance_id": wrong["instance_id"], "model_name_or_path": "org/model", "model_patch": foreign["patch"]},
        {"instance_id": "not-in-the-dataset", "model_name_or_path": "org/model", "model_patch": "x"},
    ]))
    ids = ",".join(r["instance_id"] for r in (good, wrong, missing))
    res = CliRunner().invoke(app, ["eval", "--predictions", str(preds), "--instance", ids, "--output-dir",
                                   str(tmp_path / "out"), "--run-id", "mixed", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert (summary["resolved"], summary["total"], summary["resolve_rate"]) == (1, 3, round(1 / 3, 4))
    status = {i["instance_id"]: i["status"] for i in summary["instances"]}
    assert status == {good["instance_id"]: "resolved", wrong["instance_id"]: "error",
                      missing["instance_id"]: "no_prediction"}
    assert summary["model"] == "org/model" and summary["submitted"] == 2  # the unknown id is left out
    assert (tmp_path / "out" / "org__model.mixed.json").is_file()
    assert harness_containers(docker_client, "mixed") == []


def test_cli_refuses_bad_choices(tmp_path):
    from typer.testing import CliRunner

    from srl_agent.cli import app

    for args, message in ((["--mode", "nope"], "--mode"), (["--backend", "x"], "--backend"),
                          (["--predictions", str(tmp_path / "none.jsonl")], "no such file"),
                          (["--gold", "--instance", "nope"], "not in the dataset")):
        res = CliRunner().invoke(app, ["eval", "--output-dir", str(tmp_path), *args])
        assert res.exit_code == 2 and message in res.output, res.output
