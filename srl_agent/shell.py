"""The shell session protocol under ``Sandbox``: one persistent bash per container, fed on stdin.

Why a command costs well under a millisecond instead of a ``docker exec``:

- One long-lived ``bash`` per sandbox, started with a single ``docker exec`` whose stdin stays attached.
  With ``tty=False`` Docker frames the output (8-byte header: stream id, three zero bytes, big-endian
  payload length); ``_Channel`` demultiplexes it. ``exec 2>&1`` merges stderr into stdout in order.
- Each command is sent as one line ``eval $'<command>' </dev/null; <end marker>`` (ANSI-C quoting:
  any text, quotes, heredocs and newlines survive, and the shell needs no fork to decode it); the end
  marker prints a newline, a random nonce, the exit code and ``$PWD``. ``eval`` runs in the shell
  itself, so ``cd``, ``export`` and functions persist; stdin is ``/dev/null`` so a command never eats
  the protocol. The nonce is new for every command and lives only in the line we send, never in a
  variable, and bash has read (and parsed) the whole line before the command runs, so the command
  cannot learn the nonce it would need to forge its own marker: not from ``set``/``env``, not from the
  pipe. What a command can learn (``set -v`` echoes each line as bash reads it) is spent: the next
  command has another nonce, so a forged marker line is just output.
- A second idle bash, the *control shell*, kills processes with builtins only (``kill``, ``read``,
  globbing ``/proc``), so it still works when a fork bomb has used up every pid. On a timeout it
  kills every process but PID 1, itself and the session shell; the shell then prints its marker. If
  it does not (a builtin loop such as ``while true; do :; done`` keeps it busy), the shell is killed
  too and a new session starts in the last known cwd (environment variables set in the old session
  are lost then).
- PID 1 is a bash loop around ``sleep``: it reaps orphans (no zombies filling the pids limit) and,
  being PID 1, survives ``kill -9 -1`` from inside.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

TRUNCATION_MARKER = "\n<output clipped: {omitted} of {total} bytes omitted from the middle>\n"

# Every process except PID 1, this control shell and the spared pid ($1) gets SIGKILL, in passes until a
# pass finds nothing left (a fork bomb keeps forking between passes). Builtins only: no fork needed.
REAPER = r"""
__srl_reap() {
  local pass pid st n
  for pass in {1..200}; do
    n=0
    for pid in /proc/[0-9]*; do
      pid=${pid#/proc/}
      case " 1 $$ $1 " in *" $pid "*) continue ;; esac
      read -r st 2>/dev/null < "/proc/$pid/stat" || continue
      st=${st##*) }
      [[ $st == Z* ]] && continue
      kill -9 "$pid" 2>/dev/null && n=$((n + 1))
    done
    ((n)) || break
  done
  __srl_passes=$pass
}
__srl_zombies() {
  local pid st n=0
  for pid in /proc/[0-9]*; do
    read -r st 2>/dev/null < "$pid/stat" || continue
    st=${st##*) }
    [[ $st == Z* ]] && n=$((n + 1))
  done
  __srl_z=$n
}
"""


class ShellExited(Exception):
    """The shell's stream ended (``exit``, ``set -e``, killed)."""


class Clip:
    """The first and last ``limit // 2`` bytes of a stream of unknown length; memory stays bounded."""

    def __init__(self, limit: int | None):
        self.head_max = limit // 2 if limit is not None else None
        self.tail_max = limit - limit // 2 if limit is not None else 0
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if self.head_max is None:
            self.head += data
            return
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > 2 * self.tail_max + (1 << 16):  # trim rarely, so adding stays amortised O(n)
            del self.tail[: -self.tail_max or len(self.tail)]

    def result(self) -> tuple[str, bool]:
        tail = self.tail[-self.tail_max :] if self.tail_max else b""
        omitted = self.total - len(self.head) - len(tail)
        if omitted <= 0:
            return (self.head + self.tail).decode("utf-8", "replace"), False
        marker = TRUNCATION_MARKER.format(omitted=omitted, total=self.total)
        return self.head.decode("utf-8", "replace") + marker + tail.decode("utf-8", "replace"), True


class _Channel:
    """A ``docker exec`` with stdin attached, its output demultiplexed from Docker's frames."""

    def __init__(self, api: Any, container_id: str, argv: list[str], env: dict[str, str] | None = None):
        self.api = api
        self.exec_id = api.exec_create(container_id, argv, stdin=True, stdout=True, stderr=True, tty=False,
                                       environment=env)["Id"]
        # The SDK wraps the hijacked socket in a SocketIO that holds the HTTP response; keep it: when the
        # response is collected (at any later garbage collection) urllib3 closes its connection, which
        # is this very socket.
        self._raw = api.exec_start(self.exec_id, socket=True)
        self.sock = getattr(self._raw, "_sock", self._raw)
        self._buf = bytearray()

    def send(self, data: bytes) -> None:
        try:
            self.sock.settimeout(60)
            self.sock.sendall(data)
        except OSError as e:
            raise ShellExited from e

    def recv(self, deadline: float) -> bytes:
        """Payload received before ``deadline`` (b"" when none came); raises ShellExited at end of stream."""
        while True:
            out, pos, buf = bytearray(), 0, self._buf
            while len(buf) - pos >= 8:
                size = int.from_bytes(buf[pos + 4 : pos + 8], "big")
                if len(buf) - pos - 8 < size:
                    break
                out += buf[pos + 8 : pos + 8 + size]
                pos += 8 + size
            del buf[:pos]
            if out:
                return bytes(out)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b""
            try:
                self.sock.settimeout(remaining)
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                return b""
            except OSError as e:
                raise ShellExited from e
            if not data:
                raise ShellExited
            buf += data

    def exit_code(self) -> int:
        for _ in range(50):  # the process is gone once the stream ended; Docker may lag a little
            info = self.api.exec_inspect(self.exec_id)
            if not info["Running"] and info["ExitCode"] is not None:
                return info["ExitCode"]
            time.sleep(0.02)
        return -1

    def close(self) -> None:
        for part in (self.sock, self._raw):
            try:
                part.close()
            except OSError:
                pass


_ANSI_C = {i: f"\\x{i:02x}" for i in range(32)} | {0x7F: "\\x7f", ord("\\"): "\\\\", ord("'"): "\\'"}


def _ansi_c(text: str) -> str:
    """``$'...'`` quoting: one line, any text; bash decodes it itself."""
    if "\0" in text:
        raise ValueError("a shell command cannot contain NUL characters")
    return "$'" + text.translate(_ANSI_C) + "'"


class Shell:
    """A long-lived bash fed on stdin; every command ends with a marker line carrying exit code and cwd."""

    def __init__(self, api: Any, container_id: str, cwd: str, env: dict[str, str] | None = None, setup: str = ""):
        self._tag = b""
        self._pending = bytearray()
        self.channel = _Channel(api, container_id, ["bash", "--noprofile", "--norc"], env)
        clip = Clip(1 << 16)
        try:
            self.send(f"exec 2>&1; cd -- {_ansi_c(cwd)} 2>/dev/null\n{setup}\n" + self.end_line("$$"))
            end = self.read_end(time.monotonic() + 60, clip)
        except ShellExited:
            end = None
        if end is None:
            raise RuntimeError(f"no bash session could be started in the container: {clip.result()[0][-500:]}")
        self.pid, self.cwd = end

    def end_line(self, number: str) -> str:
        """The marker command (with a fresh nonce, which ``read_end`` then waits for), ending a line."""
        nonce = uuid.uuid4().hex
        self._tag = f"\n{nonce}:".encode()
        # stderr to /dev/null: under `set -x` the trace of this printf would otherwise show up.
        return f"{{ printf '\\n%s:%d:%s\\n' {nonce} \"{number}\" \"$PWD\"; }} 2>/dev/null\n"

    def command_line(self, command: str) -> str:
        # One line: bash reads it whole before the command runs, so the command never sees the marker's nonce.
        return f"eval {_ansi_c(command)} </dev/null; " + self.end_line("$?")

    def send(self, text: str) -> None:
        self.channel.send(text.encode("utf-8", "surrogateescape"))

    def read_end(self, deadline: float, clip: Clip) -> tuple[int, str] | None:
        """Feed output into ``clip`` up to the end marker: (number, cwd), or None at the deadline."""
        pending, tag = self._pending, self._tag
        keep = len(tag) + 4200  # a marker line can be this long (PATH_MAX cwd); never flush part of it
        start = 0
        while True:
            idx = pending.find(tag, start)
            if idx >= 0:
                nl = pending.find(b"\n", idx + len(tag))
                if nl >= 0:
                    clip.add(self._without_protocol(bytes(pending[:idx])))
                    number, _, cwd = pending[idx + len(tag) : nl].decode("utf-8", "replace").partition(":")
                    del pending[: nl + 1]
                    self.cwd = cwd
                    return int(number), cwd
            elif len(pending) > keep:
                clip.add(bytes(pending[:-keep]))
                del pending[:-keep]
            start = max(0, len(pending) - len(tag))
            try:
                data = self.channel.recv(deadline)
            except ShellExited:
                clip.add(bytes(pending))  # what the shell wrote before it went away
                pending.clear()
                raise
            if not data:
                return None
            pending += data

    def _without_protocol(self, output: bytes) -> bytes:
        """The output less lines that carry this command's nonce: bash's echo of the command line under
        ``set -v`` (the marker itself is cut off by the caller)."""
        nonce = self._tag[1:-1]
        if nonce not in output:
            return output
        return b"".join(line for line in output.splitlines(keepends=True) if nonce not in line)

    def close(self) -> None:
        self.channel.close()

