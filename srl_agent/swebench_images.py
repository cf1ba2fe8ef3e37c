"""Offline stand-ins for official SWE-bench instance images, built from a folder of real instances
(``shared/swebench``: ``rows.jsonl``, ``environments.json``, ``repos/<instance_id>.tar.gz``).

Each image is tagged with its row's ``image`` (``swebench/sweb.eval.x86_64.<id>:latest``), so the
official harness and ``grading`` find it locally, and is laid out as SWE-bench lays its images out:
the env ``testbed`` at ``/opt/miniconda3/envs/testbed`` (a venv of Debian bullseye's python3.9 behind
a conda stand-in, see ``scripts/swebench-conda``), ``/root/.bashrc`` activating it, and ``/testbed``
at the base commit plus an empty "SWE-bench" commit. The host downloads the wheels (cached under
``environments/.cache/swebench``); the build itself runs with networking off, and so does the eval
script's re-install later (the env's ``pip.conf`` points at the in-image wheelhouse, never an index).

Every image carries ``srl-agent.recipe=<hash>`` of everything that decides its content, so an
unchanged recipe is skipped after a few checks and a changed one is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .images import _locked, _sha256
from .jsonl import read_jsonl
from .sandbox import LABEL
from .tasks import ENV_DIR, ROOT, PackError, progress_bar

DEFAULT_FOLDER = Path(os.environ.get("SRL_SHARED_DIR") or ROOT.parent / "shared") / "swebench"
CACHE = ENV_DIR / ".cache" / "swebench"
BASE_SCRIPT = ROOT / "scripts" / "build-base-image"
RECIPE_VERSION = 1  # bump when the recipe changes in a way the hashed texts and files do not show
RECIPE_LABEL = f"{LABEL}.recipe"

CONDA_ROOT = "/opt/miniconda3"
ENV_PREFIX = f"{CONDA_ROOT}/envs/testbed"
WHEELHOUSE = f"{CONDA_ROOT}/pkgs/wheelhouse"
BASHRC = f"source {CONDA_ROOT}/etc/profile.d/conda.sh && conda activate testbed"
BOOTSTRAP = ("pip", "setuptools", "wheel")  # installed first, from pip's own wheel

# What pip may take for the images' CPython 3.9 on x86_64 glibc 2.31 (bullseye).
PYTHON = "3.9"
ABIS = ("cp39", "abi3", "none")
PLATFORMS = (*(f"manylinux_2_{n}_x86_64" for n in range(31, 4, -1)),
             "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64")


class SwebenchImageError(PackError):
    """Building an instance image failed; the message names the instance and the step."""


# ----------------------------------------------------------------------------- the folder


def load_swebench_folder(folder: Path | str = DEFAULT_FOLDER) -> list[dict[str, Any]]:
    """The folder's rows (``rows.jsonl``), unchanged, after checking that each has its environment
    entry and repository tarball."""
    folder = Path(folder)
    rows = [row for _, row in read_jsonl(folder / "rows.jsonl")]
    envs = load_environments(folder)
    for row in rows:
        iid = row["instance_id"]
        if iid not in envs:
            raise SwebenchImageError(f"{iid}: no entry in {folder / 'environments.json'}")
        if not repo_tarball(folder, iid).is_file():
            raise SwebenchImageError(f"{iid}: {repo_tarball(folder, iid)} is missing")
    return rows


def load_environments(folder: Path | str = DEFAULT_FOLDER) -> dict[str, dict[str, Any]]:
    """``environments.json`` by instance id (its ``_about`` entry left out)."""
    path = Path(folder) / "environments.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SwebenchImageError(f"{path}: cannot read ({e})") from None
    return {k: v for k, v in data.items() if not k.startswith("_")}


def repo_tarball(folder: Path | str, instance_id: str) -> Path:
    return Path(folder) / "repos" / f"{instance_id}.tar.gz"


def _select(rows: list[dict[str, Any]], ids: list[str] | None) -> list[dict[str, Any]]:
    if ids is None:
        return rows
    by_id = {r["instance_id"]: r for r in rows}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise SwebenchImageError(f"unknown instance(s) {unknown}; the folder has {sorted(by_id)}")
    return [by_id[i] for i in ids]


def _pin(spec: str) -> tuple[str, str]:
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", spec.strip())
    if not m:
        raise SwebenchImageError(f"{spec!r} is not an exact pin (name==version)")
    return m.group(1), m.group(2)


def wheelhouse_pins(env: dict[str, Any]) -> list[str]:
    """The env's distributions plus what pip needs offline to re-run the install (build backends)."""
    pins = [*env["env_packages"], *((env.get("build") or {}).get("offline_wheelhouse") or [])]
    return sorted(set(pins), key=str.lower)


