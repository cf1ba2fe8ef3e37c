"""Task sandboxes: a warm pool per image, reset between episodes, a bound on how many are open.

Starting a container and its shell costs ~0.3 s and grading in a throwaway container (the official
harness) far more; ``Sandbox.reset`` returns a used container to the base commit in ~0.07 s. So an
episode takes an idle sandbox of its task's image when there is one (reset when it is handed out),
else a new one while fewer than ``max_sandboxes`` are open, else it replaces an idle sandbox of
another image, else it waits for one to come back. ``warm=False`` gives every episode a fresh
container and removes it afterwards (the baseline of ``scripts/bench.py episode``).

Hygiene: ``reset`` returns the work tree and the scratch dirs to their base state, nothing else. So
when an episode ends the pool asks the engine what changed in the container's file system (the
container-changes API, ``docker diff``); a container changed anywhere but the work tree and the
scratch dirs (a package installed, a plugin planted in site-packages, a file in $HOME) is removed,
not handed to the next episode (``stats.replaced``). Grading never runs in these containers at all.

The engine is ``docker.from_env()``'s: ``DOCKER_HOST`` (and ``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH``)
put the sandboxes on another machine than the trainer.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..sandbox import Sandbox, SandboxConfig


class PoolExhausted(RuntimeError):
    """Every sandbox is in use and none came back within the wait."""


@dataclass
class PoolStats:
    created: int = 0  # containers started
    reused: int = 0  # episodes served by a warm container
    removed: int = 0  # containers removed (fresh mode, broken, evicted, closed)
    start_seconds: float = 0.0  # starting containers
    reset_seconds: float = 0.0  # resetting warm ones
    replaced: int = 0  # containers removed because the episode changed them outside the work tree
    check_seconds: float = 0.0  # asking the engine what changed

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _key(image: str, base_commit: str | None) -> tuple[str, str | None]:
    """Sandboxes are interchangeable when they have the same image and base commit."""
    return image, base_commit or None


class SandboxPool:
    """``acquire(row) -> Sandbox`` at its base state; ``release(sandbox)`` when the episode is graded."""

    def __init__(self, max_sandboxes: int = 4, *, warm: bool = True, client: Any = None, timeout: float = 60.0,
                 labels: dict[str, str] | None = None, wait_seconds: float | None = 600.0,
                 sandbox: dict[str, Any] | None = None):
        if max_sandboxes < 1:
            raise ValueError(f"max_sandboxes must be at least 1, got {max_sandboxes}")
        import docker

        self.max_sandboxes, self.warm, self.timeout = max_sandboxes, warm, timeout
        self.labels, self.wait_seconds = dict(labels or {}), wait_seconds
        self.sandbox_options = dict(sandbox or {})  # SandboxConfig fields for every sandbox (disk budget, memory, …)
        self._own_client = client is None
        if client is None:
            where = os.environ.get("DOCKER_HOST") or "the local socket (DOCKER_HOST is not set)"
            try:
                client = docker.from_env()
            except docker.errors.DockerException as e:
                raise RuntimeError(f"no Docker engine answers at {where}: {e}") from None
        self.client = client
        self.stats = PoolStats()
        self._idle: dict[tuple, list[Sandbox]] = defaultdict(list)  # oldest first
        self._out: set[Sandbox] = set()  # handed out, not back yet: close() removes these too
        self._open = 0
        self._cond = threading.Condition()
        self._closed = False

    def acquire(self, row: dict[str, Any]) -> Sandbox:
        key, evict, reuse = _key(row["image"], row.get("base_commit")), None, None
        deadline = None if self.wait_seconds is None else time.monotonic() + self.wait_seconds
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the sandbox pool is closed")
                if self._idle[key]:
                    reuse = self._idle[key].pop()
                    break
                if self._open < self.max_sandboxes:
                    self._open += 1
                    break
                other = next((k for k, v in self._idle.items() if v), None)
                if other is not None:  # the slot of an idle sandbox of another image
                    evict = self._idle[other].pop(0)
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise PoolExhausted(f"all {self.max_sandboxes} sandboxes stayed in use for {self.wait_seconds:g} s")
                self._cond.wait(left)
        if evict is not None:
            self._remove(evict)
        if reuse is not None:
            start = time.perf_counter()
            try:
                reuse.reset()
                self.stats.reused += 1
                self.stats.reset_seconds += time.perf_counter() - start
                return self._lend(reuse)
            except Exception:  # a broken container: replace it in the same slot
                self._remove(reuse)
        return self._start(row)

    def _start(self, row: dict[str, Any]) -> Sandbox:
        start = time.perf_counter()
        config = SandboxConfig.for_task(row, **{"timeout": self.timeout, "labels": self.labels,
                                                 **self.sandbox_options})
        sandbox = Sandbox(config, client=self.client)
        try:
            sandbox.start()
        except BaseException:
            sandbox.close()
            self._free_slot()
            raise
        self.stats.created += 1
        self.stats.start_seconds += time.perf_counter() - start
        return self._lend(sandbox)

    def _lend(self, sandbox: Sandbox) -> Sandbox:
        with self._cond:
            if not self._closed:
                self._out.add(sandbox)
                return sandbox
        self._remove(sandbox)  # the pool closed while it was being made ready
        raise RuntimeError("the sandbox pool is closed")

    def release(self, sandbox: Sandbox, *, broken: bool = False) -> list[str]:
        """Give a sandbox back: kept warm for the next episode of its image, or removed (fresh mode,
        ``broken``, a closed pool, or changed outside the work tree). Returns the paths that were changed
        outside the work tree and the scratch dirs (first few), which made it go."""
        with self._cond:
            if sandbox not in self._out:  # close() already removed it and freed its slot
                sandbox.close()
                return []
            self._out.discard(sandbox)
        changed: list[str] = []
        if self.warm and not broken and not self._closed:
            start = time.perf_counter()
            try:
                changed = sandbox.changes_outside()
            except Exception:  # the engine cannot say: do not trust the container
                broken = True
            self.stats.check_seconds += time.perf_counter() - start
            if changed:
                self.stats.replaced += 1
        if not self.warm or broken or changed or self._closed:
            self._remove(sandbox)
            self._free_slot()
            return changed[:20]
        with self._cond:
            self._idle[_key(sandbox.config.image, sandbox.config.base_commit)].append(sandbox)
            self._cond.notify()
        return []

    def _remove(self, sandbox: Sandbox) -> None:
        sandbox.close()
        self.stats.removed += 1

    def _free_slot(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    @property
    def open(self) -> int:
        return self._open

    def close(self) -> None:
        """Remove every sandbox, idle or still out (an episode still using one sees it fail)."""
        with self._cond:
            self._closed = True
            doomed = [s for v in self._idle.values() for s in v] + list(self._out)
            self._idle.clear()
            self._out.clear()
            self._open -= len(doomed)
            self._cond.notify_all()
        for sandbox in doomed:
            self._remove(sandbox)
        if self._own_client:
            self.client.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
