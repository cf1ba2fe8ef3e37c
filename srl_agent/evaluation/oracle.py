"""Oracle-file mode (the paper's main SWE setting): the issue plus the full files the gold patch touches
in, SEARCH/REPLACE edits out, a unified diff made from them.

The answer format (Agentless / aider style), defined to the model in ``ORACLE_SYSTEM``::

    ### path/to/file.py
    <<<<<<< SEARCH
    lines copied exactly from the file
    =======
    the lines to put in their place
    >>>>>>> REPLACE

Parsing is lenient where models slip without ambiguity: code fences around blocks, 5–9 marker
characters, trailing spaces, ``a/``/``b/``/``/testbed/`` path prefixes, a SEARCH that differs from the
file only in trailing whitespace. Anything in ``<think>`` is not an edit. An edit that does not apply
is reported and left out; the others still make the patch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

ORACLE_SYSTEM = """\
You are a software engineer fixing an issue in a repository. You get the issue and the full content of \
the files that need to change.

First think step by step inside <think>...</think>. Then write your fix as one or more SEARCH/REPLACE \
blocks, each in this exact form:

### path/to/file.py
<<<<<<< SEARCH
the lines to replace, copied exactly from the file (indentation included), enough of them to be unique
=======
the lines to put in their place
>>>>>>> REPLACE

Blocks for one file apply in order. An empty SEARCH section creates a new file with the REPLACE section \
as its content. Write nothing else after the blocks."""

FILE_TEMPLATE = "[start of {path}]\n{content}[end of {path}]"
USER_TEMPLATE = "<issue>\n{issue}\n</issue>\n\n<code>\n{files}\n</code>"

_PATH_RE = re.compile(r"^\s*(?:#+|File:|\*\*)?\s*`?([\w./\-]+\.\w+|[\w./\-]*/[\w.\-]+)`?\**\s*$")
_SEARCH_RE = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE_RE = re.compile(r"^\s*```")


@dataclass
class Edit:
    path: str
    search: str
    replace: str


@dataclass
class OracleResult:
    """What became of one answer: the edits found, those that did not apply (with why), the patch."""

    edits: list[Edit] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    patch: str = ""


# ----------------------------------------------------------------------------- the prompt


_HUNK_RE = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def oracle_files(patch: str) -> list[str]:
    """The files a patch changes that exist before it (``--- a/<path>``; not ``/dev/null``), in patch order.

    Hunk bodies are skipped by their line counts, so a removed line that starts with ``--`` is never
    taken for a file header.
    """
    paths: list[str] = []
    lines = patch.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        hunk = _HUNK_RE.match(line)
        if hunk:
            old, new = int(hunk.group(1) or 1), int(hunk.group(2) or 1)
            i += 1
            while i < len(lines) and (old > 0 or new > 0):
                tag = lines[i][:1]
                old -= tag in (" ", "-", "")
                new -= tag in (" ", "+", "")
                i += 1
            continue
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            source = line[4:].split("\t")[0].strip()
            path = source[2:] if source.startswith("a/") else source
            if source != "/dev/null" and path not in paths:
                paths.append(path)
        i += 1
    return paths


def read_files(row: dict[str, Any], paths: list[str], *, client: Any = None,
               labels: dict[str, str] | None = None) -> dict[str, str]:
    """The files' contents at the base commit, read from the task image (a throwaway sandbox)."""
    from ..sandbox import Sandbox, SandboxConfig

    config = SandboxConfig.for_task(row, labels=dict(labels or {}))
    with Sandbox(config, client=client) as sandbox:
        return {p: sandbox.read_file(f"{config.workdir}/{p}") for p in paths}


def oracle_messages(problem_statement: str, files: dict[str, str], system: str = ORACLE_SYSTEM) -> list[dict[str, str]]:
    shown = "\n".join(FILE_TEMPLATE.format(path=p, content=c if c.endswith("\n") or not c else c + "\n")
                      for p, c in files.items())
    return [{"role": "system", "content": system},
            {"role": "user", "content": USER_TEMPLATE.format(issue=problem_statement.strip(), files=shown)}]


