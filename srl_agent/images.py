"""The task images: each task's repository built on the host, then one Docker image per task; and the
dataset (``write_dataset``), whose rows name those images and are validated by running in them.

Source data is the task pack (``tasks.py``). Generated here, gitignored: ``environments/.cache/``
(sdists and wheelhouse, fetched by the host's pip). Nothing here needs a network inside Docker:
images install from the wheelhouse and build with networking off.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from .sandbox import LABEL
from .tasks import ENV_DIR, ROOT, TESTBED, PackError, Project, TaskSource, eval_script, load_pack, progress_bar, select

BASE_IMAGE = "srl-agent/base:latest"
BASE_SCRIPT = ROOT / "scripts" / "build-base-image"
RECIPE_VERSION = 1  # bump when the image recipe changes in a way the hashed inputs do not show

# Fixed identity and date: the single root commit's hash depends only on the tree (sdist + bug).
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,  # the user's config (hooks, autocrlf, signing) must not leak in
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "srl-agent",
    "GIT_AUTHOR_EMAIL": "tasks@srl-agent.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "srl-agent",
    "GIT_COMMITTER_EMAIL": "tasks@srl-agent.invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
    "LC_ALL": "C",
}
COMMIT_MESSAGE = "Initial commit"  # says nothing about the bug the tree carries


# ----------------------------------------------------------------------------- host cache (pip)


@contextlib.contextmanager
def _locked(cache: Path):
    """One filler of the cache at a time (tests and the CLI may run side by side)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pip_download(requirements: str, dest: Path, binary: bool) -> None:
    """``pip download`` in hash-checking mode (every line carries --hash)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
        req.write(requirements)
        req.flush()
        kind = ["--only-binary", ":all:", "--python-version", "3.11"] if binary else ["--no-binary", ":all:"]
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
               *kind, "-r", req.name, "-d", str(dest)]
        r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise PackError(f"pip download failed ({r.returncode}):\n{r.stderr[-3000:]}")


def fetch_sdist(project: Project, cache: Path) -> Path:
    """The project's sdist from PyPI (hash-checked), kept in ``cache/sdists``."""
    path = cache / "sdists" / project.sdist
    with _locked(cache):
        if not (path.is_file() and _sha256(path) == project.sha256):
            line = f"{project.name}=={project.version} --hash=sha256:{project.sha256}\n"
            _pip_download(line, path.parent, binary=False)
    if not path.is_file():
        raise PackError(f"{project.dir / 'project.yaml'}: pip did not produce {project.sdist}")
    if _sha256(path) != project.sha256:
        raise PackError(f"{path}: sha256 differs from {project.dir / 'project.yaml'}")
    return path


def wheel_requirements(root: Path = ENV_DIR) -> str:
    return (Path(root) / "wheelhouse.txt").read_text(encoding="utf-8")


def fill_wheelhouse(root: Path = ENV_DIR, cache: Path | None = None) -> Path:
    """Download the pinned wheels into ``cache/wheelhouse`` (skipped when they are all there)."""
    cache = cache or Path(root) / ".cache"
    dest = cache / "wheelhouse"
    reqs = wheel_requirements(root)
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", reqs, re.M)
    with _locked(cache):
        # wheel file names spell the project name with underscores
        if not all(any(dest.glob(f"{re.sub(r'[-_.]+', '_', n)}-{v}-*.whl")) for n, v in pins):
            _pip_download(reqs, dest, binary=True)
    return dest


# ----------------------------------------------------------------------------- the repository


def _git(repo: Path, *args: str, stdin: str | None = None) -> str:
    r = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, input=stdin,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise PackError(f"git {' '.join(args)} failed in {repo}: {r.stderr.strip()[-2000:]}")
    return r.stdout


