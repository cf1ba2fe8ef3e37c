"""The bundled task pack, its images and its grading, on a real Docker engine and the real swebench harness.

Without an engine the Docker tests skip; with SRL_REQUIRE_DOCKER set (CI) they fail instead.
Start an engine with scripts/ensure-docker. The images are built once, by ``build_images``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srl_agent import tasks
from srl_agent.grading import evaluate, grade
from srl_agent.images import build_images
from srl_agent.sandbox import LABEL

from .conftest import RUN_ID, RUN_LABEL

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "environments" / "tasks.jsonl"

MARK = {RUN_LABEL: RUN_ID}
FIELDS = (
    "instance_id", "repo", "version", "base_commit", "problem_statement", "patch", "test_patch",
    "FAIL_TO_PASS", "PASS_TO_PASS", "image", "eval_script", "log_parser", "eval_type",
)
ROWS = tasks.load_dataset(DATASET)
BY_ID = {r["instance_id"]: r for r in ROWS}


@pytest.fixture(scope="session")
def engine(docker_client):
    """The real engine (conftest: skips without one, fails when SRL_REQUIRE_DOCKER is set)."""
    return docker_client


@pytest.fixture(scope="session")
def images(engine) -> dict[str, str]:
    """Build every task image (existing ones are skipped); instance id -> tag."""
    t0 = time.monotonic()
    summary = build_images(client=engine, progress=False)
    print(f"task images: {summary['built']} built, {summary['existing']} existing, {time.monotonic() - t0:.1f}s")
    built = {i["instance_id"]: i["image"] for i in summary["images"]}
    stale = {iid: (r["image"], built.get(iid)) for iid, r in BY_ID.items() if built.get(iid) != r["image"]}
    assert not stale, f"environments/tasks.jsonl is stale (run `srl-agent env dataset`): {stale}"
    return built


def _sh(engine, image: str, script: str) -> str:
    """Run a shell script in a throwaway, offline container; its output (exit code must be 0)."""
    c = engine.containers.create(image, ["bash", "-c", script], labels={LABEL: "1", **MARK},
                                 network_disabled=True, network_mode="none")
    try:
        c.start()
        code = c.wait(timeout=120)["StatusCode"]
        out = c.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        assert code == 0, out
        return out
    finally:
        c.remove(force=True)


def _passing_log(row: dict, exit_code: int) -> str:
    """An eval log in which every expected test prints PASSED, with the given recorded exit code."""
    lines = [f"PASSED {t}" for t in row["FAIL_TO_PASS"] + row["PASS_TO_PASS"]]
    return "\n".join(["+ : '>>>>> Start Test Output'", *lines, "+ : '>>>>> End Test Output'",
                      f">>>>> Test Exit Code: {exit_code}", ""])


# ----------------------------------------------------------------------------- the dataset (no engine)


def test_dataset_has_enough_tasks_and_projects():
    assert len(ROWS) >= 8
    assert len({r["repo"] for r in ROWS}) >= 3
    assert len(BY_ID) == len(ROWS), "duplicate instance ids"
    assert sorted(BY_ID) == [t.instance_id for t in tasks.load_pack()]


@pytest.mark.parametrize("iid", sorted(BY_ID))
def test_row_has_every_swebench5_field(iid):
    row = BY_ID[iid]
    assert set(FIELDS) <= set(row), set(FIELDS) - set(row)
    for key in FIELDS:
        want = list if key in ("FAIL_TO_PASS", "PASS_TO_PASS") else str
        assert isinstance(row[key], want), key
    assert re.fullmatch(r"[0-9a-f]{40}", row["base_commit"])
    assert re.fullmatch(r"srl-agent/task\.[a-z0-9._-]+:[0-9a-f]{12}", row["image"])
    assert row["log_parser"] == "parse_log_pytest" and row["eval_type"] == "pass_and_fail"
    assert row["FAIL_TO_PASS"] and row["PASS_TO_PASS"]
    assert not set(row["FAIL_TO_PASS"]) & set(row["PASS_TO_PASS"])
    assert row["patch"].startswith("diff --git ") and row["problem_statement"].strip()
    script = row["eval_script"].splitlines()
    assert script[:2] == ["#!/bin/bash", "set -uxo pipefail"]
    start, end = script.index(": '>>>>> Start Test Output'"), script.index(": '>>>>> End Test Output'")
    assert end == start + 2 and script[start + 1].startswith("pytest -rA ")
    assert script[-1].startswith(f"git checkout {row['base_commit']} -- ")  # the tests are reset afterwards
    if row["test_patch"]:
        assert "git apply --verbose - <<'" in row["eval_script"]


def test_some_tasks_bring_their_own_test():
    assert sum(bool(r["test_patch"]) for r in ROWS) >= 1


# ----------------------------------------------------------------------------- grading guards (no engine)


def test_exit_code_contradicting_passed_lines_is_not_resolved():
    """swebench's exploit guard: a patch can print PASSED lines (e.g. from a conftest hook)."""
    row = ROWS[0]
    honest = grade(row, _passing_log(row, 0))
    assert honest["resolved"], honest["reason"]
    faked = grade(row, _passing_log(row, 1))
    assert not faked["resolved"] and not faked["tests_ran"]
    assert faked["exit_code"] == 1


