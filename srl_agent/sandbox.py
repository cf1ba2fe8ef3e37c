"""A hardened Docker container with the task's repository at ``/testbed``, driven through one persistent shell.

How a command runs (one long-lived bash fed on stdin, end-marker lines, a control shell that kills on
timeouts, PID 1 as the reaper) is explained in ``shell.py``.
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import os
import posixpath
import re
import shlex
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any

import docker

from .shell import REAPER, Clip, Shell, ShellExited
from .shell import TRUNCATION_MARKER as TRUNCATION_MARKER  # public here too: clipped CommandResult.output carries it

LABEL = "srl-agent"
LABELS_ENV = "SRL_AGENT_LABELS"  # "key=value,key=value": extra labels on every container we start


def container_labels(extra: dict[str, str] | None = None) -> dict[str, str]:
    """``srl-agent=1``, the labels named in ``$SRL_AGENT_LABELS`` and ``extra``.

    The environment variable reaches subprocesses too, so a test session (or a training job on a shared
    engine) can tag and later find every container that it, or a CLI it ran, started.
    """
    env = {}
    for item in filter(None, (x.strip() for x in os.environ.get(LABELS_ENV, "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"${LABELS_ENV}: {item!r} is not key=value")
        env[key] = value
    return {LABEL: "1", **env, **(extra or {})}
TIMEOUT_EXIT_CODE = 124  # as coreutils' timeout(1); CommandResult.timed_out is the authoritative flag
GRACE_SECONDS = 1.0  # after its children are killed, how long a timed-out shell gets to print its marker
_KEEPALIVE = "while :; do sleep 86400; done"  # PID 1: reaps orphans, survives ``kill -9 -1``
_GO_MODE_DIR, _GO_MODE_SYMLINK = 1 << 31, 1 << 27  # Go's os.FileMode bits in Docker's path stat


@dataclass
class SandboxConfig:
    image: str = "srl-agent/base:latest"
    """Task image; anything with the repository at ``workdir`` and ``bash`` on the PATH."""
    workdir: str = "/testbed"
    """The repository (git work tree top level); the session starts here and ``reset`` returns here."""
    base_commit: str | None = None
    """What ``diff`` compares against and ``reset`` returns to; None = HEAD when the sandbox starts."""
    timeout: float = 60.0
    """Default seconds per command (SWE-agent uses 30); a command past it is killed."""
    output_limit: int | None = 100_000
    """Bytes of output kept per command (head and tail halves, marker between); None = unlimited."""
    memory: str = "4g"
    """Memory limit (swap included, so nothing swaps); a process past it is OOM-killed."""
    cpus: float = 2.0
    """CPU quota in cores."""
    pids_limit: int = 1024
    """Most processes and threads at once: what contains a fork bomb."""
    network_disabled: bool = True
    """No network interface but loopback (``network_mode="none"``)."""
    cap_add: tuple[str, ...] = ("CHOWN", "DAC_OVERRIDE", "FOWNER")
    """Capabilities kept after dropping ALL: what lets root handle files it does not own or that are
    read-only (tar/pip/git/editing as a root user expects). Everything else (SETUID, SETGID, KILL,
    NET_RAW, MKNOD, SYS_CHROOT, ...) stays dropped; git, pip, venv and edits of root's own files
    need none at all."""
    env: dict[str, str] = field(
        default_factory=lambda: {"PAGER": "cat", "GIT_PAGER": "cat", "MANPAGER": "cat", "PIP_PROGRESS_BAR": "off",
                                 "TQDM_DISABLE": "1", "LESS": "-R"}
    )
    """Environment of the shell session (pagers off, as SWE-agent sets them), on top of the image's."""
    labels: dict[str, str] = field(default_factory=dict)
    """Extra container labels; ``srl-agent=1`` is always set."""
    fresh_container: bool = False
    """``reset`` replaces the container instead of resetting git state inside the warm one."""
    disk: str | None = "4g"
    """Budget for what the container writes to its own file system (Docker's size of its changes: the
    work tree, /tmp, everything); past it the running command is killed and ``DiskBudgetExceeded``
    raised. Where the storage driver has per-container quotas (overlay2 on xfs with pquota) it is also
    the quota. (/tmp is not a tmpfs: the engine's archive API, which the editor reads and writes
    through, does not see into tmpfs mounts.)"""
    patch_limit: int = 32 << 20
    """Bytes of ``diff()`` output at most; a larger patch raises ``PatchTooLarge``."""
    scratch: tuple[str, ...] = ("/tmp", "/var/tmp")
    """Directories an episode may write besides the work dir: ``reset`` empties them, and changes there do
    not count in ``changes_outside``."""

    @classmethod
    def for_task(cls, row: Any, **overrides: Any) -> SandboxConfig:
        """The sandbox of a task row (a swebench-5 row or ``schema.Task``): its image at its base commit."""
        get = row.get if isinstance(row, dict) else lambda key, default=None: getattr(row, key, default)
        if not get("image"):
            raise ValueError(f"task {get('instance_id', '?')}: no image to run it in")
        return cls(image=get("image"), base_commit=get("base_commit") or None, **overrides)


