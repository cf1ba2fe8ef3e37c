"""Flaky tests: a task's gold patch graded several times, and the FAIL_TO_PASS / PASS_TO_PASS tests whose
outcome changes from run to run, so that a dataset can drop them before their noise becomes reward."""

from __future__ import annotations

from typing import Any

from .grading import evaluate

KINDS = ("FAIL_TO_PASS", "PASS_TO_PASS")


def flaky_tests(row: dict[str, Any], runs: int, *, patch: str | None = None, client: Any = None,
                timeout: float = 900) -> dict[str, Any]:
    """``runs`` pristine grades of ``patch`` (the row's gold patch by default): how many resolved, and per
    kind the tests that passed in some runs and failed in others."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    grades = [evaluate(row, row["patch"] if patch is None else patch, client=client, timeout=timeout)
              for _ in range(runs)]
    flaky = {}
    for kind in KINDS:
        passed = [set(g.get(kind, {}).get("success", [])) for g in grades]
        failed = [set(g.get(kind, {}).get("failure", [])) for g in grades]
        flaky[kind] = sorted(set().union(*passed) & set().union(*failed))
    return {"instance_id": row["instance_id"], "runs": runs, "resolved": sum(bool(g["resolved"]) for g in grades),
            "flaky": flaky}
