"""SWE-smith and SWE-Gym task instances as swebench-5 rows, so they can be replayed and scored.

SWE-smith (``SWE-bench/SWE-smith``; the ``swesmith`` package's repository profiles) lays a task out
differently from SWE-bench. One image per repository snapshot (the profile's ``image_name``,
``swebench/swesmith.x86_64.<owner>_1776_<repo>.<commit8>``) holds the clean repository at /testbed on
``main``; each instance is a branch named by its instance id with two commits on top: the bug (the
row's ``patch`` is this bug-*introducing* diff) and the removal of the FAIL_TO_PASS test files, so an
agent starting at the branch tip cannot read the tests that judge it. SWE-smith's harness
(``swesmith.harness.utils.run_patch_in_container``) checks out the branch, goes back to ``HEAD~1``
(the tests return), applies the patch, checks the F2P/P2P test files out again (undoing edits to
them) and runs the profile's ``get_test_cmd`` between ``: '>>>>> Start Test Output'`` markers; the
profile's ``log_parser`` reads the log.

A swebench-5 harness (ours and the official one) applies the patch to whatever the image has at
/testbed, then runs the eval script, and the agent's sandbox starts there too. So a SWE-smith row
here runs in a per-instance image, ``FROM`` the profile's image with the instance's branch checked
out (``build_instance_image``; a layer of a few files), and its eval script checks the test files
out of ``<instance id>~1`` before running the test command. That reaches the state SWE-smith grades
(bug commit + patch, test files as the bug commit has them) from the branch tip instead of from
``HEAD~1``. ``patch`` becomes the gold fix (the bug reversed, as SWE-smith's harness applies it with
``git apply --reverse``); the bug diff stays in ``bug_patch``. ``base_commit`` is left empty, so the
sandbox takes the image's HEAD (the branch tip) as its base, a fixed commit that an agent's own
commits cannot move.

Logs: 128 of swesmith 0.0.9's 133 Python profiles read pytest's ``--verbose`` lines with
``PythonProfile.log_parser``; swebench 5 has no parser for those lines, so the test command gets
``-rA`` (pytest's summary of every test, the same node ids) and ``parse_log_pytest`` reads it, as
for SWE-bench's own pytest repositories. The other profiles (5 Python ones with a parser of their
own; the 540 Go, Rust, Java, JavaScript/TypeScript, C/C++, C#, PHP ones, whose parsers match no
swebench parser or whose test-file lookup clones the mirror from GitHub) get no eval script:
``swesmith_row`` refuses them, ``load_rows`` keeps them for agent runs only and says why in
``swesmith_unscorable``.

The profiles come from the ``swesmith`` package (an optional extra: a 275 kB wheel, no dependencies
of its own; importing its profiles needs docker, python-dotenv, ghapi and unidiff, which swebench 5
already brings). Version 0.0.9 was written against swebench 4: its profile modules import three
constants and a module that swebench 5 dropped, used only by its own image builds and harness;
``swesmith_registry`` supplies swebench 4's values for the duration of the import.

SWE-Gym (``SWE-Gym/SWE-Gym``) rows are SWE-bench rows of other repositories whose images are
published as ``xingyaoww/sweb.eval.x86_64.<id>`` with ``__`` spelt ``_s_``; their eval logs are
pytest ``-rA`` output. Their eval scripts came from SWE-Gym's fork of the older harness, which
neither swebench 5 nor this module has, so ``swegym_row`` leaves ``eval_script`` to the row (or to
``load_rows(eval_scripts_from=...)``).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import re
import shlex
import sys
import types
from typing import Any

from ..schema import _test_list
from .data import DatasetError, convert_legacy_row, repo_log_parser

INSTALL_HINT = "pip install 'srl-agent[swesmith]' (the swesmith package, no further dependencies)"
IMAGE_NAMESPACE = "srl-agent"  # where the per-instance images built here are tagged
SWEGYM_NAMESPACE = "xingyaoww"
TESTBED = "/testbed"
START, END = ">>>>> Start Test Output", ">>>>> End Test Output"
_REPO_PART = re.compile(r"^[^\s/]+__[^\s/]+\.[0-9a-f]{8}$")  # <owner>__<repo>.<commit8>, the profile's repo_name
# swebench 4's values of what swesmith 0.0.9's profile modules import from swebench.harness.constants
_SWEBENCH4_CONSTANTS = {"DOCKER_USER": "root", "DOCKER_WORKDIR": TESTBED, "KEY_INSTANCE_ID": "instance_id"}

_registry: Any = None


class SwesmithMissing(DatasetError):
    """The swesmith package is not installed, or cannot be imported."""


def _unavailable(*_: Any, **__: Any) -> Any:
    raise NotImplementedError("swebench 5 has no swebench.harness.dockerfiles: swesmith cannot build images here")


def swesmith_registry() -> Any:
    """swesmith's profile registry (``swesmith.profiles.registry``), imported once."""
    global _registry
    if _registry is not None:
        return _registry
    if importlib.util.find_spec("swesmith") is None:
        raise SwesmithMissing(f"SWE-smith rows need the swesmith package's repository profiles: {INSTALL_HINT}")
    import swebench.harness.constants as constants

    added = [k for k in _SWEBENCH4_CONSTANTS if not hasattr(constants, k)]
    stub = None
    if importlib.util.find_spec("swebench.harness.dockerfiles") is None:
        stub = types.ModuleType("swebench.harness.dockerfiles")
        stub.get_dockerfile_env = _unavailable  # type: ignore[attr-defined]
        sys.modules[stub.__name__] = stub
    for key in added:
        setattr(constants, key, _SWEBENCH4_CONSTANTS[key])
    try:
        _registry = importlib.import_module("swesmith.profiles").registry
    except ImportError as e:  # a swesmith release needing more than the three names
        raise SwesmithMissing(f"the installed swesmith cannot be imported next to swebench 5 ({e}); "
                              f"swesmith 0.0.9 can: {INSTALL_HINT}") from None
    finally:
        # swesmith's modules keep their own references; nobody else should see swebench 4's names
        for key in added:
            delattr(constants, key)
        if stub is not None:
            sys.modules.pop(stub.__name__, None)
    return _registry