class DiskBudgetExceeded(RuntimeError):
    """The sandbox wrote more than its disk budget."""


class PatchTooLarge(RuntimeError):
    """The work tree's diff is larger than ``patch_limit``."""


DISK_POLL_SECONDS = 1.0  # how often a running command's disk use is checked (one cheap engine call)
DISK_CHECK_AFTER = 0.2  # a command that took longer is checked once more when it ends
_QUOTAS: dict[str, bool] = {}  # engine -> whether it accepts a per-container storage quota


@dataclass
class CommandResult:
    output: str  # stdout and stderr merged, clipped to the output limit
    exit_code: int  # TIMEOUT_EXIT_CODE when timed_out
    timed_out: bool = False
    truncated: bool = False



# Containers this process started and has not removed (sandboxes, grading containers): removed at exit,
# or on SIGTERM / SIGHUP (srl_agent.signals), as a last resort.
_LIVE: dict[str, Any] = {}


def track(container: Any) -> None:
    _LIVE[container.id] = container


def untrack(container: Any) -> None:
    _LIVE.pop(container.id, None)


@atexit.register
def remove_tracked() -> int:
    """Remove every container this process started and still has; how many."""
    removed = 0
    for container in list(_LIVE.values()):
        try:
            container.remove(force=True)
            removed += 1
        except Exception:
            pass
    _LIVE.clear()
    return removed


