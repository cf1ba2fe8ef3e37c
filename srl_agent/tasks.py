"""The bundled task pack: load and check it; the swebench-5 eval script of a task; read its dataset.

Source data (small, reviewed by hand)::

    environments/wheelhouse.txt                    wheels in every image (pinned, hash-checked)
    environments/<project>/project.yaml            the upstream sdist: name, repo, version, sdist, sha256
    environments/<project>/tasks/<task>/bug.patch  the injected bug (the gold patch is its reverse)
                                        test.patch a test that catches it, where upstream has none
                                        issue.md   the problem statement, as a user would write it
                                        task.yaml  FAIL_TO_PASS (checked against a real run)

Generated: ``environments/tasks.jsonl`` (committed). The repositories, the Docker images and the
dataset (``images.write_dataset``, which validates each task in its image) come from ``images.py``,
which builds on this module and never the other way round.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .jsonl import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
ENV_DIR = ROOT / "environments"
TESTBED = "/testbed"
TEST_CMD = "pytest -rA -p no:cacheprovider"
HEREDOC = "EOF_SRL_AGENT_TEST_PATCH"


class PackError(ValueError):
    """A task pack problem; the message names the file and field."""


@dataclass(frozen=True)
class Project:
    name: str
    repo: str  # owner/name on GitHub, as in SWE-bench rows
    version: str
    sdist: str  # file name on PyPI
    sha256: str
    import_path: str  # folder under /testbed that goes on sys.path ("" or e.g. "src")
    dir: Path


@dataclass(frozen=True)
class TaskSource:
    project: Project
    name: str
    dir: Path
    bug_patch: str
    test_patch: str
    problem_statement: str
    fail_to_pass: tuple[str, ...]
    kind: str

    @property
    def instance_id(self) -> str:
        owner, repo = self.project.repo.split("/")
        return f"{owner}__{repo}.{self.project.version}.{self.name}".lower()

    @property
    def test_files(self) -> list[str]:
        """The files the eval script runs and resets: those of the FAIL_TO_PASS ids and of test.patch."""
        files = {t.split("::")[0] for t in self.fail_to_pass}
        files |= set(re.findall(r"^\+\+\+ b/(\S+)", self.test_patch, re.M))
        return sorted(files)


# ----------------------------------------------------------------------------- loading


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PackError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise PackError(f"{path}: expected a mapping")
    return data


def _field(data: dict, key: str, path: Path, default: Any = ...) -> Any:
    if key not in data:
        if default is ...:
            raise PackError(f"{path}: missing field {key!r}")
        return default
    return data[key]


def load_project(project_dir: Path) -> Project:
    path = project_dir / "project.yaml"
    d = _yaml(path)
    sha = str(_field(d, "sha256", path))
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise PackError(f"{path}: field 'sha256' is not 64 hex digits")
    repo = str(_field(d, "repo", path))
    if repo.count("/") != 1:
        raise PackError(f"{path}: field 'repo' must be owner/name, got {repo!r}")
    return Project(
        name=str(_field(d, "name", path)),
        repo=repo,
        version=str(_field(d, "version", path)),
        sdist=str(_field(d, "sdist", path)),
        sha256=sha,
        import_path=str(_field(d, "import_path", path, "")),
        dir=project_dir,
    )


def load_pack(root: Path = ENV_DIR) -> list[TaskSource]:
    """Every task under ``root``, sorted by instance id."""
    tasks = []
    for project_yaml in sorted(Path(root).glob("*/project.yaml")):
        project = load_project(project_yaml.parent)
        for task_dir in sorted(p for p in (project.dir / "tasks").glob("*") if p.is_dir()):
            meta_path = task_dir / "task.yaml"
            meta = _yaml(meta_path)
            f2p = _field(meta, "FAIL_TO_PASS", meta_path)
            if not isinstance(f2p, list) or not f2p or not all(isinstance(t, str) for t in f2p):
                raise PackError(f"{meta_path}: field 'FAIL_TO_PASS' must be a non-empty list of test ids")
            for name in ("bug.patch", "issue.md"):
                if not (task_dir / name).is_file():
                    raise PackError(f"{task_dir}: missing {name}")
            test_patch = task_dir / "test.patch"
            task = TaskSource(
                project=project,
                name=task_dir.name,
                dir=task_dir,
                bug_patch=(task_dir / "bug.patch").read_text(encoding="utf-8"),
                test_patch=test_patch.read_text(encoding="utf-8") if test_patch.is_file() else "",
                problem_statement=(task_dir / "issue.md").read_text(encoding="utf-8").strip() + "\n",
                fail_to_pass=tuple(f2p),
                kind=str(meta.get("kind", "")),
            )
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", task.instance_id):
                raise PackError(f"{task_dir}: instance id {task.instance_id!r} is not a valid image name part")
            tasks.append(task)
    ids = [t.instance_id for t in tasks]
    if len(set(ids)) != len(ids):
        raise PackError(f"{root}: duplicate instance ids")
    return sorted(tasks, key=lambda t: t.instance_id)


def select(tasks: list[TaskSource], wanted: list[str] | None) -> list[TaskSource]:
    """Tasks named by instance id, ``project/task`` or bare task name; all of them for None/[]."""
    if not wanted:
        return list(tasks)
    by_name: dict[str, list[TaskSource]] = {}
    for t in tasks:
        for key in (t.instance_id, f"{t.project.name}/{t.name}", t.name):
            by_name.setdefault(key, []).append(t)
    out = []
    for w in wanted:
        hits = by_name.get(w, [])
        if len(hits) != 1:
            problem = "is ambiguous" if hits else "is not a task"
            raise PackError(f"{w!r} {problem}; known: {', '.join(t.instance_id for t in tasks)}")
        if hits[0] not in out:
            out.append(hits[0])
    return out


# ----------------------------------------------------------------------------- the dataset


def eval_script(task: TaskSource, commit: str) -> str:
    """swebench's shape: reset the test files, apply test_patch, markers around the test command."""
    files = " ".join(task.test_files)
    lines = ["#!/bin/bash", "set -uxo pipefail", f"cd {TESTBED}", f"git checkout {commit} -- {files}"]
    if task.test_patch:
        if HEREDOC in task.test_patch:
            raise PackError(f"{task.dir / 'test.patch'} contains the heredoc delimiter {HEREDOC}")
        lines += [f"git apply --verbose - <<'{HEREDOC}'", task.test_patch.rstrip("\n"), HEREDOC]
    lines += [
        ": '>>>>> Start Test Output'",
        f"{TEST_CMD} {files}",  # must directly precede the end marker (swebench records its $?)
        ": '>>>>> End Test Output'",
        f"git checkout {commit} -- {files}",
    ]
    return "\n".join(lines) + "\n"


def progress_bar(enabled: bool, console: Any = None):
    """A rich progress bar on stderr (or on ``console``: it then nests in that console's live display, a
    spinner say, instead of drawing over it); shows nothing when not ``enabled``."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console or Console(stderr=True), disable=not enabled)


def load_dataset(path: Path | str | None = None) -> list[dict[str, Any]]:
    """The rows of a dataset file written by ``images.write_dataset``."""
    path = Path(path) if path else ENV_DIR / "tasks.jsonl"
    return [row for _, row in read_jsonl(path)]

