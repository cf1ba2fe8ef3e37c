"""Patch similarity: two editor calls compared by their effect on a file, not by their arguments.

Each edit (``str_replace``, ``insert``, ``create``) is applied to the same content — the snapshot of
the file before the step — the way SWE-agent's ``str_replace_editor`` would apply it. The unified diff
from the snapshot to each result (no context lines) is parsed with ``unidiff``, and its changed lines
(hunk headers with their line numbers, ``-``/``+`` lines) are compared with the similarity backend.
Two ``str_replace`` calls whose ``old_str`` windows differ but that leave the same file produce the
same diff, so they score 1.0. As in SWE-RL's reward, an empty change scores 0 against a real one.

Without a snapshot the effect cannot be computed; the fallback diffs an edit's own arguments instead
(``old_str`` → ``new_str``; ``""`` → ``new_str`` / ``file_text``) and drops line numbers. That still
cancels the shared context of two windows, but not location, and the breakdown says it was used.
"""

from __future__ import annotations

import difflib
import posixpath
from typing import Any

from unidiff import PatchSet

from ..actions import render
from ..schema import ToolCall
from .similarity import Similarity

EDIT_COMMANDS = ("str_replace", "insert", "create")


class CannotApply(ValueError):
    """An edit the editor would refuse (old_str missing or not unique, insert_line out of range, …)."""


def apply_edit(args: dict[str, Any], content: str | None) -> str:
    """The file after the edit; ``content`` None means the file's content is unknown."""
    command = args["command"]
    if command == "create":
        if not isinstance(args.get("file_text"), str):
            raise CannotApply("create without file_text")
        return args["file_text"]
    if content is None:
        raise CannotApply(f"{command} needs the file's content")
    new = args.get("new_str")
    if command == "str_replace":
        old = args.get("old_str")
        if not isinstance(old, str) or not old:
            raise CannotApply("str_replace without old_str")
        count = content.count(old)
        if count != 1:
            raise CannotApply(f"old_str occurs {count} times in the file (must be exactly once)")
        return content.replace(old, new if isinstance(new, str) else "", 1)
    if command == "insert":
        if not isinstance(new, str) or not isinstance(args.get("insert_line"), int):
            raise CannotApply("insert needs insert_line and new_str")
        # SWE-agent splits on "\n" and accepts insert_line in [0, number of pieces].
        lines = content.split("\n")
        at = args["insert_line"]
        if not 0 <= at <= len(lines):
            raise CannotApply(f"insert_line {at} outside [0, {len(lines)}]")
        return "\n".join(lines[:at] + new.split("\n") + lines[at:])
    raise CannotApply(f"{command} is not an edit")


def diff_changes(diff: str, located: bool = True) -> str:
    """The changed lines of a unified diff (any tool's, ``git diff`` included) as one text."""
    out = []
    for patched_file in PatchSet(diff):
        for hunk in patched_file:
            if located:
                out.append(f"@@ -{hunk.source_start},{hunk.source_length} +{hunk.target_start},{hunk.target_length} @@")
            out.extend(line.line_type + line.value.rstrip("\n") for line in hunk if line.line_type in "+-")
    return "\n".join(out)


def changes(before: str, after: str, located: bool = True) -> str:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), "a/file", "b/file", n=0, lineterm="")
    return diff_changes("\n".join(lines) + "\n", located)


def _fallback_changes(args: dict[str, Any]) -> str:
    """An edit's own change, from its arguments alone (no snapshot, so no location)."""
    command = args["command"]
    if command == "str_replace":
        if not isinstance(args.get("old_str"), str) or not args["old_str"]:
            raise CannotApply("str_replace without old_str")
        new = args.get("new_str")
        return changes(args["old_str"], new if isinstance(new, str) else "", located=False)
    if command == "insert":
        if not isinstance(args.get("new_str"), str):
            raise CannotApply("insert without new_str")
        return changes("", args["new_str"], located=False)
    return changes("", apply_edit(args, None), located=False)


