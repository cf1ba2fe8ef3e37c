"""The offline images of four real SWE-bench Verified instances (../shared/swebench), built by
``srl_agent.swebench_images`` on the real Docker engine: laid out as the official images are, and
graded as the official harness grades them. Expected results come from the rows themselves
(FAIL_TO_PASS / PASS_TO_PASS), environments.json's pins and the official report.json of each real
mini-swe-agent run, never from the code under test."""

from __future__ import annotations

import difflib
import json
import re
import tarfile

import pytest

from srl_agent.sandbox import LABEL

from .conftest import RUN_ID, RUN_LABEL, SHARED_ROOT, require_shared

FOLDER = require_shared(SHARED_ROOT / "swebench")
TRAJECTORIES = SHARED_ROOT / "data" / "trajectories" / "minisweagent" / "verified"
IDS = [json.loads(line)["instance_id"] for line in (FOLDER / "rows.jsonl").read_text().splitlines() if line.strip()]
ENVS = json.loads((FOLDER / "environments.json").read_text())
TESTBED_PYTHON = "/opt/miniconda3/envs/testbed/bin/python"


@pytest.fixture(scope="module")
def rows(swebench_rows) -> dict[str, dict]:
    return {r["instance_id"]: r for r in swebench_rows}


def run_in(client, image: str, script: str) -> str:
    """``bash -c script`` in a new container of ``image`` with no network; its output (exit code 0)."""
    container = client.containers.create(image, ["bash", "-c", script], network_disabled=True,
                                         network_mode="none", labels={LABEL: "1", RUN_LABEL: RUN_ID})
    try:
        container.start()
        code = container.wait(timeout=120)["StatusCode"]
        out = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        container.remove(force=True)
    assert code == 0, f"{script!r} in {image} exited {code}:\n{out[-3000:]}"
    return out


def noop_patch(instance_id: str) -> str:
    """A comment line added at the end of setup.py (not a test file): applies, fixes nothing."""
    with tarfile.open(FOLDER / "repos" / f"{instance_id}.tar.gz") as tar:
        text = tar.extractfile("testbed/setup.py").read().decode("utf-8")
    assert text.endswith("\n")
    old = text.splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, [*old, "# no-op: this line changes nothing\n"],
                                        "a/setup.py", "b/setup.py"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- (a) the images' layout


@pytest.mark.parametrize("iid", IDS)
def test_repository_is_base_commit_plus_an_empty_swebench_commit(iid, rows, docker_client):
    base = rows[iid]["base_commit"]
    out = run_in(docker_client, rows[iid]["image"], f"""
        cd /testbed
        echo "parent=$(git rev-parse HEAD^)"
        echo "subject=$(git log -1 --format=%s)"
        echo "head_diff=$(git diff --name-only HEAD^ HEAD | wc -l)"
        echo "status=$(git status --porcelain | wc -l)"
        # every commit object in the store, reachable or not, must be the base, its history, or HEAD
        for c in $(git cat-file --batch-all-objects --batch-check='%(objecttype) %(objectname)' |
                   awk '$1 == "commit" {{print $2}}'); do
            [ "$c" = "$(git rev-parse HEAD)" ] || git merge-base --is-ancestor "$c" {base} || echo "newer=$c"
        done
    """)
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith("newer"))
    assert facts == {"parent": base, "subject": "SWE-bench", "head_diff": "0", "status": "0"}, out
    assert "newer=" not in out, out


@pytest.mark.parametrize("iid", IDS)
def test_testbed_env_holds_every_pinned_distribution(iid, rows, docker_client):
    out = run_in(docker_client, rows[iid]["image"], f"{TESTBED_PYTHON} -m pip list --format=json")
    installed = {canonical(p["name"]): p["version"] for p in json.loads(out.strip().splitlines()[-1])}
    pins = {canonical(name): version for name, version in (p.split("==") for p in ENVS[iid]["env_packages"])}
    assert {n: installed.get(n) for n in pins} == pins


@pytest.mark.parametrize("iid", IDS)
def test_login_shell_runs_the_testbed_python(iid, rows, docker_client):
    out = run_in(docker_client, rows[iid]["image"],
                 "bash -lc 'which python; python -c \"import platform, sys; print(sys.prefix, platform.python_version())\"'")
    which, prefix, version = out.split()
    assert (which, prefix) == (TESTBED_PYTHON, "/opt/miniconda3/envs/testbed"), out
    assert version.startswith(ENVS[iid]["python"] + "."), out


def test_a_second_build_skips_every_image(swebench_rows, docker_client):
    from srl_agent.swebench_images import RECIPE_LABEL, build_swebench_images

    result = build_swebench_images(FOLDER, client=docker_client, progress=False)
    assert [(r["instance_id"], r["image"], r["built"]) for r in result] == \
        [(r["instance_id"], r["image"], False) for r in swebench_rows]
    for r in result:
        assert docker_client.images.get(r["image"]).labels[RECIPE_LABEL] == r["recipe"]


# ---------------------------------------------------------------- (b) gold, empty and no-op patches


def sets(verdict: dict, key: str) -> tuple[set, set]:
    return set(verdict[key]["success"]), set(verdict[key]["failure"])


