"""Near-miss candidates for an expert call: what a reward mode must rank below the expert.

Used to check that a reward ranks sensibly on real steps (tests/test_rewards_real.py) and as realistic
completions for the reward benchmark (scripts/bench.py reward). Each perturbation is a plausible
policy mistake: the right action on a different file, a command the expert ran at another step, an
edit done halfway. ``equivalent_edit`` builds the opposite: the same edit written with a wider
``old_str`` window, which a good reward should not penalise.
"""

from __future__ import annotations

import difflib
import posixpath
import re

from ..schema import ToolCall

# A path-looking word: has a slash, or ends in a source-file extension.
_PATH_RE = re.compile(r"[\w.~-]*/[\w./-]*\w|\b[\w-]+\.(?:py|pyx|txt|cfg|toml|rst|md|json|yaml|yml)\b")


def other_path(path: str) -> str:
    """A sibling of ``path``: the same directory, another file (or a subfolder of a folder)."""
    head, base = posixpath.split(path.rstrip("/"))
    if "." not in base:
        return posixpath.join(path, "tests")
    ext = base.rsplit(".", 1)[1]
    sibling = f"utils.{ext}" if base != f"utils.{ext}" else f"core.{ext}"
    return posixpath.join(head, sibling) if head else sibling


def _with_other_path(command: str) -> str | None:
    matches = [m for m in _PATH_RE.finditer(command) if m.group(0).rstrip("/") != "/testbed"]
    if not matches:
        return None
    m = matches[-1]
    return command[: m.start()] + other_path(m.group(0)) + command[m.end() :]


def _half_change(old: str, new: str) -> str | None:
    """``new`` with only the first half of its line changes against ``old`` made (None if indivisible)."""
    a, b = old.split("\n"), new.split("\n")
    ops = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if len(ops) >= 2:
        keep = ops[: (len(ops) + 1) // 2]
        out, i = [], 0
        for _, i1, i2, j1, j2 in keep:
            out += a[i:i1] + b[j1:j2]
            i = i2
        return "\n".join(out + a[i:])
    if len(ops) == 1 and ops[0][4] - ops[0][3] >= 2:  # one change writing several lines: write half of them
        _, i1, i2, j1, j2 = ops[0]
        return "\n".join(a[:i1] + b[j1 : j1 + (j2 - j1 + 1) // 2] + a[i2:])
    return None


def perturbations(call: ToolCall, other_commands: list[str] = ()) -> dict[str, ToolCall]:
    """Named near misses of an expert call (only those that make sense for it)."""
    args = call.arguments
    out: dict[str, ToolCall] = {}
    if call.name == "bash":
        moved = _with_other_path(args["command"])
        if moved:
            out["other_path"] = ToolCall("bash", {"command": moved})
        others = [c for c in other_commands if " ".join(c.split()) != " ".join(args["command"].split())]
        if others:
            out["other_command"] = ToolCall("bash", {"command": others[0]})
    elif call.name == "submit":
        out["other_command"] = ToolCall("bash", {"command": "cd /testbed && git diff"})
    elif call.name == "str_replace_editor":
        out["other_path"] = ToolCall("str_replace_editor", {**args, "path": other_path(args["path"])})
        partial = None
        if args["command"] == "str_replace" and isinstance(args.get("old_str"), str):
            partial = _half_change(args["old_str"], args.get("new_str") or "")
            partial = None if partial is None else {**args, "new_str": partial}
        elif args["command"] in ("create", "insert"):
            key = "file_text" if args["command"] == "create" else "new_str"
            partial = _half_change("", args.get(key) or "")
            partial = None if partial is None else {**args, key: partial}
        if partial is not None and partial != args:
            out["partial_edit"] = ToolCall("str_replace_editor", partial)
    return out


def equivalent_edit(args: dict, snapshot: str, before: int = 1, after: int = 1) -> dict | None:
    """The same ``str_replace`` with ``before``/``after`` more lines of ``snapshot`` in its window.

    None when the window cannot grow that far or the wider ``old_str`` would not be unique.
    """
    old, new = args.get("old_str"), args.get("new_str") or ""
    if not isinstance(old, str) or not old or snapshot.count(old) != 1:
        return None
    start = snapshot.index(old)
    head, tail = snapshot[:start], snapshot[start + len(old) :]
    if not head.endswith("\n") or not tail.startswith("\n"):
        return None  # the window must start and end at line boundaries to grow by whole lines
    head_lines, tail_lines = head[:-1].split("\n"), tail[1:].split("\n")
    if len(head_lines) < before or len(tail_lines) < after:
        return None
    pre = "\n".join(head_lines[len(head_lines) - before :]) + "\n" if before else ""
    post = "\n" + "\n".join(tail_lines[:after]) if after else ""
    wider = pre + old + post
    if snapshot.count(wider) != 1:
        return None
    return {**args, "old_str": wider, "new_str": pre + new + post}