class Sandbox:
    """A task container with a persistent shell. Use as a context manager (or call ``close``)."""

    def __init__(self, config: SandboxConfig | None = None, client: Any = None):
        self.config = config or SandboxConfig()
        self.client = client or docker.from_env()  # DOCKER_HOST selects the engine
        self.api = self.client.api
        self.container: Any = None
        self.base_commit: str | None = self.config.base_commit
        self._keep: list[str] = []  # untracked paths present at start; reset keeps them
        self.episodes = 0  # episodes this container has served (a pool hands it out again)
        self._session: Shell | None = None
        self._control: Shell | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Sandbox:
        if self.container is not None:
            return self
        c = self.config
        options = dict(
            entrypoint=["bash", "-c", _KEEPALIVE], command=[], labels=container_labels(c.labels),
            network_mode="none" if c.network_disabled else None, network_disabled=c.network_disabled,
            cap_drop=["ALL"], cap_add=list(c.cap_add) or None, security_opt=["no-new-privileges"],
            pids_limit=c.pids_limit, mem_limit=c.memory, memswap_limit=c.memory, nano_cpus=int(c.cpus * 1e9),
        )
        engine = str(self.api.base_url)
        if c.disk and _QUOTAS.get(engine, True):
            try:
                self.container = self.client.containers.create(c.image, storage_opt={"size": c.disk}, **options)
                _QUOTAS[engine] = True
            except docker.errors.APIError as e:
                if "storage-opt" not in str(e) and "storage opt" not in str(e).lower():
                    raise
                _QUOTAS[engine] = False  # this driver has no quotas: the budget is watched instead
        if self.container is None:
            self.container = self.client.containers.create(c.image, **options)
        track(self.container)  # registered before start: a failed start still gets removed
        self.container.start()
        self._control = self._start_control()
        self._session = Shell(self.api, self.container.id, c.workdir, c.env)
        self._snapshot_base()
        return self

    def close(self) -> None:
        """Remove the container (idempotent)."""
        for shell in (self._session, self._control):
            if shell is not None:
                shell.close()
        self._session = self._control = None
        if self.container is not None:
            untrack(self.container)
            try:
                self.container.remove(force=True)
            except docker.errors.NotFound:
                pass
            self.container = None

    def __enter__(self) -> Sandbox:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cwd(self) -> str:
        """The session's working directory after the last command."""
        return self._require_session().cwd

    # ------------------------------------------------------------------ commands
    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run ``command`` in the persistent session; stdout and stderr merged, clipped to the output limit."""
        session = self._require_session()
        timeout = self.config.timeout if timeout is None else timeout
        clip = Clip(self.config.output_limit)
        try:
            session.send(session.command_line(command))
        except ShellExited:  # the session was gone before the command reached it: a new one runs it
            self._restart_session(kill=False)
            session = self._require_session()
            session.send(session.command_line(command))
        started = time.monotonic()
        try:
            end = self._read_watching_disk(session, started + timeout, clip)
            if end is None:
                self._reap(spare=session.pid)
                if session.read_end(time.monotonic() + GRACE_SECONDS, clip) is None or not self._drain(session):
                    self._restart_session(kill=True)
                output, truncated = clip.result()
                return CommandResult(output, TIMEOUT_EXIT_CODE, True, truncated)
        except ShellExited:
            code = session.channel.exit_code()
            self._restart_session(kill=False)
            output, truncated = clip.result()
            return CommandResult(output, code, False, truncated)
        if time.monotonic() - started > DISK_CHECK_AFTER:
            self.check_disk()
        output, truncated = clip.result()
        return CommandResult(output, end[0], False, truncated)

    def _read_watching_disk(self, session: Shell, deadline: float, clip: Clip) -> tuple[int, str] | None:
        """``read_end`` up to ``deadline``, checking the disk budget every ``DISK_POLL_SECONDS``."""
        while True:
            step = deadline if not self.config.disk else min(deadline, time.monotonic() + DISK_POLL_SECONDS)
            end = session.read_end(step, clip)
            if end is not None or time.monotonic() >= deadline:
                return end
            self.check_disk()

    def disk_used(self) -> int:
        """Bytes the container has written to its own file system (Docker's ``SizeRw``; tmpfs not counted)."""
        url = self.api._url("/containers/{0}/json", self._require_container().id)  # the SDK has no size flag
        return int(self.api._result(self.api._get(url, params={"size": 1}), True).get("SizeRw") or 0)

    def check_disk(self) -> None:
        """Raise ``DiskBudgetExceeded`` (every process killed first) when past the disk budget."""
        if not self.config.disk:
            return
        used, budget = self.disk_used(), docker.utils.parse_bytes(self.config.disk)
        if used > budget:
            self._reap(spare=None)
            raise DiskBudgetExceeded(f"the sandbox wrote {used / 2**20:.0f} MiB, past its {self.config.disk} disk budget")

    @staticmethod
    def _drain(session: Shell) -> bool:
        """After a killed command: a no-op with its own marker, so whatever the killed processes still had
        in flight is discarded here instead of opening the next command's output. False: the shell did
        not answer (it is replaced)."""
        try:
            session.send(session.end_line("0"))
            return session.read_end(time.monotonic() + GRACE_SECONDS, Clip(0)) is not None
        except ShellExited:
            return False

    def _restart_session(self, kill: bool) -> None:
        old = self._require_session()
        if kill:
            self._reap(spare=None)
        old.close()
        self._session = Shell(self.api, self.container.id, old.cwd, self.config.env)

    def _start_control(self) -> Shell:
        return Shell(self.api, self.container.id, "/", setup=REAPER)

    def _reap(self, spare: int | None) -> None:
        """Kill every process in the container except PID 1, the control shell and ``spare``."""
        for _ in range(2):
            control = self._control
            assert control is not None
            try:
                control.send(f"__srl_reap {spare or ''}\n" + control.end_line("$__srl_passes"))
                if control.read_end(time.monotonic() + 30, Clip(1 << 12)) is not None:
                    self._await_zombies(control)
                    return
            except ShellExited:  # the control shell was killed (say by ``kill -9 -1`` in the session)
                pass
            control.close()
            self._control = self._start_control()
        raise RuntimeError("the sandbox's control shell does not answer")

    def _await_zombies(self, control: Shell, seconds: float = 3.0) -> None:
        """Wait (a little) until PID 1 has reaped the killed processes: a zombie still holds its slot in the
        pids limit, so after a fork bomb the next command could not fork yet."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            control.send("__srl_zombies\n" + control.end_line("$__srl_z"))
            end = control.read_end(time.monotonic() + 5, Clip(1 << 12))
            if end is None or end[0] == 0:
                return
            time.sleep(0.05)

    def _exec(self, argv: list[str]) -> tuple[int, str, str]:
        """A one-off ``docker exec`` in the work dir, independent of whatever the session's state is."""
        code, (out, err) = self.container.exec_run(argv, workdir=self.config.workdir, demux=True)
        return code, (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace")

    # ------------------------------------------------------------------ files
    def path_kind(self, path: str) -> str | None:
        """"file", "dir" or None (missing), following symlinks; asks the engine, runs nothing inside."""
        stat = self._stat(path)
        if stat is None:
            return None
        return "dir" if stat["mode"] & _GO_MODE_DIR else "file"

    def _stat(self, path: str) -> dict[str, Any] | None:
        # HEAD /containers/{id}/archive: the engine's stat, no process in the container. The SDK has no
        # public call for it; `_url` is the SDK's own URL builder.
        for _ in range(2):  # a symlink's linkTarget is already fully resolved, so one more hop at most
            res = self.api.head(self.api._url("/containers/{0}/archive", self._require_container().id),
                                params={"path": path})
            if res.status_code == 404:
                return None
            res.raise_for_status()
            stat = json.loads(base64.b64decode(res.headers["X-Docker-Container-Path-Stat"]))
            stat["path"] = path
            if not stat["mode"] & _GO_MODE_SYMLINK:
                return stat
            path = stat["linkTarget"]
        return None

    def read_bytes(self, path: str) -> bytes:
        """The file's bytes, through the archive API (any size, no process in the container)."""
        stat = self._stat(path)
        if stat is None:
            raise FileNotFoundError(path)
        if stat["mode"] & _GO_MODE_DIR:
            raise IsADirectoryError(path)
        stream, _ = self.api.get_archive(self._require_container().id, stat["path"])
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            data = tar.extractfile(member) if member is not None else None
            if data is None:
                raise OSError(f"{path} is not a regular file")
            return data.read()

    def read_file(self, path: str) -> str:
        """The file's text (UTF-8, undecodable bytes replaced); via the archive API, so any size."""
        return self.read_bytes(path).decode("utf-8", "replace")

    def write_file(self, path: str, text: str | bytes) -> None:
        """Write (create or replace) a file through the archive API, following symlinks and keeping the
        mode of an existing file (the owner becomes root). The parent directory must exist."""
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        stat = self._stat(path)
        if stat is not None and stat["mode"] & _GO_MODE_DIR:
            raise IsADirectoryError(path)
        target = stat["path"] if stat else path
        info = tarfile.TarInfo(posixpath.basename(target))
        info.size, info.mtime = len(data), int(time.time())
        info.mode = stat["mode"] & 0o7777 if stat else 0o644
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.addfile(info, io.BytesIO(data))
        parent = posixpath.dirname(target) or "/"
        try:
            self.api.put_archive(self._require_container().id, parent, buf.getvalue())
        except docker.errors.NotFound:
            raise FileNotFoundError(f"{parent} does not exist") from None

    # ------------------------------------------------------------------ repository state
    # safe.directory: the repository may belong to another uid than the root that runs git here.
    _GIT = ["git", "-c", "safe.directory=*"]
    _GIT_SH = "git -c safe.directory='*'"

    def _snapshot_base(self) -> None:
        """Record the base commit and the untracked/ignored paths the image already has (build outputs,
        egg-info, compiled extensions): ``reset`` must not delete what the environment needs."""
        try:
            code, out, _ = self._exec([*self._GIT, "rev-parse", "HEAD"])
            if self.base_commit is None and code == 0:
                self.base_commit = out.strip()
            code, out, _ = self._exec([*self._GIT, "ls-files", "-z", "--others", "--directory"])
            self._keep = [p for p in out.split("\0") if p] if code == 0 else []
        except docker.errors.APIError:  # no work dir in this image: commands work, diff and reset do not
            self._keep = []

    def diff(self) -> str:
        """The patch of the work tree against the base commit, new untracked files included (SWE-agent's
        submit: ``git add -A && git diff --cached <base>``). Stages everything, as that does."""
        base = self._require_base()
        git = self._GIT_SH
        # --no-renames: a renamed file is a deletion and an addition, so each path's section stands alone.
        script = (f'set -o pipefail; {git} add -A && {git} diff --cached --no-color --no-ext-diff --no-textconv '
                  f'--no-renames "$1" | head -c "$2"')
        limit = self.config.patch_limit
        code, out, err = self._exec(["bash", "-c", script, "diff", base, str(limit + 1)])
        if len(out.encode("utf-8", "surrogateescape")) > limit:
            raise PatchTooLarge(f"the work tree's diff is over {limit} bytes")
        if code != 0:
            raise RuntimeError(f"git diff in {self.config.workdir} failed ({code}): {err.strip()}")
        return out

    def checkpoint(self) -> str:
        """The work tree's state as a git tree object (untracked files included, ignored ones not), written
        through a private index so the repository's own index, HEAD and work tree stay as they are."""
        git = self._GIT_SH
        script = (f'idx="$({git} rev-parse --absolute-git-dir)/srl-agent-checkpoint-index" && '
                  f'{{ cp "$({git} rev-parse --absolute-git-dir)/index" "$idx" 2>/dev/null || true; }} && '
                  f'GIT_INDEX_FILE="$idx" {git} add -A && GIT_INDEX_FILE="$idx" {git} write-tree')
        code, out, err = self._exec(["bash", "-c", script])
        if code != 0:
            raise RuntimeError(f"checkpoint of {self.config.workdir} failed ({code}): {err.strip()}")
        return out.strip()

    def tree_diff(self, before: str, after: str) -> str:
        """What changed from one checkpoint to another, as a zero-context patch (``-U0``: the hunks line up
        with the reward's own zero-context diffs of an edit)."""
        code, out, err = self._exec([*self._GIT, "diff", "--no-color", "--no-ext-diff", "--no-textconv",
                                     "--no-renames", "-U0", before, after])
        if code != 0:
            raise RuntimeError(f"git diff {before[:12]} {after[:12]} failed ({code}): {err.strip()}")
        return out

    def tree_file(self, tree: str, path: str) -> str | None:
        """A file's text in a checkpoint (``path`` relative to the work dir); None if it was not there."""
        code, out, _ = self._exec([*self._GIT, "cat-file", "blob", f"{tree}:{path}"])
        return out if code == 0 else None

    def fresh_session(self) -> None:
        """Kill every process and start a new shell in the work dir; files stay as they are: nothing
        running or defined in the old shell (functions, aliases, environment) reaches the next command."""
        self._reap(spare=None)
        self._require_session().close()
        self._session = Shell(self.api, self._require_container().id, self.config.workdir, self.config.env)

    def reset(self) -> None:
        """Back to the base state, fast, in the warm container: tracked files at the base commit (index
        and HEAD's branch too), every untracked or ignored path the image did not have removed, all
        processes killed, a fresh shell session in the work dir (environment and functions gone).

        It does NOT reset: anything outside the work dir (/tmp, $HOME, site-packages: pip installs
        stay); untracked or ignored paths the image already had (e.g. ``build/``, egg-info, compiled
        extensions), which are kept as they are, edits and new files inside such directories included;
        git branches, tags, stashes or config the agent added. With ``fresh_container`` the container
        is replaced instead, which resets everything."""
        if self.config.fresh_container:
            self.close()
            self.start()
            return
        base = self._require_base()
        self.fresh_session()
        # git clean's -e patterns still apply under -x; escape glob characters, anchor at the top.
        keep = " ".join("-e " + shlex.quote("/" + re.sub(r"([\[\]*?\\])", r"\\\1", p)) for p in self._keep)
        git = self._GIT_SH
        scratch = " ".join(shlex.quote(d) for d in self.config.scratch)
        empty = f" && find {scratch} -mindepth 1 -delete 2>/dev/null; true" if scratch else ""
        r = self.run(f"{git} reset -q --hard {shlex.quote(base)} && {git} clean -q -ffdx {keep}{empty}", timeout=600)
        if r.exit_code != 0:
            raise RuntimeError(f"reset of {self.config.workdir} failed ({r.exit_code}): {r.output.strip()}")

    def changes_outside(self) -> list[str]:
        """Paths the container's file system has changed (added, modified or deleted: the engine's
        container-changes API) outside the work dir and the scratch dirs. Directories on the way to an
        allowed path count as unchanged."""
        allowed = (self.config.workdir, *self.config.scratch)
        out = []
        for change in self._require_container().diff() or ():
            path = change["Path"]
            if any(path == d or path.startswith(d.rstrip("/") + "/") or d.startswith(path.rstrip("/") + "/")
                   for d in allowed):
                continue
            out.append(path)
        return out

    # ------------------------------------------------------------------ helpers
    def _require_container(self) -> Any:
        if self.container is None:
            raise RuntimeError("the sandbox is not started (use it as a context manager or call start())")
        return self.container

    def _require_session(self) -> Shell:
        self._require_container()
        assert self._session is not None
        return self._session

    def _require_base(self) -> str:
        self._require_container()
        if not self.base_commit:
            raise RuntimeError(f"{self.config.workdir} in {self.config.image} is not a git repository with a commit")
        return self.base_commit


def gc(client: Any = None, label: str = LABEL) -> int:
    """Remove every container carrying ``label`` (``key`` or ``key=value``); returns how many."""
    own = client is None
    client = client or docker.from_env()
    try:
        removed = 0
        for container in client.containers.list(all=True, filters={"label": label}):
            try:
                container.remove(force=True)
                removed += 1
            except docker.errors.NotFound:
                pass
        return removed
    finally:
        if own:
            client.close()
