"""Recipes: the training settings as YAML, merged with the command line.

A recipe has these sections (``srl_agent/recipes/srl.yaml`` documents each key):

- ``model``: hub id or local path; null = the offline tiny model;
- ``reward``: the SRL step reward (``mode``, ``similarity``, ``style``);
- ``dynamic_sampling``: ``enabled``, ``epsilon``, ``max_rounds``;
- ``prompts_per_step``: the effective batch in prompts; the accumulation steps are derived from it;
- ``lora``: null, or peft ``LoraConfig`` keyword arguments;
- ``grpo`` / ``sft``: keyword arguments of TRL's ``GRPOConfig`` / ``SFTConfig``, passed through;
- ``rlvr``: the RLVR stage (``srl_agent/train/rlvr.py``): tasks, tasks per step, ``grpo`` keys of its own,
  the rollout (style, token budgets, episode limits) and the sandbox pool's bound;
- ``ray``: ``address`` (a Ray cluster for RLVR's episodes; null: the local engine) and ``max_sandboxes``
  (per node; null: the ``docker`` resource the node declared);
- ``pipeline``: the demo's settings (prepare budgets, split, scoring).

Overrides are dotted keys (``grpo.learning_rate=1e-5``); only keys the user gave are touched, so a
flag changes what it names and nothing else. A key a section does not take is refused, naming the key
and the section's keys (``grpo`` / ``sft``: the fields of TRL's config classes).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SECTIONS = ("model", "seed", "reward", "dynamic_sampling", "prompts_per_step", "lora", "grpo", "sft", "rlvr", "ray",
            "pipeline")
DEFAULT_LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and key."""


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("srl_agent.recipes").iterdir() if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str | Path = "srl") -> dict[str, Any]:
    """A bundled recipe by name (``srl``, ``tiny``) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        bundled = resources.files("srl_agent.recipes") / f"{name_or_path}.yaml"
        if not bundled.is_file():
            raise RecipeError(f"no recipe {name_or_path!r}; bundled: {', '.join(recipe_names())}, or a .yaml path")
        text, where = bundled.read_text(encoding="utf-8"), f"recipes/{name_or_path}.yaml"
    else:
        if not path.is_file():
            raise RecipeError(f"no such recipe file: {path}")
        text, where = path.read_text(encoding="utf-8"), str(path)
    recipe = yaml.safe_load(text) or {}
    unknown = set(recipe) - set(SECTIONS)
    if unknown:
        raise RecipeError(f"{where}: unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    recipe["_source"] = where
    return recipe


def resolve_recipe(recipe: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A recipe by name, path or as a dict, with ``overrides`` applied."""
    base = recipe if isinstance(recipe, dict) else load_recipe(recipe)
    return apply_overrides(base, overrides or {})


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML (``true``, ``[a, b]``, ``null``), with ``1e-5``-style floats that YAML 1.1 leaves as text."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            return value
    return value


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: expected key=value, e.g. grpo.learning_rate=1e-5")
        out[key.strip()] = parse_value(value)
    return out


