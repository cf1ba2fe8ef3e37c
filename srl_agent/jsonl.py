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
    """A line that is not JSON (``kind``: "not JSON", "not UTF-8"), or a file that cannot be read
    ("unreadable file", line 0). The message names the file and line; ``what`` says kind and reason."""

    def __init__(self, path: str | Path, line_no: int, msg: str, kind: str = "not JSON"):
        self.path, self.line_no, self.msg, self.kind = str(path), line_no, msg, kind
        super().__init__(f"{path}:{line_no}: {self.what}")

    @property
    def what(self) -> str:
        return f"{self.kind}: {self.msg}"


def decode(data: bytes) -> str:
    """A file's text: UTF-8 (a BOM allowed), or UTF-16 / UTF-32 when a BOM says so; UnicodeDecodeError else."""
    import codecs

    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(codec)
    return data.decode("utf-8-sig")


def _lines(path: Path) -> Iterator[tuple[int, str | JsonlError]]:
    """(line number, text) streamed; an undecodable line (or an unreadable file, as line 0) as JsonlError."""
    try:
        fh = path.open("rb")
    except OSError as e:
        yield 0, JsonlError(path, 0, f"{type(e).__name__}: {e.strerror or e}", "unreadable file")
        return
    with fh:
        head = fh.read(4)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16/32 with a BOM: small enough to decode whole
            text = decode(head + fh.read())
            yield from enumerate(text.split("\n"), 1)
            return
        fh.seek(0)
        for line_no, raw in enumerate(fh, 1):
            try:
                yield line_no, raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield line_no, JsonlError(path, line_no, f"byte {raw[e.start]:#04x} at column {e.start + 1}", "not UTF-8")


def read_jsonl(path: str | Path, *, errors: str = "raise") -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) for each non-empty line of a UTF-8 file (or UTF-16 with a BOM), streamed.

    A line that is not JSON (or not text, or nested past what the decoder can follow) raises
    ``JsonlError``, and so does a file that cannot be opened (line 0); with ``errors="yield"`` it comes
    back in place of the value, for callers that count bad lines and go on. What a value must look
    like is the caller's to check."""
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, not {errors!r}")
    path = Path(path)
    for line_no, line in _lines(path):
        if isinstance(line, JsonlError):
            value: Any = line
        elif not line.strip():
            continue
        else:
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                value = JsonlError(path, line_no, e.msg)
            except RecursionError:
                value = JsonlError(path, line_no, "nested too deeply")
        if isinstance(value, JsonlError) and errors == "raise":
            raise value
        yield line_no, value
        if isinstance(value, JsonlError) and value.line_no == 0:
            return
