"""The command line's shared conventions: one ``--instance`` option (repeat, or comma lists) on every
command that takes tasks; bad input as one ``error:`` line and exit code 2; recipe keys checked by name;
and the prompt settings a real ``train sft`` run saves, read back by ``resolve`` and by ``eval``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from srl_agent.cli import app
from srl_agent.cli_util import instance_ids
from srl_agent.model_settings import (
    PromptSettings,
    read_settings,
    resolve,
    training_settings,
    with_saved_prompt,
    write_settings,
)
from srl_agent.prompts import SYSTEM_PROMPT
from srl_agent.train.recipe import RecipeError, resolve_recipe

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

SRL_AGENT = Path(sys.executable).with_name("srl-agent")


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------- --instance


def test_instance_ids_split_commas_and_keep_the_first_of_repeats():
    assert instance_ids(["a,b", "c", " d , a", ","]) == ["a", "b", "c", "d"]
    assert instance_ids(None) is None and instance_ids([]) is None


def _capture(monkeypatch, module: str, name: str, result):
    import importlib

    calls = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        return result

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    return calls


@pytest.mark.parametrize("spelling", [["--instance", "a,b", "--instance", "c"], ["--instance", "a", "--instance", "b,c"]])
def test_every_command_that_takes_tasks_takes_instance(monkeypatch, tmp_path, spelling):
    want = ["a", "b", "c"]
    calls = _capture(monkeypatch, "srl_agent.evaluation.run", "run_eval", {"submitted": 0, "predictions": None})
    res = invoke("eval", *spelling, "--no-score", "-o", tmp_path / "eval", "--json")
    assert res.exit_code == 0, res.output
    assert calls[-1][1]["instance_ids"] == want

    from srl_agent.readers import ReadReport
    from srl_agent.replay import ReplayReport, ReplayRun

    done = ReplayRun([ReplayReport("a", "a.jsonl", resolved=True)], [], ReadReport())
    calls = _capture(monkeypatch, "srl_agent.replay", "replay_trajectories", done)
    res = invoke("replay", *spelling, "--report", tmp_path / "report.json", "--json")
    assert res.exit_code == 0, res.output
    assert calls[-1][1]["instance_ids"] == want

    calls = _capture(monkeypatch, "srl_agent.train.rlvr", "train_rlvr", {"steps": 0})
    res = invoke("train", "rlvr", *spelling, "-o", tmp_path / "rlvr", "--json")
    assert res.exit_code == 0, res.output
    assert calls[-1][1]["overrides"]["rlvr.tasks"] == want

    calls = _capture(monkeypatch, "srl_agent.images", "build_images",
                     {"built": 0, "existing": 0, "seconds": 0, "images": []})
    res = invoke("env", "build", *spelling, "--json")
    assert res.exit_code == 0, res.output
    assert calls[-1][0][0] == want


def test_older_task_spellings_still_work(monkeypatch, tmp_path):
    calls = _capture(monkeypatch, "srl_agent.evaluation.run", "run_eval", {"submitted": 0, "predictions": None})
    assert invoke("eval", "--instances", "a,b", "--no-score", "-o", tmp_path, "--json").exit_code == 0
    assert calls[-1][1]["instance_ids"] == ["a", "b"]
    calls = _capture(monkeypatch, "srl_agent.train.rlvr", "train_rlvr", {"steps": 0})
    assert invoke("train", "rlvr", "--instance-id", "a", "--instance-id", "b", "-o", tmp_path, "--json").exit_code == 0
    assert calls[-1][1]["overrides"]["rlvr.tasks"] == ["a", "b"]


# ---------------------------------------------------------------- errors: one line, exit code 2


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("args, says", [
    (["eval", "--instance", "nope", "--gold"], "nope"),
    (["replay", "--instance", "nope"], "nope"),
    (["train", "rlvr", "--set", "rlvr.bogus=1"], "'bogus'"),
])
def test_the_real_command_refuses_bad_input_in_one_line(tmp_path, args, says):
    out = ["-o", str(tmp_path / "out")] if args[0] != "replay" else ["--report", str(tmp_path / "r.json")]
    done = subprocess.run([str(SRL_AGENT), *args, *out], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert says in _one_error_line(done.stderr)


@pytest.mark.parametrize("args, says", [
    (["eval", "--style", "nope"], "--style"),
    (["eval", "--context-steps", "some"], "--context-steps"),
    (["eval", "--predictions", "{tmp}/none.jsonl"], "none.jsonl"),
    (["replay"], "--instance"),
    (["env", "build", "--instance", "nope"], "nope"),
    (["prepare", "{tmp}/none", "--out", "{tmp}/steps.jsonl"], "none"),
    (["train", "sft", "--data", "{tmp}/none.jsonl", "-o", "{tmp}/sft"], "none.jsonl"),
    (["train", "sft", "--data", "x.jsonl", "-o", "{tmp}/sft", "--set", "sft.max_stepz=1"], "max_steps"),
    (["train", "srl", "--data", "x.jsonl", "-o", "{tmp}/srl", "--set", "nokey"], "key=value"),
    (["train", "srl", "--data", "x.jsonl", "-o", "{tmp}/srl", "--resume"], "checkpoint"),
    (["inspect", "{tmp}/none"], "none"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, says):
    res = invoke(*[a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    assert says in _one_error_line(res.stderr)


# ---------------------------------------------------------------- recipe keys


def test_unknown_recipe_keys_are_refused_by_name_with_the_known_ones():
    with pytest.raises(RecipeError, match=r"'learning_rat'.*did you mean learning_rate\?.*trl\.GRPOConfig"):
        resolve_recipe("tiny", {"grpo.learning_rat": 1})
    with pytest.raises(RecipeError, match=r"'bogus'.*known: .*observation_tokens.*issue_tokens"):
        resolve_recipe("tiny", {"rlvr.rollout.prompt.bogus": 1})
    with pytest.raises(RecipeError, match=r"'stepz'.*step_limit"):
        resolve_recipe("tiny", {"rlvr.rollout": {"episode": {"stepz": 1}}})  # keys inside a dict value too
    with pytest.raises(RecipeError, match=r"'max_stepz'.*trl\.SFTConfig"):
        resolve_recipe("tiny", {"sft.max_stepz": 1})
    with pytest.raises(RecipeError, match=r"model is a single value"):
        resolve_recipe("tiny", {"model.name": "x"})
    recipe = resolve_recipe("tiny", {"rlvr.rollout.prompt.issue_tokens": 7, "grpo.learning_rate": 0.5,
                                     "grpo.model_init_kwargs.dtype": "float32", "pipeline.eval.tasks": ["t"]})
    assert recipe["rlvr"]["rollout"]["prompt"]["issue_tokens"] == 7
    assert recipe["grpo"]["learning_rate"] == 0.5
    assert recipe["grpo"]["model_init_kwargs"] == {"dtype": "float32"}
    assert recipe["pipeline"]["eval"]["tasks"] == ["t"]


# ---------------------------------------------------------------- prompt settings


def test_settings_files_and_their_precedence(tmp_path):
    saved = PromptSettings(system_prompt="be brief", style="json", context_steps=3, observation_tokens=50,
                           issue_tokens=60, budgets="tokens", history="episode")
    write_settings(tmp_path, saved, source="a test")
    assert read_settings(tmp_path) == saved
    assert read_settings(tmp_path / "absent") is None and read_settings(None) is None
    assert read_settings("tiny") is None
    assert resolve(tmp_path / "absent") == PromptSettings()
    assert resolve(tmp_path, issue_tokens=None, history="window") == dataclasses.replace(saved, history="window")
    assert resolve(tmp_path, context_steps="all").context_steps is None
    with pytest.raises(ValueError, match="budgets"):
        resolve(tmp_path, budgets="words")
    # RLVR: what the recipe's rollout section sets wins; the model's file fills in the rest.
    rollout = with_saved_prompt(tmp_path, {"style": "xml", "prompt": {"observation_tokens": 9}, "max_new_tokens": 5})
    assert rollout == {"style": "xml", "max_new_tokens": 5,
                       "prompt": {"system_prompt": "be brief", "context_steps": 3, "observation_tokens": 9,
                                  "issue_tokens": 60}}


def test_step_file_without_a_sidecar_trains_with_defaults_and_says_so(tmp_path):
    steps = tmp_path / "steps.jsonl"
    steps.write_text("")
    settings, source = training_settings(steps, None)
    assert settings == PromptSettings() and source.startswith("defaults")
    given = PromptSettings(issue_tokens=5)
    assert training_settings(steps, given) == (given, "given by the caller")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A real two-step ``train sft`` run of the tiny model, with checkpoints, on steps prepared here."""
    from transformers import AutoTokenizer

    from srl_agent.models import resolve_model
    from srl_agent.models.tiny import TRAJECTORY_DIR
    from srl_agent.prepare import prepare
    from srl_agent.steps import StepConfig

    folder = tmp_path_factory.mktemp("settings")
    prepare([TRAJECTORY_DIR], folder / "steps.jsonl", StepConfig(context_steps=1, observation_tokens=16, issue_tokens=24),
            tokenizer=AutoTokenizer.from_pretrained(resolve_model(None)))
    res = invoke("train", "sft", "--data", folder / "steps.jsonl", "-o", folder / "sft", "--recipe", "tiny",
                 "--max-steps", "2", "--save-steps", "1", "--json")
    assert res.exit_code == 0, res.output
    # What this test prepared with: exact budgets (a tokenizer), XML actions, SRL's window prompts.
    want = PromptSettings(system_prompt=SYSTEM_PROMPT, style="xml", context_steps=1, observation_tokens=16,
                          issue_tokens=24, budgets="tokens", history="window")
    return {"model": folder / "sft", "want": want, "summary": json.loads(res.stdout.strip().splitlines()[-1])}


