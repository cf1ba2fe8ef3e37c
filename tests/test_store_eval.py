"""Real ``srl-agent eval`` folders in the reward store: the harness's verdicts as episodes.

A predictions file mixing every outcome (a gold patch, a patch that applies but fixes nothing, an empty
patch, another repository's patch, no prediction) is scored by the official harness through the CLI,
then read by ``srl-agent inspect --json`` and the store API. Expected values come from the predictions
file and the harness's own report, never from ``summary.json`` or the importer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from srl_agent.cli import app
from srl_agent.store import open_run
from srl_agent.tasks import load_dataset

ROWS = {r["instance_id"]: r for r in load_dataset()}
GOLD = "gweis__isodate.0.7.2.leap-year-centuries"
NOOP = "gweis__isodate.0.7.2.tz-negative-minutes"
EMPTY = "jpvanhal__inflection.0.5.1.ordinal-hundred-teens"
FOREIGN = "pytoolz__toolz.1.0.0.get-in-list-index"
MISSING = "more-itertools__more-itertools.10.5.0.divide-remainder"
IDS = [GOLD, NOOP, EMPTY, FOREIGN, MISSING]
# A new file: applies anywhere, fixes nothing.
NOTE = ("diff --git a/NOTES.txt b/NOTES.txt\nnew file mode 100644\n--- /dev/null\n+++ b/NOTES.txt\n"
        "@@ -0,0 +1 @@\n+not a fix\n")
PREDICTIONS = {GOLD: ROWS[GOLD]["patch"], NOOP: NOTE, EMPTY: "", FOREIGN: ROWS[EMPTY]["patch"]}  # MISSING: none
DESIGNED = {GOLD: "resolved", NOOP: "unresolved", EMPTY: "empty_patch", FOREIGN: "error", MISSING: "no_prediction"}


@pytest.fixture(scope="module")
def task_images(docker_client):
    from srl_agent.images import build_images

    build_images(IDS, client=docker_client, progress=False)  # existing tags are skipped


def run_cli(*args: str) -> dict:
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def expected(folder: Path, preds: dict[str, str], model: str, run_id: str) -> dict[str, dict]:
    """Per instance, from the predictions and the harness's report: status, reward, patch."""
    report = json.loads((folder / f"{model}.{run_id}.json").read_text())
    lists = {s: set(report[f"{s}_ids"]) for s in ("resolved", "unresolved", "empty_patch", "error")}
    out = {}
    for iid in IDS:
        (status,) = [s for s, ids in lists.items() if iid in ids] or ["no_prediction" if iid not in preds else "?"]
        out[iid] = {"status": status, "reward": 1.0 if iid in lists["resolved"] else 0.0, "patch": preds.get(iid)}
    return out


def episodes(conn) -> dict[str, dict]:
    return {r["instance_id"]: r for r in map(dict, conn.execute(
        "SELECT t.instance_id, r.name AS run, c.kind, c.step_index, c.reward, c.status, c.completion "
        "FROM candidates c JOIN tasks t ON t.id = c.task_id JOIN runs r ON r.id = c.run_id"))}


@pytest.fixture(scope="module")
def mixed(task_images, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("store-eval")
    preds = root / "preds.jsonl"
    preds.write_text("".join(json.dumps({"instance_id": i, "model_name_or_path": "org/mix", "model_patch": p}) + "\n"
                             for i, p in PREDICTIONS.items()))
    out = root / "mixed"
    summary = run_cli("eval", "--predictions", str(preds), "--instance", ",".join(IDS), "--output-dir", str(out),
                      "--run-id", "mix")
    return {"out": out, "summary": summary}


def test_a_scored_predictions_run_becomes_one_episode_per_instance(mixed):
    out = mixed["out"]
    exp = expected(out, PREDICTIONS, "org__mix", "mix")
    assert {i: e["status"] for i, e in exp.items()} == DESIGNED  # the harness judged each as designed

    shown = run_cli("inspect", str(out))
    assert [(i["run"], i["imported"], i["skipped"]) for i in shown["imported"]] == [("mixed", len(IDS), 0)]
    assert [(r["name"], r["kind"], r["candidates"]) for r in shown["runs"]] == [("mixed", "eval", len(IDS))]
    (ep,) = shown["episodes"]
    resolved = sum(e["reward"] for e in exp.values())
    assert (ep["kind"], ep["episodes"], ep["resolved"]) == ("eval", len(IDS), resolved)
    assert ep["mean_reward"] == pytest.approx(resolved / len(IDS))
    assert shown["candidates"] == 0  # no step-level records

    conn, info = open_run(out)
    assert info["imported"] == []  # inspect stored it; nothing changed since
    got = episodes(conn)
    assert sorted(got) == sorted(IDS)
    for iid, e in exp.items():
        g = got[iid]
        assert (g["kind"], g["step_index"], g["run"]) == ("eval", None, "mixed")
        assert (g["status"], g["reward"], g["completion"]) == (e["status"], e["reward"], e["patch"]), iid
    (meta,) = [json.loads(r[0]) for r in conn.execute("SELECT meta FROM runs")]
    assert (meta["model"], meta["run_id"]) == ("org/mix", "mix")


def test_scoring_the_folder_again_replaces_its_episodes(mixed, tmp_path):
    """The same folder re-scored (here with --gold): the store drops the old episodes and imports the new ones."""
    import shutil

    out = tmp_path / "mixed"
    shutil.copytree(mixed["out"], out, ignore=shutil.ignore_patterns("rewards.sqlite*"))
    conn, _ = open_run(out)
    assert sum(r["reward"] for r in episodes(conn).values()) == 1.0
    conn.close()
    run_cli("eval", "--gold", "--instance", ",".join(IDS), "--output-dir", str(out), "--run-id", "gold")
    gold = {i: ROWS[i]["patch"] for i in IDS}
    exp = expected(out, gold, "gold", "gold")
    assert {e["status"] for e in exp.values()} == {"resolved"}
    conn, info = open_run(out)
    assert [(i["run"], i["imported"]) for i in info["imported"]] == [("mixed", len(IDS))]
    got = episodes(conn)
    assert {i: (g["status"], g["reward"], g["completion"]) for i, g in got.items()} == \
        {i: (e["status"], e["reward"], e["patch"]) for i, e in exp.items()}
    assert conn.execute("SELECT count(*) FROM candidates").fetchone()[0] == len(IDS)
    (meta,) = [json.loads(r[0]) for r in conn.execute("SELECT meta FROM runs")]
    assert (meta["model"], meta["run_id"], meta["resolve_rate"]) == ("gold", "gold", 1.0)