# ----------------------------------------------------------------------------- host cache (pip)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _fits(filename: str) -> bool:
    """A wheel the images' CPython 3.9 can install (sdists always qualify)."""
    from packaging.utils import parse_wheel_filename

    if not filename.endswith(".whl"):
        return True
    tags = parse_wheel_filename(filename)[3]
    return any(t.interpreter in ("py3", "py39", "cp39") and t.abi in ABIS and t.platform in ("any", *PLATFORMS)
               for t in tags)


def _file_pin(filename: str) -> tuple[str, str] | None:
    """(canonical name, version) of a wheel or sdist file name; None for anything else."""
    from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

    try:
        name, version = (parse_wheel_filename(filename) if filename.endswith(".whl")
                         else parse_sdist_filename(filename))[:2]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return str(name), str(version)


def _cached(dest: Path, spec: str) -> Path | None:
    """The cached file for ``name==version``, a wheel rather than an sdist."""
    from packaging.version import Version

    name, version = _pin(spec)
    want = (_canonical(name), str(Version(version)))
    hits = sorted((p for p in dest.glob("*") if _file_pin(p.name) == want and _fits(p.name)),
                  key=lambda p: not p.name.endswith(".whl"))
    return hits[0] if hits else None


def _pip_download(spec: str, dest: Path, wheel: bool) -> subprocess.CompletedProcess:
    if wheel:
        kind = ["--only-binary", ":all:", "--python-version", PYTHON, "--implementation", "cp"]
        kind += [f"--abi={a}" for a in ABIS] + [f"--platform={p}" for p in PLATFORMS]
    else:
        kind = ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
           *kind, "-d", str(dest), spec]
    return subprocess.run(cmd, capture_output=True, text=True)


def fetch_dists(pins: list[str], cache: Path = CACHE) -> dict[str, Path]:
    """Each pin's file in ``cache/dists``: a CPython 3.9 manylinux (or pure) wheel from PyPI, else its
    sdist (built to a wheel inside the image). Cached files are not asked for again."""
    dest = Path(cache) / "dists"
    found: dict[str, Path] = {}
    with _locked(dest):
        for spec in pins:
            path = _cached(dest, spec)
            if path is None:
                path = _download(spec, dest)
            found[spec] = path
    return found


def _download(spec: str, dest: Path) -> Path:
    errors = []
    for wheel in (True, False):
        r = _pip_download(spec, dest, wheel)
        path = _cached(dest, spec)
        if r.returncode == 0 and path is not None:
            return path
        errors.append(r.stderr.strip()[-1500:])
    raise SwebenchImageError(f"pip download {spec} found neither a cp39 wheel nor an sdist:\n" + "\n".join(errors))


# ----------------------------------------------------------------------------- the recipe


def _bootstrap_pins(iid: str, env: dict[str, Any]) -> list[str]:
    pins = {_canonical(_pin(s)[0]): s for s in env["env_packages"]}
    if "pip" not in pins:
        raise SwebenchImageError(f"{iid}: env_packages has no pip pin, so the env cannot be bootstrapped")
    return [pins[n] for n in BOOTSTRAP if n in pins]


