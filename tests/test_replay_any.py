"""Replay of trajectories that are not the bundled pack's: each harness's shell semantics, trajectories whose
instance the dataset lacks, old SWE-agent commands with no equivalent, and the verified output."""

from __future__ import annotations

import json
import re

import pytest

from srl_agent.readers import read_file
from srl_agent.replay import NO_ROW, replay_trajectories, trajectory_path
from srl_agent.schema import Step, ToolCall
from srl_agent.tasks import load_dataset
from srl_agent.tools import FRESH, SESSION, Tools

LEAP = "gweis__isodate.0.7.2.leap-year-centuries"
ROWS = {r["instance_id"]: r for r in load_dataset()}


@pytest.mark.parametrize("shell", [SESSION, FRESH])
def test_a_cd_and_an_export_carry_over_only_in_one_session(pool, shell):
    sandbox = pool.acquire(ROWS[LEAP])
    try:
        tools = Tools(sandbox, shell=shell)
        tools.bash("cd /tmp && export SRL_MARK=kept")
        where = tools.bash("pwd; echo ${SRL_MARK:-gone}").splitlines()
        assert where == (["/tmp", "kept"] if shell == SESSION else ["/testbed", "gone"])
        assert tools.bash("false") and tools.exit_code == 1
        # A syntax error is the inner shell's to report in a fresh shell; the session's marker stays hidden.
        broken = tools.bash("echo 'unbalanced")
        assert "unexpected EOF" in broken or "syntax error" in broken
        assert not re.search(r"[0-9a-f]{32}:", broken)
    finally:
        pool.release(sandbox)


def test_a_trajectory_whose_instance_is_not_in_the_dataset_is_skipped_and_counted(images, tmp_path):
    (traj,) = read_file(trajectory_path(LEAP))
    stray = traj.to_dict()
    stray["task"]["instance_id"] = "nobody__nothing-1"
    files = tmp_path / "in"
    files.mkdir()
    (files / "stray.jsonl").write_text(json.dumps(stray) + "\n")
    (files / "leap.jsonl").write_text(trajectory_path(LEAP).read_text())
    run = replay_trajectories([files])
    summary = run.summary()
    assert [t["instance_id"] for t in summary["tasks"]] == [LEAP]
    assert summary["skipped_by_reason"] == {NO_ROW: 1}
    assert "nobody__nothing-1" in summary["problems"][0] and "stray.jsonl" in summary["problems"][0]
    assert summary["tasks"][0]["resolved"] and summary["agree"] == 1


def test_legacy_commands_are_counted_not_run_as_something_else(images, tmp_path):
    (traj,) = read_file(trajectory_path(LEAP))
    # An old SWE-agent windowed-editor command: no equivalent among our tools. Were it run as bash, `goto`
    # would fail with 'command not found' and the replay would hold one more step.
    legacy = Step("", ToolCall("bash", {"command": "goto 20"}), raw_action="goto 20", observation="[File ...]",
                  legacy=True)
    traj.steps.insert(1, legacy)
    path = tmp_path / "legacy.jsonl"
    path.write_text(traj.to_json() + "\n")
    (report,) = replay_trajectories([path]).reports
    assert report.legacy_skipped == [1]
    assert report.script_steps == len(traj.steps) - 1 == len(report.steps)
    assert [s.index for s in report.steps] == [k for k in range(len(traj.steps)) if k != 1]
    assert report.resolved and report.agrees


def test_write_verified_round_trips_through_prepare(images, tmp_path):
    from srl_agent.prepare import prepare
    from srl_agent.replay import write_verified

    run = replay_trajectories(None, instance_ids=[LEAP])
    out = tmp_path / "verified.jsonl"
    assert write_verified(out, run.replayed) == 1
    (row,) = [json.loads(line) for line in out.open()]
    assert row["verified"]["resolved"] is True and row["task"]["base_commit"] == ROWS[LEAP]["base_commit"]
    summary = prepare([out], tmp_path / "steps.jsonl", only_verified=True)
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").open()]
    assert summary["trajectories_read"] == 1 and len(steps) == len(row["steps"])
    # The editor edits changed the work tree: their steps carry the diff, and the diff is the edit's own.
    edits = [s for s in steps if s["expert_tool_call"]["arguments"].get("command") in ("str_replace", "create")]
    assert edits and all(s["step_diff"] for s in edits)
    views = [s for s in steps if s["expert_tool_call"]["arguments"].get("command") == "view"]
    assert all(s["step_diff"] is None for s in views)
    # Unverified input is skipped and counted, not prepared.
    summary = prepare([trajectory_path(LEAP)], tmp_path / "none.jsonl", only_verified=True)
    assert summary["trajectories_read"] == 0 and summary["skipped_by_reason"] == {"not verified by replay": 1}


def test_replay_refuses_a_missing_image_before_running_anything(tmp_path):
    from typer.testing import CliRunner

    from srl_agent.cli import app

    image = "localhost:9/srl-agent-test/absent:never"
    dataset = tmp_path / "rows.jsonl"
    dataset.write_text(json.dumps(dict(ROWS[LEAP], image=image)) + "\n")
    res = CliRunner().invoke(app, ["replay", str(trajectory_path(LEAP)), "--dataset", str(dataset), "--pull", "never",
                                   "--report", str(tmp_path / "report.json")])
    assert res.exit_code == 2, res.output
    (line,) = [x for x in res.stderr.splitlines() if x.strip()]
    assert line.startswith("error:") and image in line and "docker load" in line
    assert not (tmp_path / "report.json").exists()
