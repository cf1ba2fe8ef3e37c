"""What every ``srl-agent`` command shares: ``--json`` output, ``--instance`` lists, the task-image options
(``--pull``, ``--prune-images``, ``--eval-scripts-from``), and errors.

Bad input ends a command with one line on stderr (``error: …``) and exit code 2, never a traceback;
a failure while running (the harness, the engine) exits 1 the same way. ``SRL_AGENT_TRACEBACK=1``
lets the exception through, for debugging.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .image_supply import PULL_MODES

BAD_INPUT = (ValueError, KeyError, FileNotFoundError)
INSTANCE_HELP = "Only this task (instance id); repeat, or give a comma-separated list."

F = TypeVar("F", bound=Callable[..., Any])


def message(error: BaseException) -> str:
    """An exception as one line: KeyError without its quotes, a missing file by its name."""
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    elif isinstance(error, FileNotFoundError) and error.filename:
        text = f"no such file or folder: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def fail(text: str, code: int = 2) -> NoReturn:
    """End the command: ``error: text`` on stderr (one line), exit ``code`` (2: bad input, 1: it failed)."""
    typer.echo(f"error: {' '.join(str(text).split())}", err=True)
    raise typer.Exit(code)


def refuse(error: BaseException) -> NoReturn:
    """End the command for bad input the library refused (``fail`` with its message, exit 2)."""
    if os.environ.get("SRL_AGENT_TRACEBACK"):
        raise error
    fail(message(error))


def bad_input_exits(fn: F) -> F:
    """A command whose library calls raise ValueError / KeyError / FileNotFoundError for bad input:
    those end it through ``refuse``."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BAD_INPUT as e:
            refuse(e)

    return command  # type: ignore[return-value]


def check_choice(flag: str, value: str | None, known: Iterable[str]) -> None:
    """``fail`` unless ``value`` (None: not given) is one of ``known``."""
    if value is not None and value not in known:
        fail(f"{flag}: {value!r}; known: {', '.join(known)}")


def _pull_mode(value: str) -> str:
    check_choice("--pull", value, PULL_MODES)
    return value


# The task-image options of every command that runs tasks (eval, train rlvr, replay).
PULL = typer.Option("missing", "--pull", callback=_pull_mode,
                    help="Task images: missing (pull the ones this engine lacks) | never (a missing one is an "
                         "error) | always (pull each again). The bundled tasks' images are built, never pulled. "
                         "Offline: `docker load -i FILE` images saved with `docker save` elsewhere.")
PRUNE_IMAGES = typer.Option(False, "--prune-images", help="Remove the images this run pulled when it is done with "
                            "them (never one that was here before).")
EVAL_SCRIPTS_FROM = typer.Option(None, "--eval-scripts-from", help="A swebench-5 dataset (hub id, e.g. "
                                 "SWE-bench/SWE-bench_Verified, or rows file) that gives older-format rows "
                                 "(princeton-nlp/SWE-bench*) their eval_script, image, log_parser and eval_type, "
                                 "by instance id.")
# Where the episodes run (eval, train rlvr, replay): srl_agent.engine.cluster.
RAY = typer.Option(None, "--ray", help="Run the episodes (and the harness) on a Ray cluster: its address (HOST:6379, "
                   "ray://HOST:10001) or 'auto'. Every node started with --resources '{\"docker\": N}' runs up to N "
                   "sandboxes on its own Docker engine (its DOCKER_HOST). Without it everything runs on the local "
                   "engine.")


def instance_ids(values: Iterable[str] | None) -> list[str] | None:
    """``--instance a,b --instance c`` → ``[a, b, c]`` (first occurrence kept); None when none given."""
    ids = [i.strip() for v in values or () for i in v.split(",") if i.strip()]
    return list(dict.fromkeys(ids)) or None


def summary_table(title: str, summary: dict[str, Any]) -> Table:
    """A summary as a two-column table: key, value (floats to 4 significant digits)."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("value")
    for key, value in summary.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


def finite(value: Any) -> Any:
    """``value`` with every NaN / Infinity as None: JSON has neither (``json.dumps`` would write them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def emit(summary: dict[str, Any], as_json: bool, *tables: Table) -> None:
    """The ``--json`` convention: one JSON object on stdout, or the tables for people."""
    if as_json:
        typer.echo(json.dumps(finite(summary), default=str, allow_nan=False))
        return
    out = Console()
    for table in tables:
        out.print(table)
