"""What every reader shares: the error type, the record stream, and the format registry.

A *reader* is a pair of plain functions registered under a format name:
``detect(record) -> bool`` recognises one decoded record (a file's JSON object, a JSONL line, a hub
row) and ``parse(record, source) -> Trajectory`` turns it into the schema, raising ``ReadError``
(or ``ActionParseError``) for anything malformed. The driver in ``__init__`` streams records, so one
bad record is counted and skipped, never fatal to a batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jsonl import JsonlError, decode, read_jsonl
from ..schema import Trajectory


class ReadError(ValueError):
    """A record that cannot be read. Names the file, the record and the field at fault."""

    def __init__(self, message: str, *, file: str = "", record: str | int = "", field: str = "", reason: str = ""):
        self.message, self.file, self.record, self.field = message, str(file), record, field
        self.reason = reason or "malformed"
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                self.file and f"file {self.file}",
                self.record != "" and f"record {self.record}",
                self.field and f"field {self.field!r}",
            )
            if part
        )
        return f"{where}: {self.message}" if where else self.message

    def located(self, file: str, record: str | int) -> ReadError:
        """The same error, with where it happened filled in by the driver."""
        return ReadError(
            self.message, file=self.file or file, record=self.record if self.record != "" else record,
            field=self.field, reason=self.reason,
        )


@dataclass(frozen=True)
class Format:
    name: str
    detect: Callable[[Any], bool]
    parse: Callable[[Any, str], Trajectory]
    description: str = ""


FORMATS: dict[str, Format] = {}


def register(name: str, detect: Callable[[Any], bool], description: str = ""):
    """Decorator for a reader's ``parse`` function; detection order is registration order."""

    def wrap(parse: Callable[[Any, str], Trajectory]):
        FORMATS[name] = Format(name, detect, parse, description)
        return parse

    return wrap


def require(record: dict, key: str, kind: type | tuple[type, ...], *, field: str | None = None) -> Any:
    """``record[key]`` checked for presence and type, or a ReadError naming the field."""
    if not isinstance(record, dict):
        raise ReadError(f"expected an object, got {type(record).__name__}", field=field or key)
    if key not in record:
        raise ReadError("missing", field=field or key, reason=f"missing field {field or key}")
    value = record[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ReadError(f"expected {names}, got {type(value).__name__}", field=field or key, reason=f"bad field {field or key}")
    return value


def dig(d: Any, *keys: str) -> Any:
    """``d[k1][k2]…`` through nested objects, or None where any level is missing or not an object."""
    for key in keys:
        d = d.get(key) if isinstance(d, dict) else None
    return d


# --- records out of files -------------------------------------------------------------------------

TRAJECTORY_SUFFIXES = (".traj", ".json", ".jsonl", ".yaml", ".yml")


@dataclass
class Record:
    file: str
    key: str | int  # line number (1-based) in JSONL, index in a JSON list, "" for a whole-file record
    value: Any = None
    error: ReadError | None = None


def _is_event(x: Any) -> bool:
    return isinstance(x, dict) and "source" in x and ("action" in x or "observation" in x)


def _is_chat_message(x: Any) -> bool:
    return isinstance(x, dict) and isinstance(x.get("role"), str) and "content" in x


def _is_one_record(value: list) -> bool:
    """A JSON list that is one transcript, not a list of rows: an OpenHands event stream, or a bare
    chat-message list (mini-swe-agent's early ``.traj.json`` fixtures)."""
    return bool(value) and (_is_event(value[0]) or all(_is_chat_message(m) for m in value))


def iter_file_records(path: Path) -> Iterator[Record]:
    """Decoded records of one file. JSONL streams line by line; a JSON list is a list of rows unless
    it is one transcript (``_is_one_record``); anything else is one record."""
    name = str(path)
    if path.suffix == ".jsonl":
        for lineno, value in read_jsonl(path, errors="yield"):
            if isinstance(value, JsonlError):
                yield Record(name, lineno, error=ReadError(value.what, file=name, record=lineno or "",
                                                           reason="invalid JSON" if value.kind == "not JSON" else value.kind))
            else:
                yield Record(name, lineno, value)
        return
    try:
        text = decode(path.read_bytes())
    except OSError as e:  # unreadable (permissions, a vanished file): this file is skipped, the others go on
        yield Record(name, "", error=ReadError(f"cannot read: {e.strerror or e}", file=name, reason="unreadable file"))
        return
    except UnicodeDecodeError as e:
        yield Record(name, "", error=ReadError(f"not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})",
                                               file=name, reason="not UTF-8"))
        return
    yaml_file = path.suffix in (".yaml", ".yml")
    try:
        if yaml_file:
            import yaml

            value = yaml.safe_load(text)
        else:
            value = json.loads(text)
    except RecursionError:
        yield Record(name, "", error=ReadError("nested too deeply to decode", file=name, reason="too deep"))
        return
    except Exception as e:  # json's and yaml's own errors
        reason = "invalid YAML" if yaml_file else "invalid JSON"
        yield Record(name, "", error=ReadError(f"cannot decode: {e}", file=name, reason=reason))
        return
    if isinstance(value, list) and not _is_one_record(value):
        for i, row in enumerate(value):
            yield Record(name, i, row)
    else:
        yield Record(name, "", value)


_RECORD_KEY = re.compile(r":\d+$")
_TRAJ_SUFFIXES = (".traj.json", ".traj", ".json", ".yaml", ".yml")


def instance_id_from_source(source: str) -> str:
    """The instance id a trajectory file's name implies (SWE-agent and mini-swe-agent name each
    file after its instance), for records that do not carry one.

    ``~`` stands for ``/`` in the names of the shared data copies, so only the part after the last
    one is the original file name."""
    name = _RECORD_KEY.sub("", source).rsplit("/", 1)[-1].rsplit("~", 1)[-1]
    for suffix in _TRAJ_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def iter_paths(inputs: list[str | Path]) -> Iterator[Path]:
    """Files under each input, folders walked in sorted order."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            # Dangling links are kept: reading them fails, and that is reported, not silently passed over.
            yield from (f for f in sorted(p.rglob("*")) if (f.is_file() or (f.is_symlink() and not f.exists()))
                        and f.suffix in TRAJECTORY_SUFFIXES)
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
