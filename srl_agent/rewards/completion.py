"""Reading a policy completion: ``<think>…</think>`` and then exactly one tool call.

The call may be written in any of the styles models emit; the style the reward expects is a setting:

- ``xml``  (default, the canonical text): ``<function=NAME><parameter=P>…</parameter></function>``
- ``json`` (Qwen / Hermes templates): ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``
- ``bash`` (mini-swe-agent): one fenced ```` ```bash ```` block
- ``any``: whichever of the three appears; the count is over all of them together.

Parsing is strict about the count and lenient about whitespace. Text between the think block and the
call, or after the call, is not part of the action and is ignored (models often write a line of prose;
the reward only ever looks at the action). Anything else is a ``FormatError`` with a reason code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..actions import (
    MAX_JSON_DEPTH,
    ActionParseError,
    find_bash_blocks,
    find_xml_calls,
    load_json,
    normalise,
    parse_json_arguments,
)
from ..schema import EDITOR_COMMANDS, ToolCall

try:  # compiled at install (setup.py); without it every completion takes the general parser
    from ._xmlcall import canonical_action, read_canonical
except ImportError:
    canonical_action = read_canonical = None

STYLES = ("xml", "json", "bash", "any")
# The reason codes of a format error, in the order the checks run.
REASONS = ("not_text", "no_think", "no_call", "multiple_calls", "unknown_tool", "bad_arguments")
# Editor arguments the editor reads as text: from a JSON call they may be anything else.
_STRING_ARGS = ("file_text", "old_str", "new_str")

_THINK_RE = re.compile(r"\s*<think>(.*?)</think>", re.S)
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_FUNCTION_END = "</function>"


class FormatError(ValueError):
    """A completion that does not follow the format; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass
class ParsedCompletion:
    thought: str
    call: ToolCall
    style: str  # the style the call was written in (xml, json or bash)
    action: str | None = None  # render(call), when the completion wrote the call exactly so


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's conversational form (a list of messages).

    From messages, the assistant turns are joined. Chat templates that parse the response put the
    reasoning in ``reasoning_content`` and the calls in ``tool_calls``; both are written back as text
    (``<think>`` block, ``<tool_call>`` JSON) so one parser reads every form. Anything else (None, a
    number, a list of things that are not messages) has no text: "" here, ``not_text`` when parsed.
    """
    if isinstance(completion, str):
        return completion
    try:
        return read_text(completion)
    except FormatError:
        return ""


def read_text(completion: Any) -> str:
    """``completion_text``, raising ``FormatError`` for what has no text instead of giving ""."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        messages = [completion]
    elif isinstance(completion, (list, tuple)):
        messages = completion
    else:
        kind = type(completion).__name__
        raise FormatError("not_text", f"a completion is a string or a list of messages, not {kind}")
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise FormatError("not_text", f"message {i} is {type(m).__name__}, not an object")
        if m.get("role", "assistant") != "assistant":
            continue
        content = m.get("content") or ""
        if isinstance(content, (list, tuple)):  # content parts: [{"type": "text", "text": …}]
            texts = [p.get("text") or "" for p in content if isinstance(p, dict)]
            if not all(isinstance(t, str) for t in texts):
                raise FormatError("not_text", f"message {i} has a content part whose text is not a string")
            content = "".join(texts)
        elif not isinstance(content, str):
            raise FormatError("not_text", f"message {i} has content of type {type(content).__name__}")
        reasoning = m.get("reasoning_content") or m.get("thinking")
        if reasoning and not isinstance(reasoning, str):
            raise FormatError("not_text", f"message {i} has reasoning of type {type(reasoning).__name__}")
        if reasoning and "<think>" not in content:
            content = f"<think>{reasoning}</think>\n{content}"
        tool_calls = m.get("tool_calls") or []
        if not isinstance(tool_calls, (list, tuple)):
            raise FormatError("not_text", f"message {i} has tool_calls of type {type(tool_calls).__name__}")
        for tc in tool_calls:
            fn = tc.get("function", tc) if isinstance(tc, dict) else None
            if not isinstance(fn, dict):
                raise FormatError("not_text", f"message {i} has a tool call that is not an object")
            call = {"name": fn.get("name"), "arguments": fn.get("arguments")}
            content += "\n<tool_call>" + _call_json(call) + "</tool_call>"
        parts.append(content)
    return "\n".join(parts)