def _fields(cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _trl_fields(name: str) -> list[str]:
    import trl

    return _fields(getattr(trl, name))


def _section_keys(path: tuple[str, ...]) -> tuple[list[str], str] | None:
    """The keys the recipe section at ``path`` takes and what defines them; None where any key goes
    (below a known key, e.g. ``grpo.model_init_kwargs.*``, or a dict-valued setting)."""
    if path in (("grpo",), ("rlvr", "grpo")):
        return _trl_fields("GRPOConfig"), "the fields of trl.GRPOConfig"
    if path == ("sft",):
        return _trl_fields("SFTConfig"), "the fields of trl.SFTConfig"
    if path in (("model",), ("seed",), ("prompts_per_step",)):
        return [], "a single value, not a section"
    if path == ("reward",):
        from ..rewards import srl_reward

        return [k for k in inspect.signature(srl_reward).parameters if k != "log"], "srl_agent.rewards.srl_reward"
    if path == ("dynamic_sampling",):
        from .dynamic_sampling import DynamicSampling

        return _fields(DynamicSampling), "srl_agent.train.dynamic_sampling.DynamicSampling"
    if path == ("lora",):
        from peft import LoraConfig

        return _fields(LoraConfig), "the fields of peft.LoraConfig"
    if path in (("rlvr", "rollout", "prompt"), ("pipeline", "prepare")):
        from ..steps import StepConfig

        return _fields(StepConfig), "srl_agent.steps.StepConfig"
    if path == ("rlvr",):
        return ["tasks", "tasks_per_step", "max_sandboxes", "grpo", "rollout"], "srl_agent.train.rlvr"
    if path == ("ray",):
        return ["address", "max_sandboxes"], "srl_agent.engine.cluster (RLVR on a Ray cluster)"
    if path == ("rlvr", "rollout"):
        from .rollouts import RolloutConfig

        return _fields(RolloutConfig), "srl_agent.train.rollouts.RolloutConfig"
    if path == ("rlvr", "rollout", "episode"):
        from ..engine import EpisodeConfig

        return _fields(EpisodeConfig), "srl_agent.engine.EpisodeConfig"
    if path == ("pipeline",):
        return ["prepare", "heldout_fraction", "split_seed", "max_new_tokens", "temperature", "samples", "rlvr",
                "eval", "tasks"], "srl_agent.train.pipeline"
    if path == ("pipeline", "eval"):
        from ..agent import AgentConfig

        return [k for k in _fields(AgentConfig) if k != "prompt"] + ["tasks"], "srl_agent.agent.AgentConfig"
    return None


def check_key(key: str, value: Any = None) -> None:
    """Refuse a dotted override key (or a key inside a dict ``value``) that its section does not take."""
    parts = key.split(".")
    if parts[0] not in SECTIONS:
        raise RecipeError(f"override {key!r}: unknown section {parts[0]!r}; known: {', '.join(SECTIONS)}")
    for i in range(1, len(parts)):
        known = _section_keys(tuple(parts[:i]))
        if known is None:
            return
        names, where = known
        if parts[i] not in names:
            section = ".".join(parts[:i])
            if not names:
                raise RecipeError(f"override {key!r}: {section} is {where}")
            close = difflib.get_close_matches(parts[i], names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            listed = where if len(names) > 20 else f"{', '.join(names)} ({where})"
            raise RecipeError(f"override {key!r}: {section} has no key {parts[i]!r}{hint}; known: {listed}")
    if isinstance(value, dict):
        for sub, v in value.items():
            check_key(f"{key}.{sub}", v)


def apply_overrides(recipe: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``recipe`` with each dotted key set; ``None`` values (flags not given) are skipped."""
    recipe = copy.deepcopy(recipe)
    for key, value in overrides.items():
        if value is None:
            continue
        check_key(key, value)
        parts = key.split(".")
        node = recipe
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        # An explicit accumulation setting replaces the derived one.
        if key == "grpo.gradient_accumulation_steps" and "prompts_per_step" not in overrides:
            recipe["prompts_per_step"] = None
    return recipe


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _precision(kwargs: dict[str, Any]) -> None:
    """``bf16: auto`` = bf16 where a CUDA device supports it (the paper's setting), fp32 elsewhere."""
    if kwargs.get("bf16") == "auto":
        import torch

        kwargs["bf16"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _common(recipe: dict[str, Any], section: str, output_dir: str | Path) -> dict[str, Any]:
    kwargs = dict(recipe.get(section) or {})
    kwargs["output_dir"] = str(output_dir)
    kwargs.setdefault("seed", recipe.get("seed", 42))
    kwargs.setdefault("report_to", "none")
    _precision(kwargs)
    return kwargs


def grpo_config(recipe: dict[str, Any], output_dir: str | Path):
    """TRL ``GRPOConfig`` from the recipe; ``prompts_per_step`` sets the accumulation for this world size."""
    from trl import GRPOConfig

    kwargs = _common(recipe, "grpo", output_dir)
    prompts = recipe.get("prompts_per_step")
    if prompts:
        per_device = kwargs.get("per_device_train_batch_size", 8)
        completions = prompts * kwargs.get("num_generations", 8)
        per_pass = per_device * world_size()
        if completions % per_pass:
            raise RecipeError(f"{recipe.get('_source')}: prompts_per_step × num_generations = {completions} completions is "
                              f"not a multiple of per_device_train_batch_size × processes = {per_pass}")
        kwargs["gradient_accumulation_steps"] = completions // per_pass
    try:
        return GRPOConfig(**kwargs)
    except TypeError as e:
        raise RecipeError(f"{recipe.get('_source')}: grpo: {e}") from None


def sft_config(recipe: dict[str, Any], output_dir: str | Path):
    from trl import SFTConfig

    kwargs = _common(recipe, "sft", output_dir)
    try:
        return SFTConfig(**kwargs)
    except TypeError as e:
        raise RecipeError(f"{recipe.get('_source')}: sft: {e}") from None


def lora_config(recipe: dict[str, Any]):
    """peft ``LoraConfig`` when the recipe asks for LoRA (``lora: true`` = the defaults), else None."""
    lora = recipe.get("lora")
    if not lora:
        return None
    from peft import LoraConfig

    kwargs = {**DEFAULT_LORA, **(lora if isinstance(lora, dict) else {})}
    kwargs.setdefault("task_type", "CAUSAL_LM")
    return LoraConfig(**kwargs)
