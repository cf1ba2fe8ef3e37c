"""Two processes on the CPU (gloo) under `accelerate launch`: the multi-GPU code path without GPUs.

The random tiny model with 8-token completions cannot produce the format, so every reward is −1 and
every group has zero variance: dynamic sampling must run all its rounds on both ranks in step, fill
the batches with dropped groups, and rank 0 must log every completion of both ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_train import records, short_steps

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                    reason="accelerate's launcher is not installed")
def test_accelerate_launch_two_cpu_processes(tmp_path):
    steps = short_steps(tmp_path)
    accelerate = str(Path(sys.executable).parent / "accelerate")
    n_steps, rounds, processes, prompts, G = 2, 2, 2, 4, 4
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "srl_agent.cli", "train", "srl", "--recipe", "tiny", "--data", str(steps),
           "--output-dir", str(tmp_path / "run"), "--max-steps", str(n_steps), "--num-generations", str(G),
           "--set", f"prompts_per_step={prompts}", "--set", "grpo.per_device_train_batch_size=8",
           "--set", "grpo.max_completion_length=8", "--set", f"dynamic_sampling.max_rounds={rounds}",
           "--set", "grpo.disable_tqdm=true", "--json"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == n_steps
    ds = summary["dynamic_sampling"]
    groups = n_steps * rounds * prompts
    assert (ds["groups_drawn"], ds["groups_dropped"], ds["groups_filled"]) == (groups, groups, n_steps * prompts)
    log = records(tmp_path / "run" / "rewards.jsonl")
    assert len(log) == groups * G  # every completion of both ranks, logged once
    for step in range(n_steps):
        for round_ in range(rounds):
            got = sorted(r["group"] for r in log if r["global_step"] == step and r["round"] == round_)
            assert got == sorted(round_ * prompts + g for g in range(prompts) for _ in range(G))
    assert all(r["dropped"] and r["reward"] == -1.0 for r in log)
    assert sum(r["in_batch"] for r in log) == n_steps * prompts * G
    assert (tmp_path / "run" / "model.safetensors").is_file()
