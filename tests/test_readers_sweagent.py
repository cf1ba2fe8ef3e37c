"""SWE-agent reader against every SWE-agent trajectory in the shared data, with the expected counts
made here from the raw JSON/YAML (never from the reader's output)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from srl_agent.readers import ReadError, ReadReport, detect_format, read_file, read_trajectories

from .conftest import require_shared

DATA = require_shared()
TRAJ_FILES = sorted((DATA / "sweagent").glob("*.traj")) + sorted((DATA / "swesmith").glob("*.traj"))
DEMO_FILES = sorted((DATA / "sweagent").glob("*demo*.yaml"))
ALL_FILES = TRAJ_FILES + DEMO_FILES
# SWE-agent's windowed-editor / 0.x commands, as its docs list them.
OLD_COMMANDS = {"open", "goto", "scroll_up", "scroll_down", "create", "edit", "insert", "search_dir",
                "search_file", "find_file"}
SWESMITH_TRAJ = next((DATA / "swesmith").glob("*.traj"))


def load(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)


def assistant_turns(raw: dict) -> list[dict]:
    return [m for m in raw["history"] if m.get("role") == "assistant" and not m.get("is_demo")]


def expected_style(raw: dict) -> str:
    if any(m.get("tool_calls") for m in assistant_turns(raw)):
        return "function_calling"
    if any("<command>" in (s.get("response") or "") for s in raw.get("trajectory", [])):
        return "xml"
    return "command"


def test_the_data_is_there():
    assert len(TRAJ_FILES) == 14 and len(DEMO_FILES) == 1


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name[-70:])
def test_every_file_reads_with_independent_counts(path: Path):
    raw = load(path)
    assert detect_format(raw) == "sweagent"
    (traj,) = read_file(path)
    names = [s.action.name for s in traj.steps]
    assert traj.source_format == f"sweagent:{expected_style(raw)}"
    assert set(names) <= {"bash", "str_replace_editor", "submit"}

    if raw.get("trajectory"):
        actions = [s["action"].strip() for s in raw["trajectory"] if s["action"].strip()]
        assert len(traj.steps) == len(actions)
        assert [s.raw_action for s in traj.steps] == actions
        assert [s.observation for s in traj.steps] == [s["observation"] for s in raw["trajectory"]]
        assert [s.thought for s in traj.steps] == [s["thought"].strip() for s in raw["trajectory"]]
        assert names.count("submit") == actions.count("submit")
        assert [s.legacy for s in traj.steps] == [a.split()[0] in OLD_COMMANDS for a in actions]
    else:  # history only: one step per non-demo assistant turn
        assert len(traj.steps) == len(assistant_turns(raw))

    calls = [c["function"] for m in assistant_turns(raw) for c in m.get("tool_calls") or []]
    editor_calls = [c for c in calls if c["name"] == "str_replace_editor"]
    assert names.count("str_replace_editor") == len(editor_calls)
    if calls:  # the tool calls, not the rendered command lines, give the editor arguments
        got = [s.action.arguments for s in traj.steps if s.action.name == "str_replace_editor"]
        want = [{k: v for k, v in json.loads(c["arguments"]).items() if v is not None} for c in editor_calls]
        assert got == want
        submits = [c for c in calls if c["name"] == "submit"]
        assert names.count("submit") >= len(submits)
    assert traj.steps[-1].action.name == "submit"
    assert traj.submission == (raw.get("info") or {}).get("submission")
    assert traj.resolved is None
    assert traj.task.problem_statement


def test_swesmith_traj_task_and_editor_calls():
    (traj,) = read_file(SWESMITH_TRAJ)
    replay = json.loads(load(SWESMITH_TRAJ)["replay_config"])  # a JSON string in 1.0.x
    assert traj.source_format == "sweagent:function_calling"
    assert traj.instance_id == replay["problem_statement"]["id"] == "pandas-dev__pandas.95280573.pr_53652"
    assert traj.task.problem_statement == replay["problem_statement"]["text"]
    assert traj.task.image == replay["env"]["deployment"]["image"]
    assert traj.task.base_commit == replay["env"]["repo"]["base_commit"]
    view = traj.steps[1]
    assert view.action.to_dict() == {
        "name": "str_replace_editor",
        "arguments": {"command": "view", "path": "/testbed/pandas/core/indexes/base.py", "view_range": [6035, 6050]},
    }
    replace = next(s for s in traj.steps if s.action.arguments.get("command") == "str_replace")
    assert {"old_str", "new_str", "path"} <= replace.action.arguments.keys()
    assert "You are a helpful assistant" in traj.system_prompt


def test_instance_id_from_file_name_and_issue_from_prompt():
    path = next((DATA / "sweagent").glob("*pydicom__pydicom-1458.traj"))
    (traj,) = read_file(path)
    assert traj.instance_id == "pydicom__pydicom-1458"  # the name after the last "~" (a "/" originally)
    assert traj.task.problem_statement.startswith("Pixel Representation attribute should be optional")
    assert "INSTRUCTIONS:" not in traj.task.problem_statement


@pytest.mark.parametrize("path", [p for p in TRAJ_FILES if any(m.get("is_demo") for m in load(p)["history"])],
                         ids=lambda p: p.name[-40:])
def test_a_demonstration_is_not_the_task(path: Path):
    # 0.7 puts the demonstration in the first user message, before the real task prompt
    task_prompt = next(m["content"] for m in load(path)["history"] if m["role"] == "user" and not m.get("is_demo"))
    (traj,) = read_file(path)
    assert traj.task.problem_statement in task_prompt
    assert "demonstration" not in traj.task.problem_statement


def test_demonstration_turns_in_history_are_not_steps(tmp_path: Path):
    record = load(DATA / "sweagent/str_replace_anthropic_demo.yaml")
    demo = [dict(m, is_demo=True) for m in record["history"][1:5]]  # 1.x: demos as history turns
    record["history"] = record["history"][:1] + demo + record["history"][1:]
    (traj,) = read_file(_write(tmp_path / "demo.traj", record))
    assert len(traj.steps) == len(assistant_turns(record)) == 4
    assert traj.steps[0].observation == record["history"][6]["content"]


def test_legacy_function_calls_keep_the_command_swe_agent_ran():
    (traj,) = read_file(DATA / "sweagent/function_calling_simple.traj")
    assert traj.source_format == "sweagent:function_calling"
    edit = traj.steps[2]
    assert edit.legacy and edit.action.name == "bash"
    assert edit.action.arguments["command"] == edit.raw_action
    assert edit.raw_action.startswith("edit 'def division(a: float, b: float) -> float'")


def test_history_is_a_turn_short():
    # this 1.0 run never wrote its final submit into history; the action string still gives it
    (traj,) = read_file(next((DATA / "sweagent").glob("*6e44b9*.traj")))
    assert [s.action.name for s in traj.steps][-1] == "submit"
    assert traj.instance_id == "SWE-agent__test-repo-i1"


def _fc_record() -> dict:
    return {
        "history": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "<pr_description>\nfix it\n</pr_description>"},
        ],
        "trajectory": [],
        "info": {"submission": "diff", "exit_status": "submitted"},
    }


def test_xml_function_style_and_empty_actions(tmp_path: Path):
    record = _fc_record()
    response = ("Look first.\n\n<function=str_replace_editor>\n<parameter=command>view</parameter>\n"
                "<parameter=path>/testbed/a.py</parameter>\n<parameter=view_range>[1, 5]</parameter>\n</function>")
    record["trajectory"] = [
        {"action": "str_replace_editor view /testbed/a.py --view_range 1 5", "observation": "1 x",
         "response": response, "thought": "Look first."},
        {"action": "submit", "observation": "diff", "response": "<function=submit>\n</function>", "thought": "Done."},
        {"action": "", "observation": "Exited (autosubmitted)", "response": "", "thought": "Exit due to cost"},
    ]
    path = tmp_path / "owner__repo-1.traj"
    path.write_text(json.dumps(record))
    (traj,) = read_file(path)
    assert traj.source_format == "sweagent:xml"
    assert traj.instance_id == "owner__repo-1"
    assert traj.task.problem_statement == "fix it"
    assert [s.action.to_dict() for s in traj.steps] == [
        {"name": "str_replace_editor", "arguments": {"command": "view", "path": "/testbed/a.py", "view_range": [1, 5]}},
        {"name": "submit", "arguments": {}},
    ]


# --- malformed records ----------------------------------------------------------------------------


def _write(path: Path, record: dict) -> Path:
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    good = load(next((DATA / "sweagent").glob("*pydicom__pydicom-1458.traj")))
    int_action = copy.deepcopy(good)
    int_action["trajectory"][3]["action"] = 42
    bad_args = load(SWESMITH_TRAJ)
    k = next(i for i, m in enumerate(bad_args["history"]) if m.get("tool_calls"))
    bad_args["history"][k]["tool_calls"][0]["function"]["arguments"] = '{"command": "view", "path": '
    (tmp_path / "invalid.traj").write_text('{"trajectory": [')
    return {
        "good": _write(tmp_path / "pydicom__pydicom-1458.traj", good),
        "int_action": _write(tmp_path / "int_action.traj", int_action),
        "bad_args": _write(tmp_path / "bad_args.traj", bad_args),
        "invalid": tmp_path / "invalid.traj",
        "k": k,
    }


def test_int_action_names_file_record_and_field(bad_files):
    with pytest.raises(ReadError) as err:
        read_file(bad_files["int_action"])
    message = str(err.value)
    assert str(bad_files["int_action"]) in message
    assert "record int_action" in message
    assert "'trajectory[3].action'" in message and "expected str, got int" in message


def test_non_json_tool_arguments_name_the_history_turn(bad_files):
    with pytest.raises(ReadError) as err:
        read_file(bad_files["bad_args"])
    assert err.value.field == f"history[{bad_files['k']}].tool_calls.function.arguments"
    assert err.value.record == "pandas-dev__pandas.95280573.pr_53652"
    assert str(bad_files["bad_args"]) in str(err.value) and "not valid JSON" in str(err.value)


def test_invalid_json_names_the_file(bad_files):
    with pytest.raises(ReadError) as err:
        read_file(bad_files["invalid"])
    assert str(bad_files["invalid"]) in str(err.value) and err.value.reason == "invalid JSON"


def test_a_folder_with_bad_records_keeps_going(bad_files):
    report = ReadReport()
    trajs = list(read_trajectories([bad_files["good"].parent], report=report))
    assert [t.instance_id for t in trajs] == ["pydicom__pydicom-1458"]
    assert report.files == 4 and report.records == 4
    assert report.skipped == {
        "bad field trajectory[3].action": 1,
        "unparseable action (function_calling)": 1,
        "invalid JSON": 1,
    }
    assert len(report.errors) == 3 and all("file " in e for e in report.errors)


def test_history_only_record_with_bad_tool_call(tmp_path: Path):
    record = load(DATA / "sweagent/function_calling_simple.traj")
    record["history"][4]["tool_calls"][0]["function"]["arguments"] = "not json"
    with pytest.raises(ReadError) as err:
        read_file(_write(tmp_path / "fc.traj", record))
    assert err.value.field == "history[4].tool_calls.function.arguments"