# ----------------------------------------------------------------------------- the answer


def _clean_path(path: str) -> str:
    path = path.strip().strip("`'\"")
    for prefix in ("/testbed/", "a/", "b/", "./"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
    return path


def parse_search_replace(text: str) -> list[Edit]:
    """The SEARCH/REPLACE blocks of an answer, each with the file named last before it."""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    edits: list[Edit] = []
    path, state, search, replace = "", None, [], []
    for line in text.splitlines():
        if state is None:
            if _SEARCH_RE.match(line):
                state, search, replace = "search", [], []
            elif not _FENCE_RE.match(line) and (m := _PATH_RE.match(line)):
                path = _clean_path(m.group(1))
        elif state == "search":
            if _DIVIDER_RE.match(line):
                state = "replace"
            else:
                search.append(line)
        elif _REPLACE_RE.match(line):
            edits.append(Edit(path, "".join(s + "\n" for s in search), "".join(r + "\n" for r in replace)))
            state = None
        else:
            replace.append(line)
    return edits


def _replace_once(content: str, edit: Edit) -> str:
    """``content`` with the edit's SEARCH replaced; raises ValueError saying why it cannot be."""
    count = content.count(edit.search)
    if count == 1:
        return content.replace(edit.search, edit.replace, 1)
    if count > 1:
        raise ValueError(f"{edit.path}: SEARCH occurs {count} times; it must be unique")
    # The same lines up to trailing whitespace (and a last line without its newline).
    lines = content.splitlines(keepends=True)
    want = [s.rstrip() for s in edit.search.splitlines()]
    hits = [i for i in range(len(lines) - len(want) + 1)
            if [x.rstrip() for x in lines[i : i + len(want)]] == want]
    if len(hits) != 1:
        problem = "does not occur in" if not hits else f"occurs {len(hits)} times in"
        raise ValueError(f"{edit.path}: SEARCH {problem} the file")
    i = hits[0]
    tail = "".join(lines[i + len(want) :])
    replace = edit.replace
    if not tail and not lines[-1].endswith("\n") and replace.endswith("\n"):
        replace = replace[:-1]  # keep the file's missing final newline
    return "".join(lines[:i]) + replace + tail


def apply_edits(files: dict[str, str], edits: list[Edit]) -> tuple[dict[str, str], list[str]]:
    """The files after the edits that apply (in order), and an error line for each that does not."""
    out, errors = dict(files), []
    for edit in edits:
        if not edit.path:
            errors.append("a SEARCH/REPLACE block names no file")
        elif edit.path not in out:
            if edit.search.strip():
                errors.append(f"{edit.path}: not one of the given files")
            else:
                out[edit.path] = edit.replace  # empty SEARCH: a new file
        elif not edit.search.strip():
            errors.append(f"{edit.path}: empty SEARCH on an existing file")
        else:
            try:
                out[edit.path] = _replace_once(out[edit.path], edit)
            except ValueError as e:
                errors.append(str(e))
    return out, errors


def _diff_lines(lines: list[str]) -> str:
    # difflib leaves a last line without its newline as is; git marks it.
    return "".join(x if x.endswith("\n") else x + "\n\\ No newline at end of file\n" for x in lines)


def make_patch(before: dict[str, str], after: dict[str, str]) -> str:
    """A git-style unified diff (``git apply``-able) of every file whose content changed."""
    parts = []
    for path in after:
        old, new = before.get(path), after[path]
        if old == new:
            continue
        body = difflib.unified_diff((old or "").splitlines(keepends=True), new.splitlines(keepends=True),
                                    "/dev/null" if old is None else f"a/{path}", f"b/{path}", n=3)
        head = f"diff --git a/{path} b/{path}\n" + ("new file mode 100644\n" if old is None else "")
        parts.append(head + _diff_lines(list(body)))
    return "".join(parts)


def answer_to_patch(files: dict[str, str], completion: str) -> OracleResult:
    edits = parse_search_replace(completion)
    after, errors = apply_edits(files, edits)
    return OracleResult(edits, errors, make_patch(files, after))
