"""SWE-Gym and nebius hub rows. Expected steps are counted here from the raw rows, never from the
reader's output."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from srl_agent.readers import ReadError, ReadReport, detect_format, parse_record, read_file, read_trajectories

from .conftest import require_shared

DATA = require_shared()
SWEGYM = require_shared(DATA / "hf_samples/SWE-Gym_OpenHands-Sampled-Trajectories.sample_raw.json")
NEBIUS = require_shared(DATA / "hf_samples/nebius_SWE-agent-trajectories.sample_raw.json")

TOOL = {"execute_bash": "bash", "str_replace_editor": "str_replace_editor", "finish": "submit"}
LEGACY = {"open", "edit", "goto", "create", "scroll_up", "scroll_down", "find_file", "search_dir", "search_file"}
LAST_BLOCK = re.compile(r"^```[^\n]*\n(.*?)\n^```", re.S | re.M)


def swegym_rows() -> list[dict]:
    return json.loads(SWEGYM.read_text())


def nebius_rows() -> list[dict]:
    return json.loads(NEBIUS.read_text())


# --- SWE-Gym ---------------------------------------------------------------------------------------


def test_swegym_rows():
    rows, trajs = swegym_rows(), read_file(SWEGYM)
    assert len(trajs) == len(rows) == 5
    for row, traj in zip(rows, trajs, strict=True):
        assert detect_format(row) == "swegym" and traj.source_format == "swegym"
        # One step per tool call: several calls in one assistant turn are several steps.
        turns = [m for m in row["messages"] if m["role"] == "assistant"]
        calls = [(m, j, c) for m in turns for j, c in enumerate(m["tool_calls"] or [])]
        assert len(traj.steps) == len(calls)
        assert [s.action.name for s in traj.steps] == [TOOL[c["function"]["name"]] for _, _, c in calls]
        results = {m["tool_call_id"]: m["content"] for m in row["messages"] if m["role"] == "tool"}
        for (m, j, call), step in zip(calls, traj.steps, strict=True):
            assert step.thought == ((m["content"] or "").strip() if j == 0 else "")
            args = json.loads(call["function"]["arguments"])
            if step.action.name == "bash":
                assert step.action.arguments == {"command": args["command"]}
            if step.action.name == "str_replace_editor":
                assert (step.action.arguments["command"], step.action.arguments["path"]) == (
                    args["command"],
                    args["path"],
                )
            expected = results.get(call["id"])
            assert step.observation == (None if expected is None else expected.removeprefix("OBSERVATION:\n"))
        assert traj.instance_id == row["instance_id"].rsplit("_", 1)[0]
        assert traj.resolved is row["resolved"]
        assert traj.submission == row["test_result"]["git_patch"]
        assert "<pr_description>" not in traj.task.problem_statement
        assert traj.task.problem_statement in row["messages"][1]["content"]


def test_swegym_multi_call_turns_exist():
    # The sample holds turns with 2 and 4 calls; the step count above relies on splitting them.
    counts = {len(m["tool_calls"] or []) for r in swegym_rows() for m in r["messages"] if m["role"] == "assistant"}
    assert {0, 1, 2, 4} <= counts


def test_swegym_sft_xml_calls_map_execute_bash_to_bash():
    # SWE-Gym SFT rows (OpenHands' non-function-calling conversion) go through the swesmith xml style.
    row = {
        "instance_id": "python__mypy-15976",
        "messages": [
            {"role": "system", "content": "You are OpenHands agent."},
            {"role": "user", "content": "<pr_description>\nbug\n</pr_description>"},
            {
                "role": "assistant",
                "content": "Look.\n<function=execute_bash>\n<parameter=command>ls</parameter>\n</function>",
            },
            {"role": "user", "content": "EXECUTION RESULT of [execute_bash]:\nREADME"},
            {"role": "assistant", "content": "Done.\n<function=finish>\n</function>"},
        ],
    }
    traj = parse_record(row, "sft", fmt="swesmith")
    assert [(s.action.name, s.action.arguments) for s in traj.steps] == [("bash", {"command": "ls"}), ("submit", {})]
    assert traj.task.problem_statement == "bug"


# --- nebius ----------------------------------------------------------------------------------------


def test_nebius_rows():
    rows, trajs = nebius_rows(), read_file(NEBIUS)
    assert len(trajs) == len(rows) == 5
    for row, traj in zip(rows, trajs, strict=True):
        assert detect_format(row) == "nebius" and traj.source_format == "nebius"
        turns = row["trajectory"]
        ai = [i for i, t in enumerate(turns) if t["role"] == "ai"]
        assert len(traj.steps) == len(ai)
        for i, step in zip(ai, traj.steps, strict=True):
            block = LAST_BLOCK.findall(turns[i]["text"])[-1].strip()
            assert step.raw_action == block
            assert step.action.name == ("submit" if block == "submit" else "bash")
            assert step.legacy == (block.split()[0] in LEGACY)
            after = turns[i + 1]["text"] if i + 1 < len(turns) and turns[i + 1]["role"] == "user" else None
            assert step.observation == after
        assert traj.steps[-1].action.name == "submit"
        assert traj.instance_id == row["instance_id"].rsplit("_", 1)[0]
        assert traj.resolved is row["target"]
        assert traj.submission == row["generated_patch"]
        assert traj.system_prompt == turns[0]["system_prompt"]
        assert traj.task.problem_statement and "INSTRUCTIONS:" not in traj.task.problem_statement


def test_nebius_is_not_a_sweagent_traj():
    traj_file = next((DATA / "sweagent").glob("*.traj"))
    assert detect_format(json.loads(traj_file.read_text())) != "nebius"
    assert detect_format(nebius_rows()[0]) == "nebius"


# --- malformed rows --------------------------------------------------------------------------------


def bad_files(tmp_path: Path) -> dict[str, Path]:
    gym = swegym_rows()
    bad_args = copy.deepcopy(gym)
    bad_args[1]["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"command": "view", path'
    no_messages = copy.deepcopy(gym[:2])
    del no_messages[1]["messages"]
    neb = nebius_rows()
    string_traj = copy.deepcopy(neb[:3])
    string_traj[2]["trajectory"] = json.dumps(string_traj[2]["trajectory"])
    out = {}
    for name, rows in [
        ("bad_args.json", bad_args),
        ("no_messages.json", no_messages),
        ("string_traj.json", string_traj),
    ]:
        out[name] = tmp_path / name
        out[name].write_text(json.dumps(rows))
    return out


def test_malformed_rows_name_file_record_and_field(tmp_path):
    files = bad_files(tmp_path)
    cases = [
        ("bad_args.json", "record 1", "field 'messages[2].tool_calls[0].function.arguments'"),
        ("no_messages.json", "record 1", "field 'messages'"),
        ("string_traj.json", "record 2", "field 'trajectory'"),
    ]
    for name, record, field in cases:
        with pytest.raises(ReadError) as err:
            read_file(files[name])
        text = str(err.value)
        assert str(files[name]) in text and record in text and field in text, text


def test_folder_with_malformed_rows_keeps_going(tmp_path):
    bad_files(tmp_path)
    report = ReadReport()
    trajs = list(read_trajectories([tmp_path], report=report))
    # good rows: 4 of bad_args, 1 of no_messages, 2 of string_traj
    assert len(trajs) == 7
    assert dict(report.read) == {"swegym": 5, "nebius": 2}
    assert dict(report.skipped) == {
        "unparseable action (tool_calls)": 1,
        "missing field messages": 1,
        "bad field trajectory": 1,
    }
    assert len(report.errors) == 3 and all(str(tmp_path) in e for e in report.errors)
