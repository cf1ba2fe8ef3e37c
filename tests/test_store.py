"""The reward store: importers, the batching writer, exports — against a real scoring run.

The run: the bundled trajectories prepared into steps, completions made of the expert's action, near
misses (``rewards.perturb``) and broken formats, scored by ``score_file``. Expected values are counted
from the source JSONL files, never from the store's own code.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from srl_agent.inspector.sample import scored_run
from srl_agent.jsonl import read_jsonl
from srl_agent.rewards import srl_reward
from srl_agent.store import StoreError, StoreWriter, connect, export, import_eval, open_run


def jsonl(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    return scored_run(tmp_path_factory.mktemp("scored"))


@pytest.fixture
def folder(run, tmp_path) -> Path:
    """A fresh copy of the run folder (tests import into it)."""
    for key in ("steps", "scored"):
        shutil.copy(run[key], tmp_path / run[key].name)
    return tmp_path


def test_a_scored_run_imports_every_row_with_its_expert_step(run, folder):
    conn, info = open_run(folder)
    scored, steps = jsonl(run["scored"]), jsonl(run["steps"])
    assert [i["imported"] for i in info["imported"]] == [len(scored)] and info["missing_steps"] == 0
    assert conn.execute("SELECT count(*) FROM candidates").fetchone()[0] == len(scored)
    # Each scored row: its reward, format error and components, under its own step.
    got = {(r["instance_id"], r["step_index"], r["completion"]): r for r in map(dict, conn.execute(
        "SELECT t.instance_id, c.step_index, c.completion, c.reward, c.format_error, c.id, c.extra "
        "FROM candidates c JOIN tasks t ON t.id = c.task_id"))}
    for row in scored:
        g = got[(row["instance_id"], row["step_index"], row["completion"])]
        assert g["reward"] == row["reward"] and g["format_error"] == row["breakdown"]["format_error"]
        assert json.loads(g["extra"])["label"] == row["label"]
        comps = {n: (v, t) for n, v, t in conn.execute("SELECT name, value, text FROM components WHERE candidate_id = ?",
                                                          (g["id"],))}
        assert set(comps) == set(row["breakdown"]["components"])
    n_components = sum(len(r["breakdown"]["components"]) for r in scored)
    assert conn.execute("SELECT count(*) FROM components").fetchone()[0] == n_components
    # The expert steps: exactly those the rows name, with the prompt the model saw.
    named = {(r["instance_id"], r["step_index"]) for r in scored}
    stored = {(r[0], r[1]): (r[2], json.loads(r[3])) for r in conn.execute(
        "SELECT t.instance_id, s.step_index, s.expert_action, s.prompt FROM steps s JOIN tasks t ON t.id = s.task_id")}
    assert set(stored) == named
    for step in steps:
        assert stored[(step["instance_id"], step["step_index"])] == (step["expert_action"], step["prompt"])
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == len({s["instance_id"] for s in steps})


def test_opening_again_imports_nothing_and_a_grown_file_is_imported_again(run, folder):
    conn, _ = open_run(folder)
    conn.close()
    conn, info = open_run(folder)
    assert info["imported"] == [] and conn.execute("SELECT count(*) FROM candidates").fetchone()[0] == len(
        jsonl(run["scored"]))
    conn.close()
    extra = jsonl(run["scored"])[:3]
    with (folder / "scored.jsonl").open("a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in extra)
    conn, info = open_run(folder)
    assert [i["imported"] for i in info["imported"]] == [len(jsonl(run["scored"])) + 3]
    assert conn.execute("SELECT count(*) FROM candidates").fetchone()[0] == len(jsonl(run["scored"])) + 3


def test_bad_lines_are_skipped_counted_and_named(run, folder):
    good = jsonl(run["scored"])[:5]
    lines = [json.dumps(good[0]), "{not json", json.dumps({"reward": 1.0}), json.dumps(good[1]), "[1, 2]",
             json.dumps({**good[2], "step_index": "three"}), json.dumps({**good[3], "kind": "weird"})]
    (folder / "scored.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    conn, info = open_run(folder)
    (imp,) = info["imported"]
    assert imp["imported"] == 2 and imp["skipped"] == 5
    assert imp["skipped_by_reason"] == {"bad_json": 1, "no_instance_id": 1, "not_an_object": 1, "bad_value": 1,
                                        "unknown_kind": 1}
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in imp["problems"]] == ["2", "3", "5", "6", "7"]
    assert conn.execute("SELECT count(*) FROM candidates").fetchone()[0] == 2


def test_rows_without_source_join_the_trajectory_of_the_step_file(run, folder):
    rows = [{k: v for k, v in r.items() if k != "source"} for r in jsonl(run["scored"])]
    (folder / "scored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    conn, info = open_run(folder)
    assert info["missing_steps"] == 0
    sources = {r["instance_id"]: r["source"] for r in jsonl(run["steps"])}
    assert dict(conn.execute("SELECT instance_id, source FROM tasks").fetchall()) == sources


def test_the_writer_batches_what_the_reward_logs(run, tmp_path):
    """SRLReward(log=writer): records land batch by batch, each with the reward the function returned."""
    steps = {(s["instance_id"], s["step_index"]): s for s in jsonl(run["steps"])}
    rows = jsonl(run["completions"])[:50]
    cols = {k: [steps[(r["instance_id"], r["step_index"])][k] for r in rows]
            for k in ("expert_action", "expert_tool_call", "file_snapshot")}
    writer = StoreWriter(tmp_path / "rewards.sqlite", run="live", batch_size=20, steps=run["steps"])
    reader = connect(tmp_path / "rewards.sqlite")
    count = lambda: reader.execute("SELECT count(*) FROM candidates").fetchone()[0]  # noqa: E731
    reward = srl_reward(log=writer)
    rewards = reward(completions=[r["completion"] for r in rows], instance_id=[r["instance_id"] for r in rows],
                     step_index=[r["step_index"] for r in rows], source=[r["source"] for r in rows], **cols)
    assert count() == 40  # two full batches committed, ten records still buffered
    writer.close()
    assert count() == 50
    got = reader.execute("SELECT reward FROM candidates ORDER BY id").fetchall()
    assert [g[0] for g in got] == rewards
    assert reader.execute("SELECT count(*) FROM steps").fetchone()[0] == len({(r["instance_id"], r["step_index"])
                                                                             for r in rows})
    assert [tuple(r) for r in reader.execute("SELECT live, kind FROM runs")] == [(1, "srl")]


def test_a_bad_record_is_refused_at_write_and_the_batch_survives(tmp_path):
    writer = StoreWriter(tmp_path / "s.sqlite", batch_size=2)
    writer.write({"instance_id": "a", "step_index": 0, "reward": 0.5})
    with pytest.raises(StoreError, match="instance_id"):
        writer.write({"step_index": 1, "reward": 0.5})
    writer.write({"instance_id": "a", "step_index": 1, "reward": 1.0})
    writer.close()
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    assert conn.execute("SELECT step_index, reward FROM candidates ORDER BY id").fetchall() == [(0, 0.5), (1, 1.0)]


def test_resuming_drops_the_records_after_the_checkpoint(tmp_path):
    with StoreWriter(tmp_path / "s.sqlite", run="srl") as w:
        for step in range(4):
            w.write({"instance_id": "a", "step_index": 0, "global_step": step, "reward": 0.0})
    with StoreWriter(tmp_path / "s.sqlite", run="srl", keep_before_step=2) as w:
        w.write({"instance_id": "a", "step_index": 0, "global_step": 2, "reward": 1.0})
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    assert conn.execute("SELECT global_step, reward FROM candidates ORDER BY id").fetchall() == [
        (0, 0.0), (1, 0.0), (2, 1.0)]


def test_exports_hold_one_row_per_candidate(run, folder):
    import pyarrow.parquet as pq

    conn, _ = open_run(folder)
    scored = jsonl(run["scored"])
    summary = export(conn, folder / "rows.jsonl")
    rows = jsonl(folder / "rows.jsonl")
    assert summary["rows"] == len(rows) == len(scored)
    assert sorted(r["reward"] for r in rows) == sorted(r["reward"] for r in scored)
    assert all(r["expert_action"] and r["prompt"] for r in rows)
    assert Counter(r["format_error"] for r in rows) == Counter(r["breakdown"]["format_error"] for r in scored)
    export(conn, folder / "rows.parquet")
    table = pq.read_table(folder / "rows.parquet")
    assert table.num_rows == len(scored)
    assert sorted(table.column("reward").to_pylist()) == sorted(r["reward"] for r in scored)
    first = table.slice(0, 1).to_pylist()[0]
    assert json.loads(first["components"]) == rows[0]["components"]
    with pytest.raises(ValueError, match="format"):
        export(conn, folder / "rows.csv")


def test_an_evaluation_folder_becomes_episodes(tmp_path):
    """The files ``run_eval`` leaves: summary.json (the harness's per-instance status), predictions, .traj."""
    folder = tmp_path / "eval"
    (folder / "trajs").mkdir(parents=True)
    instances = [{"instance_id": "a", "status": "resolved", "resolved": True, "FAIL_TO_PASS": "1/1"},
                 {"instance_id": "b", "status": "unresolved", "resolved": False},
                 {"instance_id": "c", "status": "empty_patch", "resolved": False}]
    (folder / "summary.json").write_text(json.dumps({"model": "tiny", "mode": "agent", "instances": instances}))
    (folder / "predictions.jsonl").write_text("".join(json.dumps({"instance_id": i, "model_patch": f"diff {i}"}) + "\n"
                                                      for i in "ab"))
    (folder / "trajs" / "a.traj").write_text(json.dumps({"trajectory": [{}, {}, {}], "info": {
        "exit_status": "submitted", "srl_agent": {"format_errors": [{"turn": 1}]}}}))
    conn = connect(tmp_path / "s.sqlite")
    assert import_eval(conn, folder)["imported"] == 3
    got = {r[0]: r[1:] for r in conn.execute(
        "SELECT t.instance_id, c.kind, c.reward, c.status, c.step_index, c.completion, c.extra "
        "FROM candidates c JOIN tasks t ON t.id = c.task_id")}
    assert got["a"][:5] == ("eval", 1.0, "resolved", None, "diff a")
    assert json.loads(got["a"][5]) == {"FAIL_TO_PASS": "1/1", "agent_steps": 3, "agent_format_errors": 1,
                                       "exit_status": "submitted"}
    assert got["b"][1:3] == (0.0, "unresolved") and got["c"][4] is None
    # Found by open_run in a run folder, too.
    conn, info = open_run(tmp_path, db=tmp_path / "other.sqlite")
    assert [(i["run"], i["imported"]) for i in info["imported"]] == [("eval", 3)]


def test_rlvr_episodes_keep_their_kind_and_training_step(tmp_path):
    """A log of RLVR episodes (kind "rlvr", no step_index): a run of that kind, summarised as episodes and a trend."""
    from srl_agent.inspector.summary import summarize

    records = [{"kind": "rlvr", "instance_id": f"task-{g}", "global_step": step, "group": g, "generation": k,
                "reward": float((step + g + k) % 2), "advantage": 0.5, "status": "resolved" if (step + g + k) % 2
                else "unresolved", "completion": "diff --git a/x b/x"}
               for step in range(3) for g in range(2) for k in range(4)]
    (tmp_path / "rlvr").mkdir()
    (tmp_path / "rlvr" / "rewards.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    conn, info = open_run(tmp_path)
    assert [(i["run"], i["imported"]) for i in info["imported"]] == [("rlvr", len(records))]
    assert [tuple(r) for r in conn.execute("SELECT name, kind FROM runs")] == [("rlvr", "rlvr")]
    s = summarize(conn)
    assert s["candidates"] == 0  # no step-level records
    (episodes,) = s["episodes"]
    assert (episodes["kind"], episodes["episodes"]) == ("rlvr", len(records))
    assert episodes["resolved"] == sum(r["status"] == "resolved" for r in records)
    assert [(t["global_step"], t["candidates"]) for t in s["trend"]] == [(0, 8), (1, 8), (2, 8)]
    for t in s["trend"]:
        rs = [r["reward"] for r in records if r["global_step"] == t["global_step"]]
        assert t["mean_reward"] == pytest.approx(sum(rs) / len(rs))
