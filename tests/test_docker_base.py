"""The base image, built for real (scripts/build-base-image) and run on a real Docker engine.

Without an engine these tests skip; with SRL_REQUIRE_DOCKER set (CI) they fail instead.
Start an engine with scripts/ensure-docker.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from srl_agent.sandbox import LABEL

from .conftest import RUN_ID, RUN_LABEL

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "build-base-image"

OFFLINE = dict(network_disabled=True, network_mode="none")


@pytest.fixture(scope="module")
def engine(docker_client):
    """The real engine (conftest: skips without one, fails when SRL_REQUIRE_DOCKER is set)."""
    return docker_client


@pytest.fixture(scope="module")
def base_image(engine) -> str:
    t0 = time.monotonic()
    r = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        pytest.fail(f"{BUILD} failed ({r.returncode}):\n{r.stderr[-4000:]}", pytrace=False)
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    assert lines, f"{BUILD} printed nothing on stdout; stderr:\n{r.stderr[-2000:]}"
    tag = lines[-1]
    print(f"base image {tag} ready in {time.monotonic() - t0:.1f}s")
    return tag


@pytest.fixture
def run(engine, base_image):
    """run(cmd, **kwargs) -> (exit code, output); every container is labelled and removed."""
    created = []

    def _run(cmd, timeout: float = 60, **kwargs):
        kwargs = {**OFFLINE, **kwargs}
        labels = {LABEL: "1", RUN_LABEL: RUN_ID, **kwargs.pop("labels", {})}
        c = engine.containers.create(base_image, cmd, labels=labels, **kwargs)
        created.append(c)
        try:
            c.start()
            status = c.wait(timeout=timeout)
            out = c.logs(stdout=True, stderr=True).decode("utf-8", "replace")
            return status["StatusCode"], out
        finally:
            c.remove(force=True)

    yield _run
    for c in created:  # only matters if remove() above itself failed
        try:
            c.remove(force=True)
        except Exception:
            pass


def test_tag_is_recipe_hash_and_latest(engine, base_image):
    assert re.fullmatch(r"srl-agent/base:[0-9a-f]{12}", base_image), base_image
    img = engine.images.get(base_image)
    assert "srl-agent/base:latest" in img.tags
    assert img.attrs["Config"]["Cmd"] == ["/bin/bash"]
    assert any(e.startswith("PATH=") and "/usr/bin" in e for e in img.attrs["Config"]["Env"])
    assert img.attrs["Size"] < 400_000_000, f"base image grew to {img.attrs['Size'] / 1e6:.0f} MB"


def test_second_build_is_skipped(base_image):
    r = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == base_image
    assert "already exists" in r.stderr


def test_python_is_bookworms_311(run):
    code, out = run(["python3", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
    assert code == 0, out
    assert re.fullmatch(r"3\.11\.\d+", out.strip()), out
    code, out = run(["python3", "-m", "venv", "/tmp/v"])
    assert code == 0, out
    code, out = run(["python3", "-m", "pip", "--version"])
    assert code == 0 and out.startswith("pip "), out


def test_git_works(run):
    script = (
        "set -e; git --version; cd /tmp; git init -q r; cd r; echo hello > f; git add f; "
        "git -c user.name=t -c user.email=t@example.invalid commit -q -m first; git log --format=%s; git show HEAD:f"
    )
    code, out = run(["bash", "-c", script])
    assert code == 0, out
    lines = out.strip().splitlines()
    assert re.fullmatch(r"git version 2\.\d+\.\d+", lines[0]), out
    assert lines[1:] == ["first", "hello"], out


def test_no_network_but_loopback(run):
    script = "ls /sys/class/net; echo --; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
    code, out = run(["sh", "-c", script])
    assert code == 0, out
    sys_class, proc = out.split("--")
    assert sys_class.split() == ["lo"], out
    assert proc.split() == ["lo"], out
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('192.0.2.1', 80), timeout=3)\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    code, out = run(["python3", "-c", probe])
    assert code == 0, out
    assert out.startswith("refused"), out


def test_containers_are_labelled(engine, base_image):
    c = engine.containers.create(base_image, ["true"], labels={LABEL: "1", RUN_LABEL: RUN_ID}, **OFFLINE)
    try:
        assert c.labels.get(LABEL) == "1"
        seen = engine.containers.list(all=True, filters={"label": f"{LABEL}=1"})
        assert c.id in {x.id for x in seen}
    finally:
        c.remove(force=True)


def test_no_labelled_container_left(engine, base_image):
    """Runs last (file order): nothing carrying the srl-agent label survives the tests."""
    left = engine.containers.list(all=True, filters={"label": LABEL})
    assert not left, [(c.short_id, c.name, c.status, c.labels) for c in left]
