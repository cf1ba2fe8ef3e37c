"""OpenHands trajectories: bare event streams, eval ``output.jsonl`` rows (``history`` events) and the
``llm_completions`` logs (``messages`` + final ``response``).

Also holds the walk over OpenAI tool-call transcripts that the SWE-Gym reader shares: one step per tool
call (OpenHands lets one assistant turn make several), its observation the ``tool`` message with the
call's id. Actions come from the structured tool call wherever the source kept it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from ..actions import ActionParseError, parse_json_arguments
from ..schema import Step, Task, Trajectory
from .base import ReadError, instance_id_from_source, register, require
from .chat import action_from_message, extract_issue, first_user_text, observation_text, system_text, text_of

# Agent actions that act on the environment. message / think / recall / system / agent-state events are
# not steps; a think is carried into the next step's thought.
_STEP_ACTIONS = {"run", "run_ipython", "read", "edit", "write", "finish", "browse", "browse_interactive"}
# Actions with no editor or bash equivalent: (OpenHands tool name, its payload argument), kept as legacy calls.
_OTHER_TOOLS = {
    "run_ipython": ("execute_ipython_cell", "code"),
    "browse": ("web_read", "url"),
    "browse_interactive": ("browser", "browser_actions"),
}
_EDITOR_COMMANDS = {"view", "create", "str_replace", "insert", "undo_edit"}
_EDITOR_KEYS = ("command", "path", "file_text", "old_str", "new_str", "insert_line", "view_range")
# oh_aci edit events may keep the call only as ``print(file_editor(**{...}))``.
_FILE_EDITOR_CODE = re.compile(r"^\s*print\(file_editor\(\*\*(\{.*\})\)\)\s*$", re.S)
_SWE_ID = re.compile(r"^[\w.-]+__[\w.-]+-\d+$")
_RECORD_KEY = re.compile(r":\d+$")


def _thought(*parts: str) -> str:
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def _tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": json.dumps(arguments)}}


def _field_of(e: ActionParseError, prefix: str) -> str:
    """Where a tool-call parse error sits, below ``prefix`` (the call itself)."""
    if e.field.startswith("tool_calls"):
        return prefix + e.field[len("tool_calls") :]
    return f"{prefix}.function.arguments.{e.field}"


# --- OpenAI tool-call transcripts (completion logs, SWE-Gym) ----------------------------------------


def steps_from_tool_calls(messages: list, field: str | Callable[[int], str] = "messages") -> list[Step]:
    """One step per tool call; a ``think`` call and the text before it go into the next step's thought.
    Assistant turns without a call are talk to the user, not steps."""
    where = field if callable(field) else (lambda i: f"{field}[{i}]")
    steps: list[Step] = []
    by_id: dict[Any, Step | None] = {}  # call id -> its step (None for a think call)
    turn: list[Step] = []  # steps of the latest assistant turn, for results that carry no known call id
    pending: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ReadError(f"message is {type(m).__name__}, not an object", field=where(i))
        role = m.get("role")
        if role == "assistant":
            calls = m.get("tool_calls") or []
            if not isinstance(calls, list):
                raise ReadError(f"expected a list, got {type(calls).__name__}", field=f"{where(i)}.tool_calls")
            text, turn = text_of(m.get("content")), []
            for j, call in enumerate(calls):
                if not isinstance(call, dict):
                    raise ReadError(
                        f"tool call is {type(call).__name__}, not an object", field=f"{where(i)}.tool_calls[{j}]"
                    )
                fn = call.get("function")
                try:
                    if isinstance(fn, dict) and fn.get("name") == "think":
                        args = parse_json_arguments(fn.get("arguments"), "tool_calls.function.arguments")
                        pending += [text, str(args.get("thought") or "")]
                        text = ""
                        if call.get("id") is not None:
                            by_id[call["id"]] = None
                        continue
                    _, parsed, raw = action_from_message({"tool_calls": [call]}, "tool_calls")
                except ActionParseError as e:
                    raise ReadError(
                        str(e),
                        field=_field_of(e, f"{where(i)}.tool_calls[{j}]"),
                        reason="unparseable action (tool_calls)",
                    ) from None
                step = Step(_thought(*pending, text), parsed.call, raw, None, parsed.legacy)
                pending, text = [], ""
                steps.append(step)
                turn.append(step)
                if call.get("id") is not None:
                    by_id[call["id"]] = step
        elif role == "tool":
            key = m.get("tool_call_id")
            step = by_id[key] if key in by_id else next((s for s in turn if s.observation is None), None)
            if step is not None:
                text = observation_text(m)
                step.observation = text if step.observation is None else step.observation + "\n" + text
    return steps


# --- event streams ----------------------------------------------------------------------------------


def _flatten(events: list):
    # OpenHands <= 0.8 kept history as [action, observation] pairs.
    for i, e in enumerate(events):
        if isinstance(e, list):
            yield from ((i, x) for x in e)
        else:
            yield i, e


def _args(event: dict) -> dict:
    # Older flat events keep their arguments at the top level.
    args = event.get("args")
    return args if isinstance(args, dict) else event


def _recorded_call(event: dict) -> dict | None:
    """The model's own tool call behind an action event, from ``tool_call_metadata``."""
    meta = event.get("tool_call_metadata")
    if not isinstance(meta, dict):
        return None
    try:
        calls = meta["model_response"]["choices"][0]["message"]["tool_calls"] or []
    except (KeyError, IndexError, TypeError):
        return None
    return next((c for c in calls if isinstance(c, dict) and c.get("id") == meta.get("tool_call_id")), None)


