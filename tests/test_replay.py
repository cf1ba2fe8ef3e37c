"""The bundled expert trajectories: their shape, and a real replay of each in its task's sandbox."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from srl_agent.replay import TRAJECTORY_DIR, replay_tasks, trajectory_path
from srl_agent.tasks import load_dataset

ROWS = {r["instance_id"]: r for r in load_dataset()}
FILES = sorted(TRAJECTORY_DIR.glob("*.jsonl"))
EDIT = re.compile(r"<parameter=command>(create|str_replace|insert)</parameter>")


def raw(path):
    return json.loads(path.read_text(encoding="utf-8"))


def assistants(row):
    return [m["content"] for m in row["messages"] if m["role"] == "assistant"]


def test_every_task_has_a_trajectory():
    assert len(ROWS) >= 8
    assert sorted(p.stem for p in FILES) == sorted(ROWS)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_trajectory_shape(path):
    row = raw(path)
    turns = assistants(row)
    assert 8 <= len(turns) <= 25
    assert [m["role"] for m in row["messages"][:2]] == ["system", "user"]
    # Every action is followed by exactly one observation.
    assert [m["role"] for m in row["messages"][2:]] == ["assistant", "user"] * len(turns)
    assert all(m["content"].startswith("OBSERVATION:\n") for m in row["messages"][3::2])
    assert "<function=submit>" in turns[-1]
    assert any(EDIT.search(t) for t in turns)  # it fixes something
    assert any("<function=bash>" in t and "pytest" in t for t in turns)  # and runs the tests
    # The recorded snapshots sit exactly on the edit steps.
    assert sorted(int(k) for k in row["snapshots"]) == [i for i, t in enumerate(turns) if EDIT.search(t)]
    assert row["resolved"] is True


def test_prepare_reads_the_bundled_trajectories(tmp_path):
    from srl_agent.prepare import prepare

    summary = prepare([TRAJECTORY_DIR], tmp_path / "steps.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "steps.jsonl").open()]
    assert summary["trajectories_read"] == len(FILES) and summary["skipped"] == 0
    assert len(rows) == sum(len(assistants(raw(p))) for p in FILES)
    snap_rows = sum(r["file_snapshot"] is not None for r in rows)
    created = sum(len(re.findall(r"<parameter=command>create</parameter>", t)) for p in FILES for t in assistants(raw(p)))
    edits = sum(bool(EDIT.search(t)) for p in FILES for t in assistants(raw(p)))
    assert edits - created <= snap_rows <= edits  # a create has no prior content (snapshot null)


def test_all_bundled_trajectories_replay_and_resolve(docker_client):
    reports = replay_tasks()
    assert {r.instance_id for r in reports} == set(ROWS)
    for r in reports:
        assert r.resolved, (r.instance_id, r.grade.get("reason"))
        turns = assistants(raw(trajectory_path(r.instance_id)))
        assert len(r.steps) == len(turns)
        assert [s.snapshot for s in r.steps] == [bool(EDIT.search(t)) for t in turns]
        # Observations were recorded by a replay: the regenerated ones match them closely
        # (timings in pytest's summary line are the usual difference).
        assert r.mean_match > 0.95, r.instance_id


def test_a_trajectory_without_its_fix_does_not_resolve(docker_client, tmp_path):
    from typer.testing import CliRunner

    from srl_agent.cli import app

    instance_id = FILES[0].stem
    row = raw(FILES[0])
    kept, skip_obs = [], False
    for m in row["messages"]:
        if m["role"] == "assistant" and EDIT.search(m["content"]) and "/tmp/" not in m["content"]:
            skip_obs = "str_replace" in m["content"] or "insert" in m["content"]
            if skip_obs:
                continue
        elif m["role"] == "user" and skip_obs:
            skip_obs = False
            continue
        kept.append(m)
    (tmp_path / FILES[0].name).write_text(json.dumps(dict(row, messages=kept)) + "\n")
    res = CliRunner().invoke(app, ["replay", "--instance", instance_id, "--trajectories", str(tmp_path), "--json",
                                   "--report", str(tmp_path / "report.json")])
    assert res.exit_code == 1, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["resolved"] == 0 and summary["total"] == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report[0]["grade"]["FAIL_TO_PASS"]["failure"]
    shutil.rmtree(tmp_path)
