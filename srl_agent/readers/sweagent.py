"""SWE-agent trajectories: ``.traj`` files (v0.7 to 1.x) and ``traj-to-demo`` YAML.

Three action styles, recorded as ``sweagent:<style>``:

* ``command``: the v0.7 thought-action parser; the action is a command line in a fenced block
  (``open "setup.py"``, ``edit 1:1 ... end_of_edit``, ``submit``). The windowed-editor commands are
  legacy: ``parse_command_line`` keeps them as bash calls with their raw text.
* ``xml``: the action is wrapped in XML tags, ``<command>…</command>`` (the v0.7 xml parser) or
  ``<function=…><parameter=…>`` (1.x ``xml_function_calling``).
* ``function_calling``: the assistant history turns carry OpenAI ``tool_calls``.

Steps come from ``trajectory[]`` when it has any: its ``action`` is what SWE-agent executed and its
``observation`` the raw output (history observations are wrapped in templates). The structured call
behind a step, the aligned history turn's tool call or a ``<function=…>`` call in the response, is
preferred when it agrees with the action string; when it does not (history is sometimes a turn
short: the 6e44b9 test-repo run never wrote its final ``submit`` into history), the string is parsed.
A step with an empty action (SWE-agent writes one when a run ends on an error) executed nothing and
is dropped. Files with history only (demo YAML, ``function_calling_simple.traj``) give one step per
assistant turn. Demonstration messages (``is_demo``) are never steps, observations or the task.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..actions import ActionParseError, ParsedAction, find_xml_calls, normalise, parse_command_line
from ..schema import Step, Task, Trajectory
from .base import ReadError, dig, instance_id_from_source, register, require
from .chat import (
    action_from_message,
    extract_issue,
    first_user_text,
    steps_from_messages,
    system_text,
    text_of,
    tool_call_of,
)

_XML_ACTION = re.compile(r"<command>|<function=")


def _is_sweagent(r: Any) -> bool:
    if not isinstance(r, dict) or not isinstance(r.get("history"), list):
        return False
    if "trajectory" in r:
        return True
    # history only (demo YAML): a chat transcript, unlike OpenHands' event-stream ``history``
    return bool(r["history"]) and all(isinstance(m, dict) and "role" in m for m in r["history"])


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _replay_config(record: dict) -> dict:
    value = record.get("replay_config")
    if isinstance(value, str):  # 1.0.x writes it as a JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ReadError(f"not valid JSON: {e.msg}", field="replay_config", reason="invalid JSON") from None
    return value if isinstance(value, dict) else {}


def _is_demo(m: Any) -> bool:
    return isinstance(m, dict) and bool(m.get("is_demo"))


def _style(responses: list[Any], turns: list[dict]) -> str:
    if any(m.get("tool_calls") for m in turns):
        return "function_calling"
    if any(isinstance(r, str) and _XML_ACTION.search(r) for r in responses):
        return "xml"
    return "command"


@register("sweagent", _is_sweagent, "SWE-agent .traj (v0.7 command, xml, function calling) and demo YAML")
def parse(record: dict, source: str) -> Trajectory:
    replay = _replay_config(record)
    instance_id = _str(dig(replay, "problem_statement", "id")) or instance_id_from_source(source)
    try:
        return _parse(record, source, replay, instance_id)
    except ActionParseError as e:
        raise ReadError(str(e), record=instance_id, field=e.field, reason="unparseable action") from None
    except ReadError as e:
        # A .traj is a whole-file record: its instance is the record a reader can look for.
        raise e.located("", instance_id) from None


def _parse(record: dict, source: str, replay: dict, instance_id: str) -> Trajectory:
    history = require(record, "history", list)
    for k, m in enumerate(history):
        if not isinstance(m, dict):
            raise ReadError(f"message is {type(m).__name__}, not an object", field=f"history[{k}]")
    # Demonstrations stay in place, so that error fields index the file's own history, but take no part.
    messages = [{"role": "demo"} if _is_demo(m) else m for m in history]
    turns = [(k, m) for k, m in enumerate(messages) if m.get("role") == "assistant"]
    trajectory = require(record, "trajectory", list) if "trajectory" in record else []
    if trajectory:
        responses = [s.get("response") if isinstance(s, dict) else None for s in trajectory]
        style = _style(responses, [m for _, m in turns])
        steps = _steps_from_trajectory(trajectory, turns)
    else:
        style = _style([text_of(m.get("content")) for _, m in turns], [m for _, m in turns])
        steps = steps_from_messages(messages, "tool_calls" if style == "function_calling" else style,
                                    action=_history_action, field="history")
    info = record.get("info") if isinstance(record.get("info"), dict) else {}
    resolved = info.get("resolved")
    return Trajectory(
        task=Task(
            instance_id=instance_id,
            problem_statement=_str(dig(replay, "problem_statement", "text"))
            or extract_issue(first_user_text(messages)),
            base_commit=_str(dig(replay, "env", "repo", "base_commit")),
            image=_str(dig(replay, "env", "deployment", "image")),
        ),
        steps=steps,
        source_format=f"sweagent:{style}",
        submission=info.get("submission") if isinstance(info.get("submission"), str) else None,
        resolved=resolved if isinstance(resolved, bool) else None,
        source=source,
        system_prompt=system_text(messages),
    )


def _steps_from_trajectory(trajectory: list, turns: list[tuple[int, dict]]) -> list[Step]:
    steps = []
    for i, s in enumerate(trajectory):
        where = f"trajectory[{i}]"
        action = require(s, "action", str, field=f"{where}.action").strip()
        if not action:
            continue
        thought = require(s, "thought", str, field=f"{where}.thought") if "thought" in s else ""
        observation = s.get("observation")
        if observation is not None and not isinstance(observation, str):
            raise ReadError(f"expected str, got {type(observation).__name__}", field=f"{where}.observation",
                            reason=f"bad field {where}.observation")
        turn = turns[i] if i < len(turns) else None
        parsed = _structured_call(turn, s.get("response"), action) or parse_command_line(action)
        steps.append(Step(thought.strip(), parsed.call, action, observation, parsed.legacy))
    return steps


def _structured_call(turn: tuple[int, dict] | None, response: Any, action: str) -> ParsedAction | None:
    """The step's call from its tool call or ``<function=…>`` text, if that is the executed action."""
    if turn is not None and turn[1].get("tool_calls"):
        k, message = turn
        try:
            name, args, _ = tool_call_of(message)
        except ActionParseError as e:
            raise ReadError(
                str(e), field=f"history[{k}].{e.field}", reason="unparseable action (function_calling)"
            ) from None
    else:
        calls = find_xml_calls(response) if isinstance(response, str) else []
        if len(calls) != 1:
            return None
        name, args, _ = calls[0]
    if not _agrees(name, args, action):
        return None
    return normalise(name, args, raw=action)


def _agrees(name: str, args: dict, action: str) -> bool:
    """SWE-agent renders a bash call as its command and any other call as ``<tool> <args…>``."""
    if name == "bash":
        return isinstance(args.get("command"), str) and args["command"].strip() == action
    return action.split(None, 1)[0] == name


def _history_action(message: dict, style: str) -> tuple[str, ParsedAction, str]:
    """A history turn's step: SWE-agent's own ``action`` rendering is the raw text where it kept one
    (so legacy tools read as the commands they ran), the tool call the structured call."""
    action = message.get("action")
    if not (isinstance(action, str) and action.strip()):
        if style != "tool_calls":
            style = "xml" if find_xml_calls(text_of(message.get("content"))) else "ticks"
        return action_from_message(message, style)
    action = action.strip()
    thought = message.get("thought")
    thought = (thought if isinstance(thought, str) else text_of(message.get("content"))).strip()
    if message.get("tool_calls"):
        name, args, _ = tool_call_of(message)
        return thought, normalise(name, args, raw=action), action
    return thought, parse_command_line(action), action
