"""A side-by-side diff as an HTML table: expert on the left, candidate on the right.

Lines are matched with difflib; a changed line paired with its counterpart gets word-level
marks (``<del>`` on the left, ``<ins>`` on the right). Everything is escaped here.
"""

from __future__ import annotations

import difflib
import re
from html import escape

MAX_INLINE = 2000  # longer changed lines are marked whole (token matching is quadratic)
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")  # words, runs of space, single punctuation marks


def _inline(a: str, b: str) -> tuple[str, str]:
    if len(a) > MAX_INLINE or len(b) > MAX_INLINE:
        return f"<del>{escape(a)}</del>" if a else "", f"<ins>{escape(b)}</ins>" if b else ""
    ta, tb = _TOKEN.findall(a), _TOKEN.findall(b)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        x, y = escape("".join(ta[i1:i2])), escape("".join(tb[j1:j2]))
        if op == "equal":
            left.append(x)
            right.append(y)
            continue
        if x:
            left.append(f"<del>{x}</del>")
        if y:
            right.append(f"<ins>{y}</ins>")
    return "".join(left), "".join(right)


def _cell(line_no: int | None, text: str, cls: str) -> str:
    cls = "void" if line_no is None else cls
    attr = f' class="{cls}"' if cls else ""
    return f'<td class="ln">{"" if line_no is None else line_no}</td><td{attr}>{text}</td>'


def _row(ln_a: int | None, a: str, ln_b: int | None, b: str, tag: str) -> str:
    cls_a = {"delete": "del", "replace": "chg"}.get(tag, "")
    cls_b = {"insert": "ins", "replace": "chg"}.get(tag, "")
    return f"<tr>{_cell(ln_a, a, cls_a)}{_cell(ln_b, b, cls_b)}</tr>"


def side_by_side(expert: str, candidate: str, left: str = "expert", right: str = "candidate") -> str:
    """The HTML table of ``expert`` vs ``candidate``, line by line."""
    a, b = expert.split("\n"), candidate.split("\n")
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [_row(i1 + k + 1, escape(a[i1 + k]), j1 + k + 1, escape(b[j1 + k]), tag) for k in range(i2 - i1)]
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            la = a[i1 + k] if i1 + k < i2 else None
            lb = b[j1 + k] if j1 + k < j2 else None
            if la is not None and lb is not None:
                x, y = _inline(la, lb)
                rows.append(_row(i1 + k + 1, x, j1 + k + 1, y, "replace"))
            elif la is not None:
                rows.append(_row(i1 + k + 1, f"<del>{escape(la)}</del>" if la else "", None, "", "delete"))
            else:
                rows.append(_row(None, "", j1 + k + 1, f"<ins>{escape(lb)}</ins>" if lb else "", "insert"))
    head = f'<tr><th colspan="2">{escape(left)}</th><th colspan="2">{escape(right)}</th></tr>'
    cols = '<colgroup><col class="lnc"><col><col class="lnc"><col></colgroup>'
    return f'<table class="sbs">{cols}{head}{"".join(rows)}</table>'
