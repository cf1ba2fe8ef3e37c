"""Task images that datasets name: pulled from a real registry (Debian's docker-registry, the
distribution v2 server, run on a free localhost port with its own storage), refused, refreshed and
pruned on the real engine; older SWE-bench rows given their eval scripts by a swebench-5 dataset.

Expected values come from elsewhere than the code under test: image ids from the engine when the test
made the image, layer sizes from the registry's manifest, swebench-5 fields from the rows file itself.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console

from srl_agent.evaluation.data import V5_FIELDS, DatasetError, load_rows, missing_for_scoring
from srl_agent.evaluation.harness import ScoringError, check_gradable
from srl_agent.image_supply import ImageSupply, ImageSupplyError, LayerProgress, is_present
from srl_agent.images import ensure_images

from .conftest import ROOT, RUN_ID, RUN_LABEL, SHARED_ROOT, require_shared

SRL_AGENT = Path(sys.executable).with_name("srl-agent")
ENSURE_REGISTRY = ROOT / "scripts" / "ensure-registry"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


# ---------------------------------------------------------------- a registry of this session's own


def _free_port() -> int:
    """A localhost port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def registry(docker_client, tmp_path_factory):
    """``localhost:PORT`` of a registry that runs for this module (its storage in a temp folder)."""
    done = subprocess.run([str(ENSURE_REGISTRY)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        problem = f"{ENSURE_REGISTRY} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        if os.environ.get("SRL_REQUIRE_DOCKER"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    binary = done.stdout.strip().splitlines()[-1]
    folder = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = folder / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'store'}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    with open(folder / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if _answers(port) or proc.poll() is not None:
                break
            time.sleep(0.1)
        if not _answers(port):
            pytest.fail(f"the registry did not answer on :{port}: {(folder / 'registry.log').read_text()[-2000:]}",
                        pytrace=False)
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tar(name: str, size: int) -> bytes:
    """A tar holding one file of random bytes (nothing compresses it: a pull downloads ``size`` bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return buf.getvalue()


class Images:
    """Images this module makes (two layers of random bytes each, so a pull downloads both), pushed to
    the registry; every one is removed at the end by its id. No builder: its cache would keep layers."""

    def __init__(self, client, registry: str):
        self.client, self.registry = client, registry
        self.ids: list[str] = []
        self.base_of: dict[str, str] = {}

    def ref(self, name: str) -> str:
        return f"{self.registry}/srl-test/{name}-{RUN_ID}:t"

    def make(self, ref: str) -> str:
        """Make ``ref`` locally (a fresh image each call): an imported layer, and a second one committed
        on top of it. Returns its id."""
        base = f"srl-test/base-{RUN_ID}:{os.urandom(4).hex()}"
        self.client.api.import_image_from_data(_tar("blob-a", 1_500_000), *base.split(":"),
                                               changes=[f"LABEL {RUN_LABEL}={RUN_ID}"])
        base_id = self.client.images.get(base).id
        self.ids.append(base_id)
        container = self.client.containers.create(base, ["true"], labels={RUN_LABEL: RUN_ID}, network_mode="none")
        try:
            container.put_archive("/", _tar("blob-b", 700_000))
            image = container.commit(*ref.rsplit(":", 1))
        finally:
            container.remove(force=True)
        self.client.images.remove(base)  # untags: the image on top still holds the layer
        self.ids.append(image.id)
        self.base_of[image.id] = base_id
        return image.id

    def push(self, ref: str) -> None:
        repo, tag = ref.rsplit(":", 1)
        for event in self.client.api.push(repo, tag, stream=True, decode=True):
            assert "error" not in event, event

    def drop(self, ref: str) -> None:
        """``ref`` and the layer under it off this engine."""
        image_id = self.client.images.get(ref).id
        self.client.images.remove(ref)
        self._remove(self.base_of[image_id])

    def publish(self, name: str, keep: bool = False) -> tuple[str, str]:
        """A fresh image pushed as ``ref(name)``, off this engine unless ``keep``; (ref, id)."""
        ref = self.ref(name)
        image_id = self.make(ref)
        self.push(ref)
        if not keep:
            self.drop(ref)
        return ref, image_id

    def layer_bytes(self, ref: str) -> int:
        """The compressed layer sizes the registry's manifest lists, summed."""
        name, tag = ref.split("/", 1)[1].rsplit(":", 1)
        req = urllib.request.Request(f"http://127.0.0.1:{self.registry.split(':')[1]}/v2/{name}/manifests/{tag}",
                                     headers={"Accept": MANIFEST_V2})
        with urllib.request.urlopen(req, timeout=10) as r:
            return sum(layer["size"] for layer in json.loads(r.read())["layers"])

    def _remove(self, image_id: str) -> None:
        import docker

        try:
            self.client.images.remove(image_id, force=True)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: an image on top of it is still there (cleanup removes it first)
                raise

    def cleanup(self) -> None:
        for image_id in reversed(self.ids):  # the ones on top first
            self._remove(image_id)


@pytest.fixture(scope="module")
def published(docker_client, registry):
    made = Images(docker_client, registry)
    try:
        yield made
    finally:
        made.cleanup()


def _image_id(client, ref: str) -> str | None:
    return client.images.get(ref).id if is_present(client, ref) else None


def _rows(*refs: str) -> list[dict]:
    return [{"instance_id": f"task-{i}", "image": ref} for i, ref in enumerate(refs)]


# ---------------------------------------------------------------- pull modes


def test_missing_pulls_an_absent_image_with_a_progress_bar(published, docker_client, capfd, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # the bar's line holds the whole image name
    ref, image_id = published.publish("missing")
    assert _image_id(docker_client, ref) is None
    assert ensure_images(_rows(ref), docker_client, bundled=False, pull="missing", progress=True) == [ref]
    assert _image_id(docker_client, ref) == image_id
    megabytes = round(published.layer_bytes(ref) / 1e6, 1)
    bar = capfd.readouterr().err
    assert f"pull {ref} (MB)" in bar and f"{megabytes}/{megabytes}" in bar, bar
    assert ensure_images(_rows(ref), docker_client, bundled=False, pull="missing", progress=False) == []


def test_layer_progress_sums_the_bytes_of_every_layer(published, docker_client):
    ref, _ = published.publish("layers")
    progress = LayerProgress()
    repo, tag = ref.rsplit(":", 1)
    for event in docker_client.api.pull(repo, tag, stream=True, decode=True):
        progress.feed(event)
    assert progress.total == progress.done == published.layer_bytes(ref) > 2_000_000


def test_never_refuses_naming_the_image_and_pulls_nothing(published, docker_client):
    ref, _ = published.publish("never")
    present, _ = published.publish("never-present", keep=True)
    with pytest.raises(ImageSupplyError) as refused:
        ensure_images(_rows(present, ref), docker_client, bundled=False, pull="never", progress=False)
    text = str(refused.value)
    assert ref in text and present not in text and "docker load -i FILE" in text and "\n" not in text
    assert not is_present(docker_client, ref)
    assert ensure_images(_rows(present), docker_client, bundled=False, pull="never", progress=False) == []


def test_always_pulls_a_present_image_again_and_never_prunes_it(published, docker_client):
    ref, old = published.publish("always", keep=True)
    new = published.make(ref)  # a newer image under the same name, pushed; this engine keeps the old one
    published.push(ref)
    repo, tag = ref.rsplit(":", 1)
    docker_client.api.tag(old, repo, tag, force=True)
    assert ensure_images(_rows(ref), docker_client, bundled=False, pull="missing", progress=False) == []
    assert _image_id(docker_client, ref) == old  # missing: a present image is left as it is
    with ImageSupply(docker_client, pull="always", prune=True, progress=False) as supply:
        assert supply.ensure(_rows(ref)) == []  # pulled again, but it was here before
        assert _image_id(docker_client, ref) == new
    assert supply.pruned == [] and _image_id(docker_client, ref) == new


def test_prune_removes_what_the_run_pulled_and_nothing_that_was_here(published, docker_client):
    kept, kept_id = published.publish("kept", keep=True)
    pulled, pulled_id = published.publish("pulled")
    same = published.ref("same-content")  # the kept image's content under a name this engine lacks
    docker_client.api.tag(kept_id, *same.rsplit(":", 1))
    published.push(same)
    docker_client.images.remove(same)
    shown = Console(file=io.StringIO(), width=250)
    with ImageSupply(docker_client, pull="missing", prune=True, progress=shown) as supply:
        assert supply.ensure(_rows(kept, pulled, same)) == [pulled, same]
        assert _image_id(docker_client, pulled) == pulled_id and _image_id(docker_client, same) == kept_id
    assert supply.pruned == [pulled, same]
    assert f"pull {pulled} (MB)" in shown.file.getvalue() and f"pull {kept}" not in shown.file.getvalue()
    assert _image_id(docker_client, pulled) is None and _image_id(docker_client, same) is None
    assert _image_id(docker_client, kept) == kept_id  # same layers, same id: only the pulled name went


def test_no_registry_or_no_such_image_is_a_clear_error(published, docker_client):
    closed = _free_port()
    offline = [f"localhost:{closed}/srl-test/{n}-{RUN_ID}:t" for n in ("a", "b")]
    unknown = published.ref("never-pushed")
    supply = ImageSupply(docker_client, pull="missing", progress=False)
    with pytest.raises(ImageSupplyError) as failed:
        supply.ensure(_rows(*offline, unknown))
    text = str(failed.value)
    assert "cannot pull 3 task image(s)" in text and "docker load -i FILE" in text and "\n" not in text
    assert all(ref in text for ref in (*offline, unknown))
    assert "connection refused" in text and f"{offline[1]} (not tried: localhost:{closed} failed" in text
    assert "manifest unknown" in text  # the registry answered: no such image
    assert supply.pulled == []


def test_bundled_task_images_are_built_never_pulled(images, docker_client):
    """No registry has the project's own images (``srl-agent/…``): even ``always`` leaves them to the build."""
    rows = load_rows()[:2]
    assert all(is_present(docker_client, r["image"]) for r in rows)  # the session's build
    for bundled in (True, False):
        with ImageSupply(docker_client, pull="always", prune=True, progress=False) as supply:
            assert supply.ensure(rows, bundled) == []  # a pull would have gone to docker.io, and failed
        assert supply.pruned == [] and all(is_present(docker_client, r["image"]) for r in rows)


# ---------------------------------------------------------------- the commands: one error line, before any model


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def _shared_rows() -> list[dict]:
    path = require_shared(SHARED_ROOT / "swebench" / "rows.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def absent_image_rows(tmp_path):
    """A real swebench-5 row whose image no engine has (a name on a port nothing listens on)."""
    image = f"localhost:{_free_port()}/srl-test/absent-{RUN_ID}:t"
    return _write(tmp_path / "rows.jsonl", [dict(_shared_rows()[0], image=image)]), image


@pytest.mark.parametrize("pull, says", [("never", "pulling is off"), ("missing", "cannot pull 1 task image")])
def test_eval_refuses_a_missing_image_in_one_line_before_the_model(docker_client, absent_image_rows, tmp_path,
                                                                   pull, says):
    rows, image = absent_image_rows
    out = tmp_path / "out"
    # The model is not there: had it been loaded first, the error would name it.
    done = subprocess.run([str(SRL_AGENT), "eval", "--dataset", str(rows), "--pull", pull, "--model",
                           str(tmp_path / "no-such-model"), "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done.stderr)
    assert image in line and says in line and "docker load -i FILE" in line
    assert not (out / "predictions.jsonl").exists() and not (out / "trajs").exists()


def test_train_rlvr_refuses_a_missing_image_in_one_line(docker_client, absent_image_rows, tmp_path):
    rows, image = absent_image_rows
    iid = json.loads(rows.read_text())["instance_id"]
    done = subprocess.run([str(SRL_AGENT), "train", "rlvr", "--tasks", str(rows), "--instance", iid, "--recipe", "tiny",
                           "--set", "rlvr.tasks_per_step=1", "--pull", "never", "-o", str(tmp_path / "rlvr")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert image in _one_error_line(done.stderr)
    assert not (tmp_path / "rlvr" / "rewards.jsonl").exists()


def test_an_unknown_pull_mode_is_one_line():
    done = subprocess.run([str(SRL_AGENT), "eval", "--pull", "sometimes"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--pull: 'sometimes'" in _one_error_line(done.stderr)


# ---------------------------------------------------------------- older rows: eval scripts from a swebench-5 dataset


def _older(rows: list[dict]) -> list[dict]:
    """The rows as SWE-bench shipped them before swebench 5: without the four fields."""
    return [{k: v for k, v in r.items() if k not in V5_FIELDS} for r in rows]


@pytest.fixture
def lite_rows(shared_data) -> list[dict]:
    """Real older-format rows (SWE-bench Lite) that the swebench-5 rows file does not hold."""
    return json.loads((shared_data / "instances" / "sweagent" / "swe-bench-lite-test.json").read_text())


def test_eval_scripts_from_a_v5_file_fill_older_rows(tmp_path, lite_rows):
    v5 = _shared_rows()
    older = _write(tmp_path / "older.jsonl", _older(v5) + lite_rows)
    rows = load_rows(older, eval_scripts_from=SHARED_ROOT / "swebench" / "rows.jsonl")
    by_id = {r["instance_id"]: r for r in rows}
    for want in v5:
        assert {k: by_id[want["instance_id"]][k] for k in V5_FIELDS} == {k: want[k] for k in V5_FIELDS}
        assert by_id[want["instance_id"]]["FAIL_TO_PASS"] == want["FAIL_TO_PASS"]
    # The rows the v5 file lacks keep the error they had: no eval script, named.
    assert missing_for_scoring(rows) == {r["instance_id"]: ["eval_script"] for r in lite_rows}
    with pytest.raises(ScoringError, match=lite_rows[0]["instance_id"]):
        check_gradable(rows)
    check_gradable([by_id[r["instance_id"]] for r in v5])
    assert set(missing_for_scoring(load_rows(older))) == {r["instance_id"] for r in v5 + lite_rows}


def test_eval_scripts_from_refuses_another_base_commit_and_a_source_without_scripts(tmp_path):
    v5 = _shared_rows()
    source = SHARED_ROOT / "swebench" / "rows.jsonl"
    moved = _older(v5)
    moved[1]["base_commit"] = "0" * 40
    with pytest.raises(DatasetError, match=f"{v5[1]['instance_id']}: base_commit 0+ differs"):
        load_rows(_write(tmp_path / "moved.jsonl", moved), eval_scripts_from=source)
    older = _write(tmp_path / "older.jsonl", _older(v5))
    with pytest.raises(DatasetError, match="no swebench-5 rows"):
        load_rows(older, eval_scripts_from=older)


def test_eval_takes_eval_scripts_from_the_flag(docker_client, tmp_path):
    v5 = _shared_rows()[:1]
    image = f"localhost:{_free_port()}/srl-test/v5-{RUN_ID}:t"  # the v5 row names this image, the older one none
    source = _write(tmp_path / "v5.jsonl", [dict(v5[0], image=image)])
    older = _write(tmp_path / "older.jsonl", _older(v5))
    base = [str(SRL_AGENT), "eval", "--dataset", str(older), "--gold", "--pull", "never"]
    done = subprocess.run([*base, "--eval-scripts-from", str(source), "-o", str(tmp_path / "a")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and image in _one_error_line(done.stderr)
    done = subprocess.run([*base, "-o", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "cannot be graded" in _one_error_line(done.stderr)