def _call_json(call: dict[str, Any]) -> str:
    # json.dumps recurses in C per level, so the depth is checked first, without recursing.
    stack = [(call, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, (list, tuple)):
            continue
        if depth >= MAX_JSON_DEPTH:  # a cycle ends here too
            raise FormatError("bad_arguments", f"a structured tool call nests deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in value)
    try:
        return json.dumps(call)
    except (TypeError, ValueError) as e:  # values JSON cannot write, keys it cannot, ints past the digit limit
        raise FormatError("bad_arguments", f"a structured tool call is not JSON: {e}") from None


# --- finding calls: each finder returns (style, name, arguments or raw JSON text, start, end) ------


def _xml_calls(text: str) -> list[tuple]:
    return [
        ("xml", name, params, start, text.index(_FUNCTION_END, start) + len(_FUNCTION_END))
        for name, params, start in find_xml_calls(text)
    ]


def _json_calls(text: str) -> list[tuple]:
    return [("json", None, m.group(1), m.start(), m.end()) for m in _TOOL_CALL_RE.finditer(text)]


def _bash_calls(text: str) -> list[tuple]:
    calls = []
    for block, start in find_bash_blocks(text):
        end = text.index("```", text.index("\n", start)) + 3  # the fence that closes this block
        calls.append(("bash", "bash", {"command": block}, start, end))
    return calls


_FINDERS = {"xml": _xml_calls, "json": _json_calls, "bash": _bash_calls}


def _find_calls(text: str, style: str) -> list[tuple]:
    if style != "any":
        return _FINDERS[style](text)
    # XML first, then JSON, then bash, blanking what each found: a ```bash block inside an XML
    # file_text, or a <tool_call> quoted in a bash heredoc, is content, not a second call.
    found = []
    for finder in _FINDERS.values():
        calls = finder(text)
        for call in calls:
            text = text[: call[3]] + " " * (call[4] - call[3]) + text[call[4] :]
        found += calls
    return found


def _json_call(raw: str) -> tuple[str, Any]:
    try:
        value = load_json(raw, "<tool_call> body")
    except json.JSONDecodeError as e:
        raise FormatError("bad_arguments", f"<tool_call> body is not JSON: {e}") from None
    except ActionParseError as e:
        raise FormatError("bad_arguments", str(e)) from None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise FormatError("bad_arguments", "<tool_call> body must be an object with a string 'name'")
    # Llama-style templates call the arguments "parameters".
    args = value.get("arguments", value.get("parameters", {}))
    try:
        return value["name"], parse_json_arguments(args)
    except ActionParseError as e:
        raise FormatError("bad_arguments", str(e)) from None


def parse_completion(completion: Any, style: str = "xml") -> ParsedCompletion:
    """The thought and the one tool call of a completion; raises ``FormatError``."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    text = read_text(completion)
    if style == "xml" and read_canonical is not None:
        # Most completions copy the canonical text SFT taught: read those in one pass (_xmlcall.c).
        fast = read_canonical(text)
        if fast is not None:
            thought, name, arguments, action = fast
            return ParsedCompletion(thought, ToolCall(name, arguments), "xml", action)
    m = _THINK_RE.match(text)
    if not m or not m.group(1).strip():
        raise FormatError("no_think", "the completion must open with a non-empty <think>…</think> block")
    if text.count("<think>") != 1 or text.count("</think>") != 1:
        raise FormatError("no_think", "more than one <think> block")
    calls = _find_calls(text[m.end() :], style)
    if not calls:
        raise FormatError("no_call", f"no tool call in the {style} style after </think>")
    if len(calls) > 1:
        raise FormatError("multiple_calls", f"{len(calls)} tool calls; exactly one is allowed")
    found, name, args, _, _ = calls[0]
    if found == "json":
        name, args = _json_call(args)
    return ParsedCompletion(m.group(1).strip(), to_tool_call(name, args), found)


def to_tool_call(name: str, arguments: Any) -> ToolCall:
    """A call of ours (bash / str_replace_editor / submit) from any harness's name and arguments.

    Unlike the readers, which keep an unknown tool as a legacy bash call so no expert step is lost,
    a policy that names a tool we do not have made a format error.
    """
    try:
        parsed = normalise(name, arguments)
    except ActionParseError as e:
        raise FormatError("bad_arguments", f"{name}: {e}") from None
    if parsed.legacy:
        raise FormatError("unknown_tool", f"unknown tool {name!r}")
    call = parsed.call
    if call.name == "bash" and not call.arguments["command"].strip():
        raise FormatError("bad_arguments", "bash call with an empty command")
    if call.name == "str_replace_editor":
        if call.arguments["command"] not in EDITOR_COMMANDS:
            raise FormatError("bad_arguments", f"unknown str_replace_editor command {call.arguments['command'][:60]!r}")
        for key in _STRING_ARGS:
            if not isinstance(call.arguments.get(key, ""), str):
                raise FormatError("bad_arguments", f"str_replace_editor {key} must be a string")
    return call
