"""The compiled parts of the reward (setup.py): the difflib kernel (_ratcliff.c) against the standard
library, to the last bit, and the fast reader of canonical completions (_xmlcall.c) against the
general parser, on every pair `scripts/bench.py reward` times. Random inputs: test_rewards_properties.py.

Expected values come from the standard library (difflib) and from the general parser with the fast
path switched off — never from the code under test.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srl_agent import actions, schema
from srl_agent.actions import render
from srl_agent.rewards import StepReward, completion, srl_reward
from srl_agent.rewards.similarity import DIFFLIB_KERNEL, DifflibRatio, get_similarity

from .test_rewards import ROOT, THINK

EXTENSIONS = ("_ratcliff", "_xmlcall")
# CI sets it (.ci/run): there a kernel that did not compile is a failure, not a slower fallback.
REQUIRED = bool(os.environ.get("SRL_REQUIRE_EXTENSIONS"))


def _module(name: str):
    return importlib.import_module(f"srl_agent.rewards.{name}") if importlib.util.find_spec(f"srl_agent.rewards.{name}") else None

ratcliff, xmlcall = (_module(n) for n in EXTENSIONS)
# Every difflib implementation the reward may use: the C kernel and the cydifflib fallback.
KERNELS = {"cydifflib": DifflibRatio()} | ({"ratcliff": ratcliff.ratio} if ratcliff else {})
needs_xmlcall = pytest.mark.skipif(xmlcall is None, reason="_xmlcall is not compiled")


def test_the_extensions_are_compiled():
    missing = [n for n in EXTENSIONS if importlib.util.find_spec(f"srl_agent.rewards.{n}") is None]
    if missing and not REQUIRED:
        pytest.skip(f"not compiled: {missing} (the reward falls back to cydifflib and the general parser)")
    assert not missing, f"SRL_REQUIRE_EXTENSIONS is set but {missing} did not compile: `pip install -e .` builds them (gcc, Python.h)"
    assert DIFFLIB_KERNEL == "ratcliff" and get_similarity("difflib") is ratcliff.ratio
    assert completion.read_canonical is xmlcall.read_canonical and completion.canonical_action is xmlcall.canonical_action


@pytest.fixture(scope="module")
def bench_groups(shared_data):
    """The benchmark's groups: each real step's expert action and its near misses, as completions."""
    spec = importlib.util.spec_from_file_location("srl_bench", ROOT / "scripts" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench._reward_groups(shared_data)


def _blocks(a: str, b: str) -> tuple[float, int]:
    m = difflib.SequenceMatcher(None, a, b)
    return m.ratio(), sum(block.size for block in m.get_matching_blocks())


# --- the difflib kernel --------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_benchmark_pair_is_bit_identical_to_difflib(bench_groups, kernel):
    ratio = KERNELS[kernel]
    pairs = [(a, g["expert"]) for g in bench_groups for a in g["actions"]]
    assert len(pairs) > 3000 and max(len(a) for a, _ in pairs) > 10_000
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            want, matched = _blocks(x, y)
            assert ratio(x, y) == want
            if kernel == "ratcliff":
                assert ratcliff.matched(x, y) == matched


# Small alphabets make characters "popular" (> 1% of b once b has 200 characters: difflib's
# autojunk) and give many equally long matches, so the tie-breaking order shows.
_alphabets = st.sampled_from(["ab", "ab \n", "aé中😀 ", "".join(map(chr, range(250, 262))), "xyz()=_\n\t "])


@st.composite
def string_pairs(draw):
    alphabet = draw(_alphabets)
    a = draw(st.text(alphabet, max_size=700))
    if draw(st.booleans()):  # b an edited copy of a: long matches and near ties
        b = list(a)
        for _ in range(draw(st.integers(0, 12))):
            i = draw(st.integers(0, len(b)))
            b[i:i + draw(st.integers(0, 5))] = draw(st.text(alphabet, max_size=4))
        b = "".join(b)
    else:
        b = draw(st.text(alphabet, max_size=700))
    return a, b


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=string_pairs())
def test_random_pairs_are_bit_identical_to_difflib(pair):
    a, b = pair
    for x, y in ((a, b), (b, a), (a, a)):
        want, matched = _blocks(x, y)
        for ratio in KERNELS.values():
            assert ratio(x, y) == want
        if ratcliff:
            assert ratcliff.matched(x, y) == matched


@pytest.mark.skipif(ratcliff is None, reason="_ratcliff is not compiled")
def test_ratcliff_edges():
    r = ratcliff.ratio
    assert (r("", ""), r("a", ""), r("", "a"), r("abc", "abc")) == (1.0, 0.0, 0.0, 1.0)
    popular = "ab" * 150 + "c" + "ab" * 150  # only "c" is left in b2j: the rest comes from extending
    for a in (popular, popular[::-1], popular[:200], "c", "x" * 300):
        assert r(a, popular) == difflib.SequenceMatcher(None, a, popular).ratio()
    with pytest.raises(TypeError):
        r(b"ab", "ab")
    with pytest.raises(TypeError):
        r("ab")
    assert pickle.loads(pickle.dumps(r)) is r


# --- the canonical reader ------------------------------------------------------------------------


def general_parse(text: str, style: str = "xml"):
    """parse_completion without the fast path: a ParsedCompletion, or the FormatError's reason."""
    saved, completion.read_canonical = completion.read_canonical, None
    try:
        return completion.parse_completion(text, style)
    except completion.FormatError as e:
        return e.reason
    finally:
        completion.read_canonical = saved


