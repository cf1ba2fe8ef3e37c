"""mini-swe-agent trajectories: ``.traj.json`` (``{info, messages, trajectory_format, instance_id}``)
and the early test fixtures that are the bare ``messages`` list.

Every assistant turn is ``THOUGHT: …`` plus one ```bash block (```mswea_bash_command in the early
fixtures; OpenAI tool calls in v2's tool-call mode); the observation is the user turn that follows,
``<returncode>N</returncode><output>…</output>``, kept as the model saw it.

Submission: mini-swe-agent ends a run when a command's output starts with
``COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT`` (``MINI_SWE_AGENT_FINAL_OUTPUT`` before 1.0), which the
expert produces with ``echo <marker> && git add -A && git diff --cached``. That command means "submit
my changes", so a command whose first line echoes the marker becomes the ``submit`` tool; its raw
text stays in ``raw_action`` and the diff it printed is the step's observation.

Format errors: a turn without exactly one action block is never executed. mini-swe-agent answers it
with format-error feedback and the expert tries again. For SRL such a turn is a bad target (it
teaches the malformed output) and its feedback is not an environment observation, so both are
dropped and the retry is the step; ``format_error_turns`` lists them and the trajectory's
``dropped_turns`` counts them (``prepare`` reports the total). A turn also counts as one when the feedback follows it, in case our block regex and
mini-swe-agent's ever disagree on a response.
"""

from __future__ import annotations

import re
from typing import Any

from ..actions import ActionParseError, ParsedAction
from ..schema import Task, ToolCall, Trajectory
from .base import ReadError, dig, instance_id_from_source, register, require
from .chat import (
    action_from_message,
    detect_style,
    extract_issue,
    first_user_text,
    steps_from_messages,
    system_text,
    text_of,
)

_SUBMIT = re.compile(
    r"""echo\s+['"]?(COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT|MINI_SWE_AGENT_FINAL_OUTPUT)['"]?(\s|;|&|$)"""
)
_OBSERVATION = "<returncode>"
_FEEDBACK_HEAD = "Please always provide EXACTLY ONE action"  # mini-swe-agent 1.x's format_error_template
# The task wrappers of mini-swe-agent's default (swebench.yaml, default.yaml) instance templates.
_ISSUE_PREFIX = re.compile(r"^Consider the following PR description:\s*")
_PLAIN_TASK = re.compile(r"^Please solve this issue:\s*(.*?)\n\nYou can execute bash commands", re.S)


def _has_observation(messages: list) -> bool:
    return any(
        isinstance(m, dict) and m.get("role") == "user" and text_of(m.get("content")).startswith(_OBSERVATION)
        for m in messages
    )


def _is_mini(r: Any) -> bool:
    if isinstance(r, dict):
        fmt = r.get("trajectory_format")
        info = r.get("info")
        return (isinstance(fmt, str) and fmt.startswith("mini-swe-agent")) or (
            isinstance(r.get("messages"), list) and isinstance(info, dict) and "mini_version" in info
        )
    # an early fixture: the file loader hands over a bare message list as one record
    return isinstance(r, list) and bool(r) and _has_observation(r)


def _feedback_head(info: dict) -> str:
    template = dig(info, "config", "agent", "format_error_template")
    if isinstance(template, str):
        head = re.split(r"\{\{|\{%", template.strip(), maxsplit=1)[0].splitlines()
        if head and head[0].strip():
            return head[0].strip()
    return _FEEDBACK_HEAD


def format_error_turns(messages: list[dict], style: str, feedback_head: str = _FEEDBACK_HEAD) -> list[int]:
    """Indices of the assistant turns mini-swe-agent rejected for their format: followed by its
    feedback, or unreadable and not followed by an observation. An unreadable turn that *was*
    executed is left in, for the step builder to report as a parse error."""
    bad = []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        nxt = text_of(messages[i + 1].get("content")) if i + 1 < len(messages) else ""
        if nxt.startswith(feedback_head):
            bad.append(i)
            continue
        try:
            action_from_message(m, style)
        except ActionParseError:
            if not nxt.startswith(_OBSERVATION):
                bad.append(i)
    return bad


def _without_format_errors(messages: list[dict], bad: list[int]) -> list[dict]:
    """The transcript with each rejected turn and its feedback masked out (left in place, so that
    error fields still index the file's own messages)."""
    out = list(messages)
    for i in bad:
        out[i] = {"role": "format_error"}
        nxt = out[i + 1] if i + 1 < len(out) else {}
        if nxt.get("role") in ("user", "tool") and not text_of(nxt.get("content")).startswith(_OBSERVATION):
            out[i + 1] = {"role": "format_error"}
    return out


def _action(message: dict, style: str) -> tuple[str, ParsedAction, str]:
    thought, parsed, raw = action_from_message(message, style)
    command = parsed.call.arguments.get("command") if parsed.call.name == "bash" else None
    if isinstance(command, str) and _SUBMIT.match(command.strip().split("\n", 1)[0]):
        parsed = ParsedAction(ToolCall("submit", {}))
    return thought, parsed, raw


def _issue(prompt: str) -> str:
    plain = _PLAIN_TASK.search(prompt.strip())
    if plain:
        return plain.group(1).strip()
    return _ISSUE_PREFIX.sub("", extract_issue(prompt))


@register("minisweagent", _is_mini, "mini-swe-agent .traj.json (THOUGHT + one ```bash block per turn)")
def parse(record: dict | list, source: str) -> Trajectory:
    if isinstance(record, list):
        messages, info, instance_id = record, {}, ""
    else:
        messages = require(record, "messages", list)
        info = record.get("info") if isinstance(record.get("info"), dict) else {}
        instance_id = record.get("instance_id") if isinstance(record.get("instance_id"), str) else ""
    instance_id = instance_id or instance_id_from_source(source)
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ReadError(f"message is {type(m).__name__}, not an object", record=instance_id, field=f"messages[{i}]")
    style = "tool_calls" if detect_style(messages) == "tool_calls" else "bash_block"
    bad = format_error_turns(messages, style, _feedback_head(info))
    try:
        steps = steps_from_messages(_without_format_errors(messages, bad), style, action=_action)
    except ReadError as e:
        raise e.located("", instance_id) from None
    image = dig(info, "config", "environment", "image")
    submission = info.get("submission")
    return Trajectory(
        task=Task(
            instance_id=instance_id,
            problem_statement=_issue(first_user_text(messages)),
            image=image if isinstance(image, str) else "",
        ),
        steps=steps,
        source_format=f"minisweagent:{style}",
        submission=submission if isinstance(submission, str) else None,
        resolved=None,
        source=source,
        system_prompt=system_text(messages),
        dropped_turns=len(bad),
    )