def _iid(row: dict[str, Any]) -> str:
    iid = row.get("instance_id")
    if not isinstance(iid, str) or not iid:
        raise DatasetError(f"row {iid or '?'}: field 'instance_id' missing")
    return iid


def is_swesmith_row(row: dict[str, Any]) -> bool:
    """A SWE-smith task instance: its ``repo`` is a mirror under ``swesmith/``, or it names a
    ``swesmith.`` image (conversion then checks the rest)."""
    return str(row.get("repo") or "").startswith("swesmith/") or "swesmith." in str(row.get("image_name") or "")


def swesmith_profile(instance: dict[str, Any]) -> Any:
    """The swesmith profile of ``instance`` (by its ``repo`` mirror, else its instance id's repository
    part, as ``registry.get_from_inst`` looks them up)."""
    iid = _iid(instance)
    registry = swesmith_registry()
    keys = [k for k in (instance.get("repo"), iid.rsplit(".", 1)[0]) if isinstance(k, str) and k]
    for key in keys:
        if key in registry:
            return registry.get(key)
    import swesmith

    raise DatasetError(f"row {iid}: field 'repo': swesmith {swesmith.__version__} has no repository profile for "
                       f"{' or '.join(repr(k) for k in dict.fromkeys(keys))}")


def instance_image(instance_id: str, namespace: str = IMAGE_NAMESPACE) -> str:
    """The per-instance image (``build_instance_image``), named as swebench names instance images."""
    from swebench.task.checks import expected_image

    return expected_image(instance_id, namespace)


def _log_parser(profile: Any) -> str:
    """The swebench parser that reads what the profile's parser reads (with ``-rA`` added), or raise."""
    from swesmith.profiles.python import PythonProfile

    if type(profile).log_parser is PythonProfile.log_parser:
        return "parse_log_pytest"
    raise ValueError(f"swesmith profile {type(profile).__name__} reads its logs with its own "
                     f"{type(profile).log_parser.__qualname__}, which no swebench parser reproduces")


