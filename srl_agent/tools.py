"""The agent's tools on a Sandbox, with SWE-agent's semantics and observation wording.

``bash``, ``str_replace_editor`` (SWE-agent's port of Anthropic's edit tool, ``tools/edit_anthropic``)
and ``submit``. Observations are what SWE-agent shows the model: the tool's printed text, stripped
of surrounding whitespace (SWE-ReX strips session output), so replayed trajectories compare
line for line. The editor runs here, on the host, reading and writing through the sandbox's archive
API; like SWE-agent's it expands tabs in files it edits and keeps an undo history per file.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from pathlib import PurePosixPath
from typing import Any

from .sandbox import Sandbox
from .schema import ToolCall

NO_OUTPUT = "Your command ran successfully and did not produce any output."
NUL_COMMAND = "Your bash command contains a NUL character, which bash cannot run; it was not run."
SYNTAX_ERROR = "Your bash command has a syntax error and was not run. `bash -n` says:\n{errors}"
TIMEOUT_NOTE = ("The command '{command}' was cancelled because it took more than {timeout:g} seconds. "
                "Please try a different command that completes more quickly.")
SNIPPET_LINES = 4  # context lines around an edit in the confirmation snippet
MAX_RESPONSE_LEN = 16_000  # characters of a file shown before it is clipped
CLIPPED = ("<response clipped><NOTE>To save on context only part of this file has been shown to you. "
           "You should retry this tool after you have searched inside the file with `grep -n` in order to "
           "find the line numbers of what you are looking for.</NOTE>")
REVIEW = "Review the changes and make sure they are as expected. Edit the file again if necessary."
REVIEW_INSERT = ("Review the changes and make sure they are as expected (correct indentation, no duplicate lines, "
                 "etc). Edit the file again if necessary.")


class ToolError(Exception):
    """An error the tool reports to the model as its observation."""


def cat_n(text: str, description: str, first_line: int = 1) -> str:
    """The editor's ``cat -n`` rendering: clip, expand tabs, number lines (6 wide, then a tab)."""
    if len(text) > MAX_RESPONSE_LEN:
        text = text[:MAX_RESPONSE_LEN] + CLIPPED
    lines = text.expandtabs().split("\n")
    numbered = "\n".join(f"{i:6}\t{line}" for i, line in enumerate(lines, first_line))
    return f"Here's the result of running `cat -n` on {description}:\n{numbered}\n"


SESSION, FRESH = "session", "fresh"  # the two shell semantics of the harnesses trajectories come from
SHELLS = (SESSION, FRESH)


