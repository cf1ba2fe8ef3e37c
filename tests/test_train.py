"""SFT and SRL runs on the tiny model: real TRL trainers, tiny sizes, a few steps each.

The step data is the bundled trajectories, prepared with short budgets and a one-word thought so a
few SFT steps teach the random model the format; sampled completions then differ in reward, which
is what GRPO needs to move the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srl_agent.models import resolve_model
from srl_agent.models.tiny import TRAJECTORY_DIR
from srl_agent.prepare import prepare
from srl_agent.steps import StepConfig
from srl_agent.train.data import read_steps, write_steps

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

SFT = {"sft.max_steps": 100, "sft.learning_rate": 3e-3, "sft.per_device_train_batch_size": 4, "sft.logging_steps": 1}
SRL = {"grpo.num_generations": 4, "grpo.per_device_train_batch_size": 8, "prompts_per_step": 2,
       "grpo.max_completion_length": 40, "grpo.learning_rate": 1e-3, "grpo.logging_steps": 1}


def short_steps(folder: Path) -> Path:
    """Bundled steps with short prompts and short actions; the thought is one word."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None))
    prepare([TRAJECTORY_DIR], folder / "all.jsonl", StepConfig(context_steps=1, observation_tokens=16, issue_tokens=16),
            tokenizer=tokenizer)
    rows = [dict(r, expert_thought="Next.") for r in read_steps(folder / "all.jsonl") if len(r["expert_action"]) < 160]
    write_steps(rows, folder / "steps.jsonl")
    return folder / "steps.jsonl"


_SESSION: dict = {}  # the warm-up is shared by every test module of the session (about 25 s)


def warm_model(tmp_path_factory) -> tuple[Path, dict]:
    """The short steps and an SFT warm-up on them: after it, about half the sampled completions parse."""
    if "warm" not in _SESSION:
        from srl_agent.train import train_sft

        steps = short_steps(tmp_path_factory.mktemp("data"))
        _SESSION["warm"] = steps, train_sft(steps, tmp_path_factory.mktemp("sft"), recipe="tiny", overrides=SFT)
    return _SESSION["warm"]