def _test_command(profile: Any, instance: dict[str, Any]) -> tuple[str, list[str]]:
    """The profile's test command with pytest's ``-rA`` summary, and the F2P/P2P test files."""
    command, _ = profile.get_test_cmd(instance)
    base = profile.test_cmd
    if not command.startswith(base) or not re.search(r"\bpytest\b", re.split(r"[;&|]", base)[-1]):
        raise ValueError(f"swesmith profile {type(profile).__name__}'s test command {base!r} does not end in pytest")
    f2p_files, p2p_files = profile.get_test_files(instance)
    files = sorted({str(f) for f in [*f2p_files, *p2p_files]})
    return f"{base} -rA{command[len(base):]}", files


def swesmith_eval_script(instance_id: str, test_command: str, test_files: list[str]) -> str:
    """The eval script of a SWE-smith instance, run at its branch tip after the patch is applied."""
    lines = ["#!/bin/bash", "set -uxo pipefail", f"cd {TESTBED}"]
    if test_files:
        # The F2P files come back (the tip removed them) and edits of F2P/P2P files are undone, as
        # SWE-smith's harness does from HEAD~1; one line, so engine.integrity reads them as the task's.
        lines.append(f"git checkout {shlex.quote(instance_id + '~1')} -- {' '.join(map(shlex.quote, test_files))}")
    lines += [f": '{START}'", test_command, f": '{END}'"]
    return "\n".join(lines) + "\n"


def swesmith_row(instance: dict[str, Any], *, namespace: str = IMAGE_NAMESPACE, strict: bool = True) -> dict[str, Any]:
    """A SWE-smith task instance as a swebench-5 row (pure apart from reading swesmith's profiles).

    ``image`` is the per-instance image (build it with ``build_instance_image``), ``swesmith_image``
    the profile's image it is built from. An ``eval_script`` and ``log_parser`` the instance already
    has are kept. ``strict=False`` (``load_rows``): a profile whose logs no swebench parser reads gives
    a row without ``eval_script``/``log_parser`` (agent runs only; ``swesmith_unscorable`` says why)
    instead of an error. Every other problem raises ``DatasetError`` naming the instance and field.
    """
    iid = _iid(instance)
    if not _REPO_PART.match(iid.rsplit(".", 1)[0]) or "." not in iid:
        raise DatasetError(f"row {iid}: field 'instance_id': not <owner>__<repo>.<8 hex>.<bug id>, as SWE-smith names instances")
    tests: dict[str, list[str]] = {}
    for key in ("FAIL_TO_PASS", "PASS_TO_PASS"):
        if key not in instance:
            raise DatasetError(f"row {iid}: field {key!r} missing")
        try:
            tests[key] = _test_list(instance[key])
        except (ValueError, SyntaxError, TypeError):
            raise DatasetError(f"row {iid}: field {key!r}: not a list of test ids") from None
    if not tests["FAIL_TO_PASS"]:
        raise DatasetError(f"row {iid}: field 'FAIL_TO_PASS' is empty: nothing would show a fix")
    bug = instance.get("patch")
    if not isinstance(bug, str) or not bug.strip():
        raise DatasetError(f"row {iid}: field 'patch' (the bug SWE-smith introduced) missing")
    try:
        gold = reverse_patch(bug)
    except ValueError as e:
        raise DatasetError(f"row {iid}: field 'patch': cannot reverse the bug into the fix: {e}") from None
    profile = swesmith_profile(instance)
    view = {**instance, **tests}
    row = {**instance, **tests}
    eval_script, log_parser = instance.get("eval_script") or "", instance.get("log_parser") or ""
    if not (eval_script and log_parser):
        try:
            log_parser = log_parser or _log_parser(profile)
            eval_script = eval_script or swesmith_eval_script(iid, *_test_command(profile, view))
        except ValueError as e:
            if strict:
                field = "eval_script" if log_parser else "log_parser"
                raise DatasetError(f"row {iid}: field {field!r}: {e}") from None
            row["swesmith_unscorable"] = str(e)
            eval_script = log_parser = ""
    row.update(
        repo=instance.get("repo") or profile.mirror_name,
        patch=gold,
        bug_patch=bug,
        test_patch=instance.get("test_patch") or "",
        version=str(instance.get("version") or profile.commit[:8]),
        base_commit="",
        image=instance.get("image") or instance_image(iid, namespace),
        swesmith_image=profile.image_name,
        eval_script=eval_script,
        log_parser=log_parser,
        eval_type=instance.get("eval_type") or "pass_and_fail",
    )
    return row


