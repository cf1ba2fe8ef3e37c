"""SWE-smith and SWE-Gym task instances as swebench-5 rows (srl_agent.evaluation.swesmith).

The real SWE-smith instance in the shared data is checked against swesmith's own profile for its
repository and against SWE-smith's validation and evaluation reports. The eval script's semantics are
checked end to end on a real container: a bundled task laid out as a SWE-smith image (the fixed
repository on ``main``, the instance a branch of two commits: the bug, then the removal of its
FAIL_TO_PASS test file), a SWE-smith instance row for it converted and graded by ``grading.evaluate``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shlex
import subprocess
import tarfile
import textwrap

import pytest

from srl_agent.evaluation.data import DatasetError, is_v5_row, load_rows, missing_for_scoring
from srl_agent.evaluation.swesmith import (
    SwesmithMissing,
    build_instance_image,
    instance_image,
    is_swegym_row,
    is_swesmith_row,
    reverse_patch,
    swegym_image,
    swegym_row,
    swesmith_registry,
    swesmith_row,
)

from .conftest import RUN_ID, RUN_LABEL, SHARED, require_shared

PANDAS = "pandas-dev__pandas.95280573.pr_53652"
SWESMITH = SHARED / "swesmith"


def _registry():
    try:
        return swesmith_registry()
    except SwesmithMissing as e:
        if os.environ.get("SRL_REQUIRE_EXTENSIONS"):  # CI: make test installs the extra, so its absence fails
            pytest.fail(str(e), pytrace=False)
        pytest.skip(str(e))


def _pandas_instance() -> dict:
    require_shared(SWESMITH)
    return json.loads((SWESMITH / f"{PANDAS}.json").read_text())


def _report(name: str) -> dict:
    return json.loads((SWESMITH / name).read_text())


# ----------------------------------------------------------------------------- the real SWE-smith instance


def test_pandas_instance_converts_as_swesmiths_profile_and_reports_say():
    from swebench.harness.log_parsers import PARSER_REGISTRY
    from swebench.harness.utils import make_test_spec

    from srl_agent.engine.integrity import task_test_files

    registry = _registry()
    instance = _pandas_instance()
    row = swesmith_row(instance)
    profile = registry.get_from_inst(instance)
    validation = _report("run_validation~report.json")

    assert is_swesmith_row(instance) and is_v5_row(row)
    # The image SWE-smith's harness runs this instance in, and the per-instance image built from it.
    assert row["swesmith_image"] == profile.image_name == "swebench/swesmith.x86_64.pandas-dev_1776_pandas.95280573"
    assert row["image"] == "srl-agent/sweb.eval.x86_64.pandas-dev_1776_pandas.95280573.pr_53652:latest"
    assert row["base_commit"] == ""  # the sandbox's base is the per-instance image's HEAD, the branch tip
    # The tests SWE-smith's validation found, unchanged.
    assert row["FAIL_TO_PASS"] == validation["FAIL_TO_PASS"]
    assert row["PASS_TO_PASS"] == validation["PASS_TO_PASS"]
    # The fix is the bug reversed; the bug is kept.
    assert row["bug_patch"] == instance["patch"] and reverse_patch(row["patch"]) == instance["patch"]
    assert "+        if lib.is_np_dtype(keyarr.dtype, \"mM\") or isinstance(" in row["patch"]
    # The profile's own test command (min_testing: the test files of the instance), with -rA added
    # after the profile's flags so that swebench's pytest parser reads every test's status.
    command, _ = profile.get_test_cmd(instance)
    script = row["eval_script"].splitlines()
    assert f"{profile.test_cmd} -rA{command[len(profile.test_cmd):]}" in script
    assert "pandas/tests/indexing/test_datetime.py" in command
    assert script.index(": '>>>>> Start Test Output'") + 2 == script.index(": '>>>>> End Test Output'")
    # The test files come back from the bug commit (HEAD~1 of the branch, as SWE-smith's harness has
    # them): those of every F2P/P2P test, which is what engine.integrity protects.
    files = {t.split("::")[0] for t in validation["FAIL_TO_PASS"] + validation["PASS_TO_PASS"]}
    assert set(sum(profile.get_test_files(instance), [])) == files
    assert f"git checkout '{PANDAS}~1' -- pandas/tests/indexing/test_datetime.py" in script
    assert task_test_files(row) == files
    assert row["log_parser"] == "parse_log_pytest" and row["log_parser"] in PARSER_REGISTRY
    assert row["eval_type"] == "pass_and_fail"
    spec = make_test_spec(row)  # what grading builds: the exit code lands between the markers' lines
    assert "SWEBENCH_TEST_EXIT_CODE=$?" in spec.eval_script
    # Every test SWE-smith's evaluation of this instance graded is one of the row's.
    evaluation = _report(f"run_evaluation~{PANDAS}~report.json")["tests_status"]
    graded = {t for kind in ("FAIL_TO_PASS", "PASS_TO_PASS") for part in evaluation[kind].values() for t in part}
    assert graded == set(row["FAIL_TO_PASS"]) | set(row["PASS_TO_PASS"])


def test_pandas_log_in_rA_form_grades_with_the_rows_parser():
    """The -rA summary of SWE-smith's resolved evaluation of this instance (its report's statuses)
    grades as resolved, and with the two F2P tests failing as not."""
    from srl_agent.grading import grade

    _registry()
    row = swesmith_row(_pandas_instance())

    def log(failed: set[str]) -> str:
        lines = [f"FAILED {t} - AssertionError" if t in failed else f"PASSED {t}"
                 for t in row["FAIL_TO_PASS"] + row["PASS_TO_PASS"]]
        return "\n".join(["+ : '>>>>> Start Test Output'", *lines, "+ : '>>>>> End Test Output'",
                          f">>>>> Test Exit Code: {1 if failed else 0}"])

    assert grade(row, log(set()))["resolved"]
    verdict = grade(row, log(set(row["FAIL_TO_PASS"])))
    assert not verdict["resolved"] and verdict["FAIL_TO_PASS"]["failure"] == row["FAIL_TO_PASS"]


def test_load_rows_reads_swesmith_rows_as_swebench5(tmp_path):
    _registry()
    instance = _pandas_instance()
    hub = dict(instance, FAIL_TO_PASS=json.dumps(instance["FAIL_TO_PASS"]),  # the hub's JSON strings
               PASS_TO_PASS=json.dumps(instance["PASS_TO_PASS"]), instance_id=PANDAS)
    path = tmp_path / "swesmith.jsonl"
    path.write_text(json.dumps(instance) + "\n" + json.dumps(dict(hub, instance_id=PANDAS + "x")) + "\n")
    rows = load_rows(path)
    assert [r["instance_id"] for r in rows] == [PANDAS, PANDAS + "x"]
    assert all(is_v5_row(r) for r in rows) and missing_for_scoring(rows) == {}
    assert rows[1]["FAIL_TO_PASS"] == instance["FAIL_TO_PASS"]
    assert rows[0]["eval_script"] == swesmith_row(instance)["eval_script"]
    assert rows[1]["image"] == instance_image(PANDAS + "x")


@pytest.mark.parametrize("change, field", [
    ({"FAIL_TO_PASS": None}, "FAIL_TO_PASS"),
    ({"FAIL_TO_PASS": []}, "FAIL_TO_PASS"),
    ({"PASS_TO_PASS": None}, "PASS_TO_PASS"),
    ({"patch": ""}, "patch"),
    ({"patch": "diff --git a/x.png b/x.png\nBinary files a/x.png and b/x.png differ\n"}, "patch"),
    ({"instance_id": "pandas-dev__pandas.pr_53652"}, "instance_id"),
    ({"instance_id": "nobody__nothing.0123abcd.pr_1", "repo": "swesmith/nobody__nothing.0123abcd"}, "repo"),
])
def test_an_unconvertible_row_names_its_instance_and_field(change, field):
    _registry()
    instance = {**_pandas_instance(), **change}
    if change.get(field, ...) is None:
        del instance[field]
    with pytest.raises(DatasetError) as e:
        swesmith_row(instance)
    assert str(e.value).startswith(f"row {instance['instance_id']}: field {field!r}")


def test_profile_with_its_own_log_parser_is_refused_or_kept_for_agent_runs_only(tmp_path):
    """tornado's profile parses unittest output with its own parser, which no swebench parser
    reproduces: converting it refuses, loading keeps the row without what scoring needs."""
    registry = _registry()
    instance = {**_pandas_instance(), "instance_id": "tornadoweb__tornado.d5ac65c1.func_1",
                "repo": "swesmith/tornadoweb__tornado.d5ac65c1"}
    assert type(registry.get_from_inst(instance)).__name__ == "TornadoD5ac65c1"
    with pytest.raises(DatasetError, match=r"^row tornadoweb__tornado\.d5ac65c1\.func_1: field 'log_parser': "
                                           r"swesmith profile TornadoD5ac65c1 reads its logs with its own"):
        swesmith_row(instance)
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(instance) + "\n")
    (row,) = load_rows(path)
    assert row["image"] == instance_image(instance["instance_id"]) and row["swesmith_image"]
    assert missing_for_scoring([row]) == {instance["instance_id"]: ["eval_script", "log_parser"]}
    assert "TornadoD5ac65c1" in row["swesmith_unscorable"]


def test_without_swesmith_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    from srl_agent.evaluation import swesmith as module

    instance = _pandas_instance()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(module, "_registry", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "swesmith" else find_spec(name, *a))
    with pytest.raises(SwesmithMissing, match=r"repository profiles: pip install 'srl-agent\[swesmith\]'"):
        swesmith_row(instance)
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(instance) + "\n")
    with pytest.raises(DatasetError, match="swesmith"):
        load_rows(path)


# ----------------------------------------------------------------------------- reverse_patch against git


def _git(repo, *args, input=None) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "HOME": str(repo), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, input=input)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _tree(repo) -> dict[str, str]:
    files = _git(repo, "ls-files", "-s").splitlines()
    return {line.split("\t")[1]: (line.split()[0], (repo / line.split("\t")[1]).read_text()) for line in files}


def _sections(diff: str) -> list[str]:
    return sorted("diff --git " + part for part in diff.split("diff --git ")[1:])


def test_reverse_patch_is_the_diff_git_writes_the_other_way(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "keep.py").write_text("".join(f"line {i}\n" for i in range(30)))
    (repo / "gone.py").write_text("a\nb\n")
    (repo / "eof.txt").write_text("no newline at the end")
    (repo / "moved.py").write_text("".join(f"x{i}\n" for i in range(12)))
    (repo / "run.sh").write_text("echo hi\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "A")
    text = (repo / "keep.py").read_text().replace("line 3\n", "line three\nline 3b\n").replace("line 25\n", "")
    (repo / "keep.py").write_text(text)
    (repo / "gone.py").unlink()
    (repo / "new dir").mkdir()
    (repo / "new dir" / "new file.py").write_text("fresh\n")
    (repo / "eof.txt").write_text("still no newline, other text")
    _git(repo, "mv", "moved.py", "renamed.py")
    (repo / "renamed.py").write_text((repo / "renamed.py").read_text().replace("x5\n", "x5 changed\n"))
    (repo / "run.sh").chmod(0o755)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "B")
    forward = _git(repo, "diff", "-M", "HEAD~1", "HEAD")
    backward = _git(repo, "diff", "-M", "HEAD", "HEAD~1")
    assert "rename from moved.py" in forward and "old mode 100644" in forward and "\\ No newline" in forward
    # Section by section (git orders sections by path, and a rename's path is the other one backwards).
    assert _sections(reverse_patch(forward)) == _sections(backward)
    assert _sections(reverse_patch(backward)) == _sections(forward)
    # And it undoes B: applied to B, the tree is A's again (content and modes).
    after_b = _tree(repo)
    _git(repo, "apply", "--index", "-", input=reverse_patch(forward))
    _git(repo, "commit", "-qm", "A again")
    assert _git(repo, "diff", "HEAD", "HEAD~2") == "" and _tree(repo) != after_b


# ----------------------------------------------------------------------------- SWE-Gym


def test_swegym_rows_get_swegyms_image_and_pytest_parser(tmp_path):
    """SWE-Gym's OpenHands runs: their ids (less the sample suffix) give the image; their logs are
    pytest -rA output that the row's parser reads."""
    from swebench.harness.log_parsers import PARSER_REGISTRY

    require_shared(SHARED / "hf_samples")
    samples = json.loads((SHARED / "hf_samples/SWE-Gym_OpenHands-Sampled-Trajectories.sample_raw.json").read_text())
    for sample in samples:
        iid = sample["instance_id"].rsplit("_", 1)[0]
        owner, rest = iid.split("__")
        row = swegym_row({"instance_id": iid, "repo": f"{owner}/{rest.rsplit('-', 1)[0]}", "base_commit": "0" * 40,
                          "FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]", "patch": "", "test_patch": ""})
        assert row["image"] == f"xingyaoww/sweb.eval.x86_64.{iid.replace('__', '_s_').lower()}:latest"
        assert row["log_parser"] == "parse_log_pytest" and row["eval_type"] == "pass_and_fail"
        assert missing_for_scoring([row]) == {iid: ["eval_script"]}
        log = sample["test_result"]["test_output"]
        passed = [line.split()[1] for line in log.splitlines() if line.startswith("PASSED ")]
        status = PARSER_REGISTRY[row["log_parser"]](log, None)
        assert passed and all(status[t] == "PASSED" for t in passed), iid
    assert swegym_row({"instance_id": "Project-MONAI__MONAI-5686", "repo": "Project-MONAI/MONAI"})["image"] == \
        "xingyaoww/sweb.eval.x86_64.project-monai_s_monai-5686:latest"
    assert is_swegym_row({"image": "xingyaoww/sweb.eval.x86_64.x_s_y-1:latest"}) and is_swegym_row({}, "SWE-Gym/SWE-Gym")
    assert not is_swegym_row({"image": "swebench/sweb.eval.x86_64.x_1776_y-1:latest"}, "princeton-nlp/SWE-bench")
    path = tmp_path / "gym.jsonl"
    path.write_text(json.dumps({"instance_id": "getmoto__moto-6387", "repo": "getmoto/moto",
                                "image": swegym_image("getmoto__moto-6387")}) + "\n")
    assert load_rows(path)[0]["log_parser"] == "parse_log_pytest"


