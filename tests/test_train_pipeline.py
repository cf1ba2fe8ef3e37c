"""The demo's orchestration, shrunk to seconds: prepare → split → SFT → score → SRL → score, one JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from srl_agent.train.data import read_steps, split_by_trajectory

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["sft.max_steps=2", "grpo.max_steps=1", "grpo.max_completion_length=8", "pipeline.max_new_tokens=8",
         "pipeline.samples=1", "prompts_per_step=2", "grpo.per_device_train_batch_size=8",
         "dynamic_sampling.max_rounds=1", "pipeline.prepare.observation_tokens=8", "pipeline.prepare.issue_tokens=8",
         "rlvr.grpo.max_steps=1", "rlvr.rollout.max_new_tokens=8", "rlvr.rollout.episode.step_limit=2",
         "pipeline.eval.step_limit=1", "pipeline.eval.max_new_tokens=8", "pipeline.eval.format_error_limit=1"]
TASKS = ["gweis__isodate.0.7.2.leap-year-centuries", "pytoolz__toolz.1.0.0.get-in-list-index"]  # tiny.yaml's rlvr.tasks


@pytest.fixture(scope="module")
def task_images(docker_client):
    from srl_agent.images import build_images

    build_images(TASKS, client=docker_client, progress=False)


def test_split_is_by_trajectory_and_fixed_by_the_seed():
    rows = [{"instance_id": f"t{i}", "source": "s", "step_index": k} for i in range(10) for k in range(3)]
    train, held = split_by_trajectory(rows, 0.2, seed=0)
    assert len(held) == 6 and len(train) == 24
    assert not {r["instance_id"] for r in train} & {r["instance_id"] for r in held}
    assert split_by_trajectory(rows, 0.2, seed=0) == (train, held)
    assert split_by_trajectory(rows[:3], 0.5, seed=0)[1] == []  # one trajectory: nothing held out


def test_pipeline_command_prints_a_table_then_one_json_line(task_images, tmp_path):
    """Every stage in order, each from the previous stage's model: SFT → SRL → RLVR → evaluation."""
    cmd = [sys.executable, "-m", "srl_agent.cli", "pipeline", "--output-dir", str(tmp_path), "--json"]
    for item in QUICK:
        cmd += ["--set", item]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert "after SFT warm-up" in done.stderr and "mean step reward" in done.stderr  # the table
    for key in ("heldout_reward_before", "heldout_reward_after", "wall_seconds", "train_steps", "heldout_steps"):
        assert key in summary
    train, held = read_steps(tmp_path / "train.jsonl"), read_steps(tmp_path / "heldout.jsonl")
    assert (summary["train_steps"], summary["heldout_steps"]) == (len(train), len(held))
    scored = [json.loads(line) for line in (tmp_path / "heldout-after.jsonl").read_text().splitlines()]
    assert len(scored) == len(held)
    mean = sum(r["reward"] for r in scored) / len(scored)
    assert summary["heldout_reward_after"] == pytest.approx(mean)
    stages = json.loads((tmp_path / "summary.json").read_text())["stages"]
    assert stages["srl"]["steps"] == 1 and stages["srl"]["model"] == str(tmp_path / "sft")
    # RLVR: one step on the recipe's two tasks, two episodes each, from the SRL model.
    episodes = [json.loads(line) for line in (tmp_path / "rlvr" / "rewards.jsonl").read_text().splitlines()]
    assert stages["rlvr"]["model"] == str(tmp_path / "srl") and stages["rlvr"]["steps"] == 1
    assert summary["rlvr_episodes"] == len(episodes) == 4
    assert sorted(e["instance_id"] for e in episodes) == sorted(TASKS * 2)
    assert summary["rlvr_resolved"] == sum(e["status"] == "resolved" for e in episodes)
    # Evaluation: agent mode on the same tasks from the RLVR model, scored by the harness.
    preds = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["instance_id"] for p in preds) == sorted(TASKS)
    assert stages["eval"]["model"] == "rlvr" and all(p["model_name_or_path"] == "rlvr" for p in preds)  # the folder's name
    assert summary["eval_total"] == 2 and summary["eval_resolved"] == sum(i["resolved"] for i in stages["eval"]["instances"])
    assert "RLVR episodes" in done.stderr and "evaluation (agent)" in done.stderr
    # Prompt settings: SFT and SRL save the ones the pipeline prepared with (QUICK's budgets, counted in
    # the model's tokens); RLVR the recipe's rollout budgets and the episode chat; evaluation uses RLVR's.
    from srl_agent.model_settings import read_settings
    from srl_agent.train.recipe import load_recipe

    tiny = load_recipe("tiny")
    context, rollout = tiny["pipeline"]["prepare"]["context_steps"], tiny["rlvr"]["rollout"]["prompt"]
    sft = read_settings(tmp_path / "sft")
    assert (sft.style, sft.context_steps, sft.observation_tokens, sft.issue_tokens, sft.budgets, sft.history) == \
        ("xml", context, 8, 8, "tokens", "window")
    assert read_settings(tmp_path / "srl") == sft
    rl = read_settings(tmp_path / "rlvr")
    assert (rl.context_steps, rl.observation_tokens, rl.issue_tokens, rl.budgets, rl.history) == \
        (context, rollout["observation_tokens"], rollout["issue_tokens"], "tokens", "episode")
    info = json.loads((tmp_path / "eval" / "trajs" / f"{TASKS[0]}.traj").read_text())["info"]["srl_agent"]
    assert (info["config"]["history"], info["budgets"]) == ("episode", "tokens")
    assert (info["config"]["prompt"]["observation_tokens"], info["config"]["prompt"]["issue_tokens"]) == \
        (rollout["observation_tokens"], rollout["issue_tokens"])
