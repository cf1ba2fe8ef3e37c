"""The typed spine of the project: every reader produces these, every later stage consumes them.

Plain frozen-ish dataclasses (no pydantic) so that construction in the readers' hot loop stays cheap;
``to_dict`` / ``from_dict`` give a lossless JSON round trip.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1

# The tools every action is normalised onto (SWE-agent / Anthropic semantics).
TOOLS = ("bash", "str_replace_editor", "submit")
EDITOR_COMMANDS = ("view", "create", "str_replace", "insert", "undo_edit")


@dataclass
class Task:
    """A SWE-bench (v5) task row. Only ``instance_id`` is required: trajectories often carry no more."""

    instance_id: str
    repo: str = ""
    base_commit: str = ""
    problem_statement: str = ""
    patch: str = ""
    test_patch: str = ""
    FAIL_TO_PASS: list[str] = field(default_factory=list)
    PASS_TO_PASS: list[str] = field(default_factory=list)
    version: str = ""
    # swebench >= 5 per-instance settings
    image: str = ""
    eval_script: str = ""
    log_parser: str = ""
    eval_type: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("FAIL_TO_PASS", "PASS_TO_PASS"):
            kw[key] = _test_list(kw.get(key))
        if "version" in kw and kw["version"] is not None:
            kw["version"] = str(kw["version"])
        return cls(**kw)


def _test_list(value: Any) -> list[str]:
    """SWE-bench ships test lists as lists, JSON strings (the hub) or Python-repr strings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            import ast

            value = ast.literal_eval(value)
    return [str(v) for v in value]


@dataclass
class ToolCall:
    """One environment-consumable action: a tool name and its arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": dict(self.arguments)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ToolCall:
        return cls(name=d["name"], arguments=dict(d.get("arguments") or {}))


@dataclass
class Step:
    """One expert turn: what it thought, the call it made, and what the environment answered.

    ``raw_action`` is the action text exactly as the source wrote it; ``legacy`` marks old SWE-agent
    commands (open, edit, search_dir, ...) that are kept as ``bash`` calls with their raw text.
    ``snapshot`` is the content of the file an editor call touches, as it was before the call
    (recorded by replay; the patch-similarity reward applies both edits to it); for a bash step that
    changed files, the first such file before the step. ``diff`` is what the step changed in the work
    tree as a zero-context patch (recorded by replay), so bash edits are rewarded like editor edits.
    """

    thought: str
    action: ToolCall
    raw_action: str = ""
    observation: str | None = None
    legacy: bool = False
    snapshot: str | None = None
    diff: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "thought": self.thought,
            "action": self.action.to_dict(),
            "raw_action": self.raw_action,
            "observation": self.observation,
            "legacy": self.legacy,
            "snapshot": self.snapshot,
            "diff": self.diff,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(
            thought=d.get("thought", ""),
            action=ToolCall.from_dict(d["action"]),
            raw_action=d.get("raw_action", ""),
            observation=d.get("observation"),
            legacy=bool(d.get("legacy", False)),
            snapshot=d.get("snapshot"),
            diff=d.get("diff"),
        )


@dataclass
class Trajectory:
    """An expert trajectory: the task it solves and its steps, from one source format."""

    task: Task
    steps: list[Step]
    source_format: str
    submission: str | None = None
    resolved: bool | None = None
    source: str = ""  # file path or hub name, plus the record index where there is one
    system_prompt: str = ""  # the source's own system prompt, kept for reference
    dropped_turns: int = 0  # source turns that are not steps (e.g. rejected for their format)
    verified: dict[str, Any] | None = None  # replay's verdict (``replay --write-verified``): resolved, ...

    @property
    def instance_id(self) -> str:
        return self.task.instance_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "task": self.task.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "source_format": self.source_format,
            "submission": self.submission,
            "resolved": self.resolved,
            "source": self.source,
            "system_prompt": self.system_prompt,
            "dropped_turns": self.dropped_turns,
            "verified": self.verified,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        return cls(
            task=Task.from_dict(d["task"]),
            steps=[Step.from_dict(s) for s in d["steps"]],
            source_format=d["source_format"],
            submission=d.get("submission"),
            resolved=d.get("resolved"),
            source=d.get("source", ""),
            system_prompt=d.get("system_prompt", ""),
            dropped_turns=int(d.get("dropped_turns", 0)),
            verified=d.get("verified"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Trajectory:
        return cls.from_dict(json.loads(text))
