"""Agent episodes as SWE-agent ``.traj`` files, so the project's own readers ingest them again.

The shape is SWE-agent 1.x's: ``trajectory`` (one entry per executed action: ``response``,
``thought``, ``action`` as SWE-agent renders it, ``observation``), ``history`` (the chat: system
prompt, task, then assistant/observation turns), ``info`` (``exit_status``, ``submission``,
``model_stats``) and ``replay_config`` (a JSON string, as 1.x writes it: the instance id, issue, image
and base commit). What SWE-agent has no field for (format errors, the agent settings) sits under
``info["srl_agent"]``, with a format version.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..agent import AgentConfig
from ..engine import EpisodeRecord
from ..schema import ToolCall

FORMAT_VERSION = 1
_EDITOR_FLAGS = ("file_text", "old_str", "new_str", "insert_line", "view_range")


def sweagent_action(call: ToolCall) -> str:
    """The action string SWE-agent records: a bash call is its command, a tool call is
    ``<tool> <command> <path> --flag value…`` (what ``actions.parse_command_line`` reads back)."""
    args = call.arguments
    if call.name == "bash":
        return args.get("command", "")
    if call.name == "submit":
        return "submit"
    words = [call.name, shlex.quote(str(args.get("command", ""))), shlex.quote(str(args.get("path", "")))]
    for key in _EDITOR_FLAGS:
        if key not in args:
            continue
        value = args[key]
        if key == "view_range":
            words += ["--view_range", *(str(int(v)) for v in value)]
        else:
            words += [f"--{key}", shlex.quote(str(value))]
    return " ".join(words)


def to_traj(episode: EpisodeRecord, *, model: str, config: AgentConfig, issue_turn: str,
            budgets: str = "characters") -> dict[str, Any]:
    """``budgets``: what the prompt budgets counted, ``tokens`` (the policy's tokenizer) or ``characters`` (/ 4)."""
    task = episode.task
    history: list[dict[str, Any]] = [
        {"role": "system", "content": config.prompt.system_prompt, "agent": "main", "message_type": "system_prompt"},
        {"role": "user", "content": issue_turn, "agent": "main", "message_type": "user"},
    ]
    trajectory = []
    for step in episode.steps:
        action, response = sweagent_action(step.action), step.response
        trajectory.append({"response": response, "thought": step.thought, "action": action,
                           "observation": step.observation, "state": {}, "execution_time": None})
        history.append({"role": "assistant", "content": response, "thought": step.thought, "action": action,
                        "agent": "main", "message_type": "action"})
        history.append({"role": "user", "content": step.observation, "agent": "main", "message_type": "observation"})
    replay_config = {
        "problem_statement": {"id": task["instance_id"], "text": task.get("problem_statement", ""), "type": "text"},
        "env": {"deployment": {"image": task.get("image", ""), "type": "docker"},
                "repo": {"repo_name": "testbed", "base_commit": task.get("base_commit", ""), "type": "preexisting"}},
        "agent": {"model": {"name": model}},
    }
    settings = asdict(config)
    settings["prompt"].pop("system_prompt")  # already the first history turn
    return {
        "environment": "srl-agent",
        "trajectory": trajectory,
        "history": history,
        "info": {
            "exit_status": episode.exit_status,
            "submission": episode.submission,
            "model_stats": {"api_calls": episode.turns},
            "srl_agent": {"format_version": FORMAT_VERSION, "error": episode.error, "seconds": episode.seconds,
                          "outcome": episode.outcome, "container": episode.container,
                          "format_errors": episode.format_errors, "config": settings, "budgets": budgets},
        },
        "replay_config": json.dumps(replay_config),
    }


def write_traj(path: Path, episode: EpisodeRecord, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_traj(episode, **kwargs), ensure_ascii=False, indent=1), encoding="utf-8")
    return path
