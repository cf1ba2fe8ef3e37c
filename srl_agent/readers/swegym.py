"""SWE-Gym ``OpenHands-Sampled-Trajectories`` rows: an OpenHands run as an OpenAI chat (``messages`` with
``tool_calls``, results as ``tool`` turns starting "OBSERVATION:"), its ``tools``, ``resolved`` and
``test_result.git_patch``. (The SFT rows, ``<function=execute_bash>`` text, go through the swesmith reader.)"""

from __future__ import annotations

import re
from typing import Any

from ..schema import Task, Trajectory
from .base import ReadError, register, require
from .chat import extract_issue, first_user_text, system_text
from .openhands import steps_from_tool_calls

# Hub samples suffix the instance id with a sample / row number; SWE-bench ids themselves end in "-<PR>".
_SAMPLE_SUFFIX = re.compile(r"_\d+$")


def task_instance_id(raw: str) -> str:
    return _SAMPLE_SUFFIX.sub("", raw)


def _is_swegym(r: Any) -> bool:
    return isinstance(r, dict) and "instance_id" in r and bool({"tools", "run_id"} & r.keys()) and "response" not in r


@register("swegym", _is_swegym, "SWE-Gym OpenHands-Sampled-Trajectories rows (messages with tool_calls)")
def parse(record: dict, source: str) -> Trajectory:
    raw_id = require(record, "instance_id", str)
    messages = require(record, "messages", list)
    test_result = record.get("test_result") or {}
    if not isinstance(test_result, dict):
        raise ReadError(
            f"expected dict, got {type(test_result).__name__}", field="test_result", reason="bad field test_result"
        )
    resolved = record.get("resolved")
    if resolved is None and isinstance(test_result.get("report"), dict):
        resolved = test_result["report"].get("resolved")
    return Trajectory(
        task=Task(instance_id=task_instance_id(raw_id), problem_statement=extract_issue(first_user_text(messages))),
        steps=steps_from_tool_calls(messages),
        source_format="swegym",
        submission=test_result.get("git_patch"),
        resolved=resolved if isinstance(resolved, bool) else None,
        source=source,
        system_prompt=system_text(messages),
    )