def instance_dockerfile(row: dict[str, Any]) -> str:
    """The per-instance image: the profile's image with the instance branch checked out. The branch
    comes with the image (its clone's ``origin/<id>``); an image older than the instance fetches it."""
    iid, source = _iid(row), row.get("swesmith_image")
    if not source:
        raise DatasetError(f"row {iid}: field 'swesmith_image' missing (convert it with swesmith_row)")
    branch, remote = shlex.quote(iid), shlex.quote(f"refs/remotes/origin/{iid}")
    # By name (a local branch, or git's guess from origin/<id>), else from the remote-tracking ref
    # itself (no guess without an origin remote configured), else fetched.
    return (f"FROM {source}\n"
            f"RUN cd {TESTBED} && (git checkout -q {branch} 2>/dev/null"
            f" || git checkout -q -b {branch} {remote} 2>/dev/null"
            f" || (git fetch -q origin {shlex.quote(f'{iid}:refs/remotes/origin/{iid}')}"
            f" && git checkout -q -b {branch} {remote}))\n")


def build_instance_image(row: dict[str, Any], *, client: Any = None, rebuild: bool = False) -> str:
    """Build ``row["image"]`` (``instance_dockerfile``) unless it exists; returns its tag. The
    profile's image must be in the engine or pullable."""
    import docker

    tag, iid = row["image"], _iid(row)
    own = client is None
    client = client or docker.from_env()
    try:
        if not rebuild:
            try:
                client.images.get(tag)
                return tag
            except docker.errors.ImageNotFound:
                pass
        try:
            client.images.build(fileobj=io.BytesIO(instance_dockerfile(row).encode()), tag=tag, rm=True,
                                forcerm=True, labels={"srl-agent": "1", "srl-agent.swesmith-instance": iid})
        except docker.errors.BuildError as e:
            tail = "".join(str(c.get("stream") or c.get("error") or "") for c in e.build_log)[-2000:]
            raise RuntimeError(f"{iid}: building {tag} from {row['swesmith_image']} failed: {e.msg}\n{tail}") from None
        return tag
    finally:
        if own:
            client.close()


def build_instance_images(rows: list[dict[str, Any]], *, client: Any = None) -> list[str]:
    """``build_instance_image`` for every SWE-smith row of ``rows``; the tags."""
    return [build_instance_image(r, client=client) for r in rows if r.get("swesmith_image")]


# ----------------------------------------------------------------------------- SWE-Gym


def swegym_image(instance_id: str) -> str:
    return f"{SWEGYM_NAMESPACE}/sweb.eval.x86_64.{instance_id.replace('__', '_s_')}:latest".lower()


def is_swegym_row(row: dict[str, Any], source: Any = None) -> bool:
    """A SWE-Gym row: loaded from a ``SWE-Gym/`` hub dataset, or naming one of SWE-Gym's images (the
    rows themselves look like SWE-bench's)."""
    return str(source or "").startswith("SWE-Gym/") or str(row.get("image") or "").startswith(f"{SWEGYM_NAMESPACE}/")


def swegym_row(row: dict[str, Any]) -> dict[str, Any]:
    """A SWE-Gym row as a swebench-5 row: SWE-Gym's image and pytest's parser where the row has none;
    ``eval_script`` only if the row has one."""
    iid = _iid(row)
    out = dict(row, image=row.get("image") or swegym_image(iid))
    if not out.get("log_parser") and isinstance(row.get("repo"), str):
        out["log_parser"] = repo_log_parser(row["repo"]) or "parse_log_pytest"
    return convert_legacy_row(out)


def to_v5_row(row: dict[str, Any], source: Any = None) -> dict[str, Any]:
    """Any task row that lacks swebench-5 fields, converted as its kind needs (``load_rows``)."""
    if is_swesmith_row(row):
        return swesmith_row(row, strict=False)
    if is_swegym_row(row, source):
        return swegym_row(row)
    return convert_legacy_row(row)


# ----------------------------------------------------------------------------- diffs


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _eol(line: str) -> str:
    return line[len(line.rstrip("\r\n")):]


def _swap_side(path: str) -> str:
    return "b/" + path[2:] if path.startswith("a/") else "a/" + path[2:] if path.startswith("b/") else path


