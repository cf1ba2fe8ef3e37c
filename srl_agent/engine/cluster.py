"""Episodes and scoring on a Ray cluster: one ``NodeEngine`` actor per node that has a Docker engine.

Ray does the distributed part (actors pinned to nodes, object transfer, failure detection); nothing
here schedules processes of its own. Layout:

- every Ray node started with the custom resource ``docker`` (``ray start --resources '{"docker": N}'``)
  gets one long-lived ``NodeEngine`` actor, pinned to it (``NodeAffinitySchedulingStrategy``,
  ``soft=False``). The actor owns that node's warm ``SandboxPool`` on the node's own engine (the
  actor's ``DOCKER_HOST``: the environment ``ray start`` ran in) and runs a whole episode per remote
  call, through the unchanged ``run_episodes`` / ``SandboxEnvironment``: the sandbox, its commands and
  the pristine grading never leave the node. ``N`` is the node's bound on concurrent sandboxes.
- ``ClusterRunner.run(rows, driver, config)`` has ``run_episodes``' semantics: one finished episode
  record per row, in row order. Scripted drivers (replay, gold patches) travel with the episode;
  any other driver (a model) stays in the calling process and answers each turn through a ``Relay``
  actor, every pending turn of the cluster in one ``act`` call (batched generation), so the token
  bookkeeping of RLVR is the local one.
- routing: an episode goes to a node with a free slot that has a warm container of its image, else
  one that holds the image, else the least loaded one, to which the image is shipped first;
- images: ``docker save`` from the calling process's engine (or from a node that has the image),
  only the layers the receiving engine lacks (``docker load`` skips layers it has, so the base
  image's 230 MB travel once per node, a task image's own layers are ~4 MB), ``docker load`` there;
- faults: a node (or its actor) that dies fails only the episodes it was running, each recorded with
  exit status and outcome ``error``; the actor is recreated on its node (which removes the lost one's
  containers) while the node is alive, otherwise the node is left out. ``close`` (also reached on
  SIGTERM through ``srl_agent.signals``) removes every container of the run on every node.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import ERROR, EpisodeConfig, EpisodeRecord

RESOURCE = "docker"  # the custom resource a node declares to run sandboxes; its amount is its slot count
NAMESPACE = "srl-agent"
CLUSTER_LABEL = "srl-agent.cluster"  # "<run id>.<node id>": one actor's containers, found again after it is lost
ACTOR_START_SECONDS = 120.0  # a new actor that does not answer within this is taken as a lost node


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install 'srl-agent[ray]'") from None
    return ray


class ClusterUnavailable(ValueError):
    """No Ray cluster at the address given (bad input, as a hub that does not answer is)."""


def _answers(address: str | None, seconds: float = 5.0) -> None:
    """A named head that does not accept a connection fails here, in seconds: ``ray.init`` would retry
    for minutes."""
    if not address or address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except (OSError, ValueError) as e:
        raise ClusterUnavailable(f"--ray {address}: no Ray cluster answers there ({type(e).__name__}: {e})") from None


def connect(address: str | None) -> Any:
    """``ray.init`` once per process (a caller that connected already keeps its connection)."""
    import signal

    ray = require_ray()
    if not ray.is_initialized():
        _answers(address)
        main = threading.current_thread() is threading.main_thread()
        before = signal.getsignal(signal.SIGTERM) if main else None
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
        except ConnectionError as e:  # 'auto' with no cluster started on this machine
            raise ClusterUnavailable(f"--ray {address}: {e}") from None
        if callable(before):  # ray.init replaces SIGTERM's handler; srl_agent.signals' must stay (exit 143)
            signal.signal(signal.SIGTERM, before)
    return ray


# ---------------------------------------------------------------------------------------- images
def layer_chains(diff_ids: list[str]) -> list[str]:
    """Docker's chain ids of an image's layer prefixes: what ``docker load`` checks before reading a layer."""
    out: list[str] = []
    for diff in diff_ids:
        out.append(diff if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {diff}".encode()).hexdigest())
    return out


def engine_layers(client: Any) -> set[str]:
    """The chain ids of every layer this engine's images are made of."""
    have: set[str] = set()
    for image in client.images.list():
        have.update(layer_chains((image.attrs.get("RootFS") or {}).get("Layers") or []))
    return have


