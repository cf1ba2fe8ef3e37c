"""Scoring a file of completions against a file of step instances (``srl-agent score``).

Completion rows carry ``instance_id``, ``step_index`` and ``completion`` (a string or a list of
messages), and may carry ``source`` to pick one trajectory where several share an instance id. Each
scored row is written back with ``reward`` and ``breakdown``. A row that cannot be scored — bad JSON,
missing fields, no such step, an ambiguous step — is not written, but counted by reason and named
(file:line, instance_id/step_index) in the summary's ``problems``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..jsonl import JsonlError, read_jsonl
from ..steps import read_step_file
from .step_reward import DEFAULT_MODE, StepReward

MAX_PROBLEMS = 50
_EXPERT_FIELDS = ("expert_action", "expert_tool_call", "file_snapshot", "step_diff")


def load_steps(path: str | Path) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The expert columns of a step-instance file, by (instance_id, step_index); prompts are dropped."""
    steps: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row, key in read_step_file(path, _expert_key):
        steps[key].append({**{k: row.get(k) for k in _EXPERT_FIELDS}, "source": row.get("source", "")})
    return steps


def _expert_key(row: dict[str, Any]) -> tuple[str, int]:
    if not isinstance(row.get("expert_action"), str):
        raise KeyError("expert_action")
    return str(row["instance_id"]), int(row["step_index"])


def _step_index(value: Any) -> int:
    """A step index as written: a whole number (1.5, NaN or Infinity would silently name another step)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"step_index {value!r} is not a whole number ≥ 0")
    return value


def _tool_key(step: dict[str, Any]) -> str:
    call = step.get("expert_tool_call") or {}
    name = call.get("name", "?")
    command = (call.get("arguments") or {}).get("command") if name == "str_replace_editor" else None
    return f"{name}:{command}" if command else name


def _find_step(candidates: list[dict[str, Any]], row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    if not candidates:
        return None, "missing_step"
    if "source" in row:
        candidates = [c for c in candidates if c["source"] == row["source"]]
        if not candidates:
            return None, "missing_step"
    if len({c["expert_action"] for c in candidates}) > 1:
        return None, "ambiguous_step"  # several trajectories, different experts: the row must name its source
    return candidates[0], None


def score_file(
    steps_path: str | Path,
    completions_path: str | Path,
    out_path: str | Path,
    mode: str = DEFAULT_MODE,
    similarity: str = "difflib",
    style: str = "xml",
    progress: Any = None,
) -> dict[str, Any]:
    """Score every completion row against its step; write the scored rows; return the summary."""
    scorer = StepReward(mode, similarity, style)
    steps = load_steps(steps_path)
    rows_read = scored = fallbacks = 0
    skipped: Counter = Counter()
    problems: list[str] = []
    errors: Counter = Counter()
    by_tool: dict[str, list[float]] = defaultdict(list)
    rewards: list[float] = []
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as out:
        for line_no, row in read_jsonl(completions_path, errors="yield"):
            rows_read += 1
            if progress is not None:
                progress(rows_read)
            where = f"{completions_path}:{line_no}"
            try:
                if isinstance(row, JsonlError):
                    raise row
                key = (str(row["instance_id"]), _step_index(row["step_index"]))
                completion = row["completion"]
                if not isinstance(completion, (str, list)):
                    raise TypeError(f"completion is {type(completion).__name__}, not text or a list of messages")
            except (KeyError, TypeError, ValueError) as e:
                skipped["unreadable_row"] += 1
                why = e.what if isinstance(e, JsonlError) else f"{type(e).__name__}: {e}"
                _note(problems, f"{where}: unreadable completion row ({why})")
                continue
            step, reason = _find_step(steps.get(key, []), row)
            if step is None:
                skipped[reason] += 1
                what = "no such step in " + str(steps_path) if reason == "missing_step" else "several trajectories have this step; give 'source'"
                _note(problems, f"{where}: instance_id={key[0]} step_index={key[1]}: {what}")
                continue
            b = scorer(completion, step["expert_action"], step["expert_tool_call"], step["file_snapshot"],
                       step["step_diff"])
            out.write(json.dumps({**row, "reward": b.reward, "breakdown": b.to_dict()}, ensure_ascii=False) + "\n")
            scored += 1
            rewards.append(b.reward)
            by_tool[_tool_key(step)].append(b.reward)
            if b.format_error:
                errors[b.format_error] += 1
            fallbacks += b.fallback
    n_errors = sum(errors.values())
    return {
        "mode": mode,
        "similarity": similarity,
        "style": style,
        "rows": rows_read,
        "scored": scored,
        "skipped": sum(skipped.values()),
        "skipped_by_reason": dict(skipped),
        "mean_reward": _mean(rewards),
        "format_errors": n_errors,
        "format_error_rate": n_errors / scored if scored else 0.0,
        "format_errors_by_reason": dict(errors),
        "fallbacks": fallbacks,
        "by_tool": {k: {"count": len(v), "mean_reward": _mean(v)} for k, v in sorted(by_tool.items())},
        "problems": problems,
        "out": str(out_path),
    }


def _note(problems: list[str], message: str) -> None:
    if len(problems) < MAX_PROBLEMS:
        problems.append(message)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
