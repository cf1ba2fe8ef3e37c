"""The reward on the public trajectories as a whole: the ranking check that chose the default mode,
and `srl-agent score` end to end on a real prepared steps file.

Expected values come from the standard library (difflib), the construction of the inputs, or a
count made here — never from the reward code itself.
"""

from __future__ import annotations

import difflib
import json
import statistics
import subprocess
import sys
from collections import defaultdict

import pytest

from srl_agent.actions import render
from srl_agent.prepare import prepare
from srl_agent.readers import read_trajectories
from srl_agent.rewards import DEFAULT_MODE, StepReward
from srl_agent.rewards.perturb import equivalent_edit, perturbations
from srl_agent.schema import ToolCall
from srl_agent.steps import iter_step_instances

from .test_rewards import BASH_LS, ROOT, THINK, embed


@pytest.fixture(scope="module")
def steps(shared_data):
    return list(iter_step_instances(read_trajectories([shared_data])))


# --- the ranking check that chose the default ---------------------------------------------------


def _ranking(steps, mode: str) -> dict:
    """Margins and pairwise ranking accuracy of expert (and equivalent) actions over near misses."""
    score = StepReward(mode)
    by_traj = defaultdict(list)
    for s in steps:
        by_traj[s["source"]].append(s)
    margins, pairs, below, by_kind = [], [], [], defaultdict(list)
    for rows in by_traj.values():
        for s in rows:
            if s["legacy"]:
                continue
            call, k = ToolCall.from_dict(s["expert_tool_call"]), s["step_index"]
            nearest = sorted((r for r in rows if r["expert_tool_call"]["name"] == "bash"), key=lambda r: abs(r["step_index"] - k))
            others = [r["expert_tool_call"]["arguments"]["command"] for r in nearest if r["step_index"] != k]
            snapshot, good = None, {"expert": call}
            if call.arguments.get("command") == "str_replace" and call.arguments.get("old_str"):
                snapshot = embed(call.arguments["old_str"])
                wider = snapshot and equivalent_edit(call.arguments, snapshot, 1, 1)
                if wider:
                    good["equivalent"] = ToolCall("str_replace_editor", wider)

            def r(c, s=s, snapshot=snapshot):
                return score(THINK + render(c), s["expert_action"], s["expert_tool_call"], snapshot).reward

            good_r = {n: r(c) for n, c in good.items()}
            for kind, c in perturbations(call, others).items():
                v = r(c)
                by_kind[kind].append(v)
                margins.append(good_r["expert"] - v)
                below.append(v < good_r["expert"])
                pairs += [1.0 if g > v else 0.5 if g == v else 0.0 for g in good_r.values()]
            by_kind["equivalent"] += [v for n, v in good_r.items() if n == "equivalent"]
    return {"mode": mode, "perturbed": len(margins), "all_below_expert": all(below),
            "mean_margin": round(statistics.mean(margins), 4), "min_margin": round(min(margins), 4),
            "pairwise_accuracy": round(statistics.mean(pairs), 4),
            "mean_by_kind": {k: round(statistics.mean(v), 3) for k, v in sorted(by_kind.items())}}


def test_tool_aware_ranks_near_misses_at_least_as_well_as_paper(steps):
    paper, tool_aware = _ranking(steps, "paper"), _ranking(steps, "tool-aware")
    print("\n" + json.dumps(paper) + "\n" + json.dumps(tool_aware))
    for r in (paper, tool_aware):
        assert r["perturbed"] > 1000 and r["all_below_expert"]
    assert tool_aware["mean_margin"] >= paper["mean_margin"]
    assert tool_aware["pairwise_accuracy"] >= paper["pairwise_accuracy"]
    assert DEFAULT_MODE == "tool-aware"  # chosen on these numbers; see docs/architecture.md, "Rewards"


# --- srl-agent score, end to end ----------------------------------------------------------------


def test_score_cli_end_to_end(shared_data, tmp_path):
    steps_file = tmp_path / "steps.jsonl"
    prepare([shared_data / "swesmith/ft_xml_example.jsonl"], steps_file)
    rows = [json.loads(line) for line in steps_file.open()]
    pick = {}
    for r in rows:
        key = r["expert_tool_call"]["name"] + ":" + str(r["expert_tool_call"]["arguments"].get("command", ""))[:20]
        if r["expert_tool_call"]["name"] != "bash":
            pick.setdefault(key, r)
    pick.setdefault("bash", next(r for r in rows if r["expert_tool_call"]["name"] == "bash"))
    view_row = next(r for r in pick.values() if r["expert_tool_call"]["arguments"].get("command") == "view")
    completions, expected = [], {"paper": [], "tool-aware": []}
    for r in pick.values():  # the expert's own action: 1 in both modes
        completions.append({"instance_id": r["instance_id"], "step_index": r["step_index"], "completion": THINK + r["expert_action"]})
        for m in expected:
            expected[m].append(1.0)
    wrong_file = render(ToolCall("str_replace_editor", {**view_row["expert_tool_call"]["arguments"], "path": "/testbed/other.py"}))
    completions.append({"instance_id": view_row["instance_id"], "step_index": view_row["step_index"], "completion": THINK + wrong_file})
    expected["paper"].append(difflib.SequenceMatcher(None, wrong_file, view_row["expert_action"]).ratio())
    expected["tool-aware"].append(0.0)  # the right command on the wrong file
    completions.append({"instance_id": view_row["instance_id"], "step_index": view_row["step_index"], "completion": view_row["expert_action"]})
    for m in expected:
        expected[m].append(-1.0)  # no think block
    comp_file = tmp_path / "completions.jsonl"
    with comp_file.open("w") as fh:
        for c in completions:
            fh.write(json.dumps(c) + "\n")
        fh.write(json.dumps({"instance_id": "no__such-1", "step_index": 0, "completion": THINK + BASH_LS}) + "\n")
        fh.write("{not json\n")
    for mode, want in expected.items():
        out = tmp_path / f"scored-{mode}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "srl_agent.cli", "score", "--steps", str(steps_file), "--completions",
                               str(comp_file), "--out", str(out), "--reward", mode, "--json"],
                              capture_output=True, text=True, cwd=ROOT, check=True)
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        scored = [json.loads(line) for line in out.open()]
        assert [s["reward"] for s in scored] == want
        assert all(s["breakdown"]["mode"] == mode for s in scored)
        n = len(completions)
        assert (summary["rows"], summary["scored"], summary["format_errors"]) == (n + 2, n, 1)
        assert summary["format_error_rate"] == 1 / n and summary["format_errors_by_reason"] == {"no_think": 1}
        assert summary["skipped_by_reason"] == {"missing_step": 1, "unreadable_row": 1}
        assert any(f"{comp_file}:{n + 1}" in p and "no__such-1" in p for p in summary["problems"])
        view_key = "str_replace_editor:view"
        view_rewards = [w for c, w in zip(completions, want, strict=True) if (c["instance_id"], c["step_index"]) == (view_row["instance_id"], view_row["step_index"])]
        assert summary["by_tool"][view_key]["count"] == 3
        assert summary["by_tool"][view_key]["mean_reward"] == pytest.approx(sum(view_rewards) / 3)
        assert summary["mean_reward"] == pytest.approx(sum(want) / n)
