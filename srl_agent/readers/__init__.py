"""Read expert trajectories of every public format into the schema.

``read_trajectories`` streams files, folders and hub datasets, detects each record's format (or
uses the one given), and yields ``Trajectory`` objects; what it skips is counted by reason in a
``ReadReport``, so a batch never loses a record silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..actions import ActionParseError
from ..schema import Trajectory
from .base import FORMATS, ReadError, Record, iter_file_records, iter_paths

# Importing the reader modules registers them; order = detection order (most specific first).
from . import native, sweagent, minisweagent, openhands, swegym, nebius, swesmith  # noqa: E402,F401  # isort: skip

NOT_A_TRAJECTORY = "not a trajectory"


@dataclass
class ReadReport:
    files: int = 0
    records: int = 0
    read: Counter = field(default_factory=Counter)  # by source format
    skipped: Counter = field(default_factory=Counter)  # by reason
    dropped_turns: int = 0  # turns inside read trajectories that are not steps
    errors: list[str] = field(default_factory=list)  # in full, up to max_errors
    max_errors: int = 1000

    def skip(self, reason: str, error: ReadError | None = None) -> None:
        self.skipped[reason] += 1
        if error is not None and len(self.errors) < self.max_errors:
            self.errors.append(str(error))

    def summary(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records": self.records,
            "trajectories_read": sum(self.read.values()),
            "read_by_format": dict(self.read),
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(self.skipped),
            "turns_dropped": self.dropped_turns,
            "problems": list(self.errors),  # file, record and field of each skip, up to max_errors
            "problems_omitted": max(0, sum(self.skipped.values()) - len(self.errors)),
        }


def detect_format(record: Any) -> str | None:
    for fmt in FORMATS.values():
        if fmt.detect(record):
            return fmt.name
    return None


def parse_record(record: Any, source: str, fmt: str | None = None) -> Trajectory:
    """One decoded record to a Trajectory; raises ReadError naming the field at fault."""
    name = fmt or detect_format(record)
    if name is None:
        raise ReadError("no reader recognises this record", reason=NOT_A_TRAJECTORY)
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    try:
        return FORMATS[name].parse(record, source)
    except ActionParseError as e:
        raise ReadError(str(e), field=e.field, reason="unparseable action") from None
    except ReadError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
        # A shape no reader check anticipated: still an error about this record, not a crash.
        raise ReadError(f"{type(e).__name__}: {e}", reason=f"malformed {name} record") from None


def is_hub_name(item: str) -> bool:
    base = item.split(":", 1)[0]
    return not Path(item).exists() and base.count("/") == 1 and not base.startswith((".", "/"))


class HubUnavailable(ValueError):
    """A hub dataset was named but the hub does not answer (bad input here: name a local copy)."""


def check_hub(name: str, timeout: float = 5.0) -> None:
    """Fail fast when the hub does not answer (``datasets`` would retry for half a minute, then raise a
    traceback). With ``HF_HUB_OFFLINE=1`` nothing is asked: ``datasets`` reads its local cache."""
    import os

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return
    from huggingface_hub import HfApi

    try:
        HfApi().dataset_info(name, timeout=timeout)
    except Exception as e:
        raise HubUnavailable(f"{name}: the hub does not answer or has no such dataset ({type(e).__name__}); "
                             "a local file or folder works offline, and HF_HUB_OFFLINE=1 reads the datasets cache") from None


def iter_hub_records(item: str) -> Iterator[Record]:
    """Rows of a hub dataset, ``owner/name[:split]``, streamed through ``datasets``."""
    from datasets import load_dataset

    name, _, split = item.partition(":")
    check_hub(name)
    for i, row in enumerate(load_dataset(name, split=split or "train", streaming=True)):
        yield Record(item, i, row)


def iter_records(inputs: Iterable[str | Path]) -> Iterator[Record]:
    for item in inputs:
        if isinstance(item, str) and is_hub_name(item):
            yield from iter_hub_records(item)
        else:
            for path in iter_paths([item]):
                yield from iter_file_records(path)


def read_trajectories(
    inputs: Iterable[str | Path], fmt: str | None = None, report: ReadReport | None = None
) -> Iterator[Trajectory]:
    """Stream trajectories out of files, folders and hub names; skipped records go to ``report``."""
    report = report if report is not None else ReadReport()
    seen_files: set[str] = set()
    for rec in iter_records(inputs):
        if rec.file not in seen_files:
            seen_files.add(rec.file)
            report.files += 1
        report.records += 1
        if rec.error is not None:
            report.skip(rec.error.reason, rec.error)
            continue
        source = f"{rec.file}:{rec.key}" if rec.key != "" else rec.file
        try:
            traj = parse_record(rec.value, source, fmt)
        except ReadError as e:
            report.skip(e.reason, None if e.reason == NOT_A_TRAJECTORY else e.located(rec.file, rec.key))
            continue
        if not traj.steps:
            report.skip("no steps")
            continue
        report.read[traj.source_format.split(":")[0]] += 1
        report.dropped_turns += traj.dropped_turns
        yield traj


def read_file(path: str | Path, fmt: str | None = None) -> list[Trajectory]:
    """Every trajectory in one file; raises the first ReadError instead of skipping (for single files)."""
    out = []
    for rec in iter_file_records(Path(path)):
        if rec.error is not None:
            raise rec.error
        try:
            out.append(parse_record(rec.value, f"{rec.file}:{rec.key}" if rec.key != "" else rec.file, fmt))
        except ReadError as e:
            raise e.located(rec.file, rec.key) from None
    return out


__all__ = ["FORMATS", "ReadError", "ReadReport", "detect_format", "parse_record", "read_file", "read_trajectories"]
