"""Grade test output with swebench's own functions, and run one patch's evaluation in a pristine container.

``grade`` and ``status_map`` are pure: a task row (swebench 5: ``image``, ``eval_script``,
``log_parser``, ``eval_type``, FAIL_TO_PASS, PASS_TO_PASS, ...) plus the eval script's output in,
a verdict out. They go through ``swebench.harness.utils.make_test_spec`` and
``swebench.harness.grading``, so the start/end markers and the recorded test exit code guard us
exactly as they guard the official harness. ``evaluate`` is the Docker side, and the only place the
project runs a task's tests: a new container from the task image that no policy touched, the patch
applied, networking off, labelled ``srl-agent=1``, always removed. With ``restore_test_files`` the
patch's test-infrastructure edits are left out first (``engine.integrity``).
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import tempfile
import time
from typing import Any

_WORK = "/srl-agent"  # where the patch and scripts go inside the container

# Applies the candidate patch, then hands over to the task's eval script. stderr is folded into
# stdout so the `set -x` trace of the markers and pytest's report arrive in the order they happened.
_RUNNER = f"""\
cd /testbed || exit 1
if [ -s {_WORK}/patch.diff ]; then
    if ! git apply --verbose {_WORK}/patch.diff 2>&1; then
        echo '>>>>> Patch Apply Failed'
        exit 1
    fi
    echo '>>>>> Applied Patch'
fi
start=$EPOCHREALTIME
/bin/bash {_WORK}/eval.sh 2>&1
code=$?
echo "$start $EPOCHREALTIME" > {_WORK}/seconds  # the script's own run time, container start excluded
exit $code
"""


def _row(task_row: Any) -> dict[str, Any]:
    return task_row.to_dict() if hasattr(task_row, "to_dict") else dict(task_row)


def _spec(task_row: Any):
    from swebench.harness.utils import make_test_spec

    return make_test_spec(_row(task_row))


def _with_log_file(test_log: str, fn):
    """swebench's grading reads the log from a path."""
    fd, path = tempfile.mkstemp(prefix="srl-agent-test-", suffix=".log")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(test_log)
        return fn(path)
    finally:
        os.unlink(path)


def status_map(task_row: Any, test_log: str) -> tuple[dict[str, str], bool]:
    """``({test id: PASSED|FAILED|SKIPPED|ERROR|XFAIL}, valid)`` as swebench parses the log.

    ``valid`` is False when the log cannot be trusted: the patch did not apply, the tests errored or
    timed out, a marker is missing, or the recorded exit code contradicts the printed results.
    """
    from swebench.harness.grading import get_logs_eval

    spec = _spec(task_row)
    return _with_log_file(test_log, lambda path: get_logs_eval(spec, path))


def grade(task_row: Any, test_log: str) -> dict[str, Any]:
    """Grade one eval-script output against the task's FAIL_TO_PASS / PASS_TO_PASS lists.

    Returns ``resolved``, ``tests_ran`` (the log was valid), ``FAIL_TO_PASS`` and ``PASS_TO_PASS``
    (each ``{"success": [...], "failure": [...]}``), the recorded ``exit_code`` and, when not
    resolved, a one-line ``reason``. A task without FAIL_TO_PASS tests never grades as resolved:
    swebench would call it resolved whatever the patch did.
    """
    from swebench.harness.grading import get_eval_report, parse_test_exit_code

    spec = _spec(task_row)
    prediction = {"instance_id": spec.instance_id, "model_name_or_path": "srl-agent", "model_patch": "(graded from log)"}
    report = _with_log_file(
        test_log, lambda path: get_eval_report(spec, prediction, path, include_tests_status=True)
    )[spec.instance_id]
    ran = bool(report["patch_successfully_applied"])
    tests = report.get("tests_status") or {}
    empty = {"success": [], "failure": []}
    f2p = tests.get("FAIL_TO_PASS") or {**empty, "failure": list(spec.FAIL_TO_PASS)}
    p2p = tests.get("PASS_TO_PASS") or {**empty, "failure": list(spec.PASS_TO_PASS)}
    resolved = bool(report["resolved"]) and bool(spec.FAIL_TO_PASS)
    if resolved:
        reason = None
    elif not spec.FAIL_TO_PASS:
        reason = "the task has no FAIL_TO_PASS tests, so nothing shows a fix"
    elif not ran:
        reason = report.get("infra_failure_reason") or (
            "no trustworthy test output (patch did not apply, tests errored or timed out, "
            "or the test exit code contradicts the printed results)"
        )
    elif f2p["failure"]:
        reason = f"{len(f2p['failure'])} FAIL_TO_PASS test(s) still fail"
    else:
        reason = f"{len(p2p['failure'])} PASS_TO_PASS test(s) broken"
    return {
        "instance_id": spec.instance_id,
        "resolved": resolved,
        "tests_ran": ran,
        "FAIL_TO_PASS": {"success": list(f2p["success"]), "failure": list(f2p["failure"])},
        "PASS_TO_PASS": {"success": list(p2p["success"]), "failure": list(p2p["failure"])},
        "exit_code": parse_test_exit_code(test_log),
        "reason": reason,
    }