# ----------------------------------------------------------------------------- end to end on a container

TASK = "gweis__isodate.0.7.2.leap-year-centuries"
BUG_ID = "leap-year-centuries"
IDENTITY = {"GIT_AUTHOR_NAME": "swesmith", "GIT_AUTHOR_EMAIL": "swesmith@example.invalid",
            "GIT_COMMITTER_NAME": "swesmith", "GIT_COMMITTER_EMAIL": "swesmith@example.invalid"}
# SWE-smith's layout from the bundled task (whose image holds the buggy repository): main is the fixed
# repository; the instance branch adds the bug, then removes the F2P test file; an image's clone has the
# branch as origin/<id> only (the remote is never contacted: the containers have no network).
LAYOUT = """\
set -euo pipefail
cd /testbed
git checkout -q -B main
git apply /srl-test/gold.diff && git commit -qam 'Initial commit'
git checkout -q -b "$IID"
git apply -R /srl-test/gold.diff && git commit -qam 'Bug Patch'
git rm -q $F2P_FILES && git commit -qm 'Remove F2P Tests'
git remote add origin "https://github.com/swesmith/${IID%.*}.git"
git update-ref "refs/remotes/origin/$IID" HEAD
git checkout -q main
git branch -q -D "$IID"
git diff main "origin/$IID~1" > /srl-test/bug.diff
"""


