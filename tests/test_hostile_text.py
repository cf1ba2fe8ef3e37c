"""Whatever a model writes, or a trainer hands in as a completion, scoring never raises.

The parser (`parse_completion`, every style) either reads a call or raises `FormatError` with a reason
code; the reward as TRL calls it (`SRLReward`, with and without a log, both modes, both backends,
every style) gives −1 with the reason, or a value in [0, 1]. Named cases first (each once raised out
of the reward and aborted a GRPO step), then hypothesis over arbitrary text, real completions bent
with markup fragments, and arbitrary nested JSON-shaped values as completions and as argument values.

Expert steps are real ones from the bundled trajectories; expected reasons come from the format table
(docs/architecture.md, "Format").
"""

from __future__ import annotations

import difflib
import json
import math
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srl_agent.actions import MAX_LINE_NUMBER, render
from srl_agent.readers import read_trajectories
from srl_agent.rewards import (
    REASONS,
    STYLES,
    UNSCORABLE,
    FormatError,
    StepReward,
    completion,
    parse_completion,
    srl_reward,
)
from srl_agent.rewards import step_reward as step_reward_module
from srl_agent.rewards.completion import read_canonical
from srl_agent.schema import ToolCall
from srl_agent.steps import iter_step_instances

from .conftest import SHARED, require_shared

THINK = "<think>Look at the file first.</think>\n"
MODES = ("paper", "tool-aware")
SIMILARITIES = ("difflib", "lcs")
CONFIGS = [(m, s, y) for m in MODES for s in SIMILARITIES for y in STYLES]
# A real file to edit (the snapshot of edit steps), small enough that diffs stay quick.
SNAPSHOT = Path(textwrap.__file__).read_text()
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Sink:
    def __init__(self):
        self.records = []

    def write(self, record):
        self.records.append(record)


def _steps() -> list[dict]:
    steps = list(iter_step_instances(read_trajectories([require_shared(SHARED)])))
    by_kind: dict[tuple, list[dict]] = {}
    for s in steps:
        call = s["expert_tool_call"]
        by_kind.setdefault((call["name"], call["arguments"].get("command") if call["name"] == "str_replace_editor" else ""), []).append(s)
    # A few of every kind of step: bash, submit and each editor command.
    return [s for group in by_kind.values() for s in group[:4]]


def _sed_step() -> dict:
    """An expert bash step that edited a.py (a sed), with the zero-context diff replay records for it: the
    policy's editor edits are then scored against that change (rewards.patch.bash_edit_similarity)."""
    lines = SNAPSHOT.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if line.strip() and lines.count(line) == 1)  # a line found once
    after = lines[:k] + ["# changed by sed\n"] + lines[k + 1 :]
    hunks = "".join(list(difflib.unified_diff(lines, after, "a/a.py", "b/a.py", n=0))[2:])
    call = {"name": "bash", "arguments": {"command": f"sed -i '{k + 1}s/.*/# changed by sed/' a.py"}}
    return {"line": lines[k].rstrip("\n"), "prompt": [{"role": "user", "content": "fix it"}], "expert_action": render(ToolCall.from_dict(call)),
            "expert_tool_call": call, "step_diff": f"diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n{hunks}"}


SED = _sed_step()
STEPS = [*_steps(), SED]
VIEW = next(s for s in STEPS if s["expert_tool_call"]["arguments"].get("command") == "view")
INSERT = next(s for s in STEPS if s["expert_tool_call"]["arguments"].get("command") == "insert")
BASH = next(s for s in STEPS if s["expert_tool_call"]["name"] == "bash")


def _snapshot(step: dict) -> str | None:
    edits = step["expert_tool_call"]["arguments"].get("command") in ("str_replace", "insert")
    return SNAPSHOT if edits or step.get("step_diff") else None


def is_reward(r) -> bool:
    return type(r) is float and not math.isnan(r) and (r == -1.0 or 0.0 <= r <= 1.0)


def parse_or_format_error(c, style: str) -> str | None:
    """None when the completion parses in ``style``, else the FormatError's reason; any other exception fails."""
    try:
        parse_completion(c, style)
    except FormatError as e:
        assert e.reason in REASONS, e.reason
        return e.reason
    return None