def _call_from_args(action: str, args: dict) -> dict:
    """A tool call rebuilt from an action event's own arguments, for events without the model's call."""
    if action == "run":
        return _tool_call("execute_bash", {"command": args.get("command")})
    if action == "finish":
        return _tool_call("finish", {})
    if action == "read":
        view = {"command": "view", "path": args.get("path")}
        if args.get("view_range"):
            view["view_range"] = args["view_range"]
        return _tool_call("str_replace_editor", view)
    if action in ("edit", "write"):
        if args.get("command") in _EDITOR_COMMANDS:
            return _tool_call("str_replace_editor", {k: args[k] for k in _EDITOR_KEYS if args.get(k) is not None})
        m = _FILE_EDITOR_CODE.match(str(args.get("translated_ipython_code") or ""))
        if m:
            try:
                return _tool_call("str_replace_editor", ast.literal_eval(m.group(1)))
            except (ValueError, SyntaxError):
                pass
        if action == "write":
            return _tool_call(
                "str_replace_editor", {"command": "create", "path": args.get("path"), "file_text": args.get("content")}
            )
        # LLM-based edit (content over a line range): no editor equivalent.
        return _tool_call("edit", {k: args.get(k) for k in ("path", "content", "start", "end")})
    name, key = _OTHER_TOOLS[action]
    return _tool_call(name, {key: args.get(key)})


def steps_from_events(events: list, field: str = "history") -> tuple[list[Step], str, str]:
    """(steps, first user message, system prompt) of an event stream. An action's observation is the
    event whose ``cause`` is its id; streams without ids pair each observation with the action before it."""
    flat = list(_flatten(events))
    keyed = any(isinstance(e, dict) and "id" in e for _, e in flat)
    steps: list[Step] = []
    by_id: dict[Any, Step] = {}
    pending: list[str] = []
    user = system = ""
    for i, e in flat:
        if not isinstance(e, dict):
            raise ReadError(f"event is {type(e).__name__}, not an object", field=f"{field}[{i}]")
        args, action, src = _args(e), e.get("action"), e.get("source")
        if action == "message" and src != "agent":
            user = user or text_of(args.get("content"))
        elif action == "system":
            system = text_of(args.get("content"))
        elif action == "think":
            pending.append(str(args.get("thought") or ""))
        elif action in _STEP_ACTIONS and src in (None, "agent"):
            call = _recorded_call(e)
            origin = "tool_call_metadata" if call else "args"
            try:
                _, parsed, raw = action_from_message(
                    {"tool_calls": [call or _call_from_args(action, args)]}, "tool_calls"
                )
            except ActionParseError as err:
                raise ReadError(
                    str(err), field=_field_of(err, f"{field}[{i}].{origin}"), reason="unparseable action (events)"
                ) from None
            steps.append(
                Step(_thought(*pending, str(args.get("thought") or "")), parsed.call, raw, None, parsed.legacy)
            )
            pending = []
            if "id" in e:
                by_id[e["id"]] = steps[-1]
        elif action is None and "observation" in e:
            # An uncaused observation in a keyed stream answers no action (e.g. a rejected tool call).
            step = (
                by_id.get(e.get("cause")) if keyed else (steps[-1] if steps and steps[-1].observation is None else None)
            )
            if step is not None and step.action.name != "submit":
                text = text_of(e.get("content"))
                step.observation = text if step.observation is None else step.observation + "\n" + text
    return steps, user, system