def _extract(sdist: Path, dest: Path) -> None:
    """Unpack the sdist's single top folder as ``dest`` (modes kept: git records the exec bit)."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp, tarfile.open(sdist) as tar:
        kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp, **kw)
        tops = os.listdir(tmp)
        if len(tops) != 1:
            raise PackError(f"{sdist}: expected one top-level folder, found {tops}")
        shutil.move(os.path.join(tmp, tops[0]), dest)


def make_repo(task: TaskSource, dest: Path, cache: Path) -> tuple[str, str]:
    """Build /testbed on the host: upstream sdist + bug as one root commit. Returns (commit, gold patch).

    No parent, tag, remote, reflog or other branch: nothing in ``.git`` shows the fix.
    """
    dest = Path(dest)
    _extract(fetch_sdist(task.project, cache), dest)
    _git(dest, "init", "-q", "--template=", "-b", "main")
    try:
        _git(dest, "apply", "--whitespace=nowarn", "-", stdin=task.bug_patch)
    except PackError as e:
        raise PackError(f"{task.dir / 'bug.patch'} does not apply to {task.project.sdist}: {e}") from None
    _git(dest, "add", "--all", "--force", ".")
    _git(dest, "-c", "core.logAllRefUpdates=false", "commit", "-q", "--no-verify", "-m", COMMIT_MESSAGE)
    commit = _git(dest, "rev-parse", "HEAD").strip()
    # The gold patch is the bug reversed, as git writes it against the base commit.
    _git(dest, "apply", "-R", "-", stdin=task.bug_patch)
    gold = _git(dest, "diff", "--no-color", "--no-ext-diff")
    _git(dest, "checkout", "-q", "--", ".")
    if task.test_patch:
        try:
            _git(dest, "apply", "--check", "-", stdin=task.test_patch)
        except PackError as e:
            raise PackError(f"{task.dir / 'test.patch'} does not apply: {e}") from None
    for leftover in ("logs", "COMMIT_EDITMSG", "ORIG_HEAD", "description", "hooks"):
        p = dest / ".git" / leftover
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    # Tests write caches; keep them out of `git status` / the agent's diff without touching the commit.
    (dest / ".git" / "info").mkdir(exist_ok=True)
    (dest / ".git" / "info" / "exclude").write_text("__pycache__/\n*.py[co]\n.pytest_cache/\n")
    if _git(dest, "status", "--porcelain"):
        raise PackError(f"{task.dir}: the repository is not clean after building it")
    return commit, gold


# ----------------------------------------------------------------------------- the image


def _base_recipe() -> str:
    """The recipe block of scripts/build-base-image: when it changes, task images must change too."""
    try:
        text = BASE_SCRIPT.read_text(encoding="utf-8")
    except OSError:
        return ""
    m = re.search(r"^# -+ recipe\n(.*?)^# -+\n", text, re.S | re.M)
    return m.group(1) if m else text


def dockerfile(task: TaskSource) -> str:
    site = f"{TESTBED}/{task.project.import_path}".rstrip("/")
    return f"""\
FROM {BASE_IMAGE}
# Shared by every task image (same layers): pytest from the host-filled wheelhouse, no network.
COPY wheelhouse /opt/srl-agent/wheelhouse
RUN python3 -m pip install --quiet --no-index --no-cache-dir --find-links /opt/srl-agent/wheelhouse \\
        -r /opt/srl-agent/wheelhouse/requirements.txt
# No .pyc files in /testbed: `git status` and the agent's diff stay clean after running tests.
ENV PYTHONDONTWRITEBYTECODE=1
# Nothing in these containers needs a graceful stop; `docker stop` should not wait 10 s.
STOPSIGNAL SIGKILL
COPY testbed {TESTBED}
# The project is importable as in an editable install, with no build backend needed offline.
RUN echo {site} > "$(python3 -c 'import site; print(site.getsitepackages()[0])')/testbed.pth" \\
    && git -C {TESTBED} update-index -q --refresh
