"""Trajectories in, step instances out (JSONL), streaming: memory stays flat whatever the input size."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .readers import ReadReport, read_trajectories
from .steps import StepConfig, Truncator, step_instances

NOT_VERIFIED, NOT_RESOLVED = "not verified by replay", "did not resolve in replay"


def _unverified(traj: Any) -> str | None:
    if not traj.verified:
        return NOT_VERIFIED
    return None if traj.verified.get("resolved") is True else NOT_RESOLVED


def prepare(
    inputs: Iterable[str | Path],
    out: str | Path,
    config: StepConfig | None = None,
    fmt: str | None = None,
    tokenizer: Any = None,
    progress: Any = None,
    only_verified: bool = False,
) -> dict[str, Any]:
    """Write one JSON row per expert step of every trajectory in ``inputs``; return the summary.

    ``progress`` is an optional callable taking the number of trajectories done (for a progress bar).
    The settings the prompts were built with go beside ``out`` (``model_settings.write_data_settings``),
    where ``train sft|srl`` find them to save with the model. ``only_verified`` keeps the trajectories
    that replay ran and resolved (``replay --write-verified``); the others are skipped and counted.
    """
    from .model_settings import PromptSettings, write_data_settings

    config = config or StepConfig()
    report = ReadReport()
    truncate = Truncator(tokenizer)
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the JSONL file to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = dropped_legacy = 0
    with out.open("w", encoding="utf-8") as fh:
        for i, traj in enumerate(read_trajectories(inputs, fmt=fmt, report=report), 1):
            if only_verified and (why := _unverified(traj)):
                report.read[traj.source_format.split(":")[0]] -= 1
                report.skip(why)
                continue
            rows = 0
            for row in step_instances(traj, config, truncate):
                fh.write(json.dumps(row, ensure_ascii=False))
                fh.write("\n")
                rows += 1
            written += rows
            if config.drop_legacy:
                dropped_legacy += len(traj.steps) - rows
            if progress is not None:
                progress(i)
    # Canonical actions are XML (actions.render), whatever the source format wrote.
    settings = PromptSettings.from_step_config(config, style="xml", budgets="tokens" if tokenizer else "characters")
    summary = report.summary()
    summary.update(steps_written=written, legacy_steps_dropped=dropped_legacy, out=str(out),
                   settings=str(write_data_settings(out, settings)))
    return summary
