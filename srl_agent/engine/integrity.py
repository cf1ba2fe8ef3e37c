"""What a patch changes in the tests' own machinery, and the patch without it.

A policy rewarded by tests finds it cheaper to change how the tests run than to fix the bug: edit or
delete the tests, drop a ``conftest.py`` that marks every test passed, reconfigure pytest, register a
plugin, or plant a ``.pth`` / ``sitecustomize.py`` that Python runs at start-up. Grading applies the
patch without those files (they stay as the base commit has them) and the record names them.

Test infrastructure, by path: the task's own test files (its test patch and what its eval script
checks out), test-looking paths, every ``conftest.py``, ``pytest.ini`` / ``.pytest.ini`` / ``tox.ini``,
``*.pth``, ``sitecustomize.py`` / ``usercustomize.py``; by content: a file whose changed lines name the
``pytest11`` entry-point group, and ``setup.cfg`` / ``pyproject.toml`` when a change falls in (or adds)
a pytest section.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

TEST_PATH = re.compile(r"(^|/)(tests?|testing)/|(^|/)test_[^/]*\.py$|_tests?\.py$")
ALWAYS = re.compile(r"(^|/)(conftest\.py|pytest\.ini|\.pytest\.ini|tox\.ini|sitecustomize\.py|usercustomize\.py)$"
                    r"|\.pth$")
SECTIONED = re.compile(r"(^|/)(setup\.cfg|pyproject\.toml)$")
_PYTEST_SECTION = re.compile(r"^\s*\[\s*(tool:pytest|pytest|tool\.pytest(\.[^\]]*)?)\s*\]")
_SECTION = re.compile(r"^\s*\[")
_PLUGIN = "pytest11"
_CHECKOUT = re.compile(r"^git checkout \S+ -- (.+)$", re.M)
_GIT_HEADER = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.M)

BaseText = Callable[[str], "str | None"]  # path in the repository -> its text at the base commit (None: absent)


def _strip(name: str | None) -> str | None:
    if not name or name == "/dev/null":
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def file_paths(patched_file: Any) -> list[str]:
    """The repository paths one file section of a diff names (source and target)."""
    out: list[str] = []
    for name in (patched_file.source_file, patched_file.target_file):
        path = _strip(name)
        if path and path not in out:
            out.append(path)
    return out


def _sections(patch: str) -> list[Any]:
    """The file sections of a diff (unidiff). A diff unidiff cannot read (``git apply`` may still take
    it) raises ``ValueError``: callers treat it as touching everything it names."""
    from unidiff import PatchSet
    from unidiff.errors import UnidiffParseError

    try:
        return list(PatchSet(patch))
    except UnidiffParseError as e:
        raise ValueError(f"unreadable diff: {e}") from None


def patch_files(patch: str) -> list[str]:
    """Every path a unified diff touches."""
    out: list[str] = []
    for f in _sections(patch):
        out += [p for p in file_paths(f) if p not in out]
    return out


def task_test_files(row: dict[str, Any]) -> set[str]:
    """The files the task's tests live in: those of its test patch and those its eval script checks out."""
    files: set[str] = set()
    if row.get("test_patch"):
        files.update(patch_files(row["test_patch"]))
    for m in _CHECKOUT.finditer(row.get("eval_script") or ""):
        files.update(shlex.split(m.group(1)))
    return files


def _changed_lines(patched_file: Any) -> list[Any]:
    return [line for hunk in patched_file for line in hunk if line.is_added or line.is_removed]


def _touches_pytest_section(patched_file: Any, base: str | None) -> bool:
    """Whether a change to setup.cfg / pyproject.toml lands in a pytest section (or writes a pytest header)."""
    if any(_PYTEST_SECTION.match(line.value) for line in _changed_lines(patched_file)):
        return True
    if base is None:
        return False  # a new file: only its own headers (checked above) can make a pytest section
    section: list[bool] = [False]  # per base line (1-based): inside a pytest section
    inside = False
    for text in base.splitlines():
        if _SECTION.match(text):
            inside = bool(_PYTEST_SECTION.match(text))
        section.append(inside)

    def at(line_no: int) -> bool:
        return section[min(max(line_no, 0), len(section) - 1)]

    for hunk in patched_file:
        last = hunk.source_start - 1  # an added line goes after the last base line seen
        for line in hunk:
            if line.source_line_no is not None:
                last = line.source_line_no
            if line.is_removed and at(line.source_line_no):
                return True
            if line.is_added and at(last):
                return True
    return False


def test_infrastructure(patch: str, row: dict[str, Any], base_text: BaseText | None = None) -> list[str]:
    """The paths of ``patch`` that belong to the test infrastructure (see the module's docstring).

    ``base_text`` reads a file at the base commit, for the section check of setup.cfg / pyproject.toml;
    without it any change to those two files counts (the safe side)."""
    if not patch.strip():
        return []
    protected = task_test_files(row)
    try:
        sections = _sections(patch)
    except ValueError:  # every path its git headers name is suspect; without_files drops them all
        return sorted({p for m in _GIT_HEADER.finditer(patch) for p in m.groups()}) or ["(unreadable diff)"]
    found: list[str] = []
    for f in sections:
        paths = file_paths(f)
        hit = any(p in protected or TEST_PATH.search(p) or ALWAYS.search(p) for p in paths)
        if not hit:
            hit = any(_PLUGIN in line.value for line in _changed_lines(f))
        if not hit and any(SECTIONED.search(p) for p in paths):
            source = _strip(f.source_file)
            base = base_text(source) if (base_text is not None and source) else None
            hit = base_text is None or _touches_pytest_section(f, base)
        if hit:
            found += [p for p in paths if p not in found]
    return found


def without_files(patch: str, paths: list[str] | set[str]) -> str:
    """``patch`` less the file sections that name any of ``paths`` (those files stay at the base commit)."""
    if not paths:
        return patch
    drop = set(paths)
    try:
        return "".join(str(f) for f in _sections(patch) if not drop.intersection(file_paths(f)))
    except ValueError:
        return ""  # nothing of a diff we cannot read is graded once it touches the test infrastructure