def _git_paths(rest: str) -> tuple[str, str]:
    """The two paths of ``diff --git a/X b/Y`` (X == Y unless renamed; paths may hold spaces)."""
    n = len(rest)
    if n % 2 == 1 and rest[n // 2] == " " and rest[: n // 2][2:] == rest[n // 2 + 1:][2:]:
        return rest[: n // 2], rest[n // 2 + 1:]
    cut = rest.rfind(" b/")
    if not rest.startswith("a/") or cut < 0:
        raise ValueError(f"unreadable diff header: diff --git {rest}")
    return rest[:cut], rest[cut + 1:]


def reverse_patch(diff: str) -> str:
    """The diff that undoes ``diff`` (what ``git apply -R`` applies), in git's layout: headers and
    hunk ranges swapped, each change's removed lines first. Binary and copy sections raise ``ValueError``."""
    lines = diff.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line, eol = lines[i], _eol(lines[i])
        text = line[: len(line) - len(eol)]
        nxt = lines[i + 1].rstrip("\r\n") if i + 1 < len(lines) else ""
        if m := _HUNK.match(text):
            old_n, new_n = (1 if n is None else int(n) for n in (m[2], m[4]))  # a range without ",n" is 1 line
            old_r, new_r = (a if n is None else f"{a},{n}" for a, n in ((m[1], m[2]), (m[3], m[4])))
            out.append(f"@@ -{new_r} +{old_r} @@{text[m.end():]}{eol}")
            i = _reverse_hunk(lines, i + 1, old_n, new_n, out)
            continue
        if text.startswith("diff --git "):
            old, new = _git_paths(text[len("diff --git "):])
            out.append(f"diff --git {_swap_side(new)} {_swap_side(old)}{eol}")
        elif text.startswith(("GIT binary patch", "Binary files ", "copy from ", "copy to ")):
            raise ValueError(f"cannot reverse a {'binary' if 'inary' in text else 'copy'} section: {text}")
        elif text.startswith("old mode ") and nxt.startswith("new mode "):
            out += [f"old mode {nxt[9:]}{eol}", f"new mode {text[9:]}{_eol(lines[i + 1])}"]
            i += 1
        elif text.startswith("rename from ") and nxt.startswith("rename to "):
            out += [f"rename from {nxt[10:]}{eol}", f"rename to {text[12:]}{_eol(lines[i + 1])}"]
            i += 1
        elif text.startswith("new file mode "):
            out.append(f"deleted file mode {text[14:]}{eol}")
        elif text.startswith("deleted file mode "):
            out.append(f"new file mode {text[18:]}{eol}")
        elif m := re.match(r"^index ([0-9a-f]+)\.\.([0-9a-f]+)(.*)$", text):
            out.append(f"index {m[2]}..{m[1]}{m[3]}{eol}")
        elif text.startswith("--- ") and nxt.startswith("+++ "):
            out += [f"--- {_swap_side(nxt[4:])}{eol}", f"+++ {_swap_side(text[4:])}{_eol(lines[i + 1])}"]
            i += 1
        else:  # the text before the first section, similarity lines
            out.append(line)
        i += 1
    return "".join(out)


def _reverse_hunk(lines: list[str], i: int, old_n: int, new_n: int, out: list[str]) -> int:
    """Append the reversed body of one hunk; the index of the line after it."""
    removed: list[list[str]] = []  # the hunk's '-' lines (they become '+'), each with its '\' marker
    added: list[list[str]] = []
    last: list[str] = out

    def flush() -> None:
        for group in [*added, *removed]:
            out.extend(group)
        added.clear()
        removed.clear()

    while i < len(lines) and (old_n > 0 or new_n > 0 or lines[i].startswith("\\")):
        body, tag = lines[i], lines[i][:1]
        if tag == "\\":  # "\ No newline at end of file" belongs to the line before it
            last.append(body)
        elif tag == "-":
            last = ["+" + body[1:]]
            removed.append(last)
            old_n -= 1
        elif tag == "+":
            last = ["-" + body[1:]]
            added.append(last)
            new_n -= 1
        elif tag in (" ", "\n", "\r"):
            flush()
            out.append(body)
            last = out
            old_n, new_n = old_n - 1, new_n - 1
        else:
            break
        i += 1
    if old_n or new_n:
        raise ValueError("a hunk is shorter than its header says")
    flush()
    return i
