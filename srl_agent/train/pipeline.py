"""The main job end to end: prepare → split → SFT warm-up → held-out score → SRL → held-out score →
RLVR on task sandboxes → evaluation (agent mode, scored by the official harness).

``run_pipeline`` is what ``srl-agent pipeline`` and ``make demo`` run; each stage starts from the previous
stage's model. Each stage's summary is kept under its name in the result; the headline figures are
``heldout_reward_before`` (after the warm-up), ``heldout_reward_after`` (after SRL), the RLVR episodes'
resolve rate and the evaluation's ``resolve_rate``; the whole summary is also written to
``OUTPUT_DIR/summary.json``. The recipe's ``pipeline.rlvr`` / ``pipeline.eval`` set to false skip those
stages (they need the Docker engine and the task images).

Prompt settings: the pipeline prepares the steps itself (``pipeline.prepare``, budgets in the policy's
tokens), so it hands those settings to SFT and SRL, which save them with their models
(``srl-agent.json``); RLVR and the evaluation read them back from the model they start from, and the
evaluation's ``pipeline.eval`` keys ``style`` / ``history`` override them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..models.tiny import TRAJECTORY_DIR


def run_pipeline(
    trajectories: str | Path = TRAJECTORY_DIR,
    output_dir: str | Path = "runs/demo",
    recipe: str | Path | dict[str, Any] = "tiny",
    model: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from ..model_settings import PromptSettings
    from ..models import resolve_model
    from ..prepare import prepare
    from ..steps import StepConfig
    from .data import read_steps, split_by_trajectory, write_steps
    from .heldout import score_heldout
    from .recipe import resolve_recipe
    from .sft import train_sft
    from .srl import train_srl

    start = time.perf_counter()
    recipe = resolve_recipe(recipe, overrides)
    pipe = recipe.get("pipeline") or {}
    out = Path(output_dir)
    stages: dict[str, Any] = {}

    say("model: building or loading")
    base = resolve_model(model or recipe.get("model"))
    # Exact token budgets with the policy's own tokenizer.
    tokenizer = AutoTokenizer.from_pretrained(base)
    say(f"prepare: {trajectories}")
    step_config = StepConfig(**(pipe.get("prepare") or {}))
    stages["prepare"] = prepare([trajectories], out / "steps.jsonl", step_config, tokenizer=tokenizer)
    settings = PromptSettings.from_step_config(step_config, style="xml", budgets="tokens")
    train, heldout = split_by_trajectory(read_steps(out / "steps.jsonl"), pipe.get("heldout_fraction", 0.2),
                                         pipe.get("split_seed", 0))
    write_steps(train, out / "train.jsonl")
    write_steps(heldout, out / "heldout.jsonl")
    stages["split"] = {"train_steps": len(train), "heldout_steps": len(heldout),
                       "heldout_trajectories": sorted({r["instance_id"] for r in heldout})}

    def score(model_dir: Path, label: str) -> dict[str, Any]:
        say(f"score held-out ({label})")
        return score_heldout(model_dir, heldout, out / f"heldout-{label}.jsonl", recipe.get("reward"),
                             pipe.get("max_new_tokens", 256), pipe.get("temperature", 0.0),
                             pipe.get("samples", 1), recipe.get("seed", 0))

    say(f"sft warm-up on {len(train)} steps")
    stages["sft"] = train_sft(out / "train.jsonl", out / "sft", model=base, recipe=recipe, settings=settings)
    stages["heldout_before"] = score(out / "sft", "before")
    say("srl")
    stages["srl"] = train_srl(out / "train.jsonl", out / "srl", model=out / "sft", recipe=recipe, settings=settings)
    stages["heldout_after"] = score(out / "srl", "after")
    last = out / "srl"
    if pipe.get("rlvr", True) is not False:
        from .rlvr import train_rlvr

        say("rlvr")
        stages["rlvr"] = train_rlvr(pipe.get("tasks"), out / "rlvr", model=last, recipe=recipe)
        last = out / "rlvr"
    if pipe.get("eval", True) is not False:
        say("evaluation (agent mode, official harness)")
        stages["eval"] = _evaluate(last, out / "eval", recipe, pipe.get("tasks"))
    before, after = stages["heldout_before"], stages["heldout_after"]
    ds = stages["srl"].get("dynamic_sampling") or {}
    summary = {
        "heldout_reward_before": before["mean_reward"],
        "heldout_reward_after": after["mean_reward"],
        "heldout_format_error_rate_before": before["format_error_rate"],
        "heldout_format_error_rate_after": after["format_error_rate"],
        "heldout_tool_match_rate_before": before["tool_match_rate"],
        "heldout_tool_match_rate_after": after["tool_match_rate"],
        "train_steps": len(train),
        "heldout_steps": len(heldout),
        "sft_steps": stages["sft"]["steps"],
        "sft_loss_first": stages["sft"]["loss_first"],
        "sft_loss_last": stages["sft"]["loss_last"],
        "srl_steps": stages["srl"]["steps"],
        "srl_dropped_fraction": ds["groups_dropped"] / ds["groups_drawn"] if ds.get("groups_drawn") else None,
        "srl_reward_share": stages["srl"]["reward_share"],
        **_rlvr_figures(out / "rlvr" / "rewards.jsonl" if "rlvr" in stages else None),
        "eval_resolved": stages["eval"]["resolved"] if "eval" in stages else None,
        "eval_total": stages["eval"]["total"] if "eval" in stages else None,
        "eval_resolve_rate": stages["eval"]["resolve_rate"] if "eval" in stages else None,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "output_dir": str(out),
        "stages": stages,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    return summary


def _rlvr_figures(log: Path | None) -> dict[str, Any]:
    if log is None:
        return {"rlvr_episodes": None, "rlvr_resolved": None, "rlvr_tool_calls": None}
    from .rlvr import read_episodes

    episodes = read_episodes(log)
    return {"rlvr_episodes": len(episodes), "rlvr_resolved": sum(e.get("status") == "resolved" for e in episodes),
            "rlvr_tool_calls": sum(len(e.get("steps") or ()) for e in episodes)}


def _evaluate(model_dir: Path, out: Path, recipe: dict[str, Any], tasks: str | None) -> dict[str, Any]:
    """Agent mode on the evaluation tasks, prompted as the last stage trained the policy (its
    ``srl-agent.json``: RLVR's episode chat after RLVR, else the SRL step prompts)."""
    from ..agent import AgentConfig
    from ..evaluation import run_eval
    from ..model_settings import resolve

    pipe = recipe.get("pipeline") or {}
    settings = dict(pipe.get("eval") or {})
    ids = settings.pop("tasks", None) or (recipe.get("rlvr") or {}).get("tasks") or None
    prompt = resolve(model_dir, style=settings.pop("style", None), history=settings.pop("history", None))
    config = AgentConfig(prompt=prompt.step_config(), style=prompt.style, history=prompt.history, **settings)
    summary = run_eval(model=str(model_dir), dataset=tasks, mode="agent", output_dir=out, instance_ids=ids,
                       agent_config=config, exact_budgets=prompt.exact_budgets)
    return {k: v for k, v in summary.items() if k != "instances"} | {"instances": [
        {k: i.get(k) for k in ("instance_id", "resolved", "exit_status", "steps", "format_errors")}
        for i in summary.get("instances", [])]}