def _archive(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def _run(client, image: str, script: str) -> tuple[int, str]:
    container = client.containers.create(image, ["bash", "-c", script], labels={"srl-agent": "1", RUN_LABEL: RUN_ID},
                                         network_mode="none")
    try:
        container.start()
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def swesmith_task(images, docker_client):
    """A SWE-smith instance row of the bundled task, its SWE-smith-style image (under a profile of our
    own, registered the way SWE-smith adds repositories) and its per-instance image."""
    registry = _registry()
    from swesmith.profiles.python import PythonProfile

    task = next(r for r in load_rows() if r["instance_id"] == TASK)
    namespace = f"srl-agent-test-{RUN_ID}"

    @dataclasses.dataclass
    class BundledIsodate(PythonProfile):
        owner: str = "gweis"
        repo: str = "isodate"
        commit: str = task["base_commit"]
        org_dh: str = namespace
        test_cmd: str = "pytest --disable-warnings --color=no --tb=no --verbose"
        min_testing: bool = True

    registry.register_profile(BundledIsodate)
    profile = BundledIsodate()
    iid = f"{profile.repo_name}.{BUG_ID}"
    f2p_files = sorted({t.split("::")[0] for t in task["FAIL_TO_PASS"]})
    made: list[str] = []
    container = docker_client.containers.create(task["image"], ["sleep", "infinity"], network_mode="none",
                                                labels={"srl-agent": "1", RUN_LABEL: RUN_ID})
    try:
        container.start()
        container.put_archive("/", _archive({"srl-test/gold.diff": task["patch"]}))
        code, out = container.exec_run(["bash", "-c", LAYOUT], environment={
            **IDENTITY, "IID": iid, "F2P_FILES": " ".join(map(shlex.quote, f2p_files))})
        assert code == 0, out.decode()
        bug = container.exec_run(["cat", "/srl-test/bug.diff"]).output.decode()
        container.exec_run(["rm", "-rf", "/srl-test"])
        repository, _, tag = profile.image_name.partition(":")
        container.commit(repository=repository, tag=tag or "latest")
        made.append(profile.image_name)
    finally:
        container.remove(force=True)
    instance = {"instance_id": iid, "repo": profile.mirror_name, "patch": bug,
                "FAIL_TO_PASS": task["FAIL_TO_PASS"], "PASS_TO_PASS": task["PASS_TO_PASS"],
                "image_name": f"swesmith.x86_64.{profile.repo_name}", "created_at": "2025-01-01T00:00:00",
                "problem_statement": task["problem_statement"]}
    try:
        row = swesmith_row(instance, namespace=namespace)
        made.append(build_instance_image(row, client=docker_client))
        yield row, task, f2p_files
    finally:
        for image in reversed(made):
            docker_client.images.remove(image, force=True)
        for key in (profile.repo_name, profile.mirror_name):
            registry.data.pop(key, None)


def _evaluate(row, patch, client):
    from srl_agent.grading import evaluate

    return evaluate(row, patch, client=client, labels={RUN_LABEL: RUN_ID}, timeout=300)


def test_instance_image_starts_at_the_branch_tip_without_the_f2p_tests(swesmith_task, docker_client):
    row, _, f2p_files = swesmith_task
    iid = row["instance_id"]
    code, out = _run(docker_client, row["image"], f"""cd /testbed
        git rev-parse --abbrev-ref HEAD; git log --format=%s -3; git status --porcelain --untracked-files=no
        ls {' '.join(f2p_files)} 2>&1; git cat-file -e '{iid}~1:{f2p_files[0]}' && echo 'in the bug commit'""")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:4] == [iid, "Remove F2P Tests", "Bug Patch", "Initial commit"]
    assert "No such file or directory" in lines[4] and lines[5] == "in the bug commit"


