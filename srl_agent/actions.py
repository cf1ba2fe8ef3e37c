"""Actions as text and as tool calls: one canonical rendering, and the parsers that every reader shares.

The canonical text is the SWE-agent XML function-call style that SWE-smith trains on (the paper's data):

    <function=bash>
    <parameter=command>grep -rn foo /testbed</parameter>
    </function>

Multi-line parameter values are wrapped in newlines, as SWE-smith writes them, and unwrapped on parsing.
"""

from __future__ import annotations

import json
import re
import reprlib
import shlex
from dataclasses import dataclass
from typing import Any

from .schema import ToolCall

_FUNCTION_RE = re.compile(r"<function=([^>\s]+)>(.*?)</function>", re.S)
_PARAM_RE = re.compile(r"<parameter=([^>\s]+)>(.*?)</parameter>", re.S)
# SWE-agent's thought-action parser takes the last fenced block of a response.
_TICKS_RE = re.compile(r"^```[^\n`]*\n(.*?)^```[ \t]*$", re.S | re.M)
# mini-swe-agent's early test fixtures fence actions as ```mswea_bash_command.
_BASH_BLOCK_RE = re.compile(r"```(?:bash|sh|mswea_bash_command)[ \t]*\n(.*?)\n?```", re.S)

# Bounds on what a model or a trajectory may write, so that no text can make a parser overflow, recurse
# too deep or spend quadratic time in int(): larger values are an ActionParseError. No file has a
# billion lines; no tool call nests 32 levels (a view_range in a JSON call is 3); no line number, nor
# any number a call carries, has 40 digits. _xmlcall.c reads at most 9-digit integers, within the bound.
MAX_LINE_NUMBER = 10**9
MAX_JSON_DEPTH = 32
MAX_NUMBER_DIGITS = 40
# A JSON string (unterminated ones run to the end, so the scan stays linear) or a bracket.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.S)
_REPR = reprlib.Repr()  # error messages quote a value without its whole length or depth
_REPR.maxstring = _REPR.maxother = 60
_short = _REPR.repr

# Editor arguments in the order the canonical text lists them.
_EDITOR_ARG_ORDER = ("command", "path", "file_text", "old_str", "new_str", "insert_line", "view_range")

# Tool names of other harnesses that mean one of ours.
_BASH_NAMES = {"bash", "execute_bash", "cmd_run", "run", "shell", "execute_command"}
_SUBMIT_NAMES = {"submit", "finish"}
_EDITOR_NAMES = {"str_replace_editor", "str_replace_based_edit_tool"}

# SWE-agent 0.x / windowed-editor commands: kept as bash calls with their raw text, flagged legacy.
LEGACY_COMMANDS = frozenset(
    "open goto scroll_up scroll_down create edit insert search_dir search_file find_file "
    "filemap append skip exit_forfeit exit_format exit_context exit_cost exit_error "
    "decompile disassemble debug_start debug_add_breakpoint debug_continue debug_step debug_stop "
    "debug_exec connect_start connect_sendline connect_exec connect_stop check_flag".split()
)


class ActionParseError(ValueError):
    """An action that cannot be read as a tool call; ``field`` names what was wrong."""

    def __init__(self, message: str, field: str = "action"):
        super().__init__(message)
        self.field = field


@dataclass
class ParsedAction:
    call: ToolCall
    legacy: bool = False


# --- canonical rendering -------------------------------------------------------------------------


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return f"\n{value}\n" if "\n" in value else value
    return json.dumps(value)


def render(call: ToolCall) -> str:
    """The canonical action text of a call (what the reward compares and the model must produce)."""
    args = call.arguments
    order = _EDITOR_ARG_ORDER if call.name == "str_replace_editor" else ()
    keys = [k for k in order if k in args] + [k for k in args if k not in order]
    params = "".join(f"<parameter={k}>{_render_value(args[k])}</parameter>\n" for k in keys)
    return f"<function={call.name}>\n{params}</function>"


# --- parsing ------------------------------------------------------------------------------------


def _unwrap(value: str) -> str:
    if len(value) >= 2 and value.startswith("\n") and value.endswith("\n"):
        return value[1:-1]
    return value


def find_xml_calls(text: str) -> list[tuple[str, dict[str, str], int]]:
    """Every ``<function=…>`` call in ``text``: (name, raw string params, start offset)."""
    return [
        (m.group(1), {p.group(1): _unwrap(p.group(2)) for p in _PARAM_RE.finditer(m.group(2))}, m.start())
        for m in _FUNCTION_RE.finditer(text)
    ]


def last_fenced_block(text: str) -> tuple[str, int] | None:
    """The last ``` block of a response and where it starts (SWE-agent ticks / 0.x style)."""
    blocks = list(_TICKS_RE.finditer(text))
    if not blocks:
        return None
    return blocks[-1].group(1).rstrip("\n"), blocks[-1].start()


def find_bash_blocks(text: str) -> list[tuple[str, int]]:
    """The ```bash blocks of a mini-swe-agent response, each with where it starts."""
    return [(m.group(1).strip("\n"), m.start()) for m in _BASH_BLOCK_RE.finditer(text)]


def bash_blocks(text: str) -> list[str]:
    """The ```bash blocks of a mini-swe-agent response."""
    return [block for block, _ in find_bash_blocks(text)]


class _LongNumber(Exception):
    pass  # not a ValueError, so it passes through json's own error handling to load_json


def _json_int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_DIGITS:
        raise _LongNumber(len(digits))
    return int(digits)


