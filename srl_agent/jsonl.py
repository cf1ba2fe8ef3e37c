"""JSON Lines files (step instances, reward logs, datasets, predictions), read one way everywhere.

Lines are split on ``\\n`` only, as the file is streamed: ``str.splitlines`` would also split on
U+2028 and friends, which ``json.dumps(..., ensure_ascii=False)`` leaves unescaped inside strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ERRORS = ("raise", "yield")


class JsonlError(ValueError):
    """A line that is not JSON. The message names the file and line; ``msg`` is the decoder's reason."""

    def __init__(self, path: str | Path, line_no: int, msg: str):
        super().__init__(f"{path}:{line_no}: not JSON: {msg}")
        self.path, self.line_no, self.msg = str(path), line_no, msg


def read_jsonl(path: str | Path, *, errors: str = "raise") -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) for each non-empty line of a UTF-8 file, streamed.

    A line that is not JSON raises ``JsonlError``; with ``errors="yield"`` it comes back in place of
    the value, for callers that count bad lines and go on. What a value must look like is the
    caller's to check."""
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, not {errors!r}")
    with Path(path).open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                bad = JsonlError(path, line_no, e.msg)
                if errors == "raise":
                    raise bad from None
                value = bad
            yield line_no, value
