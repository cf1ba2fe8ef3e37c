"""A real Ray cluster on this machine, for tests/test_ray_cluster.py and ``scripts/bench.py ray``.

Every process of it runs in one network namespace of its own, with only ``lo`` up (and a private mount
namespace, so the node engines' mounts go with it): Ray binds the machine's address otherwise, and
nothing else on the machine can see or collide with its ports. In it, per node, a Docker engine of its
own (own data root, exec root and socket; no bridge, no iptables: sandboxes run without a network
anyway) and a ``ray start --block`` whose environment names that engine (``DOCKER_HOST``) and whose
``--resources`` declare it (``{"docker": slots}``). The task images are ``docker save``d from the main
engine once and ``docker load``ed into each node's.

``enter`` moves the calling thread (the main thread, before Ray starts its threads) into the
namespace, so that this process can be the cluster's driver; ``stop`` moves it back and ends every
process in the namespace by its pid.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
HEAD_PORT = 6379  # the namespace's own port space: nothing else listens there
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def problem() -> str | None:
    """Why this machine cannot run the test cluster, or None."""
    if os.geteuid() != 0:
        return "the test cluster needs root (network namespaces, its own dockerd)"
    for tool in ("unshare", "nsenter", "ip", "dockerd", "docker"):
        if shutil.which(tool) is None:
            return f"the test cluster needs {tool} on the PATH"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install 'srl-agent[ray]')"
    r = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot make namespaces here: {r.stderr.strip()}"
    return None


class LocalCluster:
    """``nodes`` Ray nodes with ``slots`` sandboxes each, every one with its own dockerd holding ``images``."""

    def __init__(self, nodes: int = 2, slots: int = 2, images: list[str] | tuple[str, ...] = (),
                 storage_driver: str | None = None, object_store_mb: int = 600):
        self.count, self.slots, self.images = nodes, slots, list(images)
        self.storage_driver, self.object_store_mb = storage_driver, object_store_mb
        self.root: Path | None = None
        self.holder: subprocess.Popen | None = None
        self.dockerds: list[subprocess.Popen] = []
        self.rays: list[subprocess.Popen] = []
        self.sockets: list[str] = []
        self._home: int | None = None
        self.address = f"127.0.0.1:{HEAD_PORT}"

    # ------------------------------------------------------------------ start
    def start(self) -> LocalCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        import docker

        # Unix socket paths are short (108 bytes): a folder directly under /tmp.
        self.root = Path(tempfile.mkdtemp(prefix="srl-ray-", dir="/tmp"))
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c",
             "ip link set lo up && exec sleep infinity"], start_new_session=True)
        self._wait(lambda: self._in_namespace(["ip", "-o", "link", "show", "lo", "up"]).strip() != "", 10,
                   "the namespace's loopback did not come up")
        main = docker.from_env()
        driver = self.storage_driver or ("overlay2" if main.info().get("Driver") == "overlay2" else "vfs")
        for n in range(self.count):
            folder = self.root / f"n{n}"
            folder.mkdir()
            sock = f"unix://{folder}/docker.sock"
            log = open(folder / "dockerd.log", "w")
            self.dockerds.append(subprocess.Popen(
                [*self.nsenter, "dockerd", "--data-root", str(folder / "data"), "--exec-root", str(folder / "exec"),
                 "-H", sock, "--pidfile", str(folder / "docker.pid"), "--bridge=none", "--iptables=false",
                 "--ip-masq=false", "--storage-driver", driver, "--log-level", "warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            self.sockets.append(sock)
        for n, sock in enumerate(self.sockets):
            self._wait(lambda sock=sock: self._pings(sock), 60,
                       f"node {n}'s dockerd did not answer (log: {self.root}/n{n}/dockerd.log)")
        if self.images:
            self.load_images(self.images)
        self._start_ray()
        main.close()

    @property
    def nsenter(self) -> list[str]:
        pid = self.holder.pid
        return ["nsenter", f"--net=/proc/{pid}/ns/net", f"--mount=/proc/{pid}/ns/mnt", "--"]

    def _in_namespace(self, argv: list[str]) -> str:
        return subprocess.run([*self.nsenter, *argv], capture_output=True, text=True).stdout

    @staticmethod
    def _pings(sock: str) -> bool:
        import docker

        try:
            client = docker.DockerClient(base_url=sock, timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False

    @staticmethod
    def _wait(ready, seconds: float, message: str) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(message)
            time.sleep(0.2)

    def load_images(self, images: list[str], nodes: list[int] | None = None) -> None:
        """``docker save`` from the main engine once, ``docker load`` into each node's (side by side)."""
        tar = self.root / "images.tar"
        subprocess.run(["docker", "save", "-o", str(tar), *images], check=True, capture_output=True)
        try:
            loads = [subprocess.Popen(["docker", "-H", self.sockets[n], "load", "-q", "-i", str(tar)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for n in (range(self.count) if nodes is None else nodes)]
            for p in loads:
                _, err = p.communicate(timeout=600)
                if p.returncode != 0:
                    raise RuntimeError(f"docker load into a node failed: {err.decode()[-2000:]}")
        finally:
            tar.unlink(missing_ok=True)

    def _listening(self, port: int) -> bool:
        """Whether something listens on ``port`` in the namespace (its own /proc/net/tcp)."""
        lines = []
        for table in ("tcp", "tcp6"):  # Ray's GCS listens on IPv6 (with IPv4-mapped addresses)
            try:
                lines += Path(f"/proc/{self.holder.pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                pass
        return any(int(f.split()[1].rsplit(":", 1)[1], 16) == port and f.split()[3] == "0A" for f in lines)

    def _start_ray(self) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                  f"--resources={json.dumps({'docker': self.slots})}",
                  f"--object-store-memory={self.object_store_mb * 2**20}", "--disable-usage-stats"]
        for n, sock in enumerate(self.sockets):
            env = {**os.environ, "DOCKER_HOST": sock, "RAY_USAGE_STATS_ENABLED": "0"}
            head = ["--head", f"--port={HEAD_PORT}", "--include-dashboard=false", f"--temp-dir={self.root}/ray"]
            argv = [*self.nsenter, ray, "start", *(head if n == 0 else [f"--address={self.address}"]), *common]
            log = open(self.root / f"n{n}" / "ray.log", "w")
            self.rays.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
            if n == 0:
                self._wait(lambda: self._listening(HEAD_PORT), 120,
                           f"the Ray head did not start (log: {self.root}/n0/ray.log)")

    # ------------------------------------------------------------------ the driver
    def enter(self) -> str:
        """This (main) thread into the namespace and connected to the cluster once all nodes are up."""
        import ray

        if self._home is None:
            self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            fd = os.open(f"/proc/{self.holder.pid}/ns/net", os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
        if not ray.is_initialized():
            ray.init(address=self.address, namespace="srl-agent", log_to_driver=False, logging_level="WARNING")
        self._wait(lambda: len(self.node_ids()) == self.count, 120,
                   f"only {len(self.node_ids())} of {self.count} Ray nodes registered (logs: {self.root}/n*/ray.log)")
        return self.address

    def node_ids(self) -> list[str]:
        """The alive nodes with a Docker engine, head first."""
        import ray

        nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("docker")]
        return [n["NodeID"] for n in sorted(nodes, key=lambda n: "node:__internal_head__" not in n["Resources"])]

    def socket_index(self, docker_host: str) -> int:
        return self.sockets.index(docker_host)

    def client(self, n: int) -> Any:
        import docker

        return docker.DockerClient(base_url=self.sockets[n], timeout=120)

    def containers(self, n: int, label: str = "srl-agent") -> list[Any]:
        client = self.client(n)
        try:
            return client.containers.list(all=True, filters={"label": label})
        finally:
            client.close()

    def leave(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self._home is not None:
            _setns(self._home)
            os.close(self._home)
            self._home = None

    # ------------------------------------------------------------------ stop
    def _namespace_pids(self) -> list[int]:
        """Every process in the namespace but its holder and this one: all started here."""
        try:
            ns = os.readlink(f"/proc/{self.holder.pid}/ns/net")
        except OSError:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in (self.holder.pid, os.getpid()):
                try:
                    if os.readlink(f"/proc/{entry}/ns/net") == ns:
                        out.append(int(entry))
                except OSError:
                    pass
        return out

    @staticmethod
    def _end(procs: list[subprocess.Popen], seconds: float) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + seconds
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop(self) -> None:
        """Everything down, whatever state it is in: Ray, leftovers, the engines, the namespace, the folder."""
        try:
            self.leave()
        except Exception:
            pass
        self._end(list(reversed(self.rays)), 30)
        if self.holder is not None:
            pids = [p for p in self._namespace_pids() if p not in {d.pid for d in self.dockerds}]  # Ray's workers
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
                    time.sleep(0.2)
                pids = [p for p in pids if Path(f"/proc/{p}").exists()]
            self._end(self.dockerds, 30)
            for pid in self._namespace_pids():  # containerd-shims and the like
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.holder.kill()
            self.holder.wait()
        self.rays, self.dockerds = [], []
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------- scripted policies
def gold_calls(row: dict[str, Any], wait: float = 0) -> list[Any]:
    """The expert's fix as an episode: (a wait,) the gold patch applied with one bash command, submit."""
    from srl_agent.schema import ToolCall

    calls = [ToolCall("bash", {"command": f"sleep {wait:g}"})] if wait else []
    return calls + [ToolCall("bash", {"command": f"cd /testbed && git apply - <<'EOF_GOLD'\n{row['patch']}EOF_GOLD"}),
                    ToolCall("submit", {})]


def gold_driver(rows: list[dict[str, Any]], wait: float = 0) -> Any:
    """Replay's ``ScriptedDriver`` playing ``gold_calls`` for each row, in row order."""
    from srl_agent.replay import Script, ScriptedDriver

    return ScriptedDriver([Script(gold_calls(row, wait)) for row in rows])


def gold_generator(tokenizer: Any, rows: list[dict[str, Any]], stop_ids: set[int]) -> Any:
    """A token generator for ``run_rollouts`` that writes the gold patch's bash call, then submit."""
    from srl_agent.actions import render
    from srl_agent.schema import ToolCall

    fixes = {r["problem_statement"].strip()[:60]: render(gold_calls(r)[0]) for r in rows}
    submit = render(ToolCall("submit", {}))

    def generate(batch: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        out = []
        for ids in batch:
            text = tokenizer.decode(ids)
            action = submit if "<function=bash>" in text else next(v for k, v in fixes.items() if k in text)
            out.append(tokenizer(f"<think>Next.</think>\n{action}", add_special_tokens=False)["input_ids"]
                       + sorted(stop_ids)[:1])
        return out

    return generate
