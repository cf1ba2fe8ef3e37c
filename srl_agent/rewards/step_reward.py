"""The SRL step reward: how close a completion's tool call is to the expert's call at that step.

Two modes (formulas in docs/architecture.md, "Rewards"):

- ``paper``: ``sim(render(candidate), expert_action)`` over the canonical action texts; with the
  ``difflib`` backend this is the paper's ``SequenceMatcher(None, a, b).ratio()`` to the last bit.
- ``tool-aware``: 0 for a different tool; otherwise a per-tool comparison — normalised shell
  commands for ``bash``, path and line range for ``view``, patch similarity for edits, 1 for
  ``submit``. An expert bash step that edited files (``sed -i``, a heredoc; replay records its
  ``step_diff``) is an edit too: an editor edit of the file it changed is scored by patch similarity
  against that change, so the same fix earns the same reward whichever tool makes it.

A completion that breaks the format scores −1 in both modes. Every score comes with a ``Breakdown``;
no completion, whatever it holds, makes scoring raise (a failure nobody foresaw is ``unscorable``, −1).
"""

from __future__ import annotations

import logging
import posixpath
import re
import shlex
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from ..actions import find_xml_calls, normalise, render
from ..schema import ToolCall
from .completion import FormatError, canonical_action, parse_completion, read_text
from .patch import EDIT_COMMANDS, bash_edit_similarity, edit_similarity
from .similarity import Similarity, get_similarity

MODES = ("paper", "tool-aware")
DEFAULT_MODE = "tool-aware"  # it ranks perturbed actions below the expert's more widely: tests/test_rewards_real.py
FORMAT_ERROR_REWARD = -1.0
# The reason code of a completion whose scoring raised: not a format check, a last resort, so that one
# completion cannot abort a training step. The breakdown's error holds what was raised.
UNSCORABLE = "unscorable"
_MAX_ERROR_TEXT = 500
_log = logging.getLogger(__name__)
_reported: set[str] = set()  # exception types already logged: a broken column fails every row alike
_OPERATOR_CHARS = frozenset("();<>|&")


@dataclass
class Breakdown:
    """Why a completion got its reward (one record per completion; ``to_dict`` for logs)."""

    mode: str
    similarity: str
    reward: float
    call: dict[str, Any] | None = None  # the parsed candidate call, None on a format error
    style: str | None = None  # the style the call was written in
    tool_match: bool | None = None  # same tool (and, for the editor, same kind of command)
    components: dict[str, Any] = field(default_factory=dict)
    format_error: str | None = None  # a reason code of completion.REASONS, or UNSCORABLE
    error: str | None = None  # the format error's message, or what was raised (UNSCORABLE)
    fallback: bool = False  # an edit compared without a file snapshot (or with one it does not fit)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# POSIX shell words as shlex reads them (posix=True, punctuation_chars=True, whitespace_split=True,
# no comments), by regex: shlex walks the text one character at a time in Python and was most of the
# tool-aware reward's cost. tests/test_rewards_properties.py checks the two agree on random text.
_SHELL_TOKEN = re.compile(
    r"""[ \t\r\n]*(?:(?P<op>[();<>|&]+)|(?P<word>(?:'[^']*'|"(?:[^"\\]|\\.)*"|\\.|[^ \t\r\n'"\\();<>|&])+))""", re.S
)
_WORD_PART = re.compile(r"""'([^']*)'|"((?:[^"\\]|\\.)*)"|\\(.)|([^'"\\]+)""", re.S)
_DQ_ESCAPE = re.compile(r'\\(["\\])')  # inside "…", a backslash escapes only " and \


def _unquote(m: re.Match) -> str:
    single, double, escaped, plain = m.groups()
    if single is not None:
        return single
    if double is not None:
        return _DQ_ESCAPE.sub(r"\1", double)
    return escaped if escaped is not None else plain


def shell_words(command: str) -> list[str] | None:
    """The shell words and operators of ``command``; None for an unbalanced quote or a trailing backslash."""
    words, pos = [], 0
    while True:
        m = _SHELL_TOKEN.match(command, pos)
        if m is None or m.end() == pos:
            return words if not command[pos:].strip(" \t\r\n") else None
        pos = m.end()
        words.append(m.group("op") or _WORD_PART.sub(_unquote, m.group("word")))


