"""The main job end to end: prepare → split → SFT warm-up → held-out score → SRL → held-out score.

``run_pipeline`` is what ``srl-agent pipeline`` and ``make demo`` run. Each stage's summary is kept
under its name in the result (later stages, RLVR and evaluation, append theirs the same way); the
headline figures are ``heldout_reward_before`` (after the warm-up) and ``heldout_reward_after`` (after SRL);
the whole summary is also written to ``OUTPUT_DIR/summary.json``.
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
    stages["prepare"] = prepare([trajectories], out / "steps.jsonl", StepConfig(**(pipe.get("prepare") or {})),
                                tokenizer=tokenizer)
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
    stages["sft"] = train_sft(out / "train.jsonl", out / "sft", model=base, recipe=recipe)
    stages["heldout_before"] = score(out / "sft", "before")
    say("srl")
    stages["srl"] = train_srl(out / "train.jsonl", out / "srl", model=out / "sft", recipe=recipe)
    stages["heldout_after"] = score(out / "srl", "after")
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
        "wall_seconds": round(time.perf_counter() - start, 1),
        "output_dir": str(out),
        "stages": stages,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    return summary