@pytest.mark.parametrize("iid", IDS)
def test_gold_patch_resolves_in_a_pristine_container(iid, rows, docker_client):
    from srl_agent.grading import evaluate

    row = rows[iid]
    verdict = evaluate(row, row["patch"], client=docker_client)
    assert verdict["resolved"], verdict["reason"]
    assert sets(verdict, "FAIL_TO_PASS") == (set(row["FAIL_TO_PASS"]), set())
    assert sets(verdict, "PASS_TO_PASS") == (set(row["PASS_TO_PASS"]), set())
    # the eval script's re-install worked offline, from the image's wheelhouse
    assert "Successfully installed" in verdict["log"] and "No matching distribution" not in verdict["log"]


@pytest.mark.parametrize("iid", IDS)
@pytest.mark.parametrize("kind", ["empty", "no-op"])
def test_empty_and_noop_patches_do_not_resolve(iid, kind, rows, docker_client):
    from srl_agent.grading import evaluate

    row = rows[iid]
    verdict = evaluate(row, "" if kind == "empty" else noop_patch(iid), client=docker_client)
    assert not verdict["resolved"] and verdict["tests_ran"], verdict["reason"]
    assert sets(verdict, "FAIL_TO_PASS") == (set(), set(row["FAIL_TO_PASS"]))
    assert sets(verdict, "PASS_TO_PASS") == (set(row["PASS_TO_PASS"]), set())


def harness_report(out, run_id: str, model: str, iid: str) -> dict:
    path = out / "logs" / "run_evaluation" / run_id / model / iid / "report.json"
    return json.loads(path.read_text())[iid]


def test_official_harness_gold_resolves_and_noop_or_empty_do_not(swebench_rows, docker_client, tmp_path):
    from srl_agent.evaluation.harness import score

    def preds(model, patch):
        return [{"instance_id": r["instance_id"], "model_name_or_path": model, "model_patch": patch(r)}
                for r in swebench_rows]

    n = len(swebench_rows)
    gold = score(swebench_rows, preds("gold", lambda r: r["patch"]), tmp_path / "gold", "swb-gold", client=docker_client)
    noop = score(swebench_rows, preds("noop", lambda r: noop_patch(r["instance_id"])), tmp_path / "noop", "swb-noop",
                 client=docker_client)
    empty = score(swebench_rows, preds("empty", lambda r: ""), tmp_path / "empty", "swb-empty", client=docker_client)
    assert (gold["resolved"], noop["resolved"], empty["resolved"], gold["total"]) == (n, 0, 0, n)
    for row, g, o, e in zip(swebench_rows, gold["instances"], noop["instances"], empty["instances"], strict=True):
        f2p, p2p = len(row["FAIL_TO_PASS"]), len(row["PASS_TO_PASS"])
        assert (g["status"], g["FAIL_TO_PASS"], g["PASS_TO_PASS"]) == ("resolved", f"{f2p}/{f2p}", f"{p2p}/{p2p}")
        assert (o["status"], o["FAIL_TO_PASS"], o["PASS_TO_PASS"]) == ("unresolved", f"0/{f2p}", f"{p2p}/{p2p}")
        assert e["status"] == "empty_patch"
        tests = harness_report(tmp_path / "noop", "swb-noop", "noop", row["instance_id"])["tests_status"]
        assert set(tests["FAIL_TO_PASS"]["failure"]) == set(row["FAIL_TO_PASS"])


# ---------------------------------------------------------------- (c) real agent patches vs the official reports


@pytest.mark.parametrize("iid", IDS)
def test_agent_patch_grades_as_the_official_report_says(iid, rows, docker_client):
    from srl_agent.grading import evaluate

    traj = json.loads((require_shared(TRAJECTORIES / f"{iid}.traj.json")).read_text())
    official = json.loads((TRAJECTORIES / f"{iid}.report.json").read_text())
    official = official.get(iid, official)
    verdict = evaluate(rows[iid], traj["info"]["submission"], client=docker_client)
    assert verdict["resolved"] == official["resolved"], verdict["reason"]
    for key in ("FAIL_TO_PASS", "PASS_TO_PASS"):
        assert sets(verdict, key) == (set(official["tests_status"][key]["success"]),
                                      set(official["tests_status"][key]["failure"])), key


# ---------------------------------------------------------------- errors name the instance and the step


def test_unknown_instance_is_named(swebench_rows, docker_client):
    from srl_agent.swebench_images import SwebenchImageError, build_swebench_images

    with pytest.raises(SwebenchImageError, match="unknown instance.*no-such-instance"):
        build_swebench_images(FOLDER, ["no-such-instance"], client=docker_client, progress=False)


def test_a_failing_install_names_instance_step_and_log_tail(swebench_rows, docker_client, tmp_path):
    """A copy of one instance whose install asks for a distribution the wheelhouse lacks, under a
    throwaway tag: the build fails in setup_repo.sh and says so."""
    from srl_agent.swebench_images import SwebenchImageError, build_swebench_images

    row = {**swebench_rows[-1], "image": f"srl-agent/test-swebench-broken:{RUN_ID}"}
    iid = row["instance_id"]
    env = {**ENVS[iid], "install": "python -m pip install no-such-distribution-srl"}
    (tmp_path / "repos").mkdir()
    (tmp_path / "repos" / f"{iid}.tar.gz").symlink_to(FOLDER / "repos" / f"{iid}.tar.gz")
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "environments.json").write_text(json.dumps({iid: env}))
    with pytest.raises(SwebenchImageError) as e:
        build_swebench_images(tmp_path, client=docker_client, progress=False)
    message = str(e.value)
    assert message.startswith(f"{iid}: docker build of {row['image']} failed"), message
    assert "setup_repo.sh" in message and "no-such-distribution-srl" in message, message
    assert not docker_client.images.list(name="srl-agent/test-swebench-broken")
