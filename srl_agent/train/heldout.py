"""Scoring a policy on held-out steps: one completion per step, the SRL step reward, the mean.

Generation is greedy by default (``temperature=0``: the same model always scores the same), or sampled
at a temperature with a fixed seed, ``samples`` completions per step. Completions are decoded as TRL
decodes them during training (special tokens skipped).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any


def generate(model_path: str | Path, prompts: list[list[dict[str, str]]], max_new_tokens: int,
             temperature: float = 0.0, seed: int = 0, batch_size: int = 8) -> list[str]:
    """One completion per chat prompt (greedy at temperature 0)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(model_path)).eval()
    if torch.cuda.is_available():
        model = model.to("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    # Batches of similar length waste less on padding; the order is restored at the end.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[str] = [""] * len(texts)
    torch.manual_seed(seed)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                                 temperature=temperature or None, top_p=None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id, cache_implementation="static")
        decoded = tokenizer.batch_decode(ids[:, enc["input_ids"].size(1):], skip_special_tokens=True)
        for i, text in zip(chunk, decoded, strict=True):
            out[i] = text
    return out


def score_heldout(model_path: str | Path, rows: list[dict[str, Any]], out: str | Path | None = None,
                  reward: dict[str, Any] | None = None, max_new_tokens: int = 256, temperature: float = 0.0,
                  samples: int = 1, seed: int = 0) -> dict[str, Any]:
    """Generate ``samples`` completions for every step in ``rows``, score each against the expert, write the
    scored rows to ``out``; the mean is over all completions."""
    from ..rewards import StepReward

    scorer = StepReward(**(reward or {}))
    rows = [row for row in rows for _ in range(samples if temperature > 0 else 1)]
    completions = generate(model_path, [r["prompt"] for r in rows], max_new_tokens, temperature, seed)
    rewards, errors = [], Counter()
    scored = []
    for row, completion in zip(rows, completions, strict=True):
        b = scorer(completion, row["expert_action"], row.get("expert_tool_call"), row.get("file_snapshot"),
                   row.get("step_diff"))
        rewards.append(b.reward)
        if b.format_error:
            errors[b.format_error] += 1
        scored.append({"instance_id": row.get("instance_id"), "step_index": row.get("step_index"),
                       "completion": completion, "reward": b.reward, "breakdown": b.to_dict()})
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scored), encoding="utf-8")
    n = len(rewards)
    return {
        "model": str(model_path),
        "steps": n,
        "mean_reward": sum(rewards) / n if n else None,
        "format_error_rate": sum(errors.values()) / n if n else None,
        "format_errors_by_reason": dict(errors),
        "tool_match_rate": sum(bool(r["breakdown"]["tool_match"]) for r in scored) / n if n else None,
        "out": None if out is None else str(out),
    }
