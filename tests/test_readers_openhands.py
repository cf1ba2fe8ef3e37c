"""OpenHands readers on every file of the shared openhands/ folder. Expected steps are counted here
straight from the raw events / messages, never from the reader's output."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from srl_agent.readers import ReadError, ReadReport, detect_format, read_file, read_trajectories

from .conftest import SHARED, require_shared

OH = require_shared(SHARED / "openhands")

# OpenHands action -> our tool. Actions outside this table (message, think, recall, system, ...) are no step.
ACTION_TOOL = {
    "run": "bash",
    "run_ipython": "bash",
    "read": "str_replace_editor",
    "edit": "str_replace_editor",
    "finish": "submit",
}
TOOL = {"execute_bash": "bash", "str_replace_editor": "str_replace_editor", "finish": "submit"}

# Every file of the folder, with what it holds: (format or None for "not a trajectory", records).
FILES = {
    "evaluation~benchmarks~multi_swe_bench~examples~output.jsonl": ("openhands-output", 3),
    "evaluation~benchmarks~multi_swe_bench~examples~patch.jsonl": (None, 3),
    "evaluation~benchmarks~swe_bench~examples~example_model_output.json": (None, 30),
    "tests~runtime~trajs~basic.json": ("openhands-events", 1),
    "tests~runtime~trajs~basic_gui_mode.json": ("openhands-events", 1),
    "tests~runtime~trajs~basic_interactions.json": ("openhands-events", 1),
    "tests~runtime~trajs~wrong_initial_state.json": ("openhands-events", 1),
    "tests~unit~resolver~mock_output~output.jsonl": ("openhands-output", 2),
    "verified_claude35/astropy__astropy-12907.final_llm_completion.json": ("openhands-completion", 1),
    "verified_claude35/django__django-10914.final_llm_completion.json": ("openhands-completion", 1),
    "verified_claude35/django__django-11099.final_llm_completion.json": ("openhands-completion", 1),
    "verified_claude35/django__django-11133.final_llm_completion.json": ("openhands-completion", 1),
    "verified_claude35/metadata.json": (None, 1),
}


def rows(path: Path) -> list:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.open() if line.strip()]
    return [json.loads(path.read_text())]


def env_actions(events: list) -> list[dict]:
    """Agent events that act on the environment (flat resolver events carry no ``source``)."""
    return [e for e in events if e.get("source", "agent") == "agent" and e.get("action") in ACTION_TOOL]


def model_call(event: dict) -> dict | None:
    meta = event.get("tool_call_metadata")
    if not meta:
        return None
    calls = meta["model_response"]["choices"][0]["message"]["tool_calls"]
    return next(c for c in calls if c["id"] == meta["tool_call_id"])


def test_every_file_is_covered():
    found = {str(p.relative_to(OH)) for p in OH.rglob("*") if p.is_file()}
    assert found == set(FILES)


def test_folder_reads_by_format():
    report = ReadReport()
    got = list(read_trajectories([OH], report=report))
    expected: dict[str, int] = {}
    for fmt, n in FILES.values():
        if fmt:
            expected[fmt] = expected.get(fmt, 0) + n
    assert dict(report.read) == expected
    assert len(got) == sum(expected.values())
    assert dict(report.skipped) == {"not a trajectory": sum(n for fmt, n in FILES.values() if fmt is None)}


@pytest.mark.parametrize("name", [n for n, (fmt, _) in FILES.items() if fmt is None])
def test_non_trajectories_are_not_detected(name):
    path = OH / name
    records = json.loads(path.read_text()) if name.endswith("example_model_output.json") else rows(path)
    assert records and all(detect_format(r) is None for r in records)


EVENT_FILES = [n for n, (fmt, _) in FILES.items() if fmt in ("openhands-events", "openhands-output")]


@pytest.mark.parametrize("name", EVENT_FILES)
def test_event_streams(name):
    path = OH / name
    raw = rows(path)
    trajs = read_file(path)
    assert len(trajs) == len(raw)
    for record, traj in zip(raw, trajs, strict=True):
        events = record if isinstance(record, list) else record["history"]
        acts = env_actions(events)
        assert len(traj.steps) == len(acts)
        assert [s.action.name for s in traj.steps] == [ACTION_TOOL[e["action"]] for e in acts]
        content_by_cause = {e["cause"]: e.get("content") for e in events if "observation" in e and "cause" in e}
        keyed = any("id" in e for e in events)
        for event, step in zip(acts, traj.steps, strict=True):
            call = model_call(event)
            if call:  # the action is the model's own call
                args = json.loads(call["function"]["arguments"])
                assert TOOL[call["function"]["name"]] == step.action.name
                for key in ("command", "path", "old_str", "new_str", "file_text"):
                    if key in args and step.action.name != "submit":
                        assert step.action.arguments[key] == args[key]
            elif event["action"] == "run":
                assert step.action.arguments == {"command": event.get("args", event)["command"]}
            if event["action"] == "run_ipython":  # no bash equivalent: kept as a legacy call naming the tool
                name, _, payload = step.action.arguments["command"].partition(" ")
                assert step.legacy and name == "execute_ipython_cell" and json.loads(payload) == {"code": event["code"]}
            if event["action"] == "finish":
                assert step.observation is None
            elif keyed:
                assert step.observation == content_by_cause.get(event["id"])
            else:  # flat resolver events: the observation is the next event
                nxt = events[events.index(event) + 1]
                assert step.observation == nxt["content"]


def test_eval_output_task_and_patch():
    path = OH / "evaluation~benchmarks~multi_swe_bench~examples~output.jsonl"
    for record, traj in zip(rows(path), read_file(path), strict=True):
        assert traj.instance_id == record["instance_id"] == record["instance"]["instance_id"]
        assert traj.task.repo == "ponylang/ponyc"
        assert traj.task.base_commit == record["instance"]["base_commit"]
        assert traj.task.problem_statement == record["instance"]["problem_statement"]
        assert traj.submission == record["test_result"]["git_patch"]
        assert traj.system_prompt.startswith("You are OpenHands agent")


def test_think_joins_the_next_thought():
    path = OH / "evaluation~benchmarks~multi_swe_bench~examples~output.jsonl"
    record, traj = rows(path)[0], read_file(path)[0]
    events = record["history"]
    think = next(i for i, e in enumerate(events) if e.get("action") == "think")
    following = next(e for e in events[think:] if e in env_actions(events))
    step = traj.steps[env_actions(events).index(following)]
    assert events[think]["args"]["thought"].strip() in step.thought


def test_resolver_mock_task():
    path = OH / "tests~unit~resolver~mock_output~output.jsonl"
    record, traj = rows(path)[0], read_file(path)[0]
    issue = record["issue"]
    assert traj.instance_id == f"{issue['owner']}__{issue['repo']}-{issue['number']}"
    assert traj.task.problem_statement.startswith(issue["title"]) and issue["body"] in traj.task.problem_statement
    assert traj.submission == record["git_patch"]


def test_runtime_events_task():
    traj = read_file(OH / "tests~runtime~trajs~wrong_initial_state.json")[0]
    assert traj.task.problem_statement == "Please rename game_2048.py to 2048.py"
    view = traj.steps[0].action
    assert view.name == "str_replace_editor" and view.arguments == {"command": "view", "path": "/workspace"}


COMPLETIONS = sorted(n for n, (fmt, _) in FILES.items() if fmt == "openhands-completion")


@pytest.mark.parametrize("name", COMPLETIONS)
def test_completion_logs(name):
    path = OH / name
    record = json.loads(path.read_text())
    (traj,) = read_file(path)
    calls = [c for m in record["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    final = record["response"]["choices"][0]["message"]["tool_calls"]
    assert len(traj.steps) == len(calls) + len(final)
    assert [s.action.name for s in traj.steps] == [TOOL[c["function"]["name"]] for c in calls + final]
    results = {m["tool_call_id"]: m["content"][0]["text"] for m in record["messages"] if m["role"] == "tool"}
    for call, step in zip(calls, traj.steps[: len(calls)], strict=True):
        assert step.observation == results[call["id"]]
    assert traj.steps[-1].observation is None
    assert traj.instance_id == path.name.split(".")[0]
    statement = record["messages"][1]["content"][0]["text"]
    assert traj.task.problem_statement and traj.task.problem_statement in statement
    assert "<pr_description>" not in traj.task.problem_statement


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bad_tool_arguments_in_completion_log(tmp_path):
    record = json.loads((OH / COMPLETIONS[0]).read_text())
    bad = copy.deepcopy(record)
    bad["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"command": ls'
    path = _write(tmp_path, "astropy__astropy-12907.final_llm_completion.json", json.dumps(bad))
    with pytest.raises(ReadError) as err:
        read_file(path)
    assert str(path) in str(err.value) and "messages[2].tool_calls[0].function.arguments" in str(err.value)
    bad = copy.deepcopy(record)
    bad["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = "not json"
    path = _write(tmp_path, "final.json", json.dumps(bad))
    with pytest.raises(ReadError, match=r"response\.choices\[0\]\.message\.tool_calls\[0\]\.function\.arguments"):
        read_file(path)
    del bad["messages"]
    path = _write(tmp_path, "final.json", json.dumps(bad))
    with pytest.raises(ReadError, match="field 'messages'"):
        read_file(path)


def test_bad_event_names_line_and_event(tmp_path):
    lines = (OH / "evaluation~benchmarks~multi_swe_bench~examples~output.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    i = next(i for i, e in enumerate(row["history"]) if e.get("action") == "run")
    row["history"][i]["tool_call_metadata"]["model_response"]["choices"][0]["message"]["tool_calls"][0]["function"][
        "arguments"
    ] = "{oops"
    path = _write(tmp_path, "output.jsonl", "\n".join([lines[0], json.dumps(row), lines[2]]) + "\n")
    with pytest.raises(ReadError) as err:
        read_file(path)
    text = str(err.value)
    assert str(path) in text and "record 2" in text and f"history[{i}].tool_call_metadata" in text
    report = ReadReport()
    assert len(list(read_trajectories([tmp_path], report=report))) == 2
    assert dict(report.skipped) == {"unparseable action (events)": 1}
    assert "record 2" in report.errors[0]


@pytest.mark.parametrize(
    "name", ["tests~runtime~trajs~basic.json", "evaluation~benchmarks~multi_swe_bench~examples~output.jsonl"]
)
def test_event_arguments_agree_with_the_model_call(name):
    """Without ``tool_call_metadata`` the action is rebuilt from the event's args (``command``/``old_str``
    fields, or oh_aci's ``translated_ipython_code``); it must be the call the model made."""
    record = rows(OH / name)[0]
    stripped = copy.deepcopy(record)
    for e in stripped if isinstance(stripped, list) else stripped["history"]:
        e.pop("tool_call_metadata", None)
    fmt = detect_format(record)
    from srl_agent.readers import parse_record

    with_calls, from_args = parse_record(record, "a", fmt), parse_record(stripped, "b", fmt)
    editor = [s for s in with_calls.steps if s.action.name == "str_replace_editor"]
    assert editor and [s.action for s in from_args.steps] == [s.action for s in with_calls.steps]