def setup_env_script(iid: str, env: dict[str, Any], dists: dict[str, Path]) -> str:
    pip_wheel = dists[_bootstrap_pins(iid, env)[0]].name
    sdists = sorted(p.name for p in dists.values() if not p.name.endswith(".whl"))
    return f"""\
#!/bin/bash
# SWE-bench's env layer creates the conda env testbed from its environment.yml. Here the env is a venv
# of Debian's python{PYTHON} with the same Python distributions, installed from the wheelhouse offline.
set -euxo pipefail
wheels={WHEELHOUSE}
python{PYTHON} -m venv --without-pip {ENV_PREFIX}
{ENV_PREFIX}/bin/python "$wheels/{pip_wheel}/pip" install --no-index --find-links "$wheels" \\
    {' '.join(_bootstrap_pins(iid, env))}
# Every later pip, the eval script's re-install too, looks here and never at an index.
printf '[global]\\nno-index = true\\nfind-links = %s\\n' "$wheels" > {ENV_PREFIX}/pip.conf
source {CONDA_ROOT}/bin/activate
conda activate testbed
# Distributions PyPI has as sdists only are built with the env's own setuptools and wheel.
for sdist in {' '.join(sdists)}; do
    python -m pip wheel --no-deps --no-build-isolation --wheel-dir "$wheels" "$wheels/$sdist"
    rm "$wheels/$sdist"
done
python -m pip install --no-deps -r "$wheels/requirements.txt"
python -m pip check
"""


def setup_repo_script(iid: str, env: dict[str, Any], base_commit: str) -> str:
    return f"""\
#!/bin/bash
# SWE-bench's setup_repo.sh for {iid}, less the clone (the repository tarball, already extracted to
# /testbed, is it) and the clean-up of remotes, newer tags and reflogs, which the tarball lacks.
set -euxo pipefail
chmod -R 777 /testbed
cd /testbed
git reset --hard {base_commit}
# Nothing that the base commit does not reach: no commit newer than it can show the fix.
test -z "$(git rev-list --all ^{base_commit})"
source {CONDA_ROOT}/bin/activate
conda activate testbed
echo "Current environment: $CONDA_DEFAULT_ENV"
{env["install"]}
git config --global user.email setup@swebench.config
git config --global user.name SWE-bench
git commit --allow-empty -am SWE-bench
"""


def dockerfile(base: str) -> str:
    return f"""\
FROM {base}
# The env layer.
COPY wheelhouse {WHEELHOUSE}
COPY setup_env.sh /root/
RUN /bin/bash /root/setup_env.sh
WORKDIR /testbed/
RUN echo "{BASHRC}" > /root/.bashrc
# The instance layer: the repository tarball holds testbed/ with its .git.
ADD testbed.tar.gz /
COPY setup_repo.sh /root/
RUN /bin/bash /root/setup_repo.sh
WORKDIR /testbed/
"""


def context_texts(row: dict[str, Any], env: dict[str, Any], base: str, dists: dict[str, Path]) -> dict[str, str]:
    """The build context's text files (the wheels and the tarball come beside them)."""
    iid = row["instance_id"]
    return {
        "Dockerfile": dockerfile(base),
        "setup_env.sh": setup_env_script(iid, env, dists),
        "setup_repo.sh": setup_repo_script(iid, env, row["base_commit"]),
        "wheelhouse/requirements.txt": "".join(f"{s}\n" for s in env["env_packages"]),
    }


