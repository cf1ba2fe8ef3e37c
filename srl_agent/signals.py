"""SIGTERM and SIGHUP end a command the way Ctrl-C does: containers removed, files left valid, exit non-zero.

Python turns SIGINT into KeyboardInterrupt, which unwinds every ``finally`` (pools closed, sandboxes
removed, logs flushed). SIGTERM and SIGHUP would kill the process where it stands. The handler first
removes every container this process started (``sandbox.remove_tracked``: sandboxes and grading
containers), so threads blocked on them return at once, then raises ``SystemExit(128 + signal)``,
which unwinds like KeyboardInterrupt: a harness subprocess is killed by ``subprocess.run`` and its
``sweb.eval.*`` containers are removed by ``evaluation.harness.score``'s cleanup.
"""

from __future__ import annotations

import signal
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGHUP)
received: int | None = None  # the signal being handled: Ray's blocking calls turn our SystemExit into exit 1


def _handler(signum: int, frame: Any) -> None:
    from .sandbox import remove_tracked

    global received
    received = signum
    for sig in HANDLED:  # a second signal during the unwinding must not cut it short
        signal.signal(sig, signal.SIG_IGN)
    remove_tracked()
    raise SystemExit(128 + signum)


def install() -> None:
    """Handle SIGTERM and SIGHUP in this (main) thread's process."""
    for sig in HANDLED:
        signal.signal(sig, _handler)
