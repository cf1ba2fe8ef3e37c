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
         "dynamic_sampling.max_rounds=1", "pipeline.prepare.observation_tokens=8", "pipeline.prepare.issue_tokens=8"]


def test_split_is_by_trajectory_and_fixed_by_the_seed():
    rows = [{"instance_id": f"t{i}", "source": "s", "step_index": k} for i in range(10) for k in range(3)]
    train, held = split_by_trajectory(rows, 0.2, seed=0)
    assert len(held) == 6 and len(train) == 24
    assert not {r["instance_id"] for r in train} & {r["instance_id"] for r in held}
    assert split_by_trajectory(rows, 0.2, seed=0) == (train, held)
    assert split_by_trajectory(rows[:3], 0.5, seed=0)[1] == []  # one trajectory: nothing held out


def test_pipeline_command_prints_a_table_then_one_json_line(tmp_path):
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
    assert json.loads((tmp_path / "summary.json").read_text())["stages"]["srl"]["steps"] == 1
