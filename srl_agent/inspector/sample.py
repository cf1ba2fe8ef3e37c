"""Completions that exercise the step reward on real steps: the expert's own action, near misses of it
(``rewards.perturb``) and broken formats. A short, real scoring run for demos and tests::

    rows = sample_completions(read_steps("steps.jsonl"))   # then srl-agent score --completions ...
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..actions import render
from ..jsonl import read_jsonl
from ..rewards.perturb import perturbations
from ..schema import ToolCall

BUNDLED = Path(__file__).resolve().parents[2] / "trajectories"
# Each step gets one of these in turn: a format error of each kind the reward knows.
BROKEN = ("no_think", "multiple_calls", "unknown_tool", "no_call")


def _broken(kind: str, action: str) -> str:
    if kind == "no_think":
        return action
    if kind == "multiple_calls":
        return f"<think>Two at once.</think>\n{action}\n{action}"
    if kind == "unknown_tool":
        return "<think>Run it in Python.</think>\n<function=python>\n<parameter=code>print(1)</parameter>\n</function>"
    return "<think>I am not sure what to do next.</think>\nLet me think about it."


def sample_completions(steps: list[dict[str, Any]], broken_every: int = 1) -> list[dict[str, Any]]:
    """Completion rows (instance_id, step_index, source, label, completion) for ``srl-agent score``.

    Per step: the expert's action, each near miss, and (every ``broken_every`` steps) one broken format.
    """
    commands: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in steps:
        call = row.get("expert_tool_call") or {}
        if call.get("name") == "bash":
            commands[(row["instance_id"], row.get("source", ""))].append(call["arguments"].get("command", ""))
    out = []
    for n, row in enumerate(steps):
        key = {"instance_id": row["instance_id"], "step_index": row["step_index"], "source": row.get("source", "")}
        thought = (row.get("expert_thought") or "").strip() or "Next step."
        out.append({**key, "label": "expert", "completion": f"<think>{thought}</think>\n{row['expert_action']}"})
        call = ToolCall.from_dict(row["expert_tool_call"])
        for label, miss in perturbations(call, commands[(key["instance_id"], key["source"])]).items():
            out.append({**key, "label": label, "completion": f"<think>{thought}</think>\n{render(miss)}"})
        if n % broken_every == 0:
            kind = BROKEN[(n // broken_every) % len(BROKEN)]
            out.append({**key, "label": kind, "completion": _broken(kind, row["expert_action"])})
    return out


def scored_run(folder: str | Path, trajectories: str | Path | None = None, **score_options: Any) -> dict[str, Any]:
    """A short real scoring run in ``folder``: ``steps.jsonl`` (prepare), ``completions.jsonl`` (above),
    ``scored.jsonl`` (``score_file``). Returns the paths and the score summary."""
    from ..prepare import prepare
    from ..rewards.score import score_file

    folder = Path(folder)
    steps = folder / "steps.jsonl"
    prepare([str(trajectories or BUNDLED)], steps)
    rows = [row for _, row in read_jsonl(steps)]
    completions = folder / "completions.jsonl"
    completions.write_text("".join(json.dumps(r) + "\n" for r in sample_completions(rows)), encoding="utf-8")
    summary = score_file(steps, completions, folder / "scored.jsonl", **score_options)
    return {"steps": steps, "completions": completions, "scored": folder / "scored.jsonl", "summary": summary}