class Tools:
    """``bash``, ``str_replace_editor`` and ``submit`` on a started Sandbox; each returns the observation.

    ``shell="session"`` (SWE-agent, OpenHands): commands share one shell, so a ``cd`` or an ``export``
    carries over. ``shell="fresh"`` (mini-swe-agent): each command runs in a new login shell at the work
    tree (``bash -lc`` in the work dir, as mini-swe-agent's ``docker exec`` does), so nothing carries over."""

    def __init__(self, sandbox: Sandbox, timeout: float | None = None, shell: str = SESSION):
        if shell not in SHELLS:
            raise ValueError(f"unknown shell {shell!r}; known: {', '.join(SHELLS)}")
        self.sandbox = sandbox
        self.timeout = sandbox.config.timeout if timeout is None else timeout
        self.shell = shell
        self.exit_code: int | None = None  # the last bash command's (None: timed out, or not run)
        self.history: dict[str, list[str]] = {}  # per file, the contents before each edit (for undo_edit)
        self._encodings: dict[str, str] = {}  # per file, the encoding it was read with (written back the same)

    # ------------------------------------------------------------------ bash / submit / dispatch
    def bash(self, command: str) -> str:
        # Parsed first, as SWE-agent does: a command that cannot parse (an unbalanced quote) would
        # otherwise take the session's end-of-command marker into its error message.
        # A bash command cannot hold a NUL byte: say so rather than fail the episode.
        if "\0" in command:
            return NUL_COMMAND
        if self.shell == FRESH:
            # The command is the inner shell's argument: bash reports its syntax errors itself, and the
            # session's marker never reaches it.
            fresh = f"(cd {shlex.quote(self.sandbox.config.workdir)} && exec bash -lc {shlex.quote(command)})"
            return self._ran(command, self.sandbox.run(fresh, timeout=self.timeout))
        # The text goes to `bash -n` as a here-string, not an argument, so no length limit applies
        # (one argument may hold 128 KiB at most: "Argument list too long").
        check = self.sandbox.run(f"bash -n <<< {shlex.quote(command)}", timeout=self.timeout)
        if check.exit_code != 0 and not check.timed_out:
            return SYNTAX_ERROR.format(errors=check.output.strip())
        return self._ran(command, self.sandbox.run(command, timeout=self.timeout))

    def _ran(self, command: str, result: Any) -> str:
        self.exit_code = None if result.timed_out else result.exit_code
        output = result.output.strip()
        if result.timed_out:
            note = TIMEOUT_NOTE.format(command=command, timeout=self.timeout)
            return f"{output}\n{note}" if output else note
        return output or NO_OUTPUT

    def submit(self) -> str:
        """The patch of the work tree against the base commit."""
        return self.sandbox.diff()

    def execute(self, call: ToolCall) -> str:
        """Run one schema ToolCall; bad calls get an error observation, as a harness would answer them."""
        self.exit_code = None
        args = dict(call.arguments)
        if call.name == "bash":
            if not isinstance(args.get("command"), str):
                return "Parameter `command` is required for the bash tool"
            return self.bash(args["command"])
        if call.name == "str_replace_editor":
            known = ("command", "path", "file_text", "old_str", "new_str", "insert_line", "view_range")
            if not isinstance(args.get("command"), str) or not isinstance(args.get("path"), str):
                return "Parameters `command` and `path` are required for the str_replace_editor tool"
            if "\0" in args["path"]:
                return "The path contains a NUL character; no file has such a name."
            return self.str_replace_editor(**{k: args[k] for k in known if k in args})
        if call.name == "submit":
            return self.submit()
        return f"Unknown tool {call.name!r}; the tools are: bash, str_replace_editor, submit"

    # ------------------------------------------------------------------ the editor
    def str_replace_editor(self, command: str, path: str, file_text: str | None = None, old_str: str | None = None,
                           new_str: str | None = None, insert_line: Any = None, view_range: Any = None) -> str:
        try:
            return self._edit(command, str(PurePosixPath(path)), file_text, old_str, new_str, insert_line,
                              view_range).strip()
        except ToolError as e:
            return str(e).strip()

    def _edit(self, command, path, file_text, old_str, new_str, insert_line, view_range) -> str:
        kind = self._validate(command, path)
        if command == "view":
            return self._view_dir(path, view_range) if kind == "dir" else self._view(path, view_range)
        if command == "create":
            if file_text is None:
                raise ToolError("Parameter `file_text` is required for command: create")
            return self._create(path, file_text)
        if command == "str_replace":
            if old_str is None:
                raise ToolError("Parameter `old_str` is required for command: str_replace")
            return self._str_replace(path, old_str, new_str)
        if command == "insert":
            if insert_line is None:
                raise ToolError("Parameter `insert_line` is required for command: insert")
            if new_str is None:
                raise ToolError("Parameter `new_str` is required for command: insert")
            return self._insert(path, _as_int(insert_line, "insert_line"), new_str)
        if command == "undo_edit":
            return self._undo(path)
        raise ToolError(f'Unrecognized command {command}. The allowed commands for the str_replace_editor tool are: '
                        '"view", "create", "str_replace", "insert", "undo_edit"')

    def _validate(self, command: str, path: str) -> str | None:
        if not path.startswith("/"):
            suggestion = posixpath.join(self.sandbox.cwd, path)
            raise ToolError(f"The path {path} is not an absolute path, it should start with `/`. "
                            f"Maybe you meant {suggestion}?")
        kind = self.sandbox.path_kind(path)
        if kind is None and command != "create":
            raise ToolError(f"The path {path} does not exist. Please provide a valid path.")
        if kind is not None and command == "create":
            raise ToolError(f"File already exists at: {path}. Cannot overwrite files using command `create`.")
        if kind == "dir" and command != "view":
            raise ToolError(f"The path {path} is a directory and only the `view` command can be used on directories")
        return kind

    def _view_dir(self, path: str, view_range: Any) -> str:
        if view_range:
            raise ToolError("The `view_range` parameter is not allowed when `path` points to a directory.")
        # As SWE-agent: find in the container, two levels, nothing under a dot-name.
        result = self.sandbox.run(f"find {shlex.quote(path)} -maxdepth 2 -not -path '*/.*'", timeout=self.timeout)
        return f"Here's the files and directories up to 2 levels deep in {path}, excluding hidden items:\n{result.output}\n"

    def _view(self, path: str, view_range: Any) -> str:
        text = self._read(path)
        if isinstance(view_range, str):  # some sources carry "[1, 20]" as text
            try:
                view_range = json.loads(view_range)
            except ValueError:
                raise ToolError("Invalid `view_range`. It should be a list of two integers.") from None
        if not view_range:
            return cat_n(text, path)
        if not isinstance(view_range, (list, tuple)) or len(view_range) != 2:
            raise ToolError("Invalid `view_range`. It should be a list of two integers.")
        first, last = (_as_int(v, "view_range") for v in view_range)
        lines = text.split("\n")
        n = len(lines)
        shown = [first, last]
        if first < 1 or first > n:
            raise ToolError(f"Invalid `view_range`: {shown}. Its first element `{first}` should be within the range "
                            f"of lines of the file: {[1, n]}")
        if last > n:
            raise ToolError(f"Invalid `view_range`: {shown}. Its second element `{last}` should be smaller than the "
                            f"number of lines in the file: `{n}`")
        if last != -1 and last < first:
            raise ToolError(f"Invalid `view_range`: {shown}. Its second element `{last}` should be larger or equal "
                            f"than its first `{first}`")
        last = n if last == -1 else last
        return cat_n("\n".join(lines[first - 1 : last]), path, first)

    def _create(self, path: str, file_text: str) -> str:
        parent = posixpath.dirname(path)
        if self.sandbox.path_kind(parent) != "dir":
            raise ToolError(f"The parent directory {parent} does not exist. Please create it first.")
        self._write(path, file_text)
        self.history.setdefault(path, []).append(file_text)  # as SWE-agent: undo after create keeps the text
        return f"File created successfully at: {path}"

    def _str_replace(self, path: str, old_str: str, new_str: str | None) -> str:
        text = self._read(path).expandtabs()
        old_str, new_str = old_str.expandtabs(), (new_str or "").expandtabs()
        count = text.count(old_str)
        if count == 0:
            raise ToolError(f"No replacement was performed, old_str `{old_str}` did not appear verbatim in {path}.")
        if count > 1:
            lines = [i for i, line in enumerate(text.split("\n"), 1) if old_str in line]
            raise ToolError(f"No replacement was performed. Multiple occurrences of old_str `{old_str}` in lines "
                            f"{lines}. Please ensure it is unique")
        if new_str == old_str:
            raise ToolError(f"No replacement was performed, old_str `{old_str}` is the same as new_str `{new_str}`.")
        new_text = text.replace(old_str, new_str)
        self._write(path, new_text)
        self.history.setdefault(path, []).append(text)
        at = text.split(old_str)[0].count("\n")  # 0-based line where the replacement starts
        first = max(1, at - SNIPPET_LINES)
        last = min(at + SNIPPET_LINES + new_str.count("\n"), len(new_text.splitlines()))
        snippet = "\n".join(new_text.split("\n")[first - 1 : last])
        return f"The file {path} has been edited. " + cat_n(snippet, f"a snippet of {path}", first) + REVIEW

    def _insert(self, path: str, insert_line: int, new_str: str) -> str:
        text = self._read(path).expandtabs()
        new_str = new_str.expandtabs()
        lines = text.split("\n")
        if insert_line < 0 or insert_line > len(lines):
            raise ToolError(f"Invalid `insert_line` parameter: {insert_line}. It should be within the range of lines "
                            f"of the file: {[0, len(lines)]}")
        new_lines = new_str.split("\n")
        self._write(path, "\n".join(lines[:insert_line] + new_lines + lines[insert_line:]))
        self.history.setdefault(path, []).append(text)
        snippet = "\n".join(lines[max(0, insert_line - SNIPPET_LINES) : insert_line] + new_lines
                            + lines[insert_line : insert_line + SNIPPET_LINES])
        first = max(1, insert_line - SNIPPET_LINES + 1)
        return f"The file {path} has been edited. " + cat_n(snippet, "a snippet of the edited file", first) + REVIEW_INSERT

    def _undo(self, path: str) -> str:
        if not self.history.get(path):
            raise ToolError(f"No edit history found for {path}.")
        previous = self.history[path].pop()
        self._write(path, previous)
        return f"Last edit to {path} undone successfully. " + cat_n(previous, path)

    # ------------------------------------------------------------------ file access
    def _read(self, path: str) -> str:
        data = self.sandbox.read_bytes(path)
        try:
            text, self._encodings[path] = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:  # SWE-agent's fallback; latin-1 round-trips every byte
            text, self._encodings[path] = data.decode("latin-1"), "latin-1"
        return text

    def _write(self, path: str, text: str) -> None:
        data = text.encode(self._encodings.get(path, "utf-8"), "replace")
        try:
            self.sandbox.write_file(path, data)
        except OSError as e:
            raise ToolError(f"Ran into {e} while trying to write to {path}") from None


def _as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        if name == "view_range":
            raise ToolError("Invalid `view_range`. It should be a list of two integers.") from None
        raise ToolError(f"Invalid `{name}` parameter: {value!r}. It should be an integer.") from None