@lru_cache(maxsize=1024)  # the expert's command recurs for every completion of its prompt
def normalise_command(command: str) -> str:
    """A shell command with whitespace and quoting differences removed.

    Shell-tokenised (operators such as ``|``, ``&&``, ``;`` split off even when unspaced), then
    every word re-quoted canonically, so ``grep "a b"`` and ``grep 'a b'`` agree while ``grep a b``
    does not. Newlines count as whitespace. Text that does not tokenise (an unbalanced quote, often
    in a heredoc body) falls back to collapsing runs of whitespace.
    """
    words = shell_words(command)
    if words is None:
        return " ".join(command.split())
    return " ".join(w if w and set(w) <= _OPERATOR_CHARS else shlex.quote(w) for w in words)


def _is_edit(call: ToolCall) -> bool:
    return call.name == "str_replace_editor" and call.arguments.get("command") in EDIT_COMMANDS


def view_score(candidate: dict[str, Any], expert: dict[str, Any], snapshot: str | None) -> float:
    """Overlap of the viewed line ranges: |A ∩ B| / |A ∪ B| in lines (intersection over union).

    A missing ``view_range`` is the whole file, an end of −1 is the end of the file, a start below 1
    is 1. The file's end is its line count when a snapshot is given, otherwise the largest line number
    either range names (so two whole-file views agree, and a whole-file view against lines 10–20 of an
    unknown file scores 11/20).
    """
    ranges = [c.get("view_range") for c in (candidate, expert)]
    if ranges[0] == ranges[1]:
        return 1.0
    named = [v for r in ranges if r for v in r if v > 0]
    end = snapshot.count("\n") + 1 if snapshot is not None else max(named, default=1)
    spans = []
    for r in ranges:
        lo, hi = (r[0], r[1]) if r else (1, -1)
        spans.append((max(lo, 1), end if hi == -1 else hi))
    (a0, a1), (b0, b1) = spans
    if a1 < a0 or b1 < b0:
        return 0.0  # an inverted range (the editor refuses it) overlaps nothing
    inter = min(a1, b1) - max(a0, b0) + 1
    return inter / (max(a1, b1) - min(a0, b0) + 1) if inter > 0 else 0.0


def _kind(command: str) -> str:
    return "edit" if command in EDIT_COMMANDS else command


def expert_call(expert_action: str, expert_tool_call: dict[str, Any] | None) -> ToolCall:
    """The expert's structured call: the dataset column, or (older rows) parsed from the action text."""
    if expert_tool_call:
        return ToolCall.from_dict(expert_tool_call)
    calls = find_xml_calls(expert_action)
    if len(calls) != 1:
        raise ValueError(f"expert action holds {len(calls)} calls: {expert_action[:80]!r}")
    name, params, _ = calls[0]
    return normalise(name, params, expert_action).call