def agrees_with_the_general_parser(text: str) -> bool:
    """True when read_canonical read `text`; it must then say what the general parser says."""
    fast = xmlcall.read_canonical(text)
    assert xmlcall.canonical_action(text) == (fast and fast[3])
    if fast is None:
        return False
    general = general_parse(text)
    assert not isinstance(general, str), f"fast path read a completion the general parser rejects ({general})"
    assert fast == (general.thought, general.call.name, general.call.arguments, render(general.call))
    assert list(fast[2]) == list(general.call.arguments)  # the same order too (logs keep it)
    return True


@needs_xmlcall
def test_the_tables_mirror_the_python_constants():
    assert xmlcall.tables() == {"editor_arguments": list(actions._EDITOR_ARG_ORDER),
                                "editor_commands": list(schema.EDITOR_COMMANDS)}


@needs_xmlcall
def test_every_benchmark_completion_is_read_as_the_general_parser_reads_it(bench_groups):
    texts = [c for g in bench_groups for c in g["completions"]]
    assert all(agrees_with_the_general_parser(t) for t in texts)  # all canonical: all on the fast path
    # The same calls written otherwise: some stay on the fast path, the rest must be left to the general parser.
    for t in texts[::7]:
        head, call = t.split("\n", 1)
        for variant in (f"  {head}\nSo:\n{call}\nDone.", f"{head}{call}", t.replace("\n</function>", "</function>"),
                        t.replace("<parameter=", "<parameter= ", 1), t + "\n" + call, t.replace("</think>", " ") + call):
            agrees_with_the_general_parser(variant)


@needs_xmlcall
@pytest.mark.parametrize("text,read", [
    (THINK + "<function=submit>\n</function>", True),
    ("\n \u00a0" + THINK + "<function=bash>\n<parameter=command>ls</parameter>\n</function>\n", True),
    (THINK + "<function=bash>\n<parameter=command>\nls\n</parameter>\n</function>", False),  # render writes it unwrapped
    (THINK + "<function=bash>\n<parameter=command>\nls\npwd\n</parameter>\n</function>", True),
    (THINK + "<function=bash>\n<parameter=command> </parameter>\n</function>", False),  # blank: bad_arguments
    (THINK + "<function=finish>\n</function>", False),  # an alias: render names it submit
    (THINK + "<function=str_replace_editor>\n<parameter=path>/a</parameter>\n<parameter=command>view</parameter>\n</function>", False),
    (THINK + "<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>/a</parameter>\n"
     "<parameter=view_range>[1, -1]</parameter>\n</function>", True),
    (THINK + "<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>/a</parameter>\n"
     "<parameter=view_range>[1,5]</parameter>\n</function>", False),
    (THINK + "<function=str_replace_editor>\n<parameter=command>insert</parameter>\n<parameter=path>/a</parameter>\n"
     "<parameter=insert_line>007</parameter>\n<parameter=new_str>x</parameter>\n</function>", False),
    (THINK + "<function=str_replace_editor>\n<parameter=command>delete</parameter>\n<parameter=path>/a</parameter>\n</function>", False),
    ("<think>a</think><think>b</think><function=submit>\n</function>", False),
    ("<think> \n</think><function=submit>\n</function>", False),
])
def test_read_canonical_cases(text, read):
    assert agrees_with_the_general_parser(text) == read


# --- the reward-only path -------------------------------------------------------------------------


@pytest.mark.parametrize("similarity", ["difflib", "lcs"])
@pytest.mark.parametrize("mode", ["paper", "tool-aware"])
def test_rewards_without_breakdowns_equal_the_breakdowns(bench_groups, mode, similarity):
    """SRLReward without a log (StepReward.rewards) gives what it gives with one, breakdown by breakdown."""
    bare, log = srl_reward(mode, similarity), []
    logged = srl_reward(mode, similarity, log=log.append)
    scorer = StepReward(mode, similarity)
    for g in bench_groups[::3]:
        completions = g["completions"] + [g["completions"][0], "no think", THINK + "no call"]
        k = len(completions)
        columns = {"expert_action": [g["expert"]] * k, "expert_tool_call": [g["call"]] * k}
        got = bare(None, completions, **columns)
        assert got == logged(None, completions, **columns) == [r["reward"] for r in log[-k:]]
        assert got == [scorer(c, g["expert"], g["call"]).reward for c in completions]
    if (mode, similarity) == ("paper", "difflib"):
        for g in bench_groups:
            k = len(g["actions"])
            got = bare(None, g["completions"], expert_action=[g["expert"]] * k, expert_tool_call=[g["call"]] * k)
            assert got == [difflib.SequenceMatcher(None, a, g["expert"]).ratio() for a in g["actions"]]
