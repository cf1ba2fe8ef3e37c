"""Real SWE-bench Verified tasks end to end: real mini-swe-agent trajectories replayed in faithful images of
their instances (built offline by the ``swebench_rows`` fixture), verdicts checked against the official
``report.json`` beside each trajectory, the verified output prepared and rewarded, and short RLVR and
agent-mode evaluation runs on the same rows.

Expected values come from the shared files themselves (the trajectories' own turns, ``report.json``),
never from the code under test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from unidiff import PatchSet

from .conftest import SHARED, SHARED_ROOT, require_shared

VERIFIED = SHARED / "minisweagent" / "verified"
ROWS_FILE = SHARED_ROOT / "swebench" / "rows.jsonl"
IDS = ["pytest-dev__pytest-5262", "pytest-dev__pytest-7432", "pytest-dev__pytest-5840", "psf__requests-6028"]
BASH_BLOCK = re.compile(r"```bash\s*\n(.*?)\n```", re.S)


def cli(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srl_agent.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def last_json(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


def official(iid: str) -> bool:
    return json.loads((VERIFIED / f"{iid}.report.json").read_text())["resolved"]


def expert_commands(iid: str) -> list[str]:
    """The expert's commands, counted from the raw file: every assistant turn with exactly one bash block
    that the environment answered (the next turn is an observation)."""
    messages = json.loads((VERIFIED / f"{iid}.traj.json").read_text())["messages"]
    out = []
    for m, after in zip(messages, messages[1:] + [{"role": "end", "content": ""}], strict=True):
        blocks = BASH_BLOCK.findall(m["content"]) if m["role"] == "assistant" else []
        if len(blocks) == 1 and (after["content"].startswith("<returncode>") or "COMPLETE_TASK" in blocks[0]):
            out.append(blocks[0])
    return out


@pytest.fixture(scope="module")
def replayed(swebench_rows, tmp_path_factory):
    """One CLI replay of the four real trajectories against the real rows."""
    require_shared(VERIFIED)
    out = tmp_path_factory.mktemp("replay-real")
    done = cli("replay", *[VERIFIED / f"{i}.traj.json" for i in IDS], "--dataset", ROWS_FILE, "--pull", "never",
               "--json", "--report", out / "report.json", "--write-verified", out / "verified.jsonl")
    return {"done": done, "out": out}


def test_each_real_trajectory_replays_every_step_with_the_official_verdict(replayed):
    done = replayed["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    summary = last_json(done)
    tasks = {t["instance_id"]: t for t in summary["tasks"]}
    assert sorted(tasks) == sorted(IDS) and summary["skipped"] == 0
    for iid in IDS:
        t = tasks[iid]
        assert t["steps"] == len(expert_commands(iid)), iid  # every step executed
        assert t["recorded_resolved"] is official(iid) and t["resolved"] is official(iid), iid
        assert t["agrees"]
        # A faithful image answers as the official one did: most observations come back nearly verbatim.
        assert t["mean_observation_match"] > 0.8, (iid, t["first_divergence"])
    assert summary["agree"] == len(IDS)
    report = {r["instance_id"]: r for r in json.loads((replayed["out"] / "report.json").read_text())}
    for iid in IDS:
        assert report[iid]["shell"] == "fresh"  # mini-swe-agent: a new shell per command
        graded = report[iid]["grade"]["FAIL_TO_PASS"]
        want = json.loads((VERIFIED / f"{iid}.report.json").read_text())["tests_status"]["FAIL_TO_PASS"]
        assert sorted(graded["success"]) == sorted(want["success"]), iid


def test_only_verified_trajectories_are_prepared_with_bash_diffs(replayed, tmp_path):
    from srl_agent.prepare import prepare
    from srl_agent.rewards.step_reward import StepReward

    assert replayed["done"].returncode == 0, replayed["done"].stderr[-3000:]
    steps = tmp_path / "steps.jsonl"
    summary = prepare([replayed["out"] / "verified.jsonl"], steps, only_verified=True)
    resolved = [i for i in IDS if official(i)]
    assert summary["trajectories_read"] == len(resolved)
    assert summary["skipped_by_reason"] == {"did not resolve in replay": len(IDS) - len(resolved)}
    rows = [json.loads(line) for line in steps.open()]
    assert sorted({r["instance_id"] for r in rows}) == sorted(resolved)
    assert len(rows) == sum(len(expert_commands(i)) for i in resolved)
    bash_edits = [r for r in rows if r["expert_tool_call"]["name"] == "bash" and r["step_diff"]]
    assert bash_edits, "the experts edit with sed and heredocs: those steps carry their diffs"
    scorer = StepReward("tool-aware")
    for r in bash_edits:
        own = f"<think>x</think>\n\n{r['expert_action']}"
        assert scorer(own, r["expert_action"], r["expert_tool_call"], r["file_snapshot"], r["step_diff"]).reward == 1.0
    # An editor edit with the same effect as the expert's sed scores 1.0 by patch similarity; another does not.
    sed = next(r for r in bash_edits if "sed -i" in r["expert_tool_call"]["arguments"]["command"]
               and r["file_snapshot"] is not None)
    (patched,) = PatchSet(sed["step_diff"])
    hunk = patched[0]
    added = "\n".join(line.value.rstrip("\n") for line in hunk if line.is_added)
    removed = [line.value.rstrip("\n") for line in hunk if line.is_removed]
    path = f"/testbed/{patched.path}"
    if removed:
        edit = {"command": "str_replace", "path": path, "old_str": "\n".join(removed), "new_str": added}
    else:
        edit = {"command": "insert", "path": path, "insert_line": hunk.target_start - 1, "new_str": added}
    wrong = dict(edit, new_str=added + "\n    pass  # something else")

    def as_completion(args: dict) -> str:
        params = "".join(f"<parameter={k}>{v}</parameter>\n" for k, v in args.items())
        return f"<think>x</think>\n\n<function=str_replace_editor>\n{params}</function>"

    same = scorer(as_completion(edit), sed["expert_action"], sed["expert_tool_call"], sed["file_snapshot"],
                  sed["step_diff"])
    other = scorer(as_completion(wrong), sed["expert_action"], sed["expert_tool_call"], sed["file_snapshot"],
                   sed["step_diff"])
    if len(PatchSet(sed["step_diff"])) == 1 and len(patched) == 1:
        assert same.reward == 1.0, same.to_dict()
    assert other.reward < same.reward


def test_gold_patch_repeated_reports_no_flaky_tests(swebench_rows, tmp_path):
    iid = "pytest-dev__pytest-5262"
    done = cli("replay", VERIFIED / f"{iid}.traj.json", "--dataset", ROWS_FILE, "--repeat", "2", "--json",
               "--report", tmp_path / "report.json")
    assert done.returncode == 0, done.stderr[-3000:]
    (flaky,) = last_json(done)["flaky"]
    assert flaky["instance_id"] == iid and flaky["runs"] == 2 and flaky["resolved"] == 2
    assert flaky["flaky"] == {"FAIL_TO_PASS": [], "PASS_TO_PASS": []}


def test_a_short_rlvr_run_on_real_rows(swebench_rows, tmp_path, run_label):
    out = tmp_path / "rlvr"
    ids = "pytest-dev__pytest-5262,psf__requests-6028"
    done = cli("train", "rlvr", "--tasks", ROWS_FILE, "--instance", ids, "--output-dir", out, "--recipe", "tiny",
               "--set", "rlvr.rollout.max_new_tokens=8", "--set", "rlvr.rollout.episode.step_limit=1",
               "--max-steps", "1", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "rewards.jsonl").read_text().splitlines()]
    rows = {r["instance_id"]: r for r in swebench_rows}
    assert sorted({r["instance_id"] for r in records}) == sorted(ids.split(","))
    for r in records:  # every episode graded in its real image, against the row's own tests
        graded = r["FAIL_TO_PASS"]["success"] + r["FAIL_TO_PASS"]["failure"]
        assert sorted(graded) == sorted(rows[r["instance_id"]]["FAIL_TO_PASS"]) or r["status"] == "empty_patch"
        assert r["reward"] == (1.0 if r["status"] == "resolved" else 0.0)


def test_agent_mode_evaluation_on_real_rows(swebench_rows, tmp_path):
    iid = "psf__requests-6028"
    done = cli("eval", "--dataset", ROWS_FILE, "--instance", iid, "--output-dir", tmp_path / "eval",
               "--step-limit", "2", "--max-new-tokens", "16", "--pull", "never", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = last_json(done)
    assert summary["submitted"] == 1
    (traj,) = (tmp_path / "eval").rglob(f"{iid}.traj")
    assert json.loads(traj.read_text())["info"]["exit_status"]
