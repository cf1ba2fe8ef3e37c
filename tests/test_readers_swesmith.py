"""SWE-smith SFT rows in their three styles, on real transcripts."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from srl_agent.readers import ReadError, detect_format, parse_record, read_file

PANDAS_TRAJ = "swesmith/trajectories~pandas-dev__pandas.95280573.pr_53652~pandas-dev__pandas.95280573.pr_53652.traj"


def test_xml_rows_tool_names_match_the_text(shared_data):
    rows = [json.loads(line) for line in (shared_data / "swesmith/ft_xml_example.jsonl").open()]
    trajs = read_file(shared_data / "swesmith/ft_xml_example.jsonl")
    assert len(trajs) == len(rows)
    for row, traj in zip(rows, trajs, strict=True):
        names = [re.search(r"<function=(\w+)>", m["content"]).group(1) for m in row["messages"] if m["role"] == "assistant"]
        assert [s.action.name for s in traj.steps] == names
        assert traj.source_format == "swesmith:xml"
        # The last action of a finished SWE-smith run is submit.
        assert traj.steps[-1].action.name == "submit"
        observations = [m["content"] for m in row["messages"] if m["role"] == "user"][1:]
        assert [s.observation for s in traj.steps if s.observation is not None] == [
            o.removeprefix("OBSERVATION:\n") for o in observations
        ]


def test_hub_rows_with_json_string_messages(shared_data):
    rows = json.loads((shared_data / "hf_samples/SWE-smith-trajectories.sample_raw.json").read_text())
    for i, row in enumerate(rows):
        as_hub = dict(row, messages=json.dumps(row["messages"]))  # the hub stores messages as a JSON string
        traj = parse_record(as_hub, f"row {i}")
        assert len(traj.steps) == sum(m["role"] == "assistant" for m in row["messages"])
        assert traj.resolved is row["resolved"]
        assert traj.submission == row["patch"]


def _tool_split_row(shared_data):
    """A `tool`-split row as SWE-smith exports it: the .traj history (OpenAI tool_calls), as messages."""
    traj = json.loads((shared_data / PANDAS_TRAJ).read_text())
    messages = [{k: m[k] for k in ("role", "content", "tool_calls") if k in m} for m in traj["history"]]
    return {"instance_id": "pandas-dev__pandas.95280573.pr_53652", "messages": messages}


def test_tool_calls_style(shared_data):
    row = _tool_split_row(shared_data)
    traj = parse_record(row, "tool split")
    assert traj.source_format == "swesmith:tool_calls"
    expected = [json.loads(m["tool_calls"][0]["function"]["arguments"]) | {"_name": m["tool_calls"][0]["function"]["name"]}
                for m in row["messages"] if m["role"] == "assistant"]
    assert len(traj.steps) == len(expected)
    for step, want in zip(traj.steps, expected, strict=True):
        assert step.action.name == want["_name"]
        if want["_name"] == "str_replace_editor":
            assert step.action.arguments["command"] == want["command"]
            assert step.action.arguments["path"] == want["path"]
            if "old_str" in want:
                assert step.action.arguments["old_str"] == want["old_str"]


def test_ticks_style(shared_data):
    """SWE-smith's ticks export: the thought, then the command line in a fenced block."""
    row = _tool_split_row(shared_data)
    ticks_msgs = []
    for m in row["messages"]:
        if m["role"] == "assistant":
            fn = m["tool_calls"][0]["function"]
            args = json.loads(fn["arguments"])
            if fn["name"] == "bash":
                line = args["command"]
            elif fn["name"] == "submit":
                line = "submit"
            else:
                line = f"str_replace_editor {args['command']} {shlex.quote(args['path'])}"
                for key in ("file_text", "old_str", "new_str", "insert_line"):
                    if key in args:
                        line += f" --{key} {shlex.quote(str(args[key]))}"
                if "view_range" in args:
                    line += " --view_range " + " ".join(str(v) for v in args["view_range"])
            ticks_msgs.append({"role": "assistant", "content": f"{m['content']}\n\n```\n{line}\n```"})
        else:
            ticks_msgs.append({"role": m["role"], "content": m["content"]})
    tick_traj = parse_record({"instance_id": row["instance_id"], "messages": ticks_msgs}, "ticks")
    tool_traj = parse_record(row, "tool")
    assert tick_traj.source_format == "swesmith:ticks"
    assert [s.action for s in tick_traj.steps] == [s.action for s in tool_traj.steps]