def save_image(client: Any, image: str, folder: str) -> Path:
    """``docker save IMAGE`` into ``folder`` (kept: one save serves every node it goes to)."""
    path = Path(folder) / (hashlib.sha256(image.encode()).hexdigest()[:16] + ".tar")
    if not path.exists():
        part = path.with_suffix(".part")
        with open(part, "wb") as fh:
            for chunk in client.api.get_image(image, chunk_size=1 << 20):
                fh.write(chunk)
        part.rename(path)
    return path


def image_delta(saved: Path, have: set[str]) -> tuple[bytes, int]:
    """The saved image without the layers whose chain id is in ``have``: ``(tar bytes, layers left out)``.
    The manifest still names them; ``docker load`` (the graph-driver engines) takes them from its own
    layer store, as it does for any layer it already has."""
    with tarfile.open(saved) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        skip: set[str] = set()
        for entry in manifest:
            config = json.load(tar.extractfile(entry["Config"]))
            for path, chain in zip(entry["Layers"], layer_chains(config["rootfs"]["diff_ids"]), strict=False):
                if chain in have:
                    skip.add(path)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as out:
            for member in tar.getmembers():
                if member.name not in skip:
                    out.addfile(member, tar.extractfile(member) if member.isfile() else None)
    return buf.getvalue(), len(skip)


# ---------------------------------------------------------------------------------------- drivers on the node
class _Shipped:
    """A scripted driver run on the node: the episode's memo from the driver's ``begin`` (in the calling
    process, in row order) is put back, and only ``act`` / ``observe`` run here."""

    def __init__(self, driver: Any, memo: dict[str, Any]):
        self.driver, self.memo = driver, memo

    def begin(self, episode: EpisodeRecord) -> None:
        episode.memo.update(self.memo)

    def act(self, episodes: list[EpisodeRecord]) -> list[Any]:
        return self.driver.act(episodes)

    def observe(self, episode: EpisodeRecord, text: str) -> None:
        observe = getattr(self.driver, "observe", None)
        if observe is not None:
            observe(episode, text)