@pytest.fixture(scope="module")
def steps(tmp_path_factory) -> Path:
    return warm_model(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> dict:
    return warm_model(tmp_path_factory)[1]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def test_sft_reduces_the_loss(warm):
    losses = warm["losses"]
    assert warm["steps"] == SFT["sft.max_steps"] == len(losses)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_srl_run_changes_the_weights_and_logs_every_completion(steps, warm, tmp_path):
    from srl_agent.train import train_srl

    max_steps = 3
    summary = train_srl(steps, tmp_path, model=warm["output_dir"], recipe="tiny",
                        overrides={**SRL, "grpo.max_steps": max_steps, "dynamic_sampling.enabled": False})
    assert summary["steps"] == max_steps
    log = records(tmp_path / "rewards.jsonl")
    # One record per completion: steps × prompts per step × generations.
    assert len(log) == max_steps * SRL["prompts_per_step"] * SRL["grpo.num_generations"]
    assert sorted({r["global_step"] for r in log}) == list(range(max_steps))
    row_ids = {(r["instance_id"], r["step_index"]) for r in read_steps(steps)}
    for r in log:
        assert (r["instance_id"], r["step_index"]) in row_ids
        assert r["reward"] == pytest.approx(r["breakdown"]["reward"], abs=1e-6)  # TRL keeps rewards in float32
        assert isinstance(r["completion"], str)
        assert r["breakdown"]["mode"] == "tool-aware" and r["in_batch"] is True
    # Advantages are TRL's: reward minus the group mean, over the group std (+1e-4).
    for step in range(max_steps):
        for g in range(SRL["prompts_per_step"]):
            group = [r for r in log if r["global_step"] == step and r["group"] == g]
            rewards = [r["reward"] for r in group]
            mean = sum(rewards) / len(rewards)
            std = (sum((x - mean) ** 2 for x in rewards) / (len(rewards) - 1)) ** 0.5
            for r in group:
                assert r["advantage"] == pytest.approx((r["reward"] - mean) / (std + 1e-4), abs=1e-4)
    assert any(r["advantage"] != 0 for r in log), "no group had reward variance: nothing to learn from"
    before, after = weights(warm["output_dir"]), weights(tmp_path)
    assert any(not (before[k] == after[k]).all() for k in before)
    assert 0 <= summary["reward_share"] < 1


class KeyedReward:
    """Rewards known in advance: a constant for the prompts of ``constant`` trajectories (zero variance,
    so dynamic sampling must drop them), 0/1 alternating within the group for every other prompt."""

    __name__ = "keyed"

    def __init__(self, constant: set[str]):
        self.constant = constant

    def __call__(self, prompts=None, completions=(), instance_id=(), **_):
        return [0.5 if iid in self.constant else float(i % 2) for i, iid in enumerate(instance_id)]


def test_dynamic_sampling_drops_exactly_the_zero_variance_groups(steps, tmp_path):
    from srl_agent.train.data import srl_dataset
    from srl_agent.train.dynamic_sampling import DynamicSampling, SRLTrainer
    from srl_agent.train.recipe import apply_overrides, grpo_config, load_recipe
    from srl_agent.train.reward_log import JsonlRewardLog

    rows = read_steps(steps)
    ids = sorted({r["instance_id"] for r in rows})
    constant = set(ids[::2])  # half the trajectories give every completion the same reward
    recipe = apply_overrides(load_recipe("tiny"), {**SRL, "grpo.max_steps": 4, "grpo.max_completion_length": 4})
    log = JsonlRewardLog(tmp_path / "rewards.jsonl")
    trainer = SRLTrainer(model=resolve_model(None), reward_funcs=[KeyedReward(constant)],
                         args=grpo_config(recipe, tmp_path), train_dataset=srl_dataset(rows),
                         dynamic_sampling=DynamicSampling(epsilon=1e-6, max_rounds=50), reward_log=log)
    trainer.train()
    log.close()
    got = records(tmp_path / "rewards.jsonl")
    G, per_step = SRL["grpo.num_generations"], SRL["prompts_per_step"]
    for r in got:
        assert r["dropped"] is (r["instance_id"] in constant)
        assert r["group_std"] == (0.0 if r["dropped"] else 0.5)
    used = [r for r in got if r["in_batch"]]
    assert len(used) == 4 * per_step * G  # every batch full
    assert all(r["instance_id"] not in constant for r in used)
    groups = {(r["global_step"], r["group"]): r["instance_id"] in constant for r in got}
    stats = trainer.sampling_stats
    assert stats["groups_drawn"] == len(groups) == len(got) // G
    assert stats["groups_dropped"] == sum(groups.values())
    assert stats["groups_filled"] == 0
    assert stats["rounds"] > stats["batches"] == 4  # some batches needed refills
    logged = [e["dynamic_sampling/dropped_fraction"] for e in trainer.state.log_history
              if "dynamic_sampling/dropped_fraction" in e]
    per_step_fraction = [sum(v for (s, _), v in groups.items() if s == step) / sum(1 for (s, _) in groups if s == step)
                         for step in range(4)]
    assert logged == pytest.approx(per_step_fraction)


def test_dynamic_sampling_fills_with_dropped_groups_when_rounds_run_out(steps, tmp_path):
    from srl_agent.train.data import srl_dataset
    from srl_agent.train.dynamic_sampling import DynamicSampling, SRLTrainer
    from srl_agent.train.recipe import apply_overrides, grpo_config, load_recipe

    rows = read_steps(steps)
    recipe = apply_overrides(load_recipe("tiny"), {**SRL, "grpo.max_steps": 1, "grpo.max_completion_length": 4})
    everything = {r["instance_id"] for r in rows}
    trainer = SRLTrainer(model=resolve_model(None), reward_funcs=[KeyedReward(everything)],
                         args=grpo_config(recipe, tmp_path), train_dataset=srl_dataset(rows),
                         dynamic_sampling=DynamicSampling(max_rounds=2))
    trainer.train()
    s = trainer.sampling_stats
    assert (s["rounds"], s["groups_drawn"], s["groups_dropped"], s["groups_filled"]) == (2, 4, 4, 2)


def test_refill_stream_covers_the_dataset_and_shards_by_rank():
    from srl_agent.train.dynamic_sampling import RefillStream

    a, b = RefillStream(10, seed=3), RefillStream(10, seed=3)
    first = a.take(3, rank=0, world=2) + b.take(3, rank=1, world=2)
    second = a.take(2, rank=0, world=2) + b.take(2, rank=1, world=2)
    assert sorted(first + second) == list(range(10))  # one lap: each prompt once
    state = a.state_dict()
    c = RefillStream(10, seed=0)
    c.load_state_dict(state)
    assert c.take(4) == a.take(4)
