"""Chat transcripts (OpenAI-style message lists) to steps, shared by every message-based format.

An assistant turn yields one step; the observation is the content of the tool/user turn(s) that
follow it until the next assistant turn. How the action is written differs by style:
SWE-agent XML ``<function=…>`` text, a fenced block ("ticks", SWE-agent 0.x), a ```bash block
(mini-swe-agent) or OpenAI ``tool_calls``; ``detect_style`` picks one per transcript.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..actions import (
    ActionParseError,
    ParsedAction,
    bash_blocks,
    find_bash_blocks,
    find_xml_calls,
    last_fenced_block,
    normalise,
    parse_command_line,
    parse_json_arguments,
)
from ..schema import Step, ToolCall
from .base import ReadError

STYLES = ("xml", "tool_calls", "ticks", "bash_block")

# SWE-agent / SWE-smith mark tool output "OBSERVATION:"; OpenHands' non-function-calling transcripts
# (SWE-Gym SFT rows) "EXECUTION RESULT of [tool]:".
_OBS_PREFIX = re.compile(r"^(?:OBSERVATION:|EXECUTION RESULT of \[[\w.-]+\]:)\s?\n?")
_ISSUE_PATTERNS = (
    re.compile(r"<pr_description>\s*(.*?)\s*</pr_description>", re.S),
    re.compile(r"<issue_description>\s*(.*?)\s*</issue_description>", re.S),
    re.compile(r"ISSUE:\s*\n(.*?)\n\s*INSTRUCTIONS:", re.S),
    re.compile(r"<issue>\s*(.*?)\s*</issue>", re.S),
    re.compile(r"<pr_issue>\s*(.*?)\s*</pr_issue>", re.S),
)


def text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def extract_issue(text: str) -> str:
    """The issue inside a harness's task prompt, or the whole prompt when no known wrapper is found."""
    for pattern in _ISSUE_PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(1).strip()
    return text.strip()


def detect_style(messages: list[dict]) -> str:
    for m in messages:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            return "tool_calls"
    for m in messages:
        if m.get("role") == "assistant":
            content = text_of(m.get("content"))
            if find_xml_calls(content):
                return "xml"
            if bash_blocks(content) and "THOUGHT" in content:
                return "bash_block"
    return "ticks"


def tool_call_of(message: dict) -> tuple[str, dict[str, Any], str]:
    """(name, decoded arguments, raw arguments text) of an assistant message's single OpenAI tool call."""
    calls = message.get("tool_calls") or []
    if len(calls) != 1:
        raise ActionParseError(f"expected one tool call, found {len(calls)}", "tool_calls")
    fn = (calls[0].get("function") if isinstance(calls[0], dict) else None) or {}
    name = fn.get("name")
    if not isinstance(name, str):
        raise ActionParseError("tool call without a function name", "tool_calls.function.name")
    args = parse_json_arguments(fn.get("arguments"), "tool_calls.function.arguments")
    raw = fn.get("arguments") if isinstance(fn.get("arguments"), str) else str(args)
    return name, args, raw


ActionFn = Callable[[dict, str], tuple[str, ParsedAction, str]]


def action_from_message(message: dict, style: str) -> tuple[str, ParsedAction, str]:
    """(thought, action, raw action text) of one assistant message in the given style."""
    content = text_of(message.get("content"))
    if style == "tool_calls":
        name, args, raw = tool_call_of(message)
        return content.strip(), normalise(name, args, raw=f"{name} {raw}"), raw
    if style == "xml":
        calls = find_xml_calls(content)
        if len(calls) != 1:
            raise ActionParseError(f"expected one <function=…> call, found {len(calls)}", "content")
        name, params, start = calls[0]
        raw = content[start:].strip()
        return content[:start].strip(), normalise(name, params, raw=raw), raw
    if style == "bash_block":
        blocks = find_bash_blocks(content)
        if len(blocks) != 1:
            raise ActionParseError(f"expected one ```bash block, found {len(blocks)}", "content")
        block, start = blocks[0]
        # Everything before the action is thought, including any ```python sketches in it.
        thought = content[:start].strip()
        thought = thought[len("THOUGHT:"):].strip() if thought.startswith("THOUGHT:") else thought
        return thought, ParsedAction(ToolCall("bash", {"command": block})), block
    if style == "ticks":
        found = last_fenced_block(content)
        if found is None:
            raise ActionParseError("no fenced action block", "content")
        block, start = found
        return content[:start].strip(), parse_command_line(block), block
    raise ValueError(f"unknown style {style!r}")


def observation_text(message: dict) -> str:
    return _OBS_PREFIX.sub("", text_of(message.get("content")), count=1)


def steps_from_messages(
    messages: list[dict],
    style: str | None = None,
    *,
    observation: Callable[[dict], str] = observation_text,
    action: ActionFn = action_from_message,
    field: str = "messages",
    dropped: list[int] | None = None,
) -> list[Step]:
    """One step per assistant turn after the task prompt; observations are the turns that follow.

    ``action`` reads one assistant message (default ``action_from_message``); a reader passes its own
    where the format carries more than the message text (SWE-agent's ``action`` field, say).

    In the xml and tool_calls styles an assistant turn that calls no tool at all is a message to the
    user, not a step: it and the user's reply ("Please continue…") are left out, and its index goes
    to ``dropped``. A turn that tries to call and fails is an error, not a message."""
    style = style or detect_style(messages)
    steps: list[Step] = []
    talking = False  # after a message to the user, user turns are replies, not observations
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ReadError(f"message is {type(m).__name__}, not an object", field=f"{field}[{i}]")
        role = m.get("role")
        if role == "assistant" and _calls_nothing(m, style):
            talking = True
            if dropped is not None:
                dropped.append(i)
        elif role == "assistant":
            talking = False
            try:
                thought, parsed, raw = action(m, style)
            except ActionParseError as e:
                raise ReadError(str(e), field=f"{field}[{i}].{e.field}", reason=f"unparseable action ({style})") from None
            steps.append(Step(thought, parsed.call, raw, None, parsed.legacy))
        elif role in ("user", "tool") and steps and not talking:
            text = observation(m)
            prev = steps[-1].observation
            steps[-1].observation = text if prev is None else prev + "\n" + text
    return steps


def _calls_nothing(message: dict, style: str) -> bool:
    if style == "tool_calls":
        return not message.get("tool_calls")
    return style == "xml" and "<function=" not in text_of(message.get("content"))


def first_user_text(messages: list[dict]) -> str:
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            return text_of(m.get("content"))
    return ""


def system_text(messages: list[dict]) -> str:
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "system":
            return text_of(m.get("content"))
    return ""
