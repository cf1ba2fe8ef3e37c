"""Resume: a run cut after a checkpoint and resumed ends where the uninterrupted run ends — same data
order, same completions (RNG restored), same weights (model, optimizer and scheduler restored)."""

from __future__ import annotations

import json

import pytest

from tests.test_train import SRL, records, warm_model, weights

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    steps, summary = warm_model(tmp_path_factory)
    return steps, summary["output_dir"]


def test_resume_continues_from_the_same_step_and_data_position(warm, tmp_path):
    from transformers import TrainerCallback

    from srl_agent.train import train_srl

    steps, model = warm

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                control.should_training_stop = True

    # A high epsilon drops most groups, so every batch draws refills and the refill stream's position matters.
    run = {**SRL, "grpo.max_steps": 4, "grpo.save_strategy": "steps", "grpo.save_steps": 2,
           "dynamic_sampling.max_rounds": 2, "dynamic_sampling.epsilon": 0.9}
    full = train_srl(steps, tmp_path / "full", model=model, recipe="tiny", overrides=run)
    cut = train_srl(steps, tmp_path / "cut", model=model, recipe="tiny", overrides=run, callbacks=[Interrupt()])
    assert cut["steps"] == 2 and (tmp_path / "cut" / "checkpoint-2").is_dir()
    assert not (tmp_path / "cut" / "checkpoint-4").exists()
    state = json.loads((tmp_path / "cut" / "checkpoint-2" / "dynamic_sampling.json").read_text())
    resumed = train_srl(steps, tmp_path / "cut", model=model, recipe="tiny", overrides=run, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == full["steps"] == 4

    a, b = records(tmp_path / "full" / "rewards.jsonl"), records(tmp_path / "cut" / "rewards.jsonl")
    order = ("global_step", "round", "group", "generation", "instance_id", "step_index")
    assert [tuple(r[k] for k in order) for r in b] == [tuple(r[k] for k in order) for r in a]  # data position
    assert [r["completion"] for r in b] == [r["completion"] for r in a]  # sampling RNG
    assert [r["in_batch"] for r in b] == [r["in_batch"] for r in a]
    # The refill stream's position after step 2 is the uninterrupted run's at step 2.
    full_state = json.loads((tmp_path / "full" / "checkpoint-2" / "dynamic_sampling.json").read_text())
    assert state["refill"] == full_state["refill"]
    # ... and, restored on resume, it ends where the uninterrupted run's ends.
    end_full, end_cut = (json.loads((tmp_path / run / "checkpoint-4" / "dynamic_sampling.json").read_text())
                         for run in ("full", "cut"))
    assert end_cut == end_full and end_full["refill"]["pos"] > state["refill"]["pos"]
    wa, wb = weights(tmp_path / "full"), weights(tmp_path / "cut")
    for k in wa:
        assert (wa[k] - wb[k]).abs().max().item() < 1e-5, k
    assert any(not (wa[k] == weights(model)[k]).all() for k in wa)  # and training did move them


def test_resume_without_a_checkpoint_is_a_clear_error(warm, tmp_path):
    from srl_agent.train import train_srl
    from srl_agent.train.common import TrainError

    steps, model = warm
    with pytest.raises(TrainError, match="no checkpoint"):
        train_srl(steps, tmp_path, model=model, recipe="tiny", resume=True)
