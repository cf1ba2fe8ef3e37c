"""Recipes: the paper's defaults, the merge order (file < --set < flags), derived accumulation, clear errors."""

from __future__ import annotations

import pytest

from srl_agent.train.recipe import (
    RecipeError,
    apply_overrides,
    grpo_config,
    load_recipe,
    lora_config,
    parse_assignments,
    sft_config,
)


def test_srl_recipe_has_the_paper_defaults(tmp_path):
    recipe = load_recipe("srl")
    args = grpo_config(recipe, tmp_path)
    assert (args.beta, args.num_generations, args.temperature, args.learning_rate) == (0.0, 8, 1.0, 5e-7)
    # 512 prompts × 8 completions per optimizer step, through accumulation.
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 512 * 8
    assert args.bf16 is False  # bf16: auto, and this machine has no CUDA
    assert recipe["dynamic_sampling"]["enabled"] and recipe["reward"]["mode"] == "tool-aware"


def test_accumulation_follows_the_number_of_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    args = grpo_config(load_recipe("srl"), tmp_path)
    assert args.gradient_accumulation_steps * args.per_device_train_batch_size * 4 == 512 * 8
    with pytest.raises(RecipeError, match="not a multiple"):
        grpo_config(apply_overrides(load_recipe("srl"), {"prompts_per_step": 3}), tmp_path)


def test_overrides_touch_only_what_they_name():
    base = load_recipe("srl")
    sets = parse_assignments(["grpo.learning_rate=1e-6", "grpo.report_to=[tensorboard, wandb]", "lora=true",
                              "dynamic_sampling.enabled=false"])
    flags = {"grpo.learning_rate": 2e-6, "grpo.max_steps": None}  # an explicit flag beats --set; None = not given
    recipe = apply_overrides(apply_overrides(base, sets), flags)
    assert recipe["grpo"]["learning_rate"] == 2e-6
    assert recipe["grpo"]["report_to"] == ["tensorboard", "wandb"]
    assert "max_steps" not in recipe["grpo"]
    assert recipe["grpo"]["num_generations"] == base["grpo"]["num_generations"]
    assert recipe["dynamic_sampling"] == {**base["dynamic_sampling"], "enabled": False}
    assert base["grpo"]["learning_rate"] == 5e-7  # the loaded recipe is not modified
    assert lora_config(recipe).r == 16


def test_explicit_accumulation_replaces_the_derived_one(tmp_path):
    recipe = apply_overrides(load_recipe("srl"), {"grpo.gradient_accumulation_steps": 3})
    assert recipe["prompts_per_step"] is None
    assert grpo_config(recipe, tmp_path).gradient_accumulation_steps == 3


def test_values_parse_like_yaml_with_exponent_floats():
    got = parse_assignments(["a.b=1e-5", "a.c=3", "a.d=none", "a.e=null", "a.f=text", "a.g=0.5"])
    assert got == {"a.b": 1e-5, "a.c": 3, "a.d": "none", "a.e": None, "a.f": "text", "a.g": 0.5}
    with pytest.raises(RecipeError, match="key=value"):
        parse_assignments(["grpo.learning_rate"])


def test_errors_name_the_recipe_and_key(tmp_path):
    with pytest.raises(RecipeError, match="no recipe 'nope'"):
        load_recipe("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo: {not_a_field: 1}\n")
    with pytest.raises(RecipeError, match="bad.yaml: grpo: .*not_a_field"):
        grpo_config(load_recipe(bad), tmp_path)
    bad.write_text("gpro: {}\n")
    with pytest.raises(RecipeError, match="unknown section"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="unknown section"):
        apply_overrides(load_recipe("srl"), {"gpro.beta": 0.1})


@pytest.mark.parametrize("name", ["srl", "tiny"])
def test_bundled_recipes_build_both_configs(name, tmp_path):
    recipe = load_recipe(name)
    assert grpo_config(recipe, tmp_path).num_generations == recipe["grpo"]["num_generations"]
    assert sft_config(recipe, tmp_path).completion_only_loss in (None, True)


def test_use_vllm_without_vllm_is_a_clear_error(tmp_path):
    import importlib.util

    from srl_agent.train import train_srl
    from srl_agent.train.common import TrainError

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(TrainError, match="vLLM is not installed"):
        train_srl(tmp_path / "steps.jsonl", tmp_path, recipe="tiny", overrides={"grpo.use_vllm": True})
