"""The agent's tools on a real sandbox: SWE-agent's observations and error messages.

Expected listings come from the container's own ``cat -n``, ``sed``, ``grep`` and ``wc`` (independent
of the editor's Python), and the replay test compares with observations recorded by SWE-agent itself.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from srl_agent.sandbox import Sandbox, SandboxConfig
from srl_agent.schema import ToolCall
from srl_agent.tools import NO_OUTPUT, REVIEW, REVIEW_INSERT, Tools

from .conftest import require_shared


@pytest.fixture(scope="module")
def sandbox(repo_image, run_label, docker_client):
    key, value = run_label.split("=")
    config = SandboxConfig(image=repo_image, labels={key: value}, memory="1g", timeout=30)
    with Sandbox(config, client=docker_client) as sb:
        yield sb


@pytest.fixture
def tools(sandbox):
    sandbox.reset()  # every test starts from the committed repository
    return Tools(sandbox)


def sh(tools: Tools, command: str) -> str:
    r = tools.sandbox.run(command)
    assert r.exit_code == 0, (command, r)
    return r.output


def header(path: str) -> str:
    return f"Here's the result of running `cat -n` on {path}:\n"


# ---------------------------------------------------------------- view
@pytest.mark.parametrize("name", ["data.txt", "calc/ops.py", "README.md"])
def test_view_numbers_lines_like_cat_n(tools, name):
    path = f"/testbed/{name}"
    lines = int(sh(tools, f"wc -l < {name}"))
    # The editor numbers the empty string after the final newline too; stripping leaves its number.
    expected = header(path) + sh(tools, f"cat -n {name}") + f"{lines + 1:6}"
    assert tools.str_replace_editor("view", path) == expected


def test_view_expands_tabs(tools):
    expected = header("/testbed/calc/Makefile") + sh(tools, "expand calc/Makefile | cat -n") + f"{3:6}"
    assert tools.str_replace_editor("view", "/testbed/calc/Makefile") == expected


def test_view_range(tools):
    path = "/testbed/data.txt"
    assert tools.str_replace_editor("view", path, view_range=[3, 7]) == header(path) + sh(
        tools, "cat -n data.txt | sed -n 3,7p"
    ).rstrip("\n")
    # -1 = to the end, which includes the empty string after the final newline
    assert tools.str_replace_editor("view", path, view_range=[38, -1]) == header(path) + sh(
        tools, "cat -n data.txt | sed -n '38,$p'"
    ) + f"{41:6}"


def test_view_range_errors(tools):
    path = "/testbed/data.txt"
    n = int(sh(tools, "wc -l < data.txt")) + 1  # lines as the editor splits them
    view = lambda r: tools.str_replace_editor("view", path, view_range=r)  # noqa: E731
    assert view([0, 5]) == (f"Invalid `view_range`: [0, 5]. Its first element `0` should be within the range of "
                            f"lines of the file: [1, {n}]")
    assert view([n + 1, n + 2]).startswith(f"Invalid `view_range`: [{n + 1}, {n + 2}]. Its first element")
    assert view([5, 100]) == (f"Invalid `view_range`: [5, 100]. Its second element `100` should be smaller than "
                              f"the number of lines in the file: `{n}`")
    assert view([7, 3]) == ("Invalid `view_range`: [7, 3]. Its second element `3` should be larger or equal than "
                            "its first `7`")
    assert view([1]) == "Invalid `view_range`. It should be a list of two integers."
    assert view(["a", "b"]) == "Invalid `view_range`. It should be a list of two integers."
    assert view("[2, 3]") == header(path) + sh(tools, "cat -n data.txt | sed -n 2,3p").rstrip("\n")


def test_view_directory_two_levels_without_hidden(tools, sandbox):
    out = tools.str_replace_editor("view", "/testbed")
    first, *listed = out.split("\n")
    assert first == "Here's the files and directories up to 2 levels deep in /testbed, excluding hidden items:"
    # Independent: walk the archive of /testbed in Python.
    stream, _ = sandbox.api.get_archive(sandbox.container.id, "/testbed")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        names = [m.name.rstrip("/") for m in tar.getmembers()]
    expected = {"/" + n for n in names if n.count("/") <= 2 and not any(p.startswith(".") for p in n.split("/"))}
    assert set(listed) == expected and len(listed) == len(expected)
    assert "/testbed/docs/guide" in expected and "/testbed/docs/guide/deep" not in expected
    assert tools.str_replace_editor("view", "/testbed", view_range=[1, 2]) == (
        "The `view_range` parameter is not allowed when `path` points to a directory."
    )


# ---------------------------------------------------------------- path checks
def test_path_errors(tools):
    ed = tools.str_replace_editor
    tools.bash("cd /testbed/calc")
    assert ed("view", "ops.py") == (
        "The path ops.py is not an absolute path, it should start with `/`. Maybe you meant /testbed/calc/ops.py?"
    )
    assert ed("view", "/testbed/nope.py") == "The path /testbed/nope.py does not exist. Please provide a valid path."
    assert ed("str_replace", "/testbed/calc", old_str="x", new_str="y") == (
        "The path /testbed/calc is a directory and only the `view` command can be used on directories"
    )
    assert ed("create", "/testbed/README.md", file_text="x") == (
        "File already exists at: /testbed/README.md. Cannot overwrite files using command `create`."
    )
    assert ed("create", "/testbed/no/such/f.py", file_text="x") == (
        "The parent directory /testbed/no/such does not exist. Please create it first."
    )
    assert ed("delete", "/testbed/README.md") == (
        'Unrecognized command delete. The allowed commands for the str_replace_editor tool are: "view", "create", '
        '"str_replace", "insert", "undo_edit"'
    )
    assert ed("create", "/testbed/new.py") == "Parameter `file_text` is required for command: create"
    assert ed("str_replace", "/testbed/README.md") == "Parameter `old_str` is required for command: str_replace"
    assert ed("insert", "/testbed/README.md", new_str="x") == "Parameter `insert_line` is required for command: insert"
    assert ed("insert", "/testbed/README.md", insert_line=1) == "Parameter `new_str` is required for command: insert"


# ---------------------------------------------------------------- create / str_replace / insert / undo
def test_create(tools):
    text = "def hello():\n    return 'hi \"there\"'\n"
    assert tools.str_replace_editor("create", "/testbed/calc/hello.py", file_text=text) == (
        "File created successfully at: /testbed/calc/hello.py"
    )
    assert sh(tools, "cat /testbed/calc/hello.py") == text
    assert "+++ b/calc/hello.py" in tools.submit()


def test_str_replace_edits_once_and_shows_the_snippet(tools):
    path = "/testbed/calc/ops.py"
    original = sh(tools, "cat calc/ops.py")
    old, new = "    return a * b", "    product = a * b\n    return product"
    out = tools.str_replace_editor("str_replace", path, old_str=old, new_str=new)
    assert sh(tools, "cat calc/ops.py") == original.replace(old, new)
    # The snippet: 4 lines around the edit, from the edited file, numbered like cat -n.
    at = int(sh(tools, "grep -n 'product = a' calc/ops.py").split(":")[0]) - 1
    first, last = max(1, at - 4), min(at + 4 + new.count("\n"), int(sh(tools, "wc -l < calc/ops.py")))
    snippet = sh(tools, f"cat -n calc/ops.py | sed -n {first},{last}p")
    expected = f"The file {path} has been edited. " + header(f"a snippet of {path}") + snippet + REVIEW
    assert out == expected


def test_str_replace_errors(tools):
    path = "/testbed/calc/ops.py"
    ed = tools.str_replace_editor
    assert ed("str_replace", path, old_str="return a - b", new_str="x") == (
        f"No replacement was performed, old_str `return a - b` did not appear verbatim in {path}."
    )
    lines = [int(x) for x in sh(tools, "grep -n return calc/ops.py | cut -d: -f1").split()]
    assert ed("str_replace", path, old_str="return", new_str="yield") == (
        f"No replacement was performed. Multiple occurrences of old_str `return` in lines {lines}. "
        "Please ensure it is unique"
    )
    assert ed("str_replace", path, old_str="a + b", new_str="a + b") == (
        "No replacement was performed, old_str `a + b` is the same as new_str `a + b`."
    )
    assert tools.submit() == ""  # nothing was written


def test_insert(tools):
    path = "/testbed/data.txt"
    original = sh(tools, "cat data.txt").split("\n")
    out = tools.str_replace_editor("insert", path, insert_line=10, new_str="inserted A\ninserted B")
    assert sh(tools, "cat data.txt").split("\n") == original[:10] + ["inserted A", "inserted B"] + original[10:]
    snippet = sh(tools, "cat -n data.txt | sed -n 7,16p")  # 4 lines before (7-10), the new 2, 4 after
    expected = f"The file {path} has been edited. " + header("a snippet of the edited file") + snippet + REVIEW_INSERT
    assert out == expected
    top = tools.str_replace_editor("insert", path, insert_line=0, new_str="# top")
    assert sh(tools, "head -2 data.txt") == "# top\nline 1\n"
    assert top.split("\n")[1] == f"{1:6}\t# top"
    n = int(sh(tools, "wc -l < data.txt")) + 1
    assert tools.str_replace_editor("insert", path, insert_line=n + 1, new_str="x") == (
        f"Invalid `insert_line` parameter: {n + 1}. It should be within the range of lines of the file: [0, {n}]"
    )


def test_undo_edit_restores_each_previous_version(tools):
    path = "/testbed/calc/ops.py"
    original = sh(tools, "cat calc/ops.py")
    ed = tools.str_replace_editor
    ed("str_replace", path, old_str="a + b", new_str="b + a")
    after_first = sh(tools, "cat calc/ops.py")
    ed("insert", path, insert_line=0, new_str="# header")
    assert ed("undo_edit", path) == f"Last edit to {path} undone successfully. " + header(path) + sh(
        tools, "cat -n calc/ops.py"
    ) + f"{len(after_first.split(chr(10))):6}"
    assert sh(tools, "cat calc/ops.py") == after_first
    ed("undo_edit", path)
    assert sh(tools, "cat calc/ops.py") == original
    assert ed("undo_edit", path) == f"No edit history found for {path}."
    assert ed("undo_edit", "/testbed/README.md") == "No edit history found for /testbed/README.md."


def test_edits_expand_tabs_like_swe_agent(tools):
    # SWE-agent's editor expands every tab of a file it edits; trajectories were recorded with that.
    tools.str_replace_editor("str_replace", "/testbed/calc/Makefile", old_str="tab-indented", new_str="edited")
    assert sh(tools, "cat calc/Makefile") == "all:\n        echo 'edited'\n"


def test_non_utf8_file_round_trips(tools):
    tools.sandbox.write_file("/testbed/latin.txt", "caf\xe9 = 1\nna\xefve = 2\n".encode("latin-1"))
    tools.str_replace_editor("str_replace", "/testbed/latin.txt", old_str="= 2", new_str="= 3")
    assert tools.sandbox.read_bytes("/testbed/latin.txt") == "caf\xe9 = 1\nna\xefve = 3\n".encode("latin-1")


# ---------------------------------------------------------------- bash, submit, dispatch
def test_bash_observations(sandbox):
    tools = Tools(sandbox, timeout=1)
    assert tools.bash("echo hi; echo err >&2") == "hi\nerr"
    assert tools.bash("true") == NO_OUTPUT
    assert tools.bash("false") == NO_OUTPUT  # as SWE-agent: the template is about output, not status
    assert tools.bash("echo started; sleep 5").endswith(
        "The command 'echo started; sleep 5' was cancelled because it took more than 1 seconds. "
        "Please try a different command that completes more quickly."
    )
    assert tools.bash("sleep 5").startswith("bash: line")  # the shell's own "Killed" notice comes first
    assert tools.bash("echo after") == "after"


def test_a_command_that_cannot_parse_is_not_run(sandbox):
    tools = Tools(sandbox, timeout=5)
    out = tools.bash("touch /testbed/ran.txt; grep -n 'def x /testbed")
    assert out.startswith("Your bash command has a syntax error and was not run.")
    assert "unexpected EOF" in out and "printf" not in out  # bash's message, not the session's marker
    assert tools.bash("test -e /testbed/ran.txt && echo ran || echo not run") == "not run"
    assert tools.bash("echo 'fine'") == "fine"


def test_a_command_with_a_nul_byte_gets_an_error_observation(sandbox):
    tools = Tools(sandbox, timeout=5)
    assert "NUL" in tools.bash("echo a\0b")
    assert "NUL" in tools.execute(ToolCall("str_replace_editor", {"command": "view", "path": "/testbed\0/x"}))
    assert tools.bash("echo still") == "still"


def test_a_command_over_128_kib_runs(sandbox):
    """One execve argument holds 128 KiB at most; the command never travels as one."""
    tools = Tools(sandbox, timeout=30)
    payload = "x" * 200_000
    assert tools.bash(f"printf %s {payload} | wc -c") == "200000"
    lines = "".join(f"line {i}\n" for i in range(20_000))
    assert tools.bash(f"cat > /tmp/big <<'EOF'\n{lines}EOF\nwc -l < /tmp/big") == "20000"


def test_submit_returns_the_diff(tools):
    tools.str_replace_editor("str_replace", "/testbed/calc/ops.py", old_str="a * b", new_str="b * a")
    tools.bash("echo x > /testbed/extra.txt")
    patch = tools.submit()
    assert patch == tools.sandbox.diff()
    assert "-    return a * b\n+    return b * a\n" in patch and "+++ b/extra.txt" in patch


def test_execute_dispatches_tool_calls(tools):
    assert tools.execute(ToolCall("bash", {"command": "echo via call"})) == "via call"
    view = tools.execute(ToolCall("str_replace_editor", {"command": "view", "path": "/testbed/data.txt",
                                                         "view_range": [1, 2]}))
    assert view == header("/testbed/data.txt") + f"{1:6}\tline 1\n{2:6}\tline 2"
    edit = ToolCall("str_replace_editor", {"command": "insert", "path": "/testbed/README.md", "insert_line": "1",
                                           "new_str": "x"})
    assert tools.execute(edit).startswith("The file /testbed/README.md has been edited.")
    assert "+x" in tools.execute(ToolCall("submit"))
    assert tools.execute(ToolCall("bash", {})) == "Parameter `command` is required for the bash tool"
    assert tools.execute(ToolCall("browse", {"url": "x"})).startswith("Unknown tool 'browse'")


# ---------------------------------------------------------------- replay of real SWE-agent observations
def _numbered(observation: str) -> dict[int, str]:
    lines = {}
    for line in observation.replace("\r\n", "\n").split("\n"):
        number, tab, text = line.partition("\t")
        if tab and number.strip().isdigit():
            lines[int(number)] = text
    return lines


def test_replay_matches_recorded_swe_agent_observations(tools, shared_data):
    """Rebuild the part of pandas' base.py that a SWE-smith trajectory saw, then replay its editor steps:
    the observations must equal what SWE-agent recorded (its tty turned newlines into CRLF)."""
    from srl_agent.readers import read_file

    paths = sorted((shared_data / "swesmith").glob("trajectories~*.traj"))
    if not paths:
        require_shared(shared_data / "swesmith" / "trajectories~*.traj")  # no such file: skips, or fails in CI
    trajectory = read_file(paths[0])
    trajectory = trajectory[0] if isinstance(trajectory, list) else trajectory
    target = "/testbed/pandas/core/indexes/base.py"
    steps = [s for s in trajectory.steps if s.action.arguments.get("path") == target]
    views = [s for s in steps if s.action.arguments["command"] == "view"]
    first_edit = next(s for s in steps if s.action.arguments["command"] == "str_replace")
    known: dict[int, str] = {}
    for step in views:
        known.update(_numbered(step.observation))
    # Above the edit, the first snippet shows unchanged lines that no view covered.
    snippet = _numbered(first_edit.observation)
    for n in sorted(snippet):
        if n in known:
            break
        known[n] = snippet[n]
    size = max(known) + 10
    text = "\n".join(known.get(i, f"# line {i} (not seen by the expert)") for i in range(1, size + 1)) + "\n"
    sh(tools, "mkdir -p /testbed/pandas/core/indexes")
    tools.sandbox.write_file(target, text)
    replayed = 0
    for step in steps:
        expected = step.observation.replace("\r\n", "\n")
        assert tools.execute(step.action) == expected, step.action.arguments
        replayed += 1
    assert replayed >= 6
    create = next(s for s in trajectory.steps if s.action.arguments.get("command") == "create")
    assert tools.execute(create.action) == create.observation.replace("\r\n", "\n")
