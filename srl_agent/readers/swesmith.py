"""SWE-smith fine-tuning rows (local JSONL and the hub's SWE-smith-trajectories): ``messages`` in the
xml, ticks or tool-call style, tool results as ``OBSERVATION:`` user turns.

SWE-Gym's OpenHands-SFT-Trajectories rows are the same shape (XML ``<function=execute_bash>`` calls,
``EXECUTION RESULT of [execute_bash]:`` results) but carry only ``messages``; their instance id then
comes from the record's source.

Rows written by ``srl-agent replay --record`` also carry ``snapshots``: ``{step index: content of the
edited file before that step}``, which the patch-similarity reward needs."""

from __future__ import annotations

import json
from typing import Any

from ..schema import Task, Trajectory
from .base import ReadError, instance_id_from_source, register, require
from .chat import detect_style, extract_issue, first_user_text, steps_from_messages, system_text


def _is_swesmith(r: Any) -> bool:
    return (
        isinstance(r, dict)
        and isinstance(r.get("messages"), (list, str))
        and not {"tools", "trajectory_format", "response", "run_id"} & r.keys()
    )


@register("swesmith", _is_swesmith, "SWE-smith SFT rows: messages in xml / ticks / tool_calls style")
def parse(record: dict, source: str) -> Trajectory:
    instance_id = require(record, "instance_id", str) if "instance_id" in record else instance_id_from_source(source)
    messages = require(record, "messages", (list, str))
    if isinstance(messages, str):  # the hub stores the transcript as a JSON string
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError as e:
            raise ReadError(f"not a JSON list: {e.msg}", field="messages", reason="invalid JSON") from None
        if not isinstance(messages, list):
            raise ReadError("not a JSON list", field="messages", reason="bad field messages")
    style = detect_style(messages)
    dropped: list[int] = []
    steps = steps_from_messages(messages, style, dropped=dropped)
    snapshots = record.get("snapshots") or {}
    if not isinstance(snapshots, dict):
        raise ReadError(f"expected an object, got {type(snapshots).__name__}", field="snapshots", reason="bad field snapshots")
    for key, content in snapshots.items():
        if not (str(key).isdigit() and int(key) < len(steps) and isinstance(content, (str, type(None)))):
            raise ReadError(f"entry {key!r} is not a step index with file content", field=f"snapshots.{key}",
                            reason="bad field snapshots")
        steps[int(key)].snapshot = content
    return Trajectory(
        task=Task(instance_id=instance_id, problem_statement=extract_issue(first_user_text(messages))),
        steps=steps,
        source_format=f"swesmith:{style}",
        submission=record.get("patch"),
        resolved=record.get("resolved"),
        source=source,
        system_prompt=system_text(messages),
        dropped_turns=len(dropped),
    )