def test_empty_fail_to_pass_never_resolves():
    """swebench scores a task with no FAIL_TO_PASS as resolved whatever the patch; grade must not."""
    from swebench.harness.grading import get_eval_report
    from swebench.harness.utils import make_test_spec

    row = {**ROWS[0], "FAIL_TO_PASS": []}
    log = _passing_log(row, 0)
    result = grade(row, log)
    assert not result["resolved"] and "no FAIL_TO_PASS" in result["reason"]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"srl-agent-{RUN_ID}.log"
    path.write_text(log)
    try:
        pred = {"instance_id": row["instance_id"], "model_patch": "x", "model_name_or_path": "t"}
        upstream = get_eval_report(make_test_spec(row), pred, str(path), include_tests_status=False)
    finally:
        path.unlink()
    assert upstream[row["instance_id"]]["resolved"], "swebench changed: the guard may now be redundant"


def test_log_without_markers_is_not_resolved():
    row = ROWS[0]
    result = grade(row, "\n".join(f"PASSED {t}" for t in row["FAIL_TO_PASS"] + row["PASS_TO_PASS"]))
    assert not result["resolved"] and not result["tests_ran"]


# ----------------------------------------------------------------------------- the images


@pytest.mark.parametrize("iid", sorted(BY_ID))
def test_image_holds_one_root_commit_equal_to_base_commit(engine, images, iid):
    row = BY_ID[iid]
    out = _sh(engine, images[iid], (
        "set -e; cd /testbed; git rev-parse HEAD; git rev-list --all --count; git rev-list --max-parents=0 HEAD;"
        " echo tags=$(git tag | wc -l) remotes=$(git remote | wc -l) refs=$(git for-each-ref | wc -l)"
        " reflog=$(git reflog 2>/dev/null | wc -l) stash=$(git stash list | wc -l) dirty=$(git status --porcelain | wc -l);"
        " git log -1 --format='%an <%ae> %ad %s'"
    ))
    head, count, root, state, author = out.strip().splitlines()
    assert head == row["base_commit"]
    assert count == "1" and root == head
    assert state == "tags=0 remotes=0 refs=1 reflog=0 stash=0 dirty=0"
    assert author == "srl-agent <tasks@srl-agent.invalid> Sat Jan 1 00:00:00 2000 +0000 Initial commit"


def test_image_runs_offline_with_pytest_and_the_project_importable(engine, images):
    row = BY_ID[next(i for i in BY_ID if "isodate" in i)]  # src layout: the .pth path matters here
    out = _sh(engine, images[row["instance_id"]],
              "cd / && python3 -c 'import isodate, pytest; print(isodate.__file__, pytest.__version__)';"
              " ls /sys/class/net")
    first, nets = out.strip().splitlines()
    assert first == "/testbed/src/isodate/__init__.py 8.3.4"
    assert nets.split() == ["lo"]


# ----------------------------------------------------------------------------- evaluation in containers


@pytest.mark.parametrize("iid", sorted(BY_ID))
def test_gold_patch_resolves_and_empty_patch_does_not(engine, images, iid):
    row = BY_ID[iid]
    gold = evaluate(row, row["patch"], client=engine, labels=MARK)
    assert gold["resolved"], (gold["reason"], gold["log"][-3000:])
    assert sorted(gold["FAIL_TO_PASS"]["success"]) == sorted(row["FAIL_TO_PASS"])
    assert len(gold["PASS_TO_PASS"]["success"]) == len(row["PASS_TO_PASS"])
    assert gold["exit_code"] == 0
    empty = evaluate(row, "", client=engine, labels=MARK)
    assert not empty["resolved"] and empty["tests_ran"]
    assert sorted(empty["FAIL_TO_PASS"]["failure"]) == sorted(row["FAIL_TO_PASS"])
    assert empty["PASS_TO_PASS"]["failure"] == []
    assert empty["exit_code"] == 1  # pytest's "some tests failed"