class _Relayed:
    """A driver that lives in the calling process: each turn goes there through the ``Relay`` actor,
    with what the episode did since the last turn (its new steps and format errors, its status)."""

    def __init__(self, relay: Any, key: str, observes: bool, memo: dict[str, Any]):
        self.relay, self.key, self.observes, self.memo = relay, key, observes, memo
        self._steps = self._errors = 0

    def begin(self, episode: EpisodeRecord) -> None:
        episode.memo.update(self.memo)

    def _news(self, episode: EpisodeRecord) -> dict[str, Any]:
        news = {"steps": episode.steps[self._steps:], "format_errors": episode.format_errors[self._errors:],
                "turns": episode.turns, "exit_status": episode.exit_status, "error": episode.error}
        self._steps, self._errors = len(episode.steps), len(episode.format_errors)
        return news

    def _ask(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        import ray

        reply = ray.get(self.relay.ask.remote(kind, self.key, payload))
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def act(self, episodes: list[EpisodeRecord]) -> list[Any]:
        return [self._ask("act", self._news(ep))["action"] for ep in episodes]

    def observe(self, episode: EpisodeRecord, text: str) -> None:
        if not self.observes:
            return
        stop = self._ask("observe", {**self._news(episode), "text": text}).get("stop")
        if stop:
            episode.stop(*stop)


class Relay:
    """Turns waiting for the calling process's driver: node threads ``ask`` and wait; the calling process
    ``take``s every pending one at once (waiting up to ``gather`` seconds for the rest of the ``want``
    running episodes, so a cluster-wide round becomes one generate call) and ``answer``s them."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, str, str, dict[str, Any]]] = []
        self.futures: dict[int, asyncio.Future] = {}
        self.count = 0
        self.arrived: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self.arrived is None:
            self.arrived = asyncio.Event()
        return self.arrived

    async def ask(self, kind: str, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.count += 1
        future = asyncio.get_running_loop().create_future()
        self.futures[self.count] = future
        self.pending.append((self.count, kind, key, payload))
        self._event().set()
        return await future

    async def take(self, wait: float, want: int, gather: float) -> list[tuple[int, str, str, dict[str, Any]]]:
        event = self._event()
        if not self.pending:
            try:
                await asyncio.wait_for(event.wait(), wait)
            except asyncio.TimeoutError:
                return []
        deadline = time.monotonic() + gather
        while len(self.pending) < want and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        out, self.pending = self.pending, []
        event.clear()
        return out

    async def answer(self, replies: dict[int, dict[str, Any]]) -> None:
        for rid, reply in replies.items():
            future = self.futures.pop(rid, None)
            if future is not None and not future.done():
                future.set_result(reply)


# ---------------------------------------------------------------------------------------- the node actor
class NodeEngine:
    """One node's engine: its warm pool, the episodes run on it, images loaded into it, the harness."""

    def __init__(self, run_label: str, labels: dict[str, str], max_sandboxes: int, warm: bool = True,
                 timeout: float = 60.0, sandbox: dict[str, Any] | None = None):
        import docker

        from ..sandbox import LABELS_ENV, gc
        from .pool import SandboxPool

        self.run_label = run_label
        self.labels = {**labels, CLUSTER_LABEL: run_label}
        # The harness runs as a subprocess here: its containers get the run's labels through the environment.
        os.environ[LABELS_ENV] = ",".join(f"{k}={v}" for k, v in self.labels.items() if k != "srl-agent")
        self.client = docker.from_env()
        self.removed_at_start = gc(self.client, f"{CLUSTER_LABEL}={run_label}")  # a lost predecessor's
        info = self.client.info()
        # Engines on the containerd image store take a load as a whole; graph-driver ones skip layers they have.
        self.delta = "io.containerd.snapshotter" not in json.dumps(info.get("DriverStatus") or [])
        self.pool = SandboxPool(max_sandboxes, warm=warm, client=self.client, timeout=timeout, labels=self.labels,
                                sandbox=sandbox)
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Event] = {}
        self.loaded: list[dict[str, Any]] = []

    def info(self) -> dict[str, Any]:
        import ray

        tags = sorted({t for image in self.client.images.list() for t in image.tags})
        return {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid(),
                "docker_host": os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock",
                "images": tags, "layers": sorted(engine_layers(self.client)), "delta": self.delta,
                "removed_at_start": self.removed_at_start, **self.state()}

    def state(self) -> dict[str, Any]:
        with self.pool._cond:
            warm = [[image, base, len(v)] for (image, base), v in self.pool._idle.items() if v]
        return {"warm": warm, "open": self.pool.open, "pool": self.pool.stats.to_dict(), "loaded": list(self.loaded)}

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def _has(self, image: str) -> bool:
        import docker

        try:
            self.client.images.get(image)
            return True
        except docker.errors.ImageNotFound:
            return False

    def load_image(self, image: str, blob: bytes | None) -> None:
        """Make ``image`` present: load ``blob`` (one load per image at a time; the others wait for it)."""
        with self._lock:
            loading = self._loading.get(image)
            if loading is None:
                if blob is None or self._has(image):
                    return
                loading = self._loading[image] = threading.Event()
                mine = True
            else:
                mine = False
        if not mine:
            loading.wait()
            return
        try:
            start = time.perf_counter()
            self.client.images.load(blob)
            self.loaded.append({"image": image, "bytes": len(blob), "load_seconds": round(time.perf_counter() - start, 3)})
        finally:
            loading.set()
            with self._lock:
                del self._loading[image]

    def export_image(self, image: str, have: list[str]) -> bytes:
        """This engine's copy of ``image`` for another node (the layers it lacks)."""
        folder = tempfile.mkdtemp(prefix="srl-agent-export-")
        try:
            return image_delta(save_image(self.client, image, folder), set(have))[0]
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def run_episode(self, row: dict[str, Any], spec: tuple, config: EpisodeConfig, style: str,
                    environment: dict[str, Any], blob: bytes | None = None) -> tuple[EpisodeRecord, dict[str, Any]]:
        """One whole episode on this node's engine: ``(its record, the node's state)``."""
        import ray

        from .environment import SandboxEnvironment
        from .loop import run_episodes

        kind, payload, memo = spec
        driver = _Shipped(ray.get(payload), memo) if kind == "ship" else _Relayed(*payload, memo=memo)
        try:
            self.load_image(row["image"], blob)
        except Exception as e:  # the episode fails; the sandbox would not start without its image
            episode = EpisodeRecord(task=row)
            episode.stop(ERROR, f"image: {type(e).__name__}: {e}")
            episode.outcome = ERROR
        else:
            [episode] = run_episodes([row], driver, lambda: SandboxEnvironment(self.pool, config, **environment),
                                     config, batch_size=1, style=style)
        episode.memo = {}  # the driver's state stays with the driver
        return episode, self.state()

    def score(self, rows: list[dict[str, Any]], preds: list[dict[str, Any]], run_id: str, max_workers: int,
              timeout: int) -> tuple[dict[str, Any], bytes]:
        """The official harness on this engine: ``(its report, a tar of its logs and harness.log)``."""
        from ..evaluation.harness import score

        folder = Path(tempfile.mkdtemp(prefix="srl-agent-score-"))
        try:
            score(rows, preds, folder, run_id, max_workers=max_workers, timeout=timeout, client=self.client)
            name = preds[0]["model_name_or_path"].replace("/", "__")
            report = json.loads((folder / f"{name}.{run_id}.json").read_text(encoding="utf-8"))
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                for part in ("logs", "harness.log"):
                    if (folder / part).exists():
                        tar.add(folder / part, arcname=part)
            return report, buf.getvalue()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> int:
        """Remove every container of this actor (idle, in use, or a lost predecessor's): how many."""
        from ..sandbox import gc

        self.pool.close()
        return gc(self.client, f"{CLUSTER_LABEL}={self.run_label}")