def score_everywhere(c, step: dict) -> dict[tuple, list[tuple]]:
    """(reward, reason) of ``c`` under every configuration, as TRL calls the reward: without a log
    (StepReward.rewards) and with one (the breakdowns), in a batch beside the expert's own action,
    which must score as it scores alone."""
    valid = THINK + step["expert_action"]
    columns = {"expert_action": [step["expert_action"]] * 2, "expert_tool_call": [step["expert_tool_call"]] * 2,
               "file_snapshot": [_snapshot(step)] * 2, "step_diff": [step.get("step_diff")] * 2}
    out = {}
    for mode, sim, style in CONFIGS:
        bare, sink, extra = srl_reward(mode, sim, style), _Sink(), {}
        logged = srl_reward(mode, sim, style, log=sink)
        alone = bare(prompts=[step["prompt"]], completions=[valid], **{k: v[:1] for k, v in columns.items()})
        got = []
        for rewards in (bare(prompts=[step["prompt"]] * 2, completions=[c, valid], **columns),
                        logged(prompts=[step["prompt"]] * 2, completions=[c, valid], log_extra=extra.__setitem__, **columns)):
            assert all(is_reward(r) for r in rewards), rewards
            assert rewards[1] == alone[0]  # the hostile completion leaves its batch alone
            got.append(rewards[0])
        record = sink.records[0]
        assert record["reward"] == got[1]
        assert (record["reward"] == -1.0) == (record["format_error"] is not None)
        assert record["format_error"] in (None, UNSCORABLE, *REASONS)
        assert got[0] == got[1], (mode, sim, style)
        out[mode, sim, style] = [(got[1], record["format_error"])]
    return out


def assert_refused(c, reasons: dict[str, str], step: dict, default: str = "no_call") -> None:
    """``c`` is a format error in every style (``reasons[style]``, else ``default``) and scores −1 with that reason."""
    want = {style: reasons.get(style, default) for style in STYLES}
    assert {style: parse_or_format_error(c, style) for style in STYLES} == want
    for (_, _, style), [(reward, reason)] in score_everywhere(c, step).items():
        assert (reward, reason) == (-1.0, want[style])
    for style in STYLES:  # StepReward's own breakdown, as score_file and the held-out check call it
        b = StepReward("tool-aware", style=style)(c, step["expert_action"], step["expert_tool_call"], _snapshot(step))
        assert (b.reward, b.format_error, b.call) == (-1.0, want[style], None)


def _editor_xml(command: str, extra: str) -> str:
    return (THINK + f"<function=str_replace_editor>\n<parameter=command>{command}</parameter>\n"
            f"<parameter=path>/testbed/a.py</parameter>\n{extra}</function>")


def _tool_call(name: str, arguments) -> str:
    return THINK + "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def _editor_json(raw_arguments: str) -> str:
    # raw_arguments: JSON text written by hand, so it may hold what json.dumps would never write
    return THINK + '<tool_call>{"name": "str_replace_editor", "arguments": {' + raw_arguments + "}}</tool_call>"


XML_BAD = {"xml": "bad_arguments", "any": "bad_arguments"}
JSON_BAD = {"json": "bad_arguments", "any": "bad_arguments"}


# --- the cases of the issue -----------------------------------------------------------------------


def test_view_range_overflow_is_a_format_error():
    assert_refused(_editor_xml("view", "<parameter=view_range>[1e309, 5]</parameter>\n"), XML_BAD, VIEW)
    assert_refused(_editor_json('"command": "view", "path": "/testbed/a.py", "view_range": [1e309, 5]'), JSON_BAD, VIEW)
    assert_refused(_editor_json('"command": "view", "path": "/testbed/a.py", "view_range": [NaN, -Infinity]'), JSON_BAD, VIEW)


def test_view_range_nested_5000_deep_is_a_format_error():
    deep = "[" * 5000 + "1, 2" + "]" * 5000
    assert_refused(_editor_xml("view", f"<parameter=view_range>{deep}</parameter>\n"), XML_BAD, VIEW)
    assert_refused(_editor_json(f'"command": "view", "path": "/testbed/a.py", "view_range": {deep}'), JSON_BAD, VIEW)
    assert_refused(THINK + "<tool_call>" + deep + "</tool_call>", JSON_BAD, VIEW)
    # Unbalanced too: json would recurse just the same before it found the text broken.
    assert_refused(_editor_json('"command": "view", "path": "/a", "view_range": ' + "[" * 5000), JSON_BAD, VIEW)