def test_train_sft_saves_the_settings_its_data_was_prepared_with(trained):
    model, want = trained["model"], trained["want"]
    assert read_settings(model) == want
    assert read_settings(model / "checkpoint-1") == want and read_settings(model / "checkpoint-2") == want
    assert trained["summary"]["prompt_settings"].endswith("steps.settings.json")
    assert resolve(model) == want
    assert resolve(model, observation_tokens=99, history="episode", style=None) == \
        dataclasses.replace(want, observation_tokens=99, history="episode")


def test_eval_prompts_as_trained_unless_a_flag_says_otherwise(trained, monkeypatch, tmp_path):
    model, want = trained["model"], trained["want"]
    calls = _capture(monkeypatch, "srl_agent.evaluation.run", "run_eval", {"submitted": 0, "predictions": None})
    assert invoke("eval", "--model", model, "--no-score", "-o", tmp_path, "--json").exit_code == 0
    kwargs = calls[-1][1]
    config = kwargs["agent_config"]
    assert kwargs["exact_budgets"] is True
    assert (config.style, config.history) == (want.style, want.history)
    assert (config.prompt.context_steps, config.prompt.observation_tokens, config.prompt.issue_tokens) == (1, 16, 24)

    res = invoke("eval", "--model", model, "--no-score", "-o", tmp_path, "--json", "--observation-tokens", "7",
                 "--character-budgets", "--history", "episode", "--context-steps", "all")
    assert res.exit_code == 0, res.output
    kwargs = calls[-1][1]
    config = kwargs["agent_config"]
    assert kwargs["exact_budgets"] is False and config.history == "episode"
    assert (config.prompt.context_steps, config.prompt.observation_tokens, config.prompt.issue_tokens) == (None, 7, 24)