# ---------------------------------------------------------------------------------------- the runner
@dataclass
class _Node:
    node_id: str
    slots: int
    handle: Any = None
    generation: int = 0
    host: str = ""
    docker_host: str = ""
    images: set[str] = field(default_factory=set)
    layers: set[str] = field(default_factory=set)
    delta: bool = True
    warm: dict[tuple[str, str | None], int] = field(default_factory=dict)
    inflight: int = 0
    episodes: int = 0
    errors: int = 0
    restarts: int = 0
    alive: bool = True
    lost: str | None = None

    @property
    def name(self) -> str:
        return self.node_id[:8]

    def update(self, state: dict[str, Any]) -> None:
        self.warm = {(image, base): n for image, base, n in state.get("warm", [])}


def _error_record(row: dict[str, Any], message: str, node: str, memo: dict[str, Any] | None = None) -> EpisodeRecord:
    """An episode that no node finished: exit status and outcome ``error``, reward 0."""
    episode = EpisodeRecord(task=row)
    episode.memo = memo or {}
    episode.stop(ERROR, message)
    episode.outcome, episode.reward = ERROR, 0.0
    episode.container["node"] = node
    episode.seconds.update(ready=0.0, episode=0.0, grading=0.0, tests=0.0)
    return episode


def _ships(driver: Any) -> bool:
    """Scripted drivers carry everything they need; a model driver stays where its model is."""
    from ..replay import ScriptedDriver

    return isinstance(driver, ScriptedDriver) or bool(getattr(driver, "portable", False))


