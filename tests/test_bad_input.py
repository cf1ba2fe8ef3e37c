"""Bad input gets a clear error naming the file, the record (line) and the field, and loses nothing:
the valid records of the same input are kept. Each case was a traceback, a silent wrong answer or a
lost file before; the expected counts come from how each test builds its input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from srl_agent.evaluation.data import DatasetError
from srl_agent.evaluation.harness import read_predictions
from srl_agent.prepare import prepare
from srl_agent.rewards.score import score_file

from .conftest import ROOT

BUNDLED = ROOT / "trajectories"
GOOD = sorted(BUNDLED.glob("*.jsonl"))[:2]


def _copy_good(folder: Path) -> int:
    """Two bundled trajectories (one SWE-smith row each); returns how many steps they hold."""
    steps = 0
    for path in GOOD:
        row = json.loads(path.read_text(encoding="utf-8"))
        (folder / path.name).write_text(json.dumps(row) + "\n", encoding="utf-8")
        steps += sum(m["role"] == "assistant" for m in row["messages"])
    return steps


# ----------------------------------------------------------------------------- prepare
def test_prepare_keeps_the_good_files_beside_latin1_utf16_deep_and_unreadable_ones(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    steps = _copy_good(folder)
    good = json.loads(GOOD[0].read_text(encoding="utf-8"))
    text = json.dumps({**good, "instance_id": "latin"}, ensure_ascii=False).replace("the", "th\u00e9", 1)
    (folder / "latin1.jsonl").write_bytes(text.encode("latin-1", "replace") + b"\n")
    (folder / "utf16.jsonl").write_text(json.dumps({**good, "instance_id": "utf16"}) + "\n", encoding="utf-16")
    (folder / "deep.json").write_text("[" * 50_000 + "]" * 50_000)
    (folder / "gone.json").symlink_to(tmp_path / "nowhere.json")
    (folder / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    summary = prepare([folder], tmp_path / "steps.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    utf16_steps = sum(m["role"] == "assistant" for m in good["messages"])
    assert summary["steps_written"] == len(rows) == steps + utf16_steps  # UTF-16 with a BOM is read
    assert summary["skipped_by_reason"] == {"not UTF-8": 1, "too deep": 1, "unreadable file": 2}
    problems = "\n".join(summary["problems"])
    assert f"{folder / 'latin1.jsonl'}, record 1: not UTF-8" in problems and f"{folder / 'deep.json'}" in problems
    assert f"{folder / 'gone.json'}" in problems and f"{folder / 'gone.jsonl'}" in problems


def test_prepare_out_naming_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        prepare([GOOD[0]], tmp_path)


def test_prepare_fails_fast_when_no_hub_answers(tmp_path, monkeypatch):
    from srl_agent.readers import HubUnavailable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(HubUnavailable, match="does not answer"):
        prepare(["SWE-bench/SWE-smith-trajectories:xml"], tmp_path / "steps.jsonl")


# ----------------------------------------------------------------------------- score
def test_score_names_bad_completions_and_step_indices_and_keeps_the_rest(tmp_path):
    steps = tmp_path / "steps.jsonl"
    prepare([GOOD[0]], steps)
    first = json.loads(steps.read_text().splitlines()[0])
    iid = first["instance_id"]
    rows = [
        {"instance_id": iid, "step_index": 0, "completion": f"<think>x</think>\n{first['expert_action']}"},
        {"instance_id": iid, "step_index": 0, "completion": 42},
        {"instance_id": iid, "step_index": 0, "completion": None},
        {"instance_id": iid, "step_index": 1.5, "completion": "x"},
    ]
    # JSON has no Infinity or NaN, but Python's json reads (and writes) them
    lines = [json.dumps(r) for r in rows] + [json.dumps({"instance_id": iid, "step_index": v, "completion": "x"})
                                            for v in (math.inf, math.nan)]
    completions = tmp_path / "completions.jsonl"
    completions.write_bytes(("\n".join(lines) + "\n").encode() + b'{"completion": "caf\xe9"}\n')
    summary = score_file(steps, completions, tmp_path / "scored.jsonl")
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 1 and scored[0]["reward"] == 1.0
    assert summary["skipped_by_reason"] == {"unreadable_row": 6}
    problems = "\n".join(summary["problems"])
    for line_no in range(2, 8):
        assert f"{completions}:{line_no}:" in problems
    assert "completion is int" in problems and "completion is NoneType" in problems
    assert "step_index 1.5" in problems and "step_index inf" in problems and "not UTF-8" in problems


# ----------------------------------------------------------------------------- predictions
@pytest.mark.parametrize("content, message", [
    (b'{"instance_id": "a", "model_patch": ""}\n{"instance_id": "b"\n', "preds.jsonl:2: not JSON"),
    (b'{"instance_id": "a", "model_patch": ""}\n{"instance_id": "b", "model_patch": "caf\xe9"}\n',
     "preds.jsonl:2: not UTF-8"),
    (b'{"instance_id": "a", "model_patch": ""}\n{"instance_id": "a", "model_patch": "x"}\n',
     "preds.jsonl:2: instance_id 'a' again (first at"),
    (b'{"instance_id": "a"}\n', "preds.jsonl:1: a prediction needs instance_id"),
])
def test_bad_prediction_lines_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "preds.jsonl"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        read_predictions(path)


@pytest.mark.parametrize("content, message", [(b"42", "holds int"), (b'["caf\xe9"]', "not UTF-8"),
                                              (b"[{]", "not JSON")])
def test_a_predictions_json_that_is_not_predictions_is_named(tmp_path, content, message):
    path = tmp_path / "preds.json"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        read_predictions(path)


# ----------------------------------------------------------------------------- inspect
def test_a_corrupted_store_is_named_and_non_finite_rewards_are_refused(tmp_path):
    from srl_agent.inspector.summary import summarize
    from srl_agent.store import open_run
    from srl_agent.store.db import StoreError

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"kind": "score", "instance_id": "a", "step_index": 0, "completion": "x", "reward": 0.5,
             "breakdown": {"reward": 0.5}}]
    text = json.dumps(rows[0]) + "\n" + '{"kind": "score", "instance_id": "a", "step_index": 1, "completion": "x", ' \
        '"reward": Infinity, "breakdown": {"reward": Infinity}}\n'
    (run / "scored.jsonl").write_text(text)
    conn, info = open_run(run)
    (imported,) = info["imported"]
    assert imported["imported"] == 1 and imported["skipped_by_reason"] == {"bad_value": 1}
    assert "scored.jsonl:2" in imported["problems"][0]
    summary = summarize(conn)
    json.dumps(summary, allow_nan=False)  # valid JSON: no Infinity anywhere
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in summary.values())
    conn.close()
    (run / "rewards.sqlite").write_bytes(b"\x00garbage" * 500)
    for leftover in run.glob("rewards.sqlite-*"):
        leftover.unlink()
    with pytest.raises(StoreError, match=r"rewards\.sqlite: not a readable reward store"):
        open_run(run)


# ----------------------------------------------------------------------------- train rlvr
def test_rlvr_asking_for_more_tasks_per_step_than_there_are_says_so(tmp_path):
    from srl_agent.train.common import TrainError
    from srl_agent.train.rlvr import train_rlvr

    with pytest.raises(TrainError, match="tasks_per_step is 3 but .* holds only 2 task"):
        train_rlvr(None, tmp_path / "rlvr", recipe="tiny", overrides={"rlvr.tasks_per_step": 3})


# ----------------------------------------------------------------------------- the real CLI
def _cli(*argv: str):
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_HUB_OFFLINE"}
    return subprocess.run([sys.executable, "-m", "srl_agent.cli", *argv], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    preds = tmp_path / "preds.json"
    preds.write_text("42")
    store = tmp_path / "run"
    store.mkdir()
    (store / "rewards.sqlite").write_bytes(b"\x00garbage" * 500)
    cases = {
        "folder": (["prepare", str(GOOD[0]), "--out", str(tmp_path)], str(tmp_path)),
        "hub": (["prepare", "SWE-bench/SWE-smith-trajectories:xml", "--out", str(tmp_path / "s.jsonl")],
                "SWE-bench/SWE-smith-trajectories"),
        "predictions": (["eval", "--predictions", str(preds), "--output-dir", str(tmp_path / "ev")], str(preds)),
        "store": (["inspect", str(store), "--json"], str(store / "rewards.sqlite")),
        "rlvr": (["train", "rlvr", "--output-dir", str(tmp_path / "rl"), "--recipe", "tiny",
                  "--set", "rlvr.tasks_per_step=3"], "tasks_per_step is 3"),
    }
    for name, (argv, named) in cases.items():
        done = _cli(*argv)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2, (name, done.stderr[-2000:])
        assert "Traceback" not in done.stderr and lines and lines[-1].startswith("error: "), (name, done.stderr)
        assert named in lines[-1], (name, lines[-1])


def test_cli_prepare_prints_the_first_problems_and_json_has_them_all(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _copy_good(folder)
    for n in range(7):
        (folder / f"bad{n}.jsonl").write_bytes(b'{"caf\xe9": 1}\n')
    done = _cli("prepare", str(folder), "--out", str(tmp_path / "steps.jsonl"), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(summary["problems"]) == 7 and summary["skipped_by_reason"] == {"not UTF-8": 7}
    shown = [line for line in done.stderr.splitlines() if line.startswith("skipped ")]
    assert len(shown) == 5 and "2 more" in done.stderr