def test_gold_fix_resolves_and_the_empty_patch_does_not(swesmith_task, docker_client):
    row, task, _ = swesmith_task
    gold = _evaluate(row, row["patch"], docker_client)
    assert gold["resolved"], (gold["reason"], gold["log"][-3000:])
    assert sorted(gold["FAIL_TO_PASS"]["success"]) == sorted(task["FAIL_TO_PASS"])
    assert gold["PASS_TO_PASS"]["failure"] == [] and len(gold["PASS_TO_PASS"]["success"]) == len(task["PASS_TO_PASS"])
    empty = _evaluate(row, "", docker_client)
    assert empty["tests_ran"] and not empty["resolved"]
    assert sorted(empty["FAIL_TO_PASS"]["failure"]) == sorted(task["FAIL_TO_PASS"])
    assert empty["PASS_TO_PASS"]["failure"] == []


def test_a_patch_that_writes_its_own_f2p_test_file_is_overruled(swesmith_task, docker_client):
    """The tip has no F2P test file, so an agent may write one that fixes the code under test from
    inside the test module. The eval script checks the real file out of the bug commit over it; the
    same patch under an eval script without that line would resolve."""
    row, task, f2p_files = swesmith_task
    code, real = _run(docker_client, row["image"], f"cd /testbed && git show '{row['instance_id']}~1:{f2p_files[0]}'")
    assert code == 0, real
    cheat = real + textwrap.dedent("""
        import isodate.duration as _duration


        def _days(year, month):
            if month in (4, 6, 9, 11):
                return 30
            if month != 2:
                return 31
            return 29 if year % 400 == 0 or year % 100 != 0 and year % 4 == 0 else 28


        _duration.max_days_in_month = _days
        """)
    patch = "".join([f"diff --git a/{f2p_files[0]} b/{f2p_files[0]}\n", "new file mode 100644\n",
                     "--- /dev/null\n", f"+++ b/{f2p_files[0]}\n", f"@@ -0,0 +1,{len(cheat.splitlines())} @@\n",
                     *(f"+{line}\n" for line in cheat.splitlines())])
    verdict = _evaluate(row, patch, docker_client)
    assert verdict["tests_ran"] and not verdict["resolved"], verdict["reason"]
    unguarded = dict(row, eval_script="\n".join(line for line in row["eval_script"].splitlines()
                                                if not line.startswith("git checkout ")) + "\n")
    cheated = _evaluate(unguarded, patch, docker_client)
    assert cheated["resolved"], (cheated["reason"], cheated["log"][-3000:])


def test_a_swesmith_row_is_replayed_in_its_instance_image_built_on_demand(swesmith_task, docker_client, tmp_path):
    """replay with a dataset of SWE-smith rows: the missing per-instance image is built from the repository
    image (never pulled: `--pull never`), and the bundled expert's fix of the same bug resolves there."""
    from srl_agent.readers import read_file
    from srl_agent.replay import replay_trajectories, trajectory_path

    row, task, _ = swesmith_task
    docker_client.images.remove(row["image"], force=True)
    (traj,) = read_file(trajectory_path(TASK))
    traj.task.instance_id = row["instance_id"]
    path = tmp_path / "traj.jsonl"
    path.write_text(traj.to_json() + "\n")
    dataset = tmp_path / "rows.jsonl"
    dataset.write_text(json.dumps(row) + "\n")
    run = replay_trajectories([path], dataset=dataset, pull="never", client=docker_client)
    (report,) = run.reports
    assert docker_client.images.get(row["image"])
    assert report.resolved and report.agrees, report.grade
    assert len(report.steps) == len(traj.steps)