def edit_similarity(
    candidate: dict[str, Any], expert: dict[str, Any], snapshot: str | None, similarity: Similarity
) -> tuple[float, dict[str, Any], bool]:
    """(value, components, fallback used) for two edits of the same file."""
    components: dict[str, Any] = {}
    base = snapshot
    if base is not None:
        try:
            expert_change = changes(base, apply_edit(expert, base))
        except CannotApply as e:
            # A stale snapshot, or an expert edit that failed at the time: effects cannot be compared.
            components["snapshot"] = f"expert edit does not apply: {e}"
            base = None
    if base is None:
        try:
            expert_change = _fallback_changes(expert)
        except CannotApply as e:
            # Real trajectories hold broken expert edits (str_replace without old_str): only the
            # argument text is left to compare, so the expert's own call still scores 1.
            components["expert_edit"] = f"unusable: {e}"
            value = similarity(render(ToolCall("str_replace_editor", candidate)), render(ToolCall("str_replace_editor", expert)))
            return value, components, True
    return _against(candidate, base, expert_change, similarity, components)


def _against(candidate: dict[str, Any], base: str | None, expert_change: str, similarity: Similarity,
             components: dict[str, Any]) -> tuple[float, dict[str, Any], bool]:
    """The candidate's change (from ``base``; from its own arguments when None) against the expert's."""
    try:
        candidate_change = changes(base, apply_edit(candidate, base)) if base is not None else _fallback_changes(candidate)
    except CannotApply as e:
        components.update(applies=False, error=str(e))
        return 0.0, components, base is None
    components["applies"] = True
    if not candidate_change or not expert_change:
        # An empty change only matches an empty change: a no-op edit must not earn credit.
        value = 1.0 if candidate_change == expert_change else 0.0
    else:
        value = similarity(candidate_change, expert_change)
    components["patch"] = value
    return value, components, base is None


def diff_files(diff: str) -> tuple[dict[str, bool], str | None]:
    """The files a patch touches (path: whether it adds the file), and the first one it does not add
    (the file whose content before the step a bash step's snapshot holds)."""
    files = {f.path: f.is_added_file for f in PatchSet(diff)}
    return files, next((path for path, added in files.items() if not added), None)


def _apply_zero_context(content: str, patched: Any) -> str:
    """A file after the hunks of a zero-context patch (``git diff -U0``): each hunk replaces its source lines."""
    lines = content.splitlines(keepends=True)
    for hunk in reversed(list(patched)):
        start = hunk.source_start - 1 if hunk.source_length else hunk.source_start
        lines[start : start + hunk.source_length] = [line.value for line in hunk if line.is_added]
    return "".join(lines)


def _expert_change(step_diff: str, target: str, base: str | None) -> str:
    """The expert's changed lines. The candidate's file is re-diffed from its content before and after the
    step, as the candidate's edit is: two diffs of one change may place an inserted blank line on either
    side of a neighbouring one, and the same effect must compare equal. Other files' lines as the patch
    has them; without the content, every file's lines unlocated."""
    if base is None:
        return diff_changes(step_diff, located=False)
    parts = []
    for patched in PatchSet(step_diff):
        if patched.path == target:
            parts.append(changes(base, _apply_zero_context(base, patched)))
        else:
            parts.append(diff_changes(str(patched)))
    return "\n".join(p for p in parts if p)


def _same_file(path: str, relative: str) -> bool:
    path = posixpath.normpath(path)
    return path == relative or path.endswith("/" + relative)


def bash_edit_similarity(
    candidate: dict[str, Any], step_diff: str, snapshot: str | None, similarity: Similarity
) -> tuple[float, dict[str, Any], bool]:
    """(value, components, fallback used) for an editor edit against what an expert's bash command
    changed (``step_diff``: the step's zero-context patch; ``snapshot``: the first file it changed,
    before the step). The expert's change is every changed line of the patch, so an edit of one file
    of several earns only its share."""
    try:
        files, snapshot_path = diff_files(step_diff)
    except Exception as e:  # a patch unidiff cannot read: nothing to compare the effect with
        return 0.0, {"step_diff": f"unreadable: {type(e).__name__}"}, True
    target = next((p for p in files if _same_file(str(candidate.get("path", "")), p)), None)
    components: dict[str, Any] = {"path": float(target is not None)}
    if target is None:
        return 0.0, components, False  # the right kind of action on a file the expert did not change
    # The file's content before the step: the snapshot, or nothing for a file the step created.
    base = snapshot if target == snapshot_path else "" if files[target] else None
    return _against(candidate, base, _expert_change(step_diff, target, base), similarity, components)