def test_insert_line_of_5001_digits_is_a_format_error():
    digits = "9" * 5001
    assert_refused(_editor_xml("insert", f"<parameter=insert_line>{digits}</parameter>\n<parameter=new_str>x</parameter>\n"),
                   XML_BAD, INSERT)
    assert_refused(_editor_json(f'"command": "insert", "path": "/testbed/a.py", "insert_line": {digits}, "new_str": "x"'),
                   JSON_BAD, INSERT)
    assert_refused(_editor_json(f'"command": "view", "path": "/testbed/a.py", "view_range": [1, {digits}]'), JSON_BAD, VIEW)
    # A long number in a field nobody reads is as bad: int() would spend quadratic time on it.
    assert_refused(THINK + '<tool_call>{"name": "bash", "arguments": {"command": "ls"}, "id": ' + digits + "}</tool_call>",
                   JSON_BAD, BASH)


def test_json_arguments_that_are_a_list_are_a_format_error():
    assert_refused(THINK + '<tool_call>{"name": "bash", "arguments": [1, 2]}</tool_call>', JSON_BAD, BASH)
    assert_refused(THINK + '<tool_call>{"name": "bash", "arguments": 7}</tool_call>', JSON_BAD, BASH)
    assert_refused(THINK + '<tool_call>{"name": "bash", "parameters": [["ls"]]}</tool_call>', JSON_BAD, BASH)
    # Arguments as a JSON string (OpenAI style) that holds a list, not an object.
    assert_refused(_tool_call("bash", "[1, 2]"), JSON_BAD, BASH)


def test_message_lists_that_are_not_messages_are_a_format_error():
    not_text = {style: "not_text" for style in STYLES}
    for c in (["not a message"], [1, 2], [None], [["nested"]], [{"role": "assistant", "content": THINK}, "x"],
              [{"role": "assistant", "content": 42}], [{"role": "assistant", "content": {"text": THINK}}],
              [{"role": "assistant", "content": [{"type": "text", "text": 42}]}],
              [{"role": "assistant", "content": "", "reasoning_content": ["plan"]}],
              [{"role": "assistant", "content": THINK, "tool_calls": "bash ls"}],
              [{"role": "assistant", "content": THINK, "tool_calls": [1]}],
              [{"role": "assistant", "content": THINK, "tool_calls": [{"function": "bash"}]}]):
        assert_refused(c, not_text, BASH)


def test_structured_tool_calls_json_cannot_write_are_bad_arguments():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    cyclic: dict = {"command": "ls"}
    cyclic["self"] = cyclic
    for arguments in (deep, {"command": "ls", "x": deep}, cyclic, {"command": {1, 2}}, {"command": "ls", "n": 10**5000},
                      {("a",): 1}):
        message = [{"role": "assistant", "content": THINK,
                    "tool_calls": [{"type": "function", "function": {"name": "bash", "arguments": arguments}}]}]
        assert_refused(message, {style: "bad_arguments" for style in STYLES}, BASH)


def test_completions_that_are_not_text_are_a_format_error():
    for c in (None, 42, 3.5, float("nan"), float("inf"), True, b"<think>x</think>", 10**5000):
        assert_refused(c, {style: "not_text" for style in STYLES}, BASH)
    # A dict is one message; one without text has no think block.
    assert_refused({"x": 1}, {style: "no_think" for style in STYLES}, BASH)


def test_line_numbers_beyond_a_billion_are_bad_arguments():
    for value in (MAX_LINE_NUMBER + 1, -MAX_LINE_NUMBER - 1, 10**18, 10**39):
        assert_refused(_editor_xml("view", f"<parameter=view_range>[1, {value}]</parameter>\n"), XML_BAD, VIEW)
        assert_refused(_editor_xml("insert", f"<parameter=insert_line>{value}</parameter>\n<parameter=new_str>x</parameter>\n"),
                       XML_BAD, INSERT)
        assert_refused(_editor_json(f'"command": "insert", "path": "/a", "insert_line": {value}, "new_str": "x"'), JSON_BAD, INSERT)
    assert_refused(_editor_json('"command": "insert", "path": "/a", "insert_line": 1e300, "new_str": "x"'), JSON_BAD, INSERT)
    # The bound itself is a line number, and the fast path (which reads 9 digits at most) agrees.
    for value in (MAX_LINE_NUMBER, MAX_LINE_NUMBER - 1, -MAX_LINE_NUMBER):
        text = _editor_xml("view", f"<parameter=view_range>[1, {value}]</parameter>\n")
        assert parse_completion(text).call.arguments["view_range"] == [1, value]
        saved, completion.read_canonical = completion.read_canonical, None
        try:
            general = parse_completion(text)
        finally:
            completion.read_canonical = saved
        if read_canonical is not None and read_canonical(text) is not None:
            assert read_canonical(text)[2] == general.call.arguments


