"""SRL step rewards on real trajectory steps: parsing, the similarity backends, both modes, patch
similarity and the TRL reward callable (the ranking check and the CLI: test_rewards_real.py).

Expected values come from the standard library (difflib), hand counts, or the construction of the
input — never from the reward code itself.
"""

from __future__ import annotations

import difflib
import pickle
import textwrap
from pathlib import Path

import pytest

from srl_agent.actions import render
from srl_agent.readers import read_trajectories
from srl_agent.rewards import StepReward, parse_completion, srl_reward
from srl_agent.rewards.perturb import equivalent_edit, perturbations
from srl_agent.rewards.similarity import get_similarity
from srl_agent.schema import ToolCall
from srl_agent.steps import iter_step_instances

ROOT = Path(__file__).resolve().parents[1]
THINK = "<think>Check the code path first.</think>\n"
BASH_LS = "<function=bash>\n<parameter=command>ls -la /testbed</parameter>\n</function>"
# A real file body to edit: a stdlib module (real code, and present wherever Python is).
BODY = Path(textwrap.__file__).read_text()


@pytest.fixture(scope="module")
def steps(shared_data):
    return list(iter_step_instances(read_trajectories([shared_data])))


def embed(old: str) -> str | None:
    """A snapshot holding ``old`` once, at a line boundary in the middle of a real file."""
    lines = BODY.split("\n")
    snap = "\n".join(lines[: len(lines) // 2]) + "\n" + old + "\n" + "\n".join(lines[len(lines) // 2 :])
    return snap if snap.count(old) == 1 else None


def str_replace_steps(steps):
    return [s for s in steps if s["expert_tool_call"]["arguments"].get("command") == "str_replace"
            and s["expert_tool_call"]["arguments"].get("old_str")]


# --- parsing ------------------------------------------------------------------------------------


def test_the_three_styles_read_as_the_same_call():
    xml = THINK + BASH_LS
    as_json = THINK + '<tool_call>\n{"name": "bash", "arguments": {"command": "ls -la /testbed"}}\n</tool_call>'
    as_bash = THINK + "I will list it.\n```bash\nls -la /testbed\n```"
    expected = ToolCall("bash", {"command": "ls -la /testbed"})
    for text, style in ((xml, "xml"), (as_json, "json"), (as_bash, "bash")):
        assert parse_completion(text, style).call == expected
        assert parse_completion(text, "any").call == expected
    # Arguments as a JSON string (OpenAI style), and the harness aliases of our tools.
    alias = THINK + '<tool_call>{"name": "execute_bash", "arguments": "{\\"command\\": \\"ls\\"}"}</tool_call>'
    assert parse_completion(alias, "json").call == ToolCall("bash", {"command": "ls"})
    finish = THINK + "<function=finish>\n</function>"
    assert parse_completion(finish).call == ToolCall("submit", {})


def test_conversational_completions_are_read_from_the_assistant_turn():
    expected = ToolCall("bash", {"command": "ls -la /testbed"})
    assert parse_completion([{"role": "assistant", "content": THINK + BASH_LS}]).call == expected
    parsed = [{"role": "assistant", "content": "", "reasoning_content": "List the repository.",
               "tool_calls": [{"type": "function", "function": {"name": "bash", "arguments": {"command": "ls -la /testbed"}}}]}]
    got = parse_completion(parsed, "json")
    assert got.call == expected and got.thought == "List the repository."


BROKEN = [
    (BASH_LS, "xml", "no_think"),
    ("<think> </think>\n" + BASH_LS, "xml", "no_think"),
    ("Sure. <think>x</think>\n" + BASH_LS, "xml", "no_think"),
    (THINK + "<think>again</think>" + BASH_LS, "xml", "no_think"),
    (THINK + "I would list the files.", "xml", "no_call"),
    ("<think>" + BASH_LS + "</think>\nDone.", "xml", "no_call"),
    (THINK + '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>', "xml", "no_call"),
    (THINK + BASH_LS + "\n" + BASH_LS, "xml", "multiple_calls"),
    (THINK + BASH_LS + "\n```bash\nls\n```", "any", "multiple_calls"),
    (THINK + "```bash\nls\n```\n```bash\npwd\n```", "bash", "multiple_calls"),
    (THINK + "<function=open_file>\n<parameter=path>/testbed/a.py</parameter>\n</function>", "xml", "unknown_tool"),
    (THINK + "<function=bash>\n<parameter=cmdline>ls</parameter>\n</function>", "xml", "bad_arguments"),
    (THINK + "<function=bash>\n<parameter=command>  </parameter>\n</function>", "xml", "bad_arguments"),
    (THINK + "<function=str_replace_editor>\n<parameter=command>insert</parameter>\n<parameter=path>/a.py</parameter>\n"
     "<parameter=insert_line>ten</parameter>\n<parameter=new_str>x</parameter>\n</function>", "xml", "bad_arguments"),
    (THINK + "<function=str_replace_editor>\n<parameter=command>delete</parameter>\n<parameter=path>/a.py</parameter>\n"
     "</function>", "xml", "bad_arguments"),
    (THINK + "<tool_call>{name: bash}</tool_call>", "json", "bad_arguments"),
    (THINK + '<tool_call>{"name": "bash", "arguments": "{not json"}</tool_call>', "json", "bad_arguments"),
]


@pytest.mark.parametrize("completion,style,reason", BROKEN)
@pytest.mark.parametrize("mode", ["paper", "tool-aware"])
def test_a_broken_format_scores_minus_one_with_its_reason(completion, style, reason, mode):
    b = StepReward(mode, style=style)(completion, BASH_LS)
    assert (b.reward, b.format_error, b.call) == (-1.0, reason, None)


def test_content_that_looks_like_a_call_is_not_a_second_call():
    # A README written by an XML call holds a ```bash block: with style "any" it is content.
    call = ToolCall("str_replace_editor", {"command": "create", "path": "/testbed/README.md",
                                           "file_text": "Run:\n```bash\nmake test\n```\n"})
    assert parse_completion(THINK + render(call), "any").call == call


# --- similarity backends ------------------------------------------------------------------------


def test_difflib_backend_is_bit_identical_to_the_standard_library(steps):
    ratio = get_similarity("difflib")
    actions = [s["expert_action"] for s in steps]
    checked = 0
    for i, s in enumerate(steps):
        call = ToolCall.from_dict(s["expert_tool_call"])
        # Several candidates against one expert (the cydifflib fallback reuses its matcher across them).
        for cand in [render(c) for c in perturbations(call).values()] + [actions[i - 1], actions[i - 7]]:
            assert ratio(cand, s["expert_action"]) == difflib.SequenceMatcher(None, cand, s["expert_action"]).ratio()
            checked += 1
    assert checked > 2 * len(steps)


def _lcs(a: str, b: str) -> int:
    row = [0] * (len(b) + 1)
    for ca in a:
        prev = 0
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if ca == cb else max(row[j], row[j - 1])
    return row[-1]


def test_lcs_backend_is_the_lcs_ratio(steps):
    lcs = get_similarity("lcs")
    short = [s["expert_action"] for s in steps if len(s["expert_action"]) < 150][:40]
    for a, b in zip(short, short[1:], strict=False):
        assert lcs(a, b) == pytest.approx(2 * _lcs(a, b) / (len(a) + len(b)), abs=1e-12)
        assert lcs(a, b) >= difflib.SequenceMatcher(None, a, b).ratio() - 1e-12


# --- the two modes on real steps ----------------------------------------------------------------


@pytest.mark.parametrize("similarity", ["difflib", "lcs"])
@pytest.mark.parametrize("mode", ["paper", "tool-aware"])
def test_every_real_expert_action_scores_one(steps, mode, similarity):
    score = StepReward(mode, similarity)
    for s in steps:
        assert score(THINK + s["expert_action"], s["expert_action"], s["expert_tool_call"], s.get("file_snapshot")).reward == 1.0


def test_paper_mode_is_difflib_to_the_last_bit(steps):
    score = StepReward("paper", "difflib")
    for s in steps:
        for cand in perturbations(ToolCall.from_dict(s["expert_tool_call"])).values():
            text = render(cand)
            got = score(THINK + text, s["expert_action"], s["expert_tool_call"]).reward
            assert got == difflib.SequenceMatcher(None, text, s["expert_action"]).ratio()


def test_tool_aware_bash_ignores_quoting_and_spacing():
    expert = "<function=bash>\n<parameter=command>grep -rn \"def parse\" /testbed/src|head -5</parameter>\n</function>"
    same = "<function=bash>\n<parameter=command>grep  -rn 'def parse'   /testbed/src | head -5</parameter>\n</function>"
    split = "<function=bash>\n<parameter=command>grep -rn def parse /testbed/src | head -5</parameter>\n</function>"
    score = StepReward("tool-aware")
    assert score(THINK + same, expert).reward == 1.0
    assert score(THINK + split, expert).reward < 1.0
    assert StepReward("paper")(THINK + same, expert).reward < 1.0


def view(path="/testbed/a.py", rng=None):
    args = {"command": "view", "path": path} | ({"view_range": rng} if rng else {})
    return render(ToolCall("str_replace_editor", args))


@pytest.mark.parametrize("cand,expert,snapshot,expected", [
    (view(rng=[10, 20]), view(rng=[15, 30]), None, 6 / 21),  # lines 15–20 shared, 10–30 covered
    (view(), view(rng=[10, 20]), None, 11 / 20),  # whole file of unknown length: up to line 20
    (view(), view(rng=[10, 20]), "x\n" * 99, 11 / 100),  # the snapshot has 100 lines ("x\n" * 99 + "")
    (view(rng=[1, -1]), view(), None, 1.0),
    (view(rng=[0, 20]), view(rng=[1, 20]), None, 1.0),
    (view(rng=[40, 50]), view(rng=[10, 20]), None, 0.0),
    (view(path="/testbed/b.py"), view(), None, 0.0),
    (view(path="/testbed/./a.py"), view(), None, 1.0),
])
def test_view_scores_path_and_range_overlap(cand, expert, snapshot, expected):
    assert StepReward("tool-aware")(THINK + cand, expert, None, snapshot).reward == expected


def test_tool_aware_gates_on_tool_and_command_kind():
    score = StepReward("tool-aware")
    submit = "<function=submit>\n</function>"
    assert score(THINK + submit, submit).reward == 1.0
    assert score(THINK + BASH_LS, submit).reward == 0.0
    assert score(THINK + view(), BASH_LS).reward == 0.0
    edit = render(ToolCall("str_replace_editor", {"command": "str_replace", "path": "/testbed/a.py", "old_str": "a", "new_str": "b"}))
    b = score(THINK + view(), edit)
    assert (b.reward, b.tool_match) == (0.0, False)


# --- patch similarity ---------------------------------------------------------------------------


def _edit(**args) -> str:
    return THINK + render(ToolCall("str_replace_editor", {"path": "/testbed/m.py", **args}))


def test_real_edits_with_a_wider_window_score_one_in_tool_aware(steps):
    tool_aware, paper, done = StepReward("tool-aware"), StepReward("paper"), 0
    for s in str_replace_steps(steps):
        args, snapshot = s["expert_tool_call"]["arguments"], embed(s["expert_tool_call"]["arguments"]["old_str"])
        wider = snapshot and equivalent_edit(args, snapshot, before=2, after=1)
        if not wider:
            continue
        cand = THINK + render(ToolCall("str_replace_editor", wider))
        # Independent check that the two edits have the same effect on the file.
        assert snapshot.replace(wider["old_str"], wider["new_str"]) == snapshot.replace(args["old_str"], args.get("new_str") or "")
        b = tool_aware(cand, s["expert_action"], s["expert_tool_call"], snapshot)
        assert (b.reward, b.fallback) == (1.0, False)
        assert paper(cand, s["expert_action"], s["expert_tool_call"], snapshot).reward < 1.0
        done += 1
    assert done >= 50


def test_edits_compare_by_effect_across_commands():
    snapshot = "import os\n\n\ndef f(x):\n    return x\n"
    expert = render(ToolCall("str_replace_editor", {"command": "str_replace", "path": "/testbed/m.py",
                                                    "old_str": "def f(x):\n", "new_str": "def f(x):\n    x = int(x)\n"}))
    insert = _edit(command="insert", insert_line=4, new_str="    x = int(x)")
    create = _edit(command="create", file_text=snapshot.replace("def f(x):\n", "def f(x):\n    x = int(x)\n"))
    score = StepReward("tool-aware")
    assert score(insert, expert, None, snapshot).reward == 1.0
    assert score(create, expert, None, snapshot).reward == 1.0


@pytest.mark.parametrize("candidate,error", [
    (_edit(command="str_replace", old_str="return y", new_str="return 0"), "occurs 0 times"),
    (_edit(command="str_replace", old_str="x", new_str="y"), "occurs 2 times"),  # f(x) and return x
    (_edit(command="insert", insert_line=99, new_str="pass"), "insert_line 99"),
])
def test_an_edit_that_cannot_apply_scores_zero(candidate, error):
    snapshot = "def f(x):\n    return x\n"
    expert = _edit(command="str_replace", old_str="return x", new_str="return x + 1")[len(THINK):]
    b = StepReward("tool-aware")(candidate, expert, None, snapshot)
    assert (b.reward, b.components["applies"], b.fallback) == (0.0, False, False)
    assert error in b.components["error"]


def test_without_a_snapshot_edits_fall_back_to_their_arguments():
    expert = _edit(command="str_replace", old_str="a = 1\nb = 2\n", new_str="a = 1\nb = 3\n")[len(THINK):]
    narrower = _edit(command="str_replace", old_str="b = 2\n", new_str="b = 3\n")
    b = StepReward("tool-aware")(narrower, expert)
    assert (b.reward, b.fallback) == (1.0, True)  # the shared context of the two windows cancels out
    noop = _edit(command="str_replace", old_str="b = 2\n", new_str="b = 2\n")
    assert StepReward("tool-aware")(noop, expert).reward == 0.0  # SWE-RL: an empty change earns nothing


# --- the TRL reward callable --------------------------------------------------------------------


class _Log:
    def __init__(self):
        self.records = []

    def write(self, record):
        self.records.append(record)


def test_trl_reward_callable(steps):
    rows = steps[:6]
    completions = [[{"role": "assistant", "content": THINK + r["expert_action"]}] for r in rows]
    completions[1] = [{"role": "assistant", "content": r"no think, no call"}]
    metrics, extra, log = {}, {}, _Log()
    reward = srl_reward(mode="tool-aware", log=log)
    reward = pickle.loads(pickle.dumps(reward))  # TRL may ship rewards to another process
    reward.log = log
    columns = {k: [r[k] for r in rows] for k in ("expert_action", "expert_tool_call", "instance_id", "step_index")}
    got = reward(prompts=[r["prompt"] for r in rows], completions=completions, completion_ids=[[1]] * 6,
                 trainer_state=None, log_metric=metrics.__setitem__, log_extra=extra.__setitem__, **columns)
    assert got == [1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    assert reward.__name__ == "srl_tool_aware_difflib"
    assert [r["reward"] for r in log.records] == got
    assert [(r["instance_id"], r["step_index"]) for r in log.records] == list(zip(columns["instance_id"], columns["step_index"], strict=True))
    assert log.records[1]["format_error"] == "no_think"
    assert metrics == {"srl_tool_aware_difflib/format_error_rate": 1 / 6}
    assert extra["srl_tool_aware_difflib_format_error"][1] == "no_think"
    plain = []
    assert srl_reward(mode="paper", log=plain.append)(None, completions[:1], expert_action=columns["expert_action"][:1]) == [1.0]
    assert plain[0]["mode"] == "paper"
    with pytest.raises(ValueError, match="expert_action"):
        reward(None, completions)


# ------------------------------------------------------------------ editor edits vs an expert's bash edit
BEFORE = "def f(x):\n    return x\n\n\ndef g(y):\n    return y * 2\n"
AFTER = "def f(x):\n    return x + 1\n\n\ndef g(y):\n    return y * 2\n"


def git_diff_u0(tmp_path: Path, files: dict[str, tuple[str | None, str | None]]) -> str:
    """The zero-context patch git itself writes for these (before, after) file contents, as replay
    records a bash step's change (independent of the reward's own diffing)."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, text=True)  # noqa: E731
    run("init", "-q")
    for name, (before, _) in files.items():
        if before is not None:
            (repo / name).write_text(before)
    run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "before")
    for name, (_, after) in files.items():
        if after is None:
            (repo / name).unlink()
        else:
            (repo / name).write_text(after)
    run("add", "-A")
    return run("diff", "--cached", "--no-renames", "-U0").stdout


def edit_call(**args) -> str:
    return f"<think>x</think>\n\n{render(ToolCall('str_replace_editor', args))}"


SED = {"name": "bash", "arguments": {"command": "sed -i 's/return x$/return x + 1/' mod.py"}}


def test_an_editor_edit_with_the_effect_of_the_experts_sed_scores_1(tmp_path):
    diff = git_diff_u0(tmp_path, {"mod.py": (BEFORE, AFTER)})
    reward = StepReward("tool-aware")
    expert = render(ToolCall.from_dict(SED))
    same = edit_call(command="str_replace", path="/testbed/mod.py", old_str="    return x\n",
                     new_str="    return x + 1\n")
    assert reward(same, expert, SED, BEFORE, diff).reward == 1.0
    # A wider window with the same effect: still 1.0, as for two editor edits.
    wider = edit_call(command="str_replace", path="/testbed/mod.py", old_str="def f(x):\n    return x\n",
                      new_str="def f(x):\n    return x + 1\n")
    assert reward(wider, expert, SED, BEFORE, diff).reward == 1.0
    other = edit_call(command="str_replace", path="/testbed/mod.py", old_str="    return y * 2", new_str="    return y")
    assert 0.0 < reward(other, expert, SED, BEFORE, diff).reward < 1.0
    elsewhere = reward(same.replace("/testbed/mod.py", "/testbed/other.py"), expert, SED, BEFORE, diff)
    assert elsewhere.reward == 0.0 and elsewhere.components["path"] == 0.0
    broken = edit_call(command="str_replace", path="/testbed/mod.py", old_str="not in the file", new_str="x")
    assert reward(broken, expert, SED, BEFORE, diff).reward == 0.0
    # Without the step's diff the step is an ordinary bash step: an editor call is another tool, 0.
    assert reward(same, expert, SED, BEFORE, None).reward == 0.0
    # The expert's own command still scores 1 by command similarity.
    assert reward(f"<think>x</think>\n\n{expert}", expert, SED, BEFORE, diff).reward == 1.0


def test_a_file_the_experts_heredoc_created_is_matched_by_an_editor_create(tmp_path):
    text = "import os\n\nprint(os.getcwd())\n"
    diff = git_diff_u0(tmp_path, {"new.py": (None, text)})
    call = {"name": "bash", "arguments": {"command": "cat > new.py <<'EOF'\n...\nEOF"}}
    reward = StepReward("tool-aware")
    expert = render(ToolCall.from_dict(call))
    assert reward(edit_call(command="create", path="/testbed/new.py", file_text=text), expert, call, None,
                  diff).reward == 1.0
    half = edit_call(command="create", path="/testbed/new.py", file_text="import os\n")
    assert 0.0 < reward(half, expert, call, None, diff).reward < 1.0


def test_without_the_files_content_the_edit_is_compared_by_its_own_change(tmp_path):
    diff = git_diff_u0(tmp_path, {"mod.py": (BEFORE, AFTER)})
    reward = StepReward("tool-aware")
    same = edit_call(command="str_replace", path="/testbed/mod.py", old_str="    return x\n",
                     new_str="    return x + 1\n")
    b = reward(same, render(ToolCall.from_dict(SED)), SED, None, diff)
    assert b.fallback and b.reward == 1.0