WORKDIR {TESTBED}
"""


def image_tag(task: TaskSource, commit: str, root: Path = ENV_DIR) -> str:
    recipe = {
        "recipe": RECIPE_VERSION,
        "base": BASE_IMAGE,
        "base_recipe": _base_recipe(),
        "wheelhouse": wheel_requirements(root),
        "dockerfile": dockerfile(task),
        "commit": commit,  # covers the sdist and the bug
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return f"srl-agent/task.{task.instance_id}:{digest}"

# ----------------------------------------------------------------------------- building


def ensure_base_image(client: Any) -> str:
    """The base image, built by scripts/build-base-image when this engine lacks it."""
    import docker

    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        r = subprocess.run([str(BASE_SCRIPT)], capture_output=True, text=True)
        if r.returncode != 0:
            raise PackError(f"{BASE_SCRIPT} failed ({r.returncode}):\n{r.stderr[-3000:]}") from None
    return BASE_IMAGE


def build_images(
    task_ids: list[str] | None = None,
    *,
    root: Path = ENV_DIR,
    client: Any = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build one image per task (``FROM`` the base image), skipping tags that exist. Returns a summary.

    The host fills the wheelhouse and fetches the sdists; each build gets a temporary context
    holding the wheelhouse and the ready repository (``.git`` included, so ``base_commit`` is the
    same on the host and in the image) and runs with networking off.
    """
    import docker

    root = Path(root)
    cache = root / ".cache"
    tasks = select(load_pack(root), task_ids)
    own = client is None
    client = client or docker.from_env()
    started = time.monotonic()
    images: list[dict[str, Any]] = []
    try:
        ensure_base_image(client)
        t0 = time.monotonic()
        wheelhouse = fill_wheelhouse(root, cache)
        wheelhouse_s = time.monotonic() - t0
        with progress_bar(progress) as bar:
            job = bar.add_task("task images", total=len(tasks))
            for task in tasks:
                bar.update(job, description=task.instance_id)
                images.append(_build_one(client, task, root, cache, wheelhouse, force))
                bar.advance(job)
    finally:
        if own:
            client.close()
    return {
        "base_image": BASE_IMAGE,
        "wheelhouse": str(wheelhouse),
        "wheelhouse_seconds": round(wheelhouse_s, 2),
        "built": sum(i["built"] for i in images),
        "existing": sum(not i["built"] for i in images),
        "seconds": round(time.monotonic() - started, 2),
        "images": images,
    }


def _build_one(client: Any, task: TaskSource, root: Path, cache: Path, wheelhouse: Path, force: bool) -> dict[str, Any]:
    import docker

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="srl-task-") as ctx:
        ctx_path = Path(ctx)
        commit, _ = make_repo(task, ctx_path / "testbed", cache)
        tag = image_tag(task, commit, root)
        built = False
        try:
            if force:
                raise docker.errors.ImageNotFound(tag)
            image = client.images.get(tag)
        except docker.errors.ImageNotFound:
            shutil.copytree(wheelhouse, ctx_path / "wheelhouse")
            shutil.copy(Path(root) / "wheelhouse.txt", ctx_path / "wheelhouse" / "requirements.txt")
            (ctx_path / "Dockerfile").write_text(dockerfile(task))
            try:
                image, _ = client.images.build(
                    path=ctx, tag=tag, rm=True, forcerm=True, network_mode="none",
                    labels={LABEL: "1", f"{LABEL}.task": task.instance_id, f"{LABEL}.base-commit": commit},
                )
            except docker.errors.BuildError as e:
                tail = "".join(str(x.get("stream") or x.get("error") or "") for x in e.build_log)[-3000:]
                raise PackError(f"building {tag} for {task.dir} failed: {e.msg}\n{tail}") from None
            built = True
    return {
        "instance_id": task.instance_id,
        "image": tag,
        "base_commit": commit,
        "built": built,
        "seconds": round(time.monotonic() - t0, 2),
        "size_mb": round(image.attrs["Size"] / 1e6, 1),
    }


def ensure_images(rows: list[dict[str, Any]], client: Any, bundled: bool, pull: str = "missing",
                  progress: Any = True) -> list[str]:
    """Every row's image on this engine before any model work: the bundled tasks' (every row's when
    ``bundled``, and any ``srl-agent/…`` image) built, published ones pulled as ``pull`` says (missing |
    never | always). Returns the images this call pulled that the engine did not have; removing them
    later is ``image_supply.prune_images`` (or an ``ImageSupply(prune=True)``). Raises
    ``image_supply.ImageSupplyError`` naming each image it could not get. ``progress``: a pull progress
    bar on stderr (True), or on this rich ``Console``."""
    from .image_supply import ImageSupply

    return ImageSupply(client, pull=pull, progress=progress).ensure(rows, bundled)