def json_too_deep(text: str) -> bool:
    """Whether the JSON text nests containers deeper than ``MAX_JSON_DEPTH`` (brackets in strings do not count)."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        c = m.group()
        if c == "[" or c == "{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif c == "]" or c == "}":
            depth -= 1
    return False


def load_json(text: str, field: str) -> Any:
    """``json.loads`` for text a model or a trajectory wrote. Nesting beyond ``MAX_JSON_DEPTH`` and
    numbers of more than ``MAX_NUMBER_DIGITS`` digits are an ``ActionParseError``, refused before json
    recurses into them or int() reads them; text that is not JSON raises ``json.JSONDecodeError``."""
    if json_too_deep(text):
        raise ActionParseError(f"{field} nests deeper than {MAX_JSON_DEPTH} levels", field)
    try:
        return json.loads(text, parse_int=_json_int)
    except _LongNumber as e:
        raise ActionParseError(f"{field} holds a number of {e.args[0]} digits", field) from None


def _as_int(value: Any, field: str) -> int:
    if isinstance(value, str) and len(value.strip()) > MAX_NUMBER_DIGITS:
        raise ActionParseError(f"{field} must be an integer, got {len(value.strip())} characters", field)
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf), e.g. from "1e309"
        raise ActionParseError(f"{field} must be an integer, got {_short(value)}", field) from None
    if not -MAX_LINE_NUMBER <= number <= MAX_LINE_NUMBER:
        raise ActionParseError(f"{field} must lie within ±{MAX_LINE_NUMBER}", field)
    return number


def _as_range(value: Any) -> list[int]:
    if isinstance(value, str):
        value = value.strip()
        try:
            value = load_json(value, "view_range")
        except json.JSONDecodeError:
            value = value.strip("[]").replace(",", " ").split()
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ActionParseError(f"view_range must be two integers, got {_short(value)}", "view_range")
    return [_as_int(v, "view_range") for v in value]


def normalise(name: str, arguments: dict[str, Any], raw: str = "") -> ParsedAction:
    """Map a tool call of any harness onto bash / str_replace_editor / submit.

    Unknown tools are kept as a legacy ``bash`` call carrying ``raw`` (or the call rendered as text),
    so nothing the expert did is dropped.
    """
    if not isinstance(arguments, dict):
        raise ActionParseError(f"arguments of {name!r} must be an object, got {type(arguments).__name__}", "arguments")
    if name in _BASH_NAMES:
        command = arguments.get("command", arguments.get("cmd"))
        if not isinstance(command, str):
            raise ActionParseError(f"{name} call without a string 'command' argument", "command")
        return ParsedAction(ToolCall("bash", {"command": command}))
    if name in _SUBMIT_NAMES:
        return ParsedAction(ToolCall("submit", {}))
    if name in _EDITOR_NAMES:
        return ParsedAction(ToolCall("str_replace_editor", _editor_args(arguments)))
    text = raw or " ".join([name, *(str(v) for v in arguments.values())])
    return ParsedAction(ToolCall("bash", {"command": text}), legacy=True)


def _editor_args(arguments: dict[str, Any]) -> dict[str, Any]:
    args = {k: v for k, v in arguments.items() if v is not None and k in _EDITOR_ARG_ORDER}
    for key in ("command", "path"):
        if not isinstance(args.get(key), str):
            raise ActionParseError(f"str_replace_editor call without a string {key!r} argument", key)
    if "insert_line" in args:
        args["insert_line"] = _as_int(args["insert_line"], "insert_line")
    if "view_range" in args:
        args["view_range"] = _as_range(args["view_range"])
    return args


def parse_command_line(text: str) -> ParsedAction:
    """Read a SWE-agent command-style action (``str_replace_editor view /x --view_range 1 5``,
    ``submit``, ``open foo.py``, or plain bash)."""
    stripped = text.strip()
    head = stripped.split(None, 1)[0] if stripped else ""
    if head == "submit" and stripped == "submit":
        return ParsedAction(ToolCall("submit", {}))
    if head == "str_replace_editor":
        try:
            return ParsedAction(ToolCall("str_replace_editor", _editor_args(_editor_flags(stripped))))
        except (ValueError, ActionParseError):
            pass  # not the 1.x rendering after all: keep it as it was written
    if head in LEGACY_COMMANDS:
        return ParsedAction(ToolCall("bash", {"command": stripped}), legacy=True)
    return ParsedAction(ToolCall("bash", {"command": stripped}))


def _editor_flags(text: str) -> dict[str, Any]:
    words = shlex.split(text)
    if len(words) < 3:
        raise ActionParseError("str_replace_editor needs a command and a path", "command")
    args: dict[str, Any] = {"command": words[1], "path": words[2]}
    i = 3
    while i < len(words):
        flag = words[i]
        if not flag.startswith("--"):
            raise ActionParseError(f"unexpected word {flag!r}", "arguments")
        key = flag[2:]
        if key == "view_range":
            args[key] = words[i + 1 : i + 3]
            i += 3
        else:
            args[key] = words[i + 1]
            i += 2
    return args


def parse_json_arguments(text: str | dict[str, Any], field: str = "arguments") -> dict[str, Any]:
    """OpenAI-style tool-call arguments: a JSON string (usually) or an object."""
    if isinstance(text, dict):
        return text
    if not text:
        return {}
    if not isinstance(text, str):
        raise ActionParseError(f"arguments must be a JSON object, got {type(text).__name__}", field)
    try:
        value = load_json(text, field)
    except json.JSONDecodeError as e:
        raise ActionParseError(f"arguments are not valid JSON: {e}", field) from None
    if not isinstance(value, dict):
        raise ActionParseError(f"arguments must be a JSON object, got {type(value).__name__}", field)
    return value