class ClusterRunner:
    """``run`` episodes and ``score`` predictions on the Docker engines of a Ray cluster's nodes.

    ``max_sandboxes``: each node's bound on concurrent sandboxes (default: the amount of the ``docker``
    resource the node declared). ``nodes``: node ids (or their prefixes) to use, default every alive node
    with the resource. ``labels``: extra container labels (``$SRL_AGENT_LABELS`` of this process is
    added, as locally). ``gather``: seconds a relayed turn waits for the other running episodes' turns
    to be generated together."""

    def __init__(self, address: str | None = "auto", *, max_sandboxes: int | None = None, warm: bool = True,
                 timeout: float = 60.0, labels: dict[str, str] | None = None, sandbox: dict[str, Any] | None = None,
                 nodes: list[str] | None = None, gather: float = 0.05):
        from ..sandbox import container_labels

        self.ray = connect(address)
        self.address = address
        self.run_id = uuid.uuid4().hex[:10]
        self.labels = container_labels(labels)
        self.options = {"warm": warm, "timeout": timeout, "sandbox": dict(sandbox or {})}
        self.max_sandboxes, self.gather = max_sandboxes, gather
        self.nodes: dict[str, _Node] = {}
        self.shipped: list[dict[str, Any]] = []
        self._saves = tempfile.mkdtemp(prefix="srl-agent-images-")
        self._local: Any = None
        self._relay: Any = None
        self._engine: Any = None
        self._shadows: dict[str, EpisodeRecord] = {}
        self._closed = False
        try:
            self._start_nodes(nodes)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ nodes
    def _start_nodes(self, wanted: list[str] | None) -> None:
        found = [n for n in self.ray.nodes() if n.get("Alive") and (n.get("Resources") or {}).get(RESOURCE, 0) >= 1]
        if wanted:
            found = [n for n in found if any(n["NodeID"].startswith(w) for w in wanted)]
        if not found:
            raise RuntimeError(f"no alive Ray node declares the resource {RESOURCE!r} (ray start ... --resources "
                               "'{\"docker\": 4}' on each node that has a Docker engine)")
        for n in found:
            slots = self.max_sandboxes or int(n["Resources"][RESOURCE])
            self.nodes[n["NodeID"]] = _Node(n["NodeID"], max(1, slots))
        started = {nid: self._spawn(node) for nid, node in self.nodes.items()}
        for nid, ref in started.items():
            self._adopt(self.nodes[nid], ref)
        if not any(node.alive for node in self.nodes.values()):
            raise RuntimeError("no node's engine actor started: " +
                               "; ".join(f"{n.name}: {n.lost}" for n in self.nodes.values()))

    def _spawn(self, node: _Node) -> Any:
        """A new actor on the node; the ref of its first ``info``."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node.generation += 1
        if self._engine is None:
            self._engine = self.ray.remote(NodeEngine)
        actor = self._engine.options(
            name=f"srl-agent-node.{self.run_id}.{node.node_id[:12]}.{node.generation}", namespace=NAMESPACE,
            num_cpus=0, max_concurrency=node.slots + 8, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False))
        node.handle = actor.remote(f"{self.run_id}.{node.node_id[:12]}", self.labels, node.slots,
                                   **self.options)
        return node.handle.info.remote()

    def _adopt(self, node: _Node, ref: Any) -> None:
        try:
            info = self.ray.get(ref, timeout=ACTOR_START_SECONDS)
        except Exception as e:  # the node went away, or its engine does not answer
            node.alive, node.lost = False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            return
        node.host, node.docker_host, node.delta = info["host"], info["docker_host"], info["delta"]
        node.images, node.layers = set(info["images"]), set(info["layers"])
        node.update(info)

    def _recover(self, node: _Node, generation: int, why: str) -> None:
        """After its actor was lost: a new one on the same node, if the node is still there."""
        if generation != node.generation or not node.alive:
            return  # another episode of the lost actor got here first
        alive = {n["NodeID"] for n in self.ray.nodes() if n.get("Alive")}
        if node.node_id not in alive:
            node.alive, node.lost = False, f"the node left the cluster ({why})"
            return
        node.restarts += 1
        node.inflight = 0
        self._adopt(node, self._spawn(node))

    def actor(self, node_id: str) -> Any:
        """The handle of the node's engine actor (by id or prefix)."""
        return next(n.handle for nid, n in self.nodes.items() if nid.startswith(node_id))

    # ------------------------------------------------------------------ images
    def _local_engine(self) -> Any:
        if self._local is None:
            import docker

            try:
                self._local = docker.from_env()
                self._local.ping()
            except Exception:
                self._local = False
        return self._local or None

    def _image_for(self, node: _Node, image: str) -> Any:
        """An object ref holding what ``node`` lacks of ``image``, or None when nobody has the image."""
        import docker

        have = node.layers if node.delta else set()
        start = time.perf_counter()
        local, ref, skipped, size = self._local_engine(), None, 0, 0
        try:
            chains = layer_chains(local.images.get(image).attrs["RootFS"]["Layers"]) if local else None
        except docker.errors.ImageNotFound:
            chains = None
        if chains is not None:
            data, skipped = image_delta(save_image(local, image, self._saves), have)
            ref, size, source = self.ray.put(data), len(data), "driver"
        else:
            donor = next((n for n in self.nodes.values() if n.alive and n is not node and image in n.images), None)
            if donor is None:
                return None
            ref, source = donor.handle.export_image.remote(image, sorted(have)), donor.name
        node.images.add(image)
        if chains:
            node.layers.update(chains)
        self.shipped.append({"image": image, "node": node.name, "source": source, "bytes": size,
                             "layers_skipped": skipped, "export_seconds": round(time.perf_counter() - start, 3)})
        return ref

    def _ensure_images(self, node: _Node, images: set[str]) -> None:
        refs = [(image, self._image_for(node, image)) for image in sorted(images - node.images)]
        self.ray.get([node.handle.load_image.remote(image, ref) for image, ref in refs if ref is not None])

    # ------------------------------------------------------------------ episodes
    def _pick(self, row: dict[str, Any]) -> _Node | None:
        key = (row["image"], row.get("base_commit") or None)
        free = [n for n in self.nodes.values() if n.alive and n.inflight < n.slots]
        return max(free, default=None, key=lambda n: (n.warm.get(key, 0) > 0, row["image"] in n.images,
                                                      -n.inflight / n.slots, -n.episodes))

    def run(self, rows: list[dict[str, Any]], driver: Any, config: EpisodeConfig | None = None, *,
            environment: dict[str, Any] | None = None, batch_size: int | None = None, style: str = "xml",
            progress: Any = None) -> list[EpisodeRecord]:
        """One finished episode record per row, in order, as ``run_episodes`` gives them. ``environment``:
        ``SandboxEnvironment`` options (grade, snapshots, step_diffs, shell); ``batch_size``: most episodes
        in flight over the whole cluster (default: every node's slots)."""
        if self._closed:
            raise RuntimeError("the cluster runner is closed")
        config = config or EpisodeConfig()
        environment = dict(environment or {})
        ships = _ships(driver)
        driver_ref = self.ray.put(driver) if ships else None
        if not ships and self._relay is None:
            self._relay = self.ray.remote(Relay).options(
                num_cpus=0, namespace=NAMESPACE, max_concurrency=1000,
                name=f"srl-agent-relay.{self.run_id}").remote()
        begin = getattr(driver, "begin", None)
        out: list[EpisodeRecord | None] = [None] * len(rows)
        queue = deque(range(len(rows)))
        inflight: dict[Any, tuple[int, _Node, int, str]] = {}
        limit = batch_size or 10**9
        done = 0
        try:
            while queue or inflight:
                while queue and len(inflight) < limit:
                    node = self._pick(rows[queue[0]])
                    if node is None:
                        break
                    i = queue.popleft()
                    key = f"{i}.{uuid.uuid4().hex[:6]}"
                    shadow = EpisodeRecord(task=rows[i])  # the driver's view: begin here, in row order
                    if begin is not None:
                        try:
                            begin(shadow)
                        except Exception as e:
                            out[i] = _error_record(rows[i], f"driver: {type(e).__name__}: {e}", "", shadow.memo)
                            done += 1
                            continue
                    spec = (("ship", driver_ref, dict(shadow.memo)) if ships else
                            ("relay", (self._relay, key, hasattr(driver, "observe")), dict(shadow.memo)))
                    if not ships:
                        self._shadows[key] = shadow
                    key_image = (rows[i]["image"], rows[i].get("base_commit") or None)
                    if node.warm.get(key_image, 0) > 0:
                        node.warm[key_image] -= 1
                    blob = None
                    if rows[i]["image"] not in node.images:
                        blob = self._image_for(node, rows[i]["image"])
                        if blob is None:
                            self._shadows.pop(key, None)
                            out[i] = _error_record(rows[i], f"image {rows[i]['image']} is on no engine in reach (not "
                                                   "here, not on any node)", node.name, shadow.memo)
                            done += 1
                            continue
                    ref = node.handle.run_episode.remote(rows[i], spec, config, style, environment, blob)
                    node.inflight += 1
                    inflight[ref] = (i, node, node.generation, key)
                if not inflight:
                    if queue and not any(n.alive for n in self.nodes.values()):
                        lost = "; ".join(f"{n.name}: {n.lost}" for n in self.nodes.values())
                        for i in queue:
                            out[i] = _error_record(rows[i], f"no node with a Docker engine is left ({lost})", "")
                        done += len(queue)
                        queue.clear()
                    continue
                relayed = 0 if ships else len(inflight)
                served = self._serve(driver, relayed) if relayed else 0
                refs = list(inflight)
                ready, _ = self.ray.wait(refs, num_returns=1, timeout=0 if served or relayed else 0.5)
                if ready:  # and whatever else is done by now, without waiting for the rest
                    ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
                for ref in ready:
                    i, node, generation, key = inflight.pop(ref)
                    out[i] = self._finished(rows[i], ref, node, generation, key)
                    done += 1
                    if progress is not None:
                        progress(done, len(rows))
        except (KeyboardInterrupt, SystemExit) as e:
            self._interrupted(e)
        return out  # type: ignore[return-value]

    def _interrupted(self, e: BaseException) -> None:
        """A signal or Ctrl-C: every node's containers go now, then the run ends as it would locally."""
        from .. import signals

        self.close()
        if isinstance(e, SystemExit) and signals.received is not None:
            raise SystemExit(128 + signals.received) from None  # Ray's blocking calls re-raise it as exit 1
        raise e

    def _finished(self, row: dict[str, Any], ref: Any, node: _Node, generation: int, key: str) -> EpisodeRecord:
        ray = self.ray
        shadow = self._shadows.pop(key, None)
        memo = shadow.memo if shadow is not None else {}
        if generation == node.generation:
            node.inflight -= 1
        try:
            episode, state = ray.get(ref)
            node.update(state)
            episode.memo, episode.task = memo, row  # the caller's row, as run_episodes keeps it
        except ray.exceptions.RayTaskError as e:  # the actor is fine; its code raised
            episode = _error_record(row, f"node {node.name}: {str(e).splitlines()[-1][:500]}", node.name, memo)
        except ray.exceptions.RayError as e:  # the actor (or its node) is gone
            episode = _error_record(row, f"node {node.name} lost: {type(e).__name__}", node.name, memo)
            self._recover(node, generation, type(e).__name__)
        episode.container["node"] = node.name
        if (episode.error or "").startswith("image:"):  # the load failed: a whole archive next time
            node.images.discard(row["image"])
            node.delta = False
        node.episodes += 1
        if episode.exit_status == ERROR:
            node.errors += 1
            if node.alive and generation == node.generation and not self._answers(node):
                node.alive, node.lost = False, "its Docker engine does not answer"
        return episode

    def _answers(self, node: _Node) -> bool:
        try:
            return bool(self.ray.get(node.handle.ping.remote(), timeout=30))
        except Exception:
            return False

    def _serve(self, driver: Any, want: int) -> int:
        """Answer the pending relayed turns: every ``act`` in one call of the driver."""
        requests = self.ray.get(self._relay.take.remote(0.05, want, self.gather))
        if not requests:
            return 0
        replies: dict[int, dict[str, Any]] = {}
        acts: list[tuple[int, EpisodeRecord]] = []
        for rid, kind, key, news in requests:
            shadow = self._shadows[key]
            shadow.steps += news["steps"]
            shadow.format_errors += news["format_errors"]
            shadow.turns, shadow.exit_status, shadow.error = news["turns"], news["exit_status"], news["error"]
            if kind == "act":
                acts.append((rid, shadow))
                continue
            try:
                driver.observe(shadow, news["text"])
                replies[rid] = {} if shadow.running else {"stop": [shadow.exit_status, shadow.error]}
            except Exception as e:
                replies[rid] = {"error": f"{type(e).__name__}: {e}"}
        if acts:
            try:
                actions = driver.act([shadow for _, shadow in acts])
                if len(actions) != len(acts):
                    raise ValueError(f"the driver gave {len(actions)} actions for {len(acts)} episodes")
                replies.update({rid: {"action": a} for (rid, _), a in zip(acts, actions, strict=True)})
            except Exception as e:
                replies.update({rid: {"error": f"{type(e).__name__}: {e}"} for rid, _ in acts})
        self._relay.answer.remote(replies)
        return len(requests)

    # ------------------------------------------------------------------ scoring
    def score(self, rows: list[dict[str, Any]], preds: list[dict[str, Any]], output_dir: str | Path, run_id: str, *,
              max_workers: int = 2, timeout: int = 1800) -> dict[str, Any]:
        """``evaluation.harness.score`` with the predictions spread over the nodes (a node that holds the
        image first, then the fewest assigned): the same summary, the harness's logs gathered under
        ``output_dir`` and its per-node logs in ``harness.log``."""
        from ..evaluation.data import write_rows
        from ..evaluation.harness import ScoringError, write_predictions

        out = Path(output_dir).resolve()
        out.mkdir(parents=True, exist_ok=True)
        by_id = {r["instance_id"]: r for r in rows}
        preds = [p for p in preds if p["instance_id"] in by_id]
        write_rows(rows, out / "dataset.jsonl")
        write_predictions(preds, out / "predictions.scored.jsonl")
        shares: dict[str, list[dict[str, Any]]] = {}
        for p in preds:
            image = by_id[p["instance_id"]]["image"]
            nodes = [n for n in self.nodes.values() if n.alive]
            if not nodes:
                raise ScoringError("no node with a Docker engine is left to score on")
            node = min(nodes, key=lambda n: (image not in n.images, len(shares.get(n.node_id, []))))
            shares.setdefault(node.node_id, []).append(p)
        try:
            return self._score(rows, preds, out, by_id, shares, run_id, max_workers, timeout)
        except (KeyboardInterrupt, SystemExit) as e:
            self._interrupted(e)
            raise

    def _score(self, rows, preds, out: Path, by_id, shares, run_id: str, max_workers: int,
               timeout: int) -> dict[str, Any]:
        from ..evaluation.harness import _summary

        calls = {}
        for nid, part in shares.items():
            node = self.nodes[nid]
            self._ensure_images(node, {by_id[p["instance_id"]]["image"] for p in part if p["model_patch"]})
            calls[nid] = node.handle.score.remote([by_id[p["instance_id"]] for p in part], part, run_id, max_workers,
                                                  timeout)
        report: dict[str, Any] = {}
        logs = []
        for nid, call in calls.items():
            node = self.nodes[nid]
            try:
                part, tar = self.ray.get(call)
            except self.ray.exceptions.RayError as e:  # that node's instances stay unscored: status error
                logs.append(f"==== node {node.name} ({node.docker_host}): lost: {type(e).__name__}: {e}\n")
                continue
            node.episodes += len(shares[nid])
            with tarfile.open(fileobj=io.BytesIO(tar)) as t:
                t.extractall(out / ".node", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            if (out / ".node" / "logs").exists():
                shutil.copytree(out / ".node" / "logs", out / "logs", dirs_exist_ok=True)
            log = out / ".node" / "harness.log"
            logs.append(f"==== node {node.name} ({node.docker_host})\n" +
                        (log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""))
            shutil.rmtree(out / ".node")
            for k, v in part.items():
                if isinstance(v, list):
                    report[k] = report.get(k, []) + v
                elif isinstance(v, dict):
                    report[k] = {**report.get(k, {}), **v}
                elif k.endswith("_instances") and isinstance(v, int):  # counts; schema_version stays one
                    report[k] = report.get(k, 0) + v
                else:
                    report.setdefault(k, v)
        if preds:
            name = preds[0]["model_name_or_path"].replace("/", "__")
            (out / f"{name}.{run_id}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
            (out / "harness.log").write_text("\n".join(logs), encoding="utf-8")
        summary = _summary(rows, preds, report, out, run_id)
        summary["harness_log"] = str(out / "harness.log") if preds else None
        return summary

    # ------------------------------------------------------------------ the end
    def summary(self) -> dict[str, Any]:
        """What ``--json`` carries as ``"ray"``: the cluster, the episodes (or scored instances) per node."""
        nodes = list(self.nodes.values())
        return {"address": self.address, "gcs": self._gcs(), "nodes": sum(n.alive for n in nodes),
                "episodes_per_node": {n.name: n.episodes for n in nodes},
                "errors_per_node": {n.name: n.errors for n in nodes if n.errors},
                "per_node": {n.name: {"host": n.host, "docker_host": n.docker_host, "slots": n.slots,
                                      "restarts": n.restarts, "alive": n.alive, "lost": n.lost} for n in nodes},
                "images_shipped": list(self.shipped)}

    def _gcs(self) -> str | None:
        try:
            return self.ray.get_runtime_context().gcs_address
        except Exception:
            return None

    def close(self) -> dict[str, int]:
        """Every node's containers of this run removed, the actors ended: containers removed per node."""
        if self._closed:
            return {}
        self._closed = True
        removed: dict[str, int] = {}
        calls = {n.name: n.handle.close.remote() for n in self.nodes.values() if n.alive and n.handle is not None}
        for name, call in calls.items():
            try:
                removed[name] = self.ray.get(call, timeout=120)
            except Exception:  # a lost node keeps what it had; its next actor of this run would remove it
                removed[name] = -1
        for handle in [n.handle for n in self.nodes.values() if n.handle is not None] + [self._relay]:
            if handle is not None:
                try:
                    self.ray.kill(handle)
                except Exception:
                    pass
        shutil.rmtree(self._saves, ignore_errors=True)
        if self._local:
            self._local.close()
        return removed

    def __enter__(self) -> ClusterRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
