"""Step instances as training data: the SRL and SFT datasets, and the split by trajectory."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..steps import read_step_file

# What the SRL reward and the reward log read; the rest of a step row stays out of the batches.
SRL_COLUMNS = ("prompt", "expert_action", "expert_tool_call", "file_snapshot", "step_diff", "instance_id", "step_index",
               "source")


def _check_srl_row(row: dict[str, Any]) -> None:
    if not isinstance(row.get("prompt"), list) or not isinstance(row.get("expert_action"), str):
        raise KeyError("prompt / expert_action")


def read_steps(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a step-instance file (``srl-agent prepare``); errors name the file and line."""
    rows = [row for row, _ in read_step_file(path, _check_srl_row)]
    if not rows:
        raise ValueError(f"{path}: no step instances")
    return rows


def write_steps(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def srl_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` for ``GRPOTrainer``: conversational ``prompt`` plus the reward's columns.

    ``expert_tool_call`` travels as JSON text: its arguments differ from tool to tool, and Arrow would
    turn them into one struct with nulls for every missing key (``CollectingReward`` decodes it).
    """
    from datasets import Dataset

    return Dataset.from_list([
        {
            "prompt": row["prompt"],
            "expert_action": row["expert_action"],
            "expert_tool_call": json.dumps(row.get("expert_tool_call")),
            "file_snapshot": row.get("file_snapshot"),
            "step_diff": row.get("step_diff"),
            "instance_id": str(row.get("instance_id", "")),
            "step_index": int(row.get("step_index", -1)),
            "source": str(row.get("source", "")),
        }
        for row in rows
    ])


def sft_target(row: dict[str, Any]) -> str | None:
    """What the policy should write at a step: the expert's thought, then its action (None without a thought)."""
    thought = (row.get("expert_thought") or "").strip()
    return f"<think>{thought}</think>\n{row['expert_action']}" if thought else None


def sft_dataset(rows: list[dict[str, Any]]) -> tuple[Any, int]:
    """Prompt–completion rows for ``SFTTrainer`` (loss on the completion only), and how many steps had no thought.

    A step without a thought is left out: the format requires a non-empty ``<think>`` block, so
    training on ``<think></think>`` would teach a format error.
    """
    from datasets import Dataset

    examples, skipped = [], 0
    for row in rows:
        target = sft_target(row)
        if target is None:
            skipped += 1
            continue
        examples.append({"prompt": row["prompt"], "completion": [{"role": "assistant", "content": target}]})
    if not examples:
        raise ValueError("no step has an expert thought to train on")
    return Dataset.from_list(examples), skipped


def split_by_trajectory(
    rows: list[dict[str, Any]], heldout_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train / held-out rows, whole trajectories on one side (a fixed-seed shuffle of the sorted trajectory keys).

    At least one trajectory goes to each side when there are two or more.
    """
    keys = sorted({(r.get("instance_id", ""), r.get("source", "")) for r in rows})
    random.Random(seed).shuffle(keys)
    n = max(1, round(heldout_fraction * len(keys))) if len(keys) > 1 else 0
    n = min(n, len(keys) - 1)
    held = set(keys[:n])
    train = [r for r in rows if (r.get("instance_id", ""), r.get("source", "")) not in held]
    heldout = [r for r in rows if (r.get("instance_id", ""), r.get("source", "")) in held]
    return train, heldout
