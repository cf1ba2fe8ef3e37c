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
from srl_agent.rewards import StepReward, completion
from srl_agent.rewards.completion import canonical_action, read_canonical
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
# difflib's autojunk path; several a's against one b exercise cydifflib's cached matcher where the
# C kernel is missing (both kernels: test_similarity_kernel.py).
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


# --- the fast reader of canonical completions (_xmlcall.c) ------------------------------------------
# It may read a completion only as the general parser reads it; anything else it must leave alone.
# Calls are drawn wild (aliases, unknown tools and arguments, values with newlines, blanks and markup)
# and rendered, then bent by inserting, replacing or deleting markup fragments, whitespace or text.

_FRAGMENTS = ["<think>", "</think>", "<function=", "<function=bash>", "<function=submit>\n", "</function>",
              "<parameter=", "<parameter=command>", "<parameter=path>", "</parameter>", "</parameter>\n", "\n",
              " ", "\u00a0", "\u2028", "<", ">", "=", "[", "]", ", ", "-", "0", "07", "view", "x", "é"]
_values = (st.lists(st.sampled_from(list("ab \n\t<>/=[],-0123") + ["\u00a0", "é", "中", "</parameter>"]), max_size=12).map("".join)
           | st.sampled_from(["", "\n", "\n\n", " ", "\nx", "x\n", "\nx\n", "\nx\ny\n", "-1", "0", "12"]))
_numbers = st.integers(-3, 300) | st.sampled_from([10**30]) | _values
_ranges = st.lists(st.integers(-2, 50), min_size=1, max_size=3) | _values


@st.composite
def wild_calls(draw) -> ToolCall:
    name = draw(st.sampled_from(["bash", "submit", "str_replace_editor", "finish", "execute_bash", "open_file"]))
    keys = draw(st.lists(st.sampled_from(["command", "cmd", "path", "file_text", "old_str", "new_str", "insert_line",
                                          "view_range", "other"]), max_size=5, unique=True))
    args = {}
    for k in keys:
        if k == "command" and name == "str_replace_editor" and draw(st.booleans()):
            args[k] = draw(st.sampled_from(["view", "create", "str_replace", "insert", "undo_edit", "delete"]))
        else:
            args[k] = draw(_numbers if k == "insert_line" else _ranges if k == "view_range" else _values)
    return ToolCall(name, args)


@st.composite
def bent_completions(draw) -> str:
    call = draw(calls() | wild_calls())
    text = draw(st.sampled_from(["", "  \n", "\u2003"])) + draw(st.sampled_from([THINK, "<think> x\n</think>", "<think>é</think>\n"]))
    text += draw(st.sampled_from(["", "Run it.\n", "<function=bash> ", "</function>"])) + render(call)
    text += draw(st.sampled_from(["", "\n", "\nDone.", "\n</function>", "\n<think>"]))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(text)))
        j = i + draw(st.integers(0, 3))
        text = text[:i] + draw(st.sampled_from(_FRAGMENTS) | st.text(max_size=2)) + text[j:]
    return text


@pytest.mark.skipif(read_canonical is None, reason="_xmlcall is not compiled")
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=bent_completions())
def test_the_fast_reader_agrees_with_the_general_parser(text):
    fast = read_canonical(text)
    assert canonical_action(text) == (fast and fast[3])
    saved, completion.read_canonical = completion.read_canonical, None
    try:
        general = completion.parse_completion(text)
    except completion.FormatError:
        general = None
    finally:
        completion.read_canonical = saved
    if fast is not None:
        assert general is not None
        assert fast == (general.thought, general.call.name, general.call.arguments, render(general.call))
    elif general is not None:
        # Left to the general parser: fine, unless the completion was canonical all along.
        assert THINK + render(general.call) != text or text.count("<function=") > 1


@pytest.mark.skipif(read_canonical is None, reason="_xmlcall is not compiled")
@SETTINGS
@given(call=calls(), think=st.sampled_from([THINK, " <think>\nplan\n</think>"]), after=st.sampled_from(["", "\nDone."]))
def test_the_fast_reader_reads_every_canonical_call(call, think, after):
    text = think + render(call) + after
    parsed = completion.parse_completion(text)
    assert read_canonical(text) == (parsed.thought, parsed.call.name, parsed.call.arguments, render(call))
    assert parsed.action == render(call)