def test_pair_history_and_think_tool_call():
    from srl_agent.readers import parse_record

    # OpenHands <= 0.8 kept history as [action, observation] pairs.
    old = {
        "instance_id": "a__b-1",
        "instruction": "<issue_description>\nfix it\n</issue_description>",
        "history": [
            [{"action": "message", "args": {"content": "fix it"}}, {"observation": "null", "content": ""}],
            [
                {"action": "run", "args": {"command": "ls", "thought": "look"}},
                {"observation": "run", "content": "a.py"},
            ],
            [{"action": "finish", "args": {"thought": "done"}}, {"observation": "null", "content": ""}],
        ],
    }
    traj = parse_record(old, "old")
    assert traj.source_format == "openhands-output" and traj.task.problem_statement == "fix it"
    assert [(s.action.name, s.observation) for s in traj.steps] == [("bash", "a.py"), ("submit", None)]
    # A ``think`` tool call is a thought for the next step, not an action.
    log = {
        "messages": [
            {"role": "user", "content": "task"},
            {
                "role": "assistant",
                "content": "hmm",
                "tool_calls": [{"id": "1", "function": {"name": "think", "arguments": '{"thought": "plan"}'}}],
            },
            {"role": "tool", "tool_call_id": "1", "content": "Your thought has been logged."},
        ],
        "response": {
            "choices": [
                {
                    "message": {
                        "content": "go",
                        "tool_calls": [
                            {"id": "2", "function": {"name": "execute_bash", "arguments": '{"command": "ls"}'}}
                        ],
                    }
                }
            ]
        },
    }
    traj = parse_record(log, "x/llm_completions/a__b-1/model-1.json")
    assert traj.instance_id == "a__b-1"
    assert [(s.thought, s.action.arguments) for s in traj.steps] == [("hmm\n\nplan\n\ngo", {"command": "ls"})]
    # think and a real call in one turn: the think's "logged" result is no observation of the real call
    turn = log["messages"][1]
    turn["tool_calls"].append({"id": "3", "function": {"name": "execute_bash", "arguments": '{"command": "pwd"}'}})
    log["messages"].append({"role": "tool", "tool_call_id": "3", "content": "/testbed"})
    traj = parse_record(log, "x/llm_completions/a__b-1/model-1.json")
    assert [(s.thought, s.observation) for s in traj.steps] == [("hmm\n\nplan", "/testbed"), ("go", None)]