def recipe_hash(texts: dict[str, str], dists: dict[str, Path], tarball: Path) -> str:
    recipe = {
        "recipe": RECIPE_VERSION,
        "texts": texts,  # the Dockerfile names the base image by its own recipe hash
        "dists": {p.name: _sha256(p) for p in dists.values()},
        "repo": _sha256(tarball),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- building


def ensure_swebench_base() -> str:
    """``srl-agent/swebench-base:<recipe hash>``, built by ``scripts/build-base-image swebench`` when missing."""
    r = subprocess.run([str(BASE_SCRIPT), "swebench"], capture_output=True, text=True)
    lines = r.stdout.split()
    if r.returncode != 0 or not lines:
        raise SwebenchImageError(f"{BASE_SCRIPT} swebench failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return lines[-1]


def _existing(client: Any, tag: str) -> Any:
    import docker

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def build_swebench_images(
    folder: Path | str = DEFAULT_FOLDER,
    instance_ids: list[str] | None = None,
    *,
    client: Any = None,
    progress: bool = True,
    force: bool = False,
    cache: Path | str = CACHE,
) -> list[dict[str, Any]]:
    """Build (or find up to date) one image per instance of ``folder``, tagged with its row's ``image``.

    Returns, per instance: ``instance_id``, ``image``, ``built`` (False: an image with the same recipe
    label was there), ``seconds``, ``size_mb`` and ``recipe``. ``force`` rebuilds without the build cache.
    """
    import docker

    folder, cache = Path(folder), Path(cache)
    rows = _select(load_swebench_folder(folder), instance_ids)
    envs = load_environments(folder)
    own = client is None
    client = client or docker.from_env()
    out = []
    try:
        base = ensure_swebench_base()
        with progress_bar(progress) as bar:
            job = bar.add_task("SWE-bench images", total=len(rows))
            for row in rows:
                bar.update(job, description=row["instance_id"])
                out.append(_build_one(client, folder, row, envs[row["instance_id"]], base, cache, force))
                bar.advance(job)
    finally:
        if own:
            client.close()
    return out


def _build_one(client: Any, folder: Path, row: dict[str, Any], env: dict[str, Any], base: str, cache: Path,
               force: bool) -> dict[str, Any]:
    iid, tag = row["instance_id"], row["image"]
    t0 = time.monotonic()
    try:
        dists = fetch_dists(wheelhouse_pins(env), cache)
    except SwebenchImageError as e:
        raise SwebenchImageError(f"{iid}: downloading the wheels failed: {e}") from None
    texts = context_texts(row, env, base, dists)
    tarball = repo_tarball(folder, iid)
    digest = recipe_hash(texts, dists, tarball)
    with _locked(cache / "images" / iid):  # a second builder of the same image waits, then skips
        image = _existing(client, tag)
        built = force or image is None or image.labels.get(RECIPE_LABEL) != digest
        if built:
            old = image
            image = _docker_build(client, row, texts, dists, tarball, digest, force)
            _drop_replaced(client, old, image)
    return {"instance_id": iid, "image": tag, "built": built, "seconds": round(time.monotonic() - t0, 2),
            "size_mb": round(image.attrs["Size"] / 1e6, 1), "recipe": digest}


def _docker_build(client: Any, row: dict[str, Any], texts: dict[str, str], dists: dict[str, Path], tarball: Path,
                  digest: str, force: bool) -> Any:
    import docker

    iid, tag = row["instance_id"], row["image"]
    labels = {LABEL: "1", RECIPE_LABEL: digest, f"{LABEL}.task": iid, f"{LABEL}.base-commit": row["base_commit"]}
    with tempfile.TemporaryDirectory(prefix="srl-swebench-") as ctx:
        _write_context(Path(ctx), texts, dists, tarball)
        try:
            image, _ = client.images.build(path=ctx, tag=tag, rm=True, forcerm=True, network_mode="none",
                                           nocache=force, labels=labels)
        except docker.errors.BuildError as e:
            log = "".join(str(x.get("stream") or x.get("error") or "") for x in e.build_log)
            _drop_failed_layers(client, log)
            raise SwebenchImageError(f"{iid}: docker build of {tag} failed: {e.msg}\n{log[-4000:]}") from None
        except docker.errors.APIError as e:
            raise SwebenchImageError(f"{iid}: docker build of {tag} failed: {e}") from None
    return image


def _write_context(ctx: Path, texts: dict[str, str], dists: dict[str, Path], tarball: Path) -> None:
    (ctx / "wheelhouse").mkdir()
    for path in dists.values():
        shutil.copy(path, ctx / "wheelhouse" / path.name)
    shutil.copy(tarball, ctx / "testbed.tar.gz")
    for name, text in texts.items():
        (ctx / name).write_text(text, encoding="utf-8")


def _drop_failed_layers(client: Any, log: str) -> None:
    """The untagged layers a failed build made (the step images before the failing one): no tag ever
    points at them, so nothing would remove them. Layers the build took from its cache stay."""
    import docker

    made, cached = [], False
    for line in log.splitlines():
        if line.rstrip().endswith("---> Using cache"):
            cached = True
        elif m := re.search(r"---> ([0-9a-f]{12})\s*$", line):  # the line may start with a colour reset
            if not cached:
                made.append(m.group(1))
            cached = False
    if made:  # removing the last also removes the new parents it alone was holding
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(made[-1], noprune=False)


def _drop_replaced(client: Any, old: Any, new: Any) -> None:
    """The image a rebuild took the tag from, if this module built it and nothing else uses it."""
    import docker

    if old is None or old.id == new.id or RECIPE_LABEL not in old.labels:
        return
    with contextlib.suppress(docker.errors.APIError):  # a container or another tag still uses it
        client.images.remove(old.id, noprune=False)