def _is_event(x: Any) -> bool:
    return isinstance(x, dict) and ("action" in x or "observation" in x)


def _completion_instance(source: str) -> str:
    """``llm_completions/<iid>/<model>-<ts>.json`` names the instance by its folder; our copies are
    ``<iid>.final_llm_completion.json``."""
    parent = PurePath(_RECORD_KEY.sub("", source)).parent.name
    return parent if _SWE_ID.match(parent) else instance_id_from_source(source).split(".")[0]


def _optional_dict(record: dict, key: str) -> dict:
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReadError(f"expected dict, got {type(value).__name__}", field=key, reason=f"bad field {key}")
    return value


def _is_events(r: Any) -> bool:
    return isinstance(r, list) and bool(r) and _is_event(r[0]) and "source" in r[0]


@register("openhands-events", _is_events, "OpenHands event stream (a bare list of events)")
def parse_events(record: list, source: str) -> Trajectory:
    steps, user, system = steps_from_events(record, "events")
    return Trajectory(
        task=Task(instance_id=instance_id_from_source(source), problem_statement=extract_issue(user)),
        steps=steps,
        source_format="openhands-events",
        source=source,
        system_prompt=system,
    )


def _is_output(r: Any) -> bool:
    if not isinstance(r, dict) or not isinstance(r.get("history"), list):
        return False
    first = r["history"][0] if r["history"] else None
    return bool({"instruction", "test_result", "git_patch"} & r.keys()) and (
        first is None or _is_event(first) or isinstance(first, list)
    )


def _resolver_task(issue: dict, base_commit: str) -> Task:
    owner, repo, number = issue.get("owner", ""), issue.get("repo", ""), issue.get("number", "")
    return Task(
        instance_id=f"{owner}__{repo}-{number}",
        repo=f"{owner}/{repo}",
        base_commit=base_commit or "",
        problem_statement="\n".join(str(issue[k]) for k in ("title", "body") if issue.get(k)),
    )


@register("openhands-output", _is_output, "OpenHands eval / resolver output.jsonl rows (history events)")
def parse_output(record: dict, source: str) -> Trajectory:
    steps, user, system = steps_from_events(require(record, "history", list), "history")
    instance, test_result = _optional_dict(record, "instance"), _optional_dict(record, "test_result")
    if instance.get("instance_id"):
        task = Task.from_dict(instance)
    elif isinstance(record.get("issue"), dict):
        task = _resolver_task(record["issue"], record.get("base_commit"))
    else:
        task = Task(instance_id=require(record, "instance_id", str))
    if not task.problem_statement:
        task.problem_statement = extract_issue(str(record.get("instruction") or user))
    report = test_result.get("report") if isinstance(test_result.get("report"), dict) else {}
    resolved = record.get("resolved", report.get("resolved"))
    return Trajectory(
        task=task,
        steps=steps,
        source_format="openhands-output",
        submission=test_result.get("git_patch", record.get("git_patch")),
        resolved=resolved if isinstance(resolved, bool) else None,
        source=source,
        system_prompt=system,
    )


def _is_completion_log(r: Any) -> bool:
    return isinstance(r, dict) and isinstance(r.get("response"), dict) and ("messages" in r or "kwargs" in r)


@register("openhands-completion", _is_completion_log, "OpenHands llm_completions log: LM input messages + response")
def parse_completion_log(record: dict, source: str) -> Trajectory:
    messages = require(record, "messages", list)
    try:
        final = record["response"]["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        final = None
    if not isinstance(final, dict):
        raise ReadError("no choices[0].message object", field="response.choices", reason="bad field response")
    n = len(messages)
    # The final response is the episode's last action: walk it as the transcript's next assistant turn.
    steps = steps_from_tool_calls(
        [*messages, {**final, "role": "assistant"}],
        lambda i: f"messages[{i}]" if i < n else "response.choices[0].message",
    )
    instance_id = record.get("instance_id")
    return Trajectory(
        task=Task(
            instance_id=instance_id if isinstance(instance_id, str) else _completion_instance(source),
            problem_statement=extract_issue(first_user_text(messages)),
        ),
        steps=steps,
        source_format="openhands-completion",
        source=source,
        system_prompt=system_text(messages),
    )