# A gold fix plus one more edit that breaks a test the task expects to keep passing.
BREAKERS = {
    "pytoolz__toolz.1.0.0.merge-sorted-key-order": (
        r"sed -i 's/d\[item\] += 1/d[item] += 2/' toolz/itertoolz.py",
        "toolz/tests/test_itertoolz.py::test_frequencies"),
    "more-itertools__more-itertools.10.5.0.divide-remainder": (
        "sed -i 's/return sum(compress(repeat(1), zip(iterable)))/&+1/' more_itertools/more.py",
        "tests/test_more.py::IlenTests::test_ilen"),
    "jpvanhal__inflection.0.5.1.ordinal-hundred-teens": (
        "sed -i \"s/return word.replace('_', '-')/return word/\" inflection/__init__.py",
        "test_inflection.py::test_dasherize[street_address-street-address]"),
    "gweis__isodate.0.7.2.leap-year-centuries": (
        "sed -i 's/months=-self.months)/months=self.months)/' src/isodate/duration.py",
        "tests/test_duration.py::test_neg"),
}


def _patch_from(engine, row: dict, edit: str) -> str:
    """The diff against base_commit after applying the gold patch and then ``edit``, made in the image."""
    script = f"set -e; cd /testbed; git apply - <<'EOF_GOLD'\n{row['patch']}EOF_GOLD\n{edit}; git diff"
    return _sh(engine, row["image"], script)


@pytest.mark.parametrize("iid", sorted(BREAKERS))
def test_patch_breaking_a_pass_to_pass_test_does_not_resolve(engine, images, iid):
    row = BY_ID[iid]
    edit, victim = BREAKERS[iid]
    patch = _patch_from(engine, row, edit)
    gold_lines = [ln for ln in row["patch"].splitlines() if ln.startswith(("+", "-")) and ln[1:2] not in "+-"]
    assert all(ln in patch.splitlines() for ln in gold_lines) and patch.count("\n@@ -") == 2, patch
    result = evaluate(row, patch, client=engine, labels=MARK)
    assert not result["resolved"] and result["tests_ran"]
    assert sorted(result["FAIL_TO_PASS"]["success"]) == sorted(row["FAIL_TO_PASS"])
    assert victim in result["PASS_TO_PASS"]["failure"]


def test_patch_that_edits_the_failing_test_away_does_not_resolve(engine, images):
    """The eval script resets the test files, so gutting the failing test gains nothing."""
    row = BY_ID["pytoolz__toolz.1.0.0.merge-sorted-key-order"]
    script = ("set -e; cd /testbed; sed -i 's/^def test_merge_sorted():/&\\n    return/' "
              "toolz/tests/test_itertoolz.py; git diff")
    patch = _sh(engine, row["image"], script)
    assert "+    return" in patch
    result = evaluate(row, patch, client=engine, labels=MARK)
    assert not result["resolved"] and result["FAIL_TO_PASS"]["failure"] == row["FAIL_TO_PASS"]


def test_patch_that_does_not_apply_is_not_resolved(engine, images):
    row = ROWS[0]
    result = evaluate(row, "diff --git a/nope.py b/nope.py\n--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-a\n+b\n",
                      client=engine, labels=MARK)
    assert not result["resolved"] and not result["tests_ran"]
    assert ">>>>> Patch Apply Failed" in result["log"]


def test_run_past_the_timeout_is_killed_and_not_resolved(engine, images):
    row = {**ROWS[0], "eval_script": "#!/bin/bash\nset -uxo pipefail\n: '>>>>> Start Test Output'\n"
           "sleep 600\n: '>>>>> End Test Output'\n"}
    t0 = time.monotonic()
    result = evaluate(row, "", client=engine, labels=MARK, timeout=3)
    assert time.monotonic() - t0 < 60
    assert not result["resolved"] and not result["tests_ran"]
    assert ">>>>> Tests Timed Out" in result["log"]


def test_official_run_evaluation_resolves_every_gold_patch(engine, images, tmp_path):
    """swebench.harness.run_evaluation, as a user runs it: local dataset file, local images, no pull."""
    run_id = f"srl-test-{RUN_ID}"
    cmd = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(DATASET),
           "--predictions_path", "gold", "--run_id", run_id, "--max_workers", "2", "--timeout", "300",
           "--report_dir", str(tmp_path)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    print(f"run_evaluation on {len(ROWS)} tasks: {time.monotonic() - t0:.1f}s")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    report = json.loads((tmp_path / f"gold.{run_id}.json").read_text())
    assert report["resolved_ids"] == sorted(BY_ID), (report, r.stdout[-3000:])
    assert report["error_ids"] == [] and report["unstopped_containers"] == []


def test_no_container_of_this_run_is_left(engine):
    """Runs last (file order): every container these tests started has been removed."""
    left = engine.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
    assert not left, [(c.short_id, c.name, c.status) for c in left]