class StepReward:
    """Scores one completion against one expert step; holds the mode, backend and expected style."""

    def __init__(self, mode: str = DEFAULT_MODE, similarity: str = "difflib", style: str = "xml"):
        if mode not in MODES:
            raise ValueError(f"unknown reward mode {mode!r}; known: {', '.join(MODES)}")
        self.mode, self.similarity_name, self.style = mode, similarity, style
        self.similarity: Similarity = get_similarity(similarity)
        self._read_action = canonical_action if (mode, style) == ("paper", "xml") else None

    def __call__(
        self,
        completion: Any,
        expert_action: str,
        expert_tool_call: dict[str, Any] | None = None,
        file_snapshot: str | None = None,
        step_diff: str | None = None,
    ) -> Breakdown:
        """The breakdown of one completion; never raises (see ``UNSCORABLE``)."""
        try:
            return self._score(completion, expert_action, expert_tool_call, file_snapshot, step_diff)
        except Exception as e:
            return self._unscorable(e)

    def _unscorable(self, e: Exception) -> Breakdown:
        kind = type(e).__name__
        try:
            error = f"{kind}: {e}"[:_MAX_ERROR_TEXT]
        except Exception:  # an exception whose message itself fails
            error = kind
        if kind not in _reported:
            _reported.add(kind)
            _log.warning("a completion could not be scored, so it gets %s (later %s errors are not logged): %s",
                         FORMAT_ERROR_REWARD, kind, error, exc_info=e)
        return Breakdown(self.mode, self.similarity_name, FORMAT_ERROR_REWARD, format_error=UNSCORABLE, error=error)

    def _score(
        self, completion: Any, expert_action: str, expert_tool_call: dict[str, Any] | None, file_snapshot: str | None,
        step_diff: str | None = None,
    ) -> Breakdown:
        out = Breakdown(self.mode, self.similarity_name, FORMAT_ERROR_REWARD)
        try:
            parsed = parse_completion(completion, self.style)
        except FormatError as e:
            out.format_error, out.error = e.reason, e.message
            return out
        call = parsed.call
        out.call, out.style = call.to_dict(), parsed.style
        if self.mode == "paper":
            out.reward = self.similarity(render(call) if parsed.action is None else parsed.action, expert_action)
            expert_name = (expert_tool_call or {}).get("name") or expert_call(expert_action, None).name
            out.tool_match = call.name == expert_name
            out.components["action"] = out.reward
            return out
        self._tool_aware(call, expert_call(expert_action, expert_tool_call), file_snapshot, out, step_diff)
        return out

    def rewards(self, rows: Iterable[tuple[Any, str, dict[str, Any] | None, str | None]]) -> list[float]:
        """``[self(c, a, t, s).reward for c, a, t, s in rows]`` without the Breakdowns, for callers that
        keep only the numbers; a (completion, expert action, snapshot) repeated in ``rows`` is scored once.

        In paper mode a completion whose call is already canonical is scored straight from its text:
        the same value, without building the call, its dict and the breakdown, which together cost
        several times the lcs kernel. Everything else takes the full path.
        """
        read, similarity = self._read_action, self.similarity
        seen: dict[tuple, float] = {}
        out = []
        for c, a, t, s, *d in rows:
            d = d[0] if d else None
            try:
                key = (c if type(c) is str else read_text(c), a, s, d)
                r = seen.get(key)
                if r is None:
                    action = read(key[0]) if read is not None else None
                    # Without the expert's tool name the full path parses the expert action for it.
                    if action is not None and t and t.get("name"):
                        r = similarity(action, a)
                    else:
                        r = self(key[0], a, t, s, d).reward
                    seen[key] = r
            except Exception:
                # No text, a column that does not hash, or a fast path that raised: the full path,
                # uncached, gives the format error or the unscorable −1.
                r = self(c, a, t, s, d).reward
            out.append(r)
        return out

    def __reduce__(self):
        return StepReward, (self.mode, self.similarity_name, self.style)

    def _tool_aware(self, cand: ToolCall, exp: ToolCall, snapshot: str | None, out: Breakdown,
                    step_diff: str | None = None) -> None:
        out.reward, out.tool_match = 0.0, cand.name == exp.name
        if exp.name == "bash" and step_diff and _is_edit(cand):
            self._edit_vs_bash(cand.arguments, step_diff, snapshot, out)
            return
        if not out.tool_match:
            return
        if cand.name == "submit":
            out.reward = 1.0
        elif cand.name == "bash":
            a, b = normalise_command(cand.arguments["command"]), normalise_command(exp.arguments["command"])
            out.reward = out.components["command"] = self.similarity(a, b)
        else:
            self._editor(cand.arguments, exp.arguments, snapshot, out)

    def _edit_vs_bash(self, cand: dict[str, Any], step_diff: str, snapshot: str | None, out: Breakdown) -> None:
        """An editor edit against the change an expert's bash command made: compared by effect."""
        out.tool_match = True  # an edit either way; the tools differ, the kind of action does not
        out.reward, components, out.fallback = bash_edit_similarity(cand, step_diff, snapshot, self.similarity)
        out.components.update(components)

    def _editor(self, cand: dict[str, Any], exp: dict[str, Any], snapshot: str | None, out: Breakdown) -> None:
        out.tool_match = _kind(cand["command"]) == _kind(exp["command"])
        if not out.tool_match:
            return  # view vs edit vs undo_edit: different actions, 0
        same_path = posixpath.normpath(cand["path"]) == posixpath.normpath(exp["path"])
        out.components["path"] = float(same_path)
        if not same_path:
            return  # the right action on the wrong file earns nothing
        if cand["command"] == "view":
            out.reward = out.components["range"] = view_score(cand, exp, snapshot)
        elif cand["command"] == "undo_edit":
            out.reward = 1.0
        else:
            out.reward, components, out.fallback = edit_similarity(cand, exp, snapshot, self.similarity)
            out.components.update(components)