def _archive(folder: str, files: dict[str, str]) -> bytes:
    """A tar of ``folder/`` holding ``files`` (name -> text), for ``put_archive``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(folder)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        tar.addfile(info)
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _remove(container: Any) -> None:
    import docker

    from .sandbox import untrack

    untrack(container)
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:  # 409: a concurrent `gc` is removing it already
        if e.status_code != 409:
            raise


def _read_created(container: Any, path: str) -> str | None:
    """A file's text from a container that has not started (the image's own content), else None."""
    import docker

    try:
        stream, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        data = tar.extractfile(member) if member is not None and member.isfile() else None
        return data.read().decode("utf-8", "replace") if data is not None else None


def _script_seconds(container: Any) -> float | None:
    """How long the eval script itself ran, from the runner's two timestamps (None when unreadable)."""
    try:
        start, end = (float(x.replace(",", ".")) for x in (_read_created(container, f"{_WORK}/seconds") or "").split())
        return max(0.0, end - start)
    except Exception:
        return None


def run_eval_script(
    task_row: Any,
    patch: str = "",
    *,
    client: Any = None,
    timeout: float = 600,
    labels: dict[str, str] | None = None,
    restore_test_files: bool = False,
) -> tuple[str, list[str], float]:
    """Apply ``patch`` (empty: none) to /testbed in a pristine container of the task image and run the
    task's eval script: ``(log, restored test files, seconds the script ran)``.

    The container is new, so nothing an agent did anywhere but in its patch reaches the tests. It has no
    network, no capabilities, bounded pids and memory, carries ``srl-agent=1`` (plus ``labels``) and is
    removed whatever happens. Past ``timeout`` seconds it is killed and the log says so.
    ``restore_test_files``: the patch's test-infrastructure files (``engine.integrity``) are left out,
    so they stay as the base commit has them; the base texts are read from the container before it starts.
    """
    import docker

    from .engine.integrity import test_infrastructure, without_files
    from .sandbox import container_labels, track

    spec = _spec(task_row)
    own = client is None
    client = client or docker.from_env()
    container = None
    try:
        container = client.containers.create(
            spec.image,
            ["/bin/bash", f"{_WORK}/run.sh"],
            labels=container_labels(labels),
            network_disabled=True,
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=512,
            mem_limit="2g",
        )
        track(container)
        restored: list[str] = []
        if restore_test_files and patch.strip():
            restored = test_infrastructure(patch, _row(task_row),
                                           lambda path: _read_created(container, f"/testbed/{path}"))
            patch = without_files(patch, restored)
        files = {"run.sh": _RUNNER, "eval.sh": spec.eval_script, "patch.diff": patch or ""}
        container.put_archive("/", _archive(_WORK.lstrip("/"), files))
        started = time.monotonic()
        container.start()
        try:
            container.wait(timeout=timeout)
            timed_out = False
        except Exception:  # requests' ReadTimeout / ConnectionError: the run took too long
            timed_out = True
            with contextlib.suppress(docker.errors.APIError):  # it may have exited meanwhile
                container.kill()
        ran = _script_seconds(container) or time.monotonic() - started
        log = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        if timed_out:
            log += f"\n>>>>> Tests Timed Out after {timeout:g} s\n"
        return log, restored, ran
    finally:
        if container is not None:
            _remove(container)
        if own:
            client.close()


def evaluate(task_row: Any, patch: str = "", **kwargs: Any) -> dict[str, Any]:
    """The whole evaluation of one patch in a pristine container (``run_eval_script``, then ``grade``): the
    verdict plus ``log``, ``edited_test_files`` (restored, with ``restore_test_files=True``), ``seconds``
    and ``script_seconds``."""
    started = time.monotonic()
    log, restored, ran = run_eval_script(task_row, patch, **kwargs)
    return {**grade(task_row, log), "edited_test_files": restored, "seconds": round(time.monotonic() - started, 2),
            "script_seconds": round(ran, 3), "log": log}


def test_infrastructure_edits(task_row: Any, patch: str, *, client: Any = None,
                              labels: dict[str, str] | None = None) -> list[str]:
    """The test-infrastructure files ``patch`` edits (``engine.integrity``), for a patch graded elsewhere
    (the official harness). The base texts the pytest-section check needs are read from a container of
    the task image that is created, never started, and only when the patch touches setup.cfg or
    pyproject.toml."""
    import docker

    from .engine.integrity import test_infrastructure
    from .sandbox import container_labels, track

    row = _row(task_row)
    made: list[Any] = []
    own = client is None

    def base_text(path: str) -> str | None:
        nonlocal client
        if not made:
            client = client or docker.from_env()
            made.append(client.containers.create(row["image"], ["true"], labels=container_labels(labels),
                                                 network_disabled=True, network_mode="none"))
            track(made[0])
        return _read_created(made[0], f"/testbed/{path}")

    try:
        return test_infrastructure(patch, row, base_text)
    finally:
        for container in made:
            _remove(container)
        if own and client is not None:
            client.close()