def test_bad_rows_name_the_field(shared_data):
    row = _tool_split_row(shared_data)
    first = next(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
    row["messages"][first]["tool_calls"][0]["function"]["arguments"] = "{not json"
    with pytest.raises(ReadError) as e:
        parse_record(row, "x")
    assert f"messages[{first}]" in str(e.value) and "arguments" in str(e.value)
    with pytest.raises(ReadError, match="messages"):
        parse_record({"instance_id": "x", "messages": "[broken"}, "x", fmt="swesmith")
    assert detect_format({"instance_id": "x"}) is None


def test_swegym_sft_rows(shared_data):
    """SWE-Gym's SFT rows: the sampled rows converted as OpenHands does (calls as <function=…> text,
    results as 'EXECUTION RESULT of [tool]:' user turns), with only ``messages``."""
    rows = json.loads((shared_data / "hf_samples/SWE-Gym_OpenHands-Sampled-Trajectories.sample_raw.json").read_text())
    row = next(r for r in rows if all(len(m.get("tool_calls") or []) <= 1 for m in r["messages"]))
    talk = sum(m["role"] == "assistant" and not m.get("tool_calls") for m in row["messages"])
    messages, names, outputs = [], [], []
    for m in row["messages"]:
        calls = m.get("tool_calls") or []
        if m["role"] == "assistant" and calls:
            fn = calls[0]["function"]
            params = "".join(f"<parameter={k}>{v}</parameter>\n" for k, v in json.loads(fn["arguments"]).items())
            messages.append({"role": "assistant", "content": f"{m['content'] or ''}\n<function={fn['name']}>\n{params}</function>"})
            names.append(fn["name"])
        elif m["role"] == "assistant":  # a message to the user, no call
            messages.append({"role": "assistant", "content": m["content"]})
        elif m["role"] == "tool":
            body = m["content"].removeprefix("OBSERVATION:\n")
            messages.append({"role": "user", "content": f"EXECUTION RESULT of [{m['name']}]:\n{body}"})
            outputs.append(body)
        elif m["role"] in ("system", "user"):
            messages.append({"role": m["role"], "content": m["content"]})
    traj = parse_record({"messages": messages}, "SWE-Gym/OpenHands-SFT-Trajectories:7")
    mapping = {"execute_bash": "bash", "finish": "submit", "str_replace_editor": "str_replace_editor"}
    assert [s.action.name for s in traj.steps] == [mapping[n] for n in names]
    assert [s.observation for s in traj.steps if s.observation is not None] == outputs
    assert traj.instance_id
    assert traj.dropped_turns == talk > 0


def test_recorded_snapshots_reach_the_step_instances(shared_data):
    from srl_agent.steps import step_instances

    row = json.loads((shared_data / "swesmith/ft_xml_example.jsonl").open().readline())
    edits = [k for k, m in enumerate(m for m in row["messages"] if m["role"] == "assistant")
             if "<parameter=command>str_replace</parameter>" in m["content"]]
    assert edits
    row["snapshots"] = {str(k): f"content before step {k}\n" for k in edits}
    traj = parse_record(row, "x")
    insts = list(step_instances(traj))
    assert [i["step_index"] for i in insts if i["file_snapshot"]] == edits
    assert insts[edits[0]]["file_snapshot"] == f"content before step {edits[0]}\n"
    with pytest.raises(ReadError, match="snapshots.999"):
        parse_record(dict(row, snapshots={"999": "x"}), "x")