def test_edit_texts_that_are_not_strings_are_bad_arguments():
    for value in ("5", "[1]", '{"a": 1}', "true"):
        assert_refused(_editor_json(f'"command": "str_replace", "path": "/a", "old_str": "x", "new_str": {value}'), JSON_BAD, INSERT)
        assert_refused(_editor_json(f'"command": "create", "path": "/a", "file_text": {value}'), JSON_BAD, INSERT)


def test_an_unforeseen_failure_scores_minus_one_unscorable(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(StepReward, "_tool_aware", broken)
    completions = [THINK + BASH["expert_action"], "no think"]
    columns = {"expert_action": [BASH["expert_action"]] * 2, "expert_tool_call": [BASH["expert_tool_call"]] * 2}
    sink = _Sink()
    assert srl_reward("tool-aware")(None, completions, **columns) == [-1.0, -1.0]
    assert srl_reward("tool-aware", log=sink)(None, completions, **columns) == [-1.0, -1.0]
    assert [(r["format_error"], r["error"]) for r in sink.records] == [(UNSCORABLE, "RuntimeError: a bug nobody foresaw"),
                                                                       ("no_think", sink.records[1]["error"])]
    # The fast paper path, which does not go through the breakdown, falls back to it.
    monkeypatch.setattr(step_reward_module.StepReward, "_score", broken)
    paper = srl_reward("paper")
    monkeypatch.setattr(paper.scorer, "similarity", broken)
    assert paper(None, completions, **columns) == [-1.0, -1.0]


def test_columns_that_do_not_hash_do_not_raise():
    # A trainer's junk column is not model-writable, but it must not abort the step either.
    for snapshot in (["a list"], {"a": 1}):
        for mode, sim, style in CONFIGS:
            for log in (None, [].append):
                got = srl_reward(mode, sim, style, log=log)(None, [THINK + BASH["expert_action"]], expert_action=[BASH["expert_action"]],
                                                            expert_tool_call=[BASH["expert_tool_call"]], file_snapshot=[snapshot])
                assert all(is_reward(r) for r in got)


# --- properties -----------------------------------------------------------------------------------

_FRAGMENTS = ["<think>", "</think>", "<function=", "<function=str_replace_editor>\n", "</function>", "<parameter=",
              "<parameter=view_range>", "<parameter=insert_line>", "</parameter>\n", "<tool_call>", "</tool_call>",
              "```bash\n", "```", "[", "]", "[[[[", "{", "}", '"', '\\"', ",", ":", "\n", " ", "\u2028", "\x00", "é"]
# What a number or a range may be bent into: too large, not finite, too long, too deep.
_NUMBERS = ["1e309", "-1e309", "NaN", "Infinity", "0", "7", "-1", "9" * 60, "99999999999", "9" * 5001, "[" * 3000,
            "[" * 3000 + "1, 2" + "]" * 3000]
_VALUE_START = re.compile(r'<parameter=[^>]*>|": |\[')
_large_ints = st.sampled_from([MAX_LINE_NUMBER, MAX_LINE_NUMBER + 1, -MAX_LINE_NUMBER - 1, 10**39, 10**40, 2**63, -(2**63)])
_scalars = (st.none() | st.booleans() | st.integers() | _large_ints | st.floats(allow_nan=True, allow_infinity=True)
            | st.text(max_size=12) | st.sampled_from(["view", "insert", "/testbed/a.py", "[1, 5]", "1e309", THINK]))
json_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.sampled_from(
        ["role", "content", "tool_calls", "function", "name", "arguments", "command", "path", "view_range", "text"]),
        inner, max_size=4),
    max_leaves=16)


def _as_json_call(call: dict) -> str:
    return THINK + "<tool_call>\n" + json.dumps({"name": call["name"], "arguments": call["arguments"]}) + "\n</tool_call>"


def _forms(step: dict) -> list[str]:
    """The step's call as a completion in each style a model writes."""
    forms = [THINK + step["expert_action"], _as_json_call(step["expert_tool_call"])]
    if step["expert_tool_call"]["name"] == "bash":
        forms.append(THINK + "```bash\n" + step["expert_tool_call"]["arguments"]["command"] + "\n```")
    return forms


@st.composite
def bent_completions(draw) -> tuple[str, dict]:
    step = draw(st.sampled_from(STEPS))
    text = draw(st.sampled_from(_forms(step)))
    for _ in range(draw(st.integers(1, 4))):
        # Half the time where a value starts, where a number is read.
        starts = [m.end() for m in _VALUE_START.finditer(text)]
        i = draw(st.sampled_from(starts) if starts and draw(st.booleans()) else st.integers(0, len(text)))
        j = i + draw(st.integers(0, 4))
        text = text[:i] + draw(st.sampled_from(_FRAGMENTS) | st.sampled_from(_NUMBERS) | st.text(max_size=3)) + text[j:]
    return text, step


