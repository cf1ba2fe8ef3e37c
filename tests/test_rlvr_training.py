"""RLVR rollouts and training against the real engine.

- A scripted generator replays an expert's completions token by token: the episode's token sequence
  equals the chat template's rendering of the same conversation (so the trainer scores what the
  policy saw), the environment's tokens are masked, and the gold fix scores 1.0.
- A malformed turn gets a format-error notice and counts against the turn budget.
- A short real ``train rlvr`` run of the warmed-up tiny model on two bundled tasks: tool calls run in
  containers, every episode is graded and logged with its step, group and advantage, the store
  summarises the episodes, and no container is left (the session hook checks that).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from srl_agent.actions import render
from srl_agent.engine import SandboxPool
from srl_agent.prompts import SYSTEM_PROMPT
from srl_agent.readers import read_file
from srl_agent.replay import trajectory_path
from srl_agent.steps import StepConfig, Truncator, issue_turn
from srl_agent.tasks import load_dataset
from srl_agent.train.rollouts import ConversationTokens, RolloutConfig, run_rollouts

LEAP = "gweis__isodate.0.7.2.leap-year-centuries"
GET_IN = "pytoolz__toolz.1.0.0.get-in-list-index"
ROWS = {r["instance_id"]: r for r in load_dataset()}


@pytest.fixture(scope="module")
def images(docker_client):
    from srl_agent.images import build_images

    build_images([LEAP, GET_IN], client=docker_client, progress=False)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from srl_agent.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(None))


@pytest.fixture
def pool(images, docker_client, run_label):
    key, value = run_label.split("=", 1)
    with SandboxPool(2, client=docker_client, labels={key: value}) as p:
        yield p


class Scripted:
    """A generator that answers each episode (told apart by its issue text) with scripted completions."""

    def __init__(self, tokenizer, scripts: dict[str, list[str]]):
        self.tokenizer, self.scripts = tokenizer, {k: list(v) for k, v in scripts.items()}
        self.end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def __call__(self, batch, max_new_tokens):
        out = []
        for ids in batch:
            text = self.tokenizer.decode(ids)
            iid = next(i for i in self.scripts if ROWS[i]["problem_statement"].strip()[:40] in text)
            out.append(self.tokenizer(self.scripts[iid].pop(0), add_special_tokens=False)["input_ids"] + [self.end])
        return out


def expert_completions(iid: str) -> list[str]:
    (traj,) = read_file(trajectory_path(iid))
    return [f"<think>{s.thought}</think>\n\n{render(s.action)}" for s in traj.steps]


def test_an_expert_episode_is_the_chat_template_token_for_token(pool, tokenizer):
    completions = expert_completions(LEAP)
    config = RolloutConfig(prompt=StepConfig(observation_tokens=64, issue_tokens=128), max_episode_tokens=100_000)
    config.episode.step_limit = 50
    tokens = ConversationTokens(tokenizer, SYSTEM_PROMPT)
    truncate = Truncator(tokenizer)
    (run,) = run_rollouts([ROWS[LEAP]], Scripted(tokenizer, {LEAP: completions}), tokens, pool, config, truncate)

    assert run.reward == 1.0 and run.record["status"] == "resolved" and run.turns == len(completions)
    assert run.record["exit_status"] == "submitted"
    # The same conversation, rendered by the chat template from messages.
    issue = issue_turn(ROWS[LEAP]["problem_statement"].strip(), config.prompt, truncate)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": issue}]
    for completion, step in zip(completions, run.record["steps"], strict=True):
        messages.append({"role": "assistant", "content": completion})
        messages.append({"role": "user", "content": truncate(step["observation"], 64)})
    text = tokenizer.apply_chat_template(messages[:-1], tokenize=False)  # ends after the last (submit) turn
    expected = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert run.prompt_ids + run.completion_ids == expected[: len(run.prompt_ids) + len(run.completion_ids)]
    assert len(expected) - len(run.prompt_ids) - len(run.completion_ids) <= 1  # the template's newline after the end
    # Exactly the model's tokens are unmasked.
    model_tokens = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) + 1 for c in completions)
    assert len(run.env_mask) == len(run.completion_ids) and sum(run.env_mask) == model_tokens
    masked = [t for t, m in zip(run.completion_ids, run.env_mask, strict=True) if m]
    assert tokenizer.decode(masked, skip_special_tokens=True) == "".join(completions)


def test_a_malformed_turn_is_answered_and_counts_toward_the_format_error_limit(pool, tokenizer):
    """The engine's one budget rule, as in evaluation: malformed turns are not steps; format_error_limit of
    them in a row end the episode."""
    submit = "<think>Done.</think>\n\n<function=submit>\n</function>"
    config = RolloutConfig(max_episode_tokens=100_000)
    config.episode.step_limit, config.episode.format_error_limit = 2, 2
    tokens = ConversationTokens(tokenizer, SYSTEM_PROMPT)
    scripts = {LEAP: ["no think block here", submit], GET_IN: ["still wrong", "<think>x</think> nothing"]}
    runs = run_rollouts([ROWS[LEAP], ROWS[GET_IN]], Scripted(tokenizer, scripts), tokens, pool, config)
    leap, get_in = runs
    assert leap.record["format_errors"] == 1 and leap.record["exit_status"] == "submitted"
    assert "broke the format (no_think)" in tokenizer.decode(leap.completion_ids)
    assert get_in.record["format_errors"] == 2 and get_in.record["exit_status"] == "format_errors"
    assert leap.reward == get_in.reward == 0.0
    assert {leap.record["status"], get_in.record["status"]} == {"empty_patch"}


def test_train_rlvr_on_two_tasks_with_the_warmed_tiny_model(images, warm_tiny_model, tmp_path, run_label):
    out = tmp_path / "rlvr"
    cmd = [sys.executable, "-m", "srl_agent.cli", "train", "rlvr", "--model", str(warm_tiny_model),
           "--output-dir", str(out), "--recipe", "tiny", "--set", "rlvr.rollout.episode.step_limit=3", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in (out / "rewards.jsonl").read_text().splitlines()]
    # 2 optimizer steps × 2 tasks × 2 episodes, from the tiny recipe's rlvr section.
    assert summary["steps"] == 2 and summary["episodes"] == len(records) == 8
    assert sorted({r["instance_id"] for r in records}) == sorted([LEAP, GET_IN])
    assert sorted((r["global_step"], r["group"], r["generation"]) for r in records) == \
        sorted((s, g, k) for s in range(2) for g in range(2) for k in range(2))
    for r in records:
        assert r["kind"] == "rlvr" and r["reward"] == (1.0 if r["status"] == "resolved" else 0.0)
        assert len(r["steps"]) <= 3 and len(r["steps"]) + r["format_errors"] == r["turns"]
        # The one budget rule: 3 executed calls, or the tiny recipe's 3 malformed turns in a row, end it.
        assert r["exit_status"] in ("submitted", "step_limit", "format_errors", "length")
        assert (r["exit_status"] == "step_limit") == (len(r["steps"]) == 3 and r["steps"][-1]["tool"] != "submit")
        assert r["advantage"] is not None and r["seconds"]["grading"] > 0
        row = ROWS[r["instance_id"]]
        graded = r["FAIL_TO_PASS"]["success"] + r["FAIL_TO_PASS"]["failure"]
        assert sorted(graded) == sorted(row["FAIL_TO_PASS"])
    executed = [s for r in records for s in r["steps"]]
    assert executed, "the warmed model should run at least one tool call in a container"
    assert all(isinstance(s["observation"], str) for s in executed)
    assert summary["pool"]["created"] <= 4 and summary["pool"]["reused"] >= 4  # warm containers came back
    assert (out / "model.safetensors").exists()
    # The store summarises the run's episodes.
    done = subprocess.run([sys.executable, "-m", "srl_agent.cli", "inspect", str(out), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    episodes = json.loads(done.stdout.strip().splitlines()[-1])["episodes"]
    assert [(e["kind"], e["episodes"], e["resolved"]) for e in episodes] == \
        [("rlvr", 8, sum(r["status"] == "resolved" for r in records))]


def test_an_interrupted_rlvr_run_resumes_from_its_checkpoint(images, tmp_path):
    """1 step with a checkpoint, then --resume up to 2 steps: the log holds each step's episodes once."""
    out = tmp_path / "rlvr"
    base = [sys.executable, "-m", "srl_agent.cli", "train", "rlvr", "--output-dir", str(out), "--recipe", "tiny",
            "--set", "rlvr.rollout.max_new_tokens=8", "--set", "rlvr.rollout.episode.step_limit=1",
            "--save-steps", "1", "--json"]
    first = subprocess.run([*base, "--max-steps", "1"], capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "checkpoint-1").is_dir()
    second = subprocess.run([*base, "--max-steps", "2", "--resume"], capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] == str(out / "checkpoint-1") and summary["steps"] == 2
    steps = [json.loads(line)["global_step"] for line in (out / "rewards.jsonl").read_text().splitlines()]
    assert sorted(steps) == [0] * 4 + [1] * 4