# ----------------------------------------------------------------------------- the dataset


def task_row(task: TaskSource, commit: str, gold: str, pass_to_pass: list[str], root: Path = ENV_DIR) -> dict[str, Any]:
    return {
        "instance_id": task.instance_id,
        "repo": task.project.repo,
        "version": task.project.version,
        "base_commit": commit,
        "problem_statement": task.problem_statement,
        "patch": gold,
        "test_patch": task.test_patch,
        "FAIL_TO_PASS": list(task.fail_to_pass),
        "PASS_TO_PASS": list(pass_to_pass),
        "image": image_tag(task, commit, root),
        "eval_script": eval_script(task, commit),
        "log_parser": "parse_log_pytest",
        "eval_type": "pass_and_fail",
    }


def write_dataset(
    path: Path | str | None = None,
    *,
    root: Path = ENV_DIR,
    task_ids: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write one swebench-5 row per task to ``path`` (default ``environments/tasks.jsonl``).

    PASS_TO_PASS comes from a real run: each task's eval script runs in its image without the fix
    and with the gold patch. The gold run must have no failing test, and the tests it turns from
    failing to passing must be exactly the declared FAIL_TO_PASS, or this raises ``PackError``.
    """
    import docker

    from .grading import run_eval_script, status_map

    root = Path(root)
    path = Path(path) if path else root / "tasks.jsonl"
    tasks = select(load_pack(root), task_ids)
    started = time.monotonic()
    client = docker.from_env()
    rows = []
    try:
        build_images(task_ids, root=root, client=client, progress=progress)
        with progress_bar(progress) as bar, tempfile.TemporaryDirectory() as tmp:
            job = bar.add_task("validating", total=len(tasks))
            for task in tasks:
                bar.update(job, description=f"validating {task.instance_id}")
                commit, gold = make_repo(task, Path(tmp) / task.instance_id, root / ".cache")
                row = task_row(task, commit, gold, [], root)
                before, ok_before = status_map(row, run_eval_script(row, "", client=client)[0])
                after, ok_after = status_map(row, run_eval_script(row, gold, client=client)[0])
                rows.append(_check(task, row, before, ok_before, after, ok_after))
                bar.advance(job)
    finally:
        client.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return {
        "path": str(path),
        "tasks": len(rows),
        "projects": len({r["repo"] for r in rows}),
        "seconds": round(time.monotonic() - started, 2),
        "rows": [{"instance_id": r["instance_id"], "FAIL_TO_PASS": len(r["FAIL_TO_PASS"]),
                  "PASS_TO_PASS": len(r["PASS_TO_PASS"]), "image": r["image"]} for r in rows],
    }


def _check(task: TaskSource, row: dict, before: dict, ok_before: bool, after: dict, ok_after: bool) -> dict:
    where = task.dir / "task.yaml"
    if not ok_after or not after:
        raise PackError(f"{task.dir}: the gold run produced no valid test output")
    if not ok_before:
        raise PackError(f"{task.dir}: the run without the fix produced no valid test output")
    broken = sorted(t for t, s in after.items() if s in ("FAILED", "ERROR"))
    if broken:
        raise PackError(f"{task.dir}: tests fail even with the gold patch: {broken}")
    passed_after = {t for t, s in after.items() if s == "PASSED"}
    passed_before = {t for t, s in before.items() if s == "PASSED"}
    f2p = passed_after - passed_before
    if f2p != set(task.fail_to_pass):
        raise PackError(
            f"{where}: field 'FAIL_TO_PASS' does not match the run; "
            f"missing {sorted(f2p - set(task.fail_to_pass))}, not failing without the fix "
            f"{sorted(set(task.fail_to_pass) - f2p)}"
        )
    return {**row, "PASS_TO_PASS": sorted(passed_after & passed_before)}
