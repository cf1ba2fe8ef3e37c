"""Property tests (hypothesis) for the SRL step reward.

Calls are drawn at random; files to edit are real source files (stdlib modules and the expert
`create` bodies of the public trajectories); expert actions are real steps where it matters.
"""

from __future__ import annotations

import difflib
import shlex
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from srl_agent.actions import render
from srl_agent.rewards import StepReward
from srl_agent.rewards.perturb import equivalent_edit
from srl_agent.rewards.similarity import get_similarity
from srl_agent.rewards.step_reward import shell_words
from srl_agent.schema import ToolCall

THINK = "<think>Plan the step.</think>\n"
MODES = ["paper", "tool-aware"]
SCORERS = {(m, s): StepReward(m, s) for m in MODES for s in ("difflib", "lcs")}
REAL_FILES = [Path(m.__file__).read_text() for m in (textwrap, difflib, shlex)]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Parameter values the XML format can carry: no markup of its own inside, no leading/trailing blanks.
_markup = ("<function", "</function", "<parameter", "</parameter", "<think", "</think", "<tool_call", "```")
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=60).filter(
    lambda v: v.strip() == v and not any(m in v for m in _markup)
)
paths = st.lists(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), min_size=1, max_size=4).map(
    lambda parts: "/testbed/" + "/".join(parts) + ".py"
)


@st.composite
def calls(draw) -> ToolCall:
    kind = draw(st.sampled_from(["bash", "submit", "view", "str_replace", "insert", "create"]))
    if kind == "bash":
        return ToolCall("bash", {"command": draw(text)})
    if kind == "submit":
        return ToolCall("submit", {})
    args = {"command": kind, "path": draw(paths)}
    if kind == "view" and draw(st.booleans()):
        start = draw(st.integers(0, 500))
        args["view_range"] = [start, draw(st.sampled_from([-1, start + draw(st.integers(0, 80))]))]
    elif kind == "str_replace":
        args |= {"old_str": draw(text), "new_str": draw(text)}
    elif kind == "insert":
        args |= {"insert_line": draw(st.integers(0, 300)), "new_str": draw(text)}
    elif kind == "create":
        args["file_text"] = draw(text)
    return ToolCall("str_replace_editor", args)


@SETTINGS
@given(cand=calls(), expert=calls(), snapshot=st.none() | st.sampled_from(REAL_FILES),
       mode=st.sampled_from(MODES), sim=st.sampled_from(["difflib", "lcs"]))
def test_rewards_lie_in_unit_interval_or_minus_one(cand, expert, snapshot, mode, sim):
    b = SCORERS[mode, sim](THINK + render(cand), render(expert), expert.to_dict(), snapshot)
    assert 0.0 <= b.reward <= 1.0 and b.format_error is None


@SETTINGS
@given(garbage=st.text(max_size=200), expert=calls(), mode=st.sampled_from(MODES))
def test_arbitrary_text_scores_in_range(garbage, expert, mode):
    b = SCORERS[mode, "difflib"](garbage, render(expert), expert.to_dict())
    assert b.reward == -1.0 or 0.0 <= b.reward <= 1.0
    assert (b.reward == -1.0) == (b.format_error is not None)


@SETTINGS
@given(call=calls(), mode=st.sampled_from(MODES), sim=st.sampled_from(["difflib", "lcs"]))
def test_the_expert_action_scores_one(call, mode, sim):
    action = render(call)
    assert SCORERS[mode, sim](THINK + action, action, call.to_dict()).reward == 1.0


@SETTINGS
@given(cand=calls(), expert=calls())
def test_paper_equals_difflib_exactly(cand, expert):
    a, b = render(cand), render(expert)
    assert SCORERS["paper", "difflib"](THINK + a, b, expert.to_dict()).reward == difflib.SequenceMatcher(None, a, b).ratio()


# Long strings over small alphabets make most characters "popular" (> 1% of b), which exercises
# difflib's autojunk path; several a's against one b exercise the cached matcher.
@SETTINGS
@given(b=st.text("ab \n(x)", min_size=0, max_size=400), as_=st.lists(st.text("ab \n(x)", max_size=400), min_size=1, max_size=4))
def test_difflib_backend_matches_the_standard_library(b, as_):
    ratio = get_similarity("difflib")
    for a in as_:
        assert ratio(a, b) == difflib.SequenceMatcher(None, a, b).ratio()


@st.composite
def real_edits(draw):
    """A str_replace on a real file, and the same edit with a different old_str window."""
    body = draw(st.sampled_from(REAL_FILES))
    lines = body.split("\n")
    start = draw(st.integers(5, len(lines) - 10))
    old = "\n".join(lines[start : start + draw(st.integers(1, 4))])
    assume(old.strip() and body.count(old) == 1)
    new_line = draw(st.from_regex(r"    [a-z_]{1,10} = [0-9]{1,4}", fullmatch=True))
    new = old + "\n" + new_line if draw(st.booleans()) else new_line + "\n" + old
    args = {"command": "str_replace", "path": "/testbed/mod.py", "old_str": old, "new_str": new}
    wider = equivalent_edit(args, body, draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    assume(wider is not None and wider != args)
    return body, args, wider


@SETTINGS
@given(edit=real_edits(), sim=st.sampled_from(["difflib", "lcs"]))
def test_an_equivalent_edit_with_another_window_scores_one(edit, sim):
    body, args, wider = edit
    assert body.replace(wider["old_str"], wider["new_str"]) == body.replace(args["old_str"], args["new_str"])
    expert = ToolCall("str_replace_editor", args)
    b = SCORERS["tool-aware", sim](THINK + render(ToolCall("str_replace_editor", wider)), render(expert), expert.to_dict(), body)
    assert (b.reward, b.fallback) == (1.0, False)


def _break(call: ToolCall, how: str) -> str:
    action = render(call)
    if how == "no_think":
        return action
    if how == "no_call":
        return THINK + "I would run a command here."
    if how == "multiple_calls":
        return THINK + action + "\n" + action
    if how == "unknown_tool":
        return THINK + action.replace(f"<function={call.name}>", "<function=open_file>")
    if call.name == "submit":  # submit takes no arguments: break an editor call instead (no path)
        return THINK + "<function=str_replace_editor>\n<parameter=command>view</parameter>\n</function>"
    return THINK + action.replace("<parameter=command>", "<parameter=commandx>")  # the required argument is gone


@SETTINGS
@given(call=calls(), how=st.sampled_from(["no_think", "no_call", "multiple_calls", "unknown_tool", "bad_arguments"]),
       mode=st.sampled_from(MODES))
def test_a_broken_format_scores_minus_one_with_its_reason(call, how, mode):
    b = SCORERS[mode, "difflib"](_break(call, how), render(call), call.to_dict())
    assert (b.reward, b.format_error) == (-1.0, how)


def _shlex_words(command: str) -> list[str] | None:
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = ""
        return list(lexer)
    except ValueError:
        return None


@settings(max_examples=500, deadline=None)
@given(st.text("ab c\\'\"|&;()<>\n\t#$-./=*x\x0b\xa0", max_size=30))
def test_shell_words_agree_with_shlex(command):
    assert shell_words(command) == _shlex_words(command)


@pytest.mark.parametrize("sim", ["difflib", "lcs"])
def test_similarity_bounds(sim):
    f = get_similarity(sim)
    assert (f("", ""), f("a", ""), f("", "a"), f("abc", "abc")) == (1.0, 0.0, 0.0, 1.0)
