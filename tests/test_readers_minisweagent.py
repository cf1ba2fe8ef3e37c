"""mini-swe-agent reader against every mini-swe-agent trajectory in the shared data, with the
expected counts made here from the raw JSON (never from the reader's output)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from srl_agent.readers import ReadError, ReadReport, detect_format, read_file, read_trajectories
from srl_agent.readers.base import iter_file_records

from .conftest import require_shared

DATA = require_shared()
FILES = sorted((DATA / "minisweagent").glob("*.traj.json")) + sorted(
    (DATA / "minisweagent/verified").glob("*.traj.json")
)
BLOCK = re.compile(r"```(?:bash|mswea_bash_command)\s*\n")  # the opening fence of an action
FEEDBACK = "Please always provide EXACTLY ONE action"
MARKER = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def messages_of(raw) -> list[dict]:
    return raw if isinstance(raw, list) else raw["messages"]


def block_counts(raw) -> list[int]:
    return [len(BLOCK.findall(m["content"])) for m in messages_of(raw) if m["role"] == "assistant"]


def test_the_data_is_there():
    assert len(FILES) == 14
    assert sum(c != 1 for p in FILES for c in block_counts(load(p))) == 13  # format errors in the data


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_reads_with_independent_counts(path: Path):
    raw = load(path)
    (record,) = list(iter_file_records(path))  # a bare message list is one record, not rows
    assert detect_format(record.value) == "minisweagent"
    (traj,) = read_file(path)
    counts = block_counts(raw)
    assert len(traj.steps) == counts.count(1)
    assert traj.source_format == "minisweagent:bash_block"
    assert [s.action.name for s in traj.steps] == ["bash"] * (counts.count(1) - 1) + ["submit"]
    assert traj.steps[-1].raw_action.startswith(MARKER)
    for step in traj.steps[:-1]:
        assert step.observation.startswith("<returncode>")
        assert step.raw_action == step.action.arguments["command"]
        assert not step.thought.startswith("THOUGHT")
    if isinstance(raw, dict):
        assert traj.instance_id == raw["instance_id"] == path.name.removesuffix(".traj.json")
        assert traj.submission == raw["info"]["submission"]
        assert traj.task.image == raw["info"]["config"]["environment"]["image"]
        assert traj.steps[-1].observation == messages_of(raw)[-1]["content"]
    else:
        assert traj.instance_id == path.name.removesuffix(".traj.json")
        assert traj.submission is None
    assert traj.resolved is None
    assert traj.system_prompt == messages_of(raw)[0]["content"]


@pytest.mark.parametrize("path", [p for p in FILES if 0 in block_counts(load(p)) or max(block_counts(load(p))) > 1],
                         ids=lambda p: p.name)
def test_format_errors_and_their_feedback_are_dropped(path: Path):
    raw = load(path)
    msgs = messages_of(raw)
    retries = [msgs[i + 2]["content"] for i, m in enumerate(msgs)
               if m["role"] == "assistant" and len(BLOCK.findall(m["content"])) != 1]
    (traj,) = read_file(path)
    assert not any(FEEDBACK in (s.observation or "") for s in traj.steps)
    thoughts = [s.thought for s in traj.steps]
    # the turn after each rejected one is a step, with the observation that followed it
    for retry in retries:
        assert any(t and t in retry for t in thoughts)


def test_thought_keeps_code_sketches_before_the_action():
    path = DATA / "minisweagent/verified/pallets__flask-5014.traj.json"
    msgs = load(path)["messages"]
    turn = next(m["content"] for m in msgs if m["role"] == "assistant" and len(BLOCK.findall(m["content"])) == 1
                and "```python" in m["content"].split("```bash")[0])
    (traj,) = read_file(path)
    assert any("```python" in s.thought and s.thought in turn for s in traj.steps)


def test_task_text_without_template():
    (traj,) = read_file(DATA / "minisweagent/verified/django__django-11099.traj.json")
    assert traj.task.problem_statement.startswith("UsernameValidator allows trailing newline in usernames")
    (traj,) = read_file(DATA / "minisweagent/local.traj.json")
    assert traj.task.problem_statement == "Blah blah blah"


# --- synthetic and malformed records ----------------------------------------------------------------


def _mini(messages: list[dict]) -> dict:
    return {"instance_id": "o__r-1", "trajectory_format": "mini-swe-agent-1", "messages": messages,
            "info": {"exit_status": "Submitted", "submission": "diff"}}


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    out = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "<pr_description>\nfix\n</pr_description>"},
    ]
    for assistant, user in pairs:
        out += [{"role": "assistant", "content": assistant}, {"role": "user", "content": user}]
    return out


def test_old_submit_marker_and_last_turn_format_error(tmp_path: Path):
    record = _mini(_turns(
        ("THOUGHT: look\n\n```bash\nls\n```", "<returncode>0</returncode>\n<output>\na\n</output>"),
        ("THOUGHT: done\n\n```bash\necho MINI_SWE_AGENT_FINAL_OUTPUT; git diff\n```", "diff"),
    ))
    record["messages"].append({"role": "assistant", "content": "no action at all"})
    path = tmp_path / "x.traj.json"
    path.write_text(json.dumps(record))
    (traj,) = read_file(path)
    assert [s.action.name for s in traj.steps] == ["bash", "submit"]
    assert traj.steps[0].thought == "look" and traj.steps[1].observation == "diff"


def test_executed_but_unreadable_turn_is_an_error(tmp_path: Path):
    # two blocks, yet an observation followed: not a rejected turn, so it must not vanish silently
    two_blocks = "THOUGHT: x\n\n```bash\nls\n```\n```bash\npwd\n```"
    record = _mini(_turns((two_blocks, "<returncode>0</returncode>\n<output>\n</output>")))
    path = tmp_path / "two.traj.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ReadError) as err:
        read_file(path)
    assert err.value.field == "messages[2].content" and "record o__r-1" in str(err.value)
    assert str(path) in str(err.value)


def test_a_folder_with_bad_records_keeps_going(tmp_path: Path):
    good = load(DATA / "minisweagent/verified/django__django-11099.traj.json")
    bad_message = copy.deepcopy(good)
    bad_message["messages"][5] = "not a message"
    not_a_list = copy.deepcopy(good)
    not_a_list["messages"] = {"role": "user"}
    for name, record in [("good", good), ("bad_message", bad_message), ("not_a_list", not_a_list)]:
        (tmp_path / f"{name}.traj.json").write_text(json.dumps(record))
    (tmp_path / "broken.traj.json").write_text('{"messages": [')
    report = ReadReport()
    trajs = list(read_trajectories([tmp_path], report=report))
    assert [t.instance_id for t in trajs] == ["django__django-11099"]
    assert report.skipped == {"invalid JSON": 1, "malformed": 1, "bad field messages": 1}
    assert any("bad_message.traj.json" in e and "'messages[5]'" in e and "record django__django-11099" in e
               for e in report.errors)