def check(c, step: dict) -> None:
    for style in STYLES:
        parse_or_format_error(c, style)
    score_everywhere(c, step)


@SETTINGS
@given(text=st.text(max_size=300), step=st.sampled_from(STEPS))
def test_arbitrary_text_scores_minus_one_or_within_the_unit_interval(text, step):
    check(text, step)


@SETTINGS
@given(bent=bent_completions())
def test_bent_real_completions_score_minus_one_or_within_the_unit_interval(bent):
    check(*bent)


@SETTINGS
@given(value=json_values, step=st.sampled_from(STEPS))
def test_nested_values_as_completions_score_minus_one_or_within_the_unit_interval(value, step):
    check(value, step)
    check([value], step)
    check([{"role": "assistant", "content": value}], step)


@SETTINGS
@given(value=json_values, key=st.sampled_from(["view_range", "insert_line", "command", "path", "new_str", "file_text"]),
       command=st.sampled_from(["view", "insert", "str_replace", "create"]), step=st.sampled_from(STEPS))
def test_nested_values_as_arguments_score_minus_one_or_within_the_unit_interval(value, key, command, step):
    arguments = {"command": command, "path": "/testbed/a.py", "old_str": "x", "new_str": "y", "file_text": "z",
                 "insert_line": 3} | {key: value}
    check([{"role": "assistant", "content": THINK,
            "tool_calls": [{"type": "function", "function": {"name": "str_replace_editor", "arguments": arguments}}]}], step)
    check([{"role": "assistant", "content": THINK, "tool_calls": [{"function": {"name": "bash", "arguments": value}}]}], step)
    try:
        written = json.dumps(value)
    except ValueError:  # an int past Python's digit limit: no text holds it
        return
    check(_tool_call("str_replace_editor", arguments | {key: "<placeholder>"}).replace('"<placeholder>"', written), step)
    check(_editor_xml(command, f"<parameter={key}>{written}</parameter>\n"), step)
    check(THINK + render(ToolCall("str_replace_editor", arguments | {key: value})), step)


@pytest.mark.parametrize("style", STYLES)
def test_every_real_form_still_reads(style):
    # The bounds leave every real call alone: each form reads in its own style and in "any".
    for step in STEPS:
        for i, text in enumerate(_forms(step)):
            if style in ("any", ("xml", "json", "bash")[i]):
                assert parse_or_format_error(text, style) is None, (style, text[:200])


@SETTINGS
@given(value=json_values, key=st.sampled_from(["insert_line", "path", "old_str", "new_str", "file_text"]),
       command=st.sampled_from(["insert", "str_replace", "create"]))
def test_hostile_editor_edits_at_an_expert_sed_step_score_minus_one_or_within_the_unit_interval(value, key, command):
    """The editor-vs-bash comparison is reached by any edit of the file an expert's sed changed."""
    arguments = {"command": command, "path": "/testbed/a.py", "old_str": "x", "new_str": "y", "file_text": "z",
                 "insert_line": 3} | {key: value}
    scored = score_everywhere(THINK + render(ToolCall("str_replace_editor", arguments)), SED)
    assert all(reason != UNSCORABLE for [(_, reason)] in scored.values())  # handled, not a last-resort catch


def test_a_no_op_edit_at_an_expert_sed_step_earns_nothing():
    """An edit that changes nothing (old_str = new_str), or that rewrites the file as it was, is no fix."""
    line = SED["line"]
    scorer = StepReward("tool-aware")
    for args in ({"command": "str_replace", "path": "/testbed/a.py", "old_str": line, "new_str": line},
                 {"command": "create", "path": "/testbed/a.py", "file_text": SNAPSHOT}):
        b = scorer(THINK + render(ToolCall("str_replace_editor", args)), SED["expert_action"], SED["expert_tool_call"],
                   SNAPSHOT, SED["step_diff"])
        assert b.reward == 0.0, b.to_dict()
    same = {"command": "str_replace", "path": "/testbed/a.py", "old_str": line, "new_str": "# changed by sed"}
    assert scorer(THINK + render(ToolCall("str_replace_editor", same)), SED["expert_action"], SED["expert_tool_call"],
                  SNAPSHOT, SED["step_diff"]).reward == 1.0
