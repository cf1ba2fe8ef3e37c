"""nebius ``SWE-agent-trajectories`` rows: ``trajectory`` turns ``{role: system|user|ai, text, system_prompt,
mask}``; each ``ai`` turn ends in a fenced SWE-agent 0.x command, the next ``user`` turn is its output."""

from __future__ import annotations

from typing import Any

from ..schema import Task, Trajectory
from .base import ReadError, register, require
from .chat import extract_issue, first_user_text, steps_from_messages
from .swegym import task_instance_id

_ROLES = {"system": "system", "user": "user", "ai": "assistant"}
_NEBIUS_KEYS = {"generated_patch", "target", "model_name", "eval_logs"}


def _is_nebius(r: Any) -> bool:
    # A SWE-agent .traj also has ``trajectory``, but as dict steps and next to ``history`` / ``info``.
    if not isinstance(r, dict) or "trajectory" not in r or {"history", "info"} & r.keys():
        return False
    turns = r["trajectory"]
    turn_shaped = isinstance(turns, list) and bool(turns) and isinstance(turns[0], dict) and "text" in turns[0]
    return turn_shaped or bool(_NEBIUS_KEYS & r.keys())


@register("nebius", _is_nebius, "nebius SWE-agent-trajectories rows (SWE-agent 0.x commands in ``` blocks)")
def parse(record: dict, source: str) -> Trajectory:
    instance_id = require(record, "instance_id", str)
    turns = require(record, "trajectory", list)
    messages, system = [], ""
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise ReadError(f"turn is {type(t).__name__}, not an object", field=f"trajectory[{i}]")
        if t.get("role") not in _ROLES:
            raise ReadError(f"unknown role {t.get('role')!r}", field=f"trajectory[{i}].role", reason="bad field role")
        if t["role"] == "system":
            system = system or str(t.get("system_prompt") or t.get("text") or "")
        messages.append({"role": _ROLES[t["role"]], "content": t.get("text") or ""})
    try:
        steps = steps_from_messages(messages, "ticks", field="trajectory")
    except ReadError as e:  # the chat walk says "content"; here the turn's field is "text"
        raise ReadError(e.message, field=e.field.replace(".content", ".text"), reason=e.reason) from None
    resolved = record.get("target")
    return Trajectory(
        task=Task(
            instance_id=task_instance_id(instance_id), problem_statement=extract_issue(first_user_text(messages))
        ),
        steps=steps,
        source_format="nebius",
        submission=record.get("generated_patch"),
        resolved=resolved if isinstance(resolved, bool) else None,
        source=source,
        system_prompt=system,
    )
