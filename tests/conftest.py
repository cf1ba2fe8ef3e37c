from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from srl_agent.sandbox import LABELS_ENV

ROOT = Path(__file__).resolve().parents[1]
# The public data beside the checkout (../shared). SRL_SHARED_DIR points elsewhere, e.g. at a missing
# folder to see what SRL_REQUIRE_SHARED does without the data.
SHARED_ROOT = Path(os.environ.get("SRL_SHARED_DIR") or ROOT.parent / "shared")
SHARED = SHARED_ROOT / "data" / "trajectories"


def require_shared(path: Path = SHARED) -> Path:
    """``path`` (under ``SHARED_ROOT``) if it exists. Otherwise the calling test skips, or fails with
    SRL_REQUIRE_SHARED set (CI), so a missing data copy cannot pass as green. Called at module level it
    skips the module, or errors its collection."""
    if path.exists():
        return path
    problem = f"the public data is not beside the checkout: {path} is missing"
    if os.environ.get("SRL_REQUIRE_SHARED"):
        pytest.fail(f"SRL_REQUIRE_SHARED is set but {problem}", pytrace=False)
    pytest.skip(problem, allow_module_level=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared(SHARED)


# ---------------------------------------------------------------- the tiny model after an SFT warm-up
# The untrained tiny model never writes a valid call, so agent runs with it have no steps. A short SFT on
# every bundled expert step, prepared as `srl-agent pipeline` prepares them (the tiny recipe's
# pipeline.prepare budgets, exact in the model's tokens), makes it write a valid call for roughly half of
# its completions at temperature 0.6 on the bundled tasks' opening prompts. Smaller batches and a higher
# learning rate than the recipe's SFT (8 × 8 epochs at 2e-3) give more updates in about the same time:
# ~1.5 minutes on 2 cores.
WARM_SFT = {"sft.per_device_train_batch_size": 4, "sft.num_train_epochs": 6, "sft.learning_rate": 3e-3}


@pytest.fixture(scope="session")
def warm_tiny_model(tmp_path_factory) -> Path:
    """The offline tiny model after an SFT warm-up on the bundled trajectories: a local model folder
    (weights and tokenizer) usable as ``--model`` / ``make_policy(str(path))``. Its prompts were built
    with the tiny recipe's ``pipeline.prepare`` settings, token budgets counted with its own tokenizer
    (so agent runs should use ``AgentConfig(prompt=StepConfig(**those))`` and exact budgets).
    Built once per test session under the session's temporary folder."""
    from transformers import AutoTokenizer

    from srl_agent.models import resolve_model
    from srl_agent.models.tiny import TRAJECTORY_DIR
    from srl_agent.prepare import prepare
    from srl_agent.steps import StepConfig
    from srl_agent.train.recipe import resolve_recipe
    from srl_agent.train.sft import train_sft

    out = tmp_path_factory.mktemp("warm-tiny")
    recipe = resolve_recipe("tiny", WARM_SFT)
    base = resolve_model(recipe.get("model"))
    prepare([TRAJECTORY_DIR], out / "steps.jsonl", StepConfig(**recipe["pipeline"]["prepare"]),
            tokenizer=AutoTokenizer.from_pretrained(base))
    train_sft(out / "steps.jsonl", out / "model", model=base, recipe=recipe)
    return out / "model"


# ---------------------------------------------------------------- the real Docker engine (sandbox tests)
# Without an engine the tests that need one skip; with SRL_REQUIRE_DOCKER set (CI) they fail instead.
# Every container the sandbox tests start carries RUN_LABEL=RUN_ID, and whatever is left of them is
# removed when the session ends, even after failures.
RUN_LABEL = "srl-agent.test-run"
RUN_ID = uuid.uuid4().hex[:12]
# Every container the code under test starts, in this process or a CLI it runs, carries the label too,
# so the leak check below sees this session's containers only (another session may share the engine).
os.environ[LABELS_ENV] = f"{RUN_LABEL}={RUN_ID}"
BASE_IMAGE_SCRIPT = ROOT / "scripts" / "build-base-image"


def _docker_problem() -> str | None:
    """Why the real engine cannot be used, or None."""
    try:
        import docker
    except ImportError as e:
        return f"the docker SDK is not importable: {e}"
    try:
        client = docker.from_env()
        client.ping()
        client.close()
    except Exception as e:  # any failure means: no engine
        return f"no Docker engine answers (run scripts/ensure-docker): {e}"
    return None


@pytest.fixture(scope="session")
def docker_client():
    problem = _docker_problem()
    if problem:
        if os.environ.get("SRL_REQUIRE_DOCKER"):
            pytest.fail(f"SRL_REQUIRE_DOCKER is set but {problem}", pytrace=False)
        pytest.skip(problem)
    import docker

    client = docker.from_env()
    try:
        yield client
    finally:
        for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"}):
            c.remove(force=True)
        client.close()


# The repository the sandbox tests work on, committed with a fixed identity and date.
TEST_REPO_FILES = {
    "README.md": "# calc\n\nA tiny package for the sandbox tests.\n",
    ".gitignore": "*.log\nbuild/\n",
    "calc/__init__.py": "from .ops import add, mul\n",
    "calc/ops.py": (
        '"""Arithmetic."""\n\n\ndef add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n'
        "    return a * b\n\n\ndef twice(a):\n    return add(a, a)\n"
    ),
    "calc/Makefile": "all:\n\techo 'tab-indented'\n",
    "docs/guide/deep/notes.txt": "three levels down\n",
    ".github/workflow.yml": "on: push\n",
    "data.txt": "".join(f"line {i}\n" for i in range(1, 41)),
}


@pytest.fixture(scope="session")
def repo_image(docker_client) -> str:
    """``srl-agent/test-repo:<run id>``: the base image plus a git repository at /testbed, and one
    ignored build output already present (as task images have); removed after the session."""
    import io
    import subprocess
    import tarfile

    r = subprocess.run([str(BASE_IMAGE_SCRIPT)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        pytest.fail(f"{BASE_IMAGE_SCRIPT} failed ({r.returncode}):\n{r.stderr[-4000:]}", pytrace=False)
    base = r.stdout.strip().splitlines()[-1]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in {**TEST_REPO_FILES, "build/artifact.bin": "compiled\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"testbed/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    tag = f"srl-agent/test-repo:{RUN_ID}"
    container = docker_client.containers.create(
        base, ["sleep", "infinity"], labels={"srl-agent": "1", RUN_LABEL: RUN_ID}, network_mode="none"
    )
    try:
        container.start()
        container.put_archive("/", buf.getvalue())
        identity = {k: "Test" if k.endswith("NAME") else "test@example.invalid" for k in
                    ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")}
        dates = {"GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
        code, out = container.exec_run(
            ["bash", "-c", "git init -q -b main && git add -A && git commit -q -m base"],
            workdir="/testbed", environment={**identity, **dates},
        )
        assert code == 0, out.decode()
        container.commit(repository="srl-agent/test-repo", tag=RUN_ID, changes=['CMD ["/bin/bash"]'])
    finally:
        container.remove(force=True)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.fixture
def sandbox_config(repo_image):
    """A SandboxConfig on the test repository, labelled for this run, with small limits."""
    from srl_agent.sandbox import SandboxConfig

    return SandboxConfig(image=repo_image, labels={RUN_LABEL: RUN_ID}, memory="1g", pids_limit=256, timeout=30)


@pytest.fixture(scope="session")
def run_label() -> str:
    """The ``key=value`` label on every container this test session starts."""
    return f"{RUN_LABEL}={RUN_ID}"


# ---------------------------------------------------------------- no container outlives the session
# Whatever a test started (sandboxes, grading containers, replays), none may be left when the
# session ends, failures and interruptions included: leftovers are removed and fail the run.
_BEFORE: set[str] = set()


def _labelled_ids() -> set[str] | None:
    if _docker_problem():
        return None
    import docker

    client = docker.from_env()
    try:
        return {c.id for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})}
    finally:
        client.close()


def pytest_sessionstart(session):
    _BEFORE.update(_labelled_ids() or ())


def pytest_sessionfinish(session, exitstatus):
    ids = _labelled_ids()
    if not ids:
        return
    import docker

    client = docker.from_env()
    left = [client.containers.get(i) for i in ids - _BEFORE]
    for c in left:
        c.remove(force=True)
    client.close()
    if left:
        print(f"\nFAILED: {len(left)} srl-agent container(s) outlived the test session: "
              f"{[(c.short_id, c.labels) for c in left]}")
        session.exitstatus = 1


# ---------------------------------------------------------------- the bundled task images and a warm pool
@pytest.fixture(scope="session")
def images(docker_client):
    """Every bundled task's image (existing tags are skipped)."""
    from srl_agent.images import build_images

    build_images(client=docker_client, progress=False)


@pytest.fixture
def pool(images, docker_client, run_label):
    """A two-sandbox warm pool on the bundled images, its containers tagged with this session's label;
    every sandbox must be back when the test ends."""
    from srl_agent.engine import SandboxPool

    key, value = run_label.split("=", 1)
    with SandboxPool(2, client=docker_client, labels={key: value}) as p:
        yield p
    assert p.open == 0


# ---------------------------------------------------------------- real SWE-bench Verified instances
@pytest.fixture(scope="session")
def swebench_rows(docker_client) -> list[dict]:
    """The rows of ../shared/swebench/rows.jsonl (unchanged), each instance's offline image built
    (``srl_agent.swebench_images``; an image whose recipe label matches is skipped)."""
    import json

    from srl_agent.swebench_images import build_swebench_images

    folder = require_shared(SHARED_ROOT / "swebench")
    build_swebench_images(folder, client=docker_client, progress=False)
    lines = (folder / "rows.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
