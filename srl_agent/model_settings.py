"""The prompt settings a model was trained with, saved beside its weights as ``srl-agent.json``.

A policy only does well on the prompt format it was trained on: the system prompt, the action style,
how many earlier steps the prompt shows, the issue and observation budgets and what they count, and
(after RLVR) whether the prompt is a window of steps or the whole episode's chat. Training writes these
into every model folder it saves (``train sft|srl|rlvr``, the pipeline); evaluation and the next
training stage read them back (``resolve``), and only flags given explicitly change them.

``srl-agent prepare`` writes the settings its step file was built with next to it
(``steps.jsonl`` → ``steps.settings.json``): step rows carry finished prompts, not the settings
behind them, so that sidecar is how ``train sft|srl`` learns them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .prompts import SYSTEM_PROMPT
from .steps import StepConfig

SETTINGS_FILE = "srl-agent.json"
BUDGETS = ("tokens", "characters")
HISTORIES = ("window", "episode")  # the prompt kinds a policy acts on (agent.AgentConfig.history)


@dataclass(frozen=True)
class PromptSettings:
    system_prompt: str = SYSTEM_PROMPT
    style: str = "xml"
    """The tool-call style the model writes (``rewards.completion.STYLES``)."""
    context_steps: int | None = 2
    """Earlier action–observation pairs in a window prompt; None = all."""
    observation_tokens: int = 1024
    issue_tokens: int = 4096
    budgets: str = "characters"
    """``tokens``: the budgets count the model's own tokens; ``characters``: characters / 4."""
    history: str = "window"
    """``window``: SRL step prompts; ``episode``: RLVR's chat of the whole episode."""

    def __post_init__(self) -> None:
        from .rewards.completion import STYLES

        for name, value, known in (("style", self.style, STYLES), ("budgets", self.budgets, BUDGETS),
                                   ("history", self.history, HISTORIES)):
            if value not in known:
                raise ValueError(f"prompt setting {name} {value!r}; known: {', '.join(known)}")
        if self.context_steps is not None and (not isinstance(self.context_steps, int) or self.context_steps < 0):
            raise ValueError(f"prompt setting context_steps must be a number >= 0 or all, got {self.context_steps!r}")
        for name in ("observation_tokens", "issue_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"prompt setting {name} must be a number >= 1, got {value!r}")

    @property
    def exact_budgets(self) -> bool:
        return self.budgets == "tokens"

    def step_config(self) -> StepConfig:
        return StepConfig(context_steps=self.context_steps, observation_tokens=self.observation_tokens,
                          issue_tokens=self.issue_tokens, system_prompt=self.system_prompt)

    @classmethod
    def from_step_config(cls, config: StepConfig, **others: Any) -> PromptSettings:
        """``others``: the settings a ``StepConfig`` does not hold (style, budgets, history)."""
        return cls(system_prompt=config.system_prompt, context_steps=config.context_steps,
                   observation_tokens=config.observation_tokens, issue_tokens=config.issue_tokens, **others)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "prompt settings") -> PromptSettings:
        # Keys this version does not know (a newer writer's, or "source") are left out, not refused.
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_settings(folder: str | Path, settings: PromptSettings, source: str | None = None) -> Path:
    """``folder/srl-agent.json``; ``source`` says where the settings came from (kept in the file, for people)."""
    path = Path(folder) / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = settings.to_dict() | ({"source": source} if source else {})
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def _read(path: Path) -> PromptSettings:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of prompt settings")
    return PromptSettings.from_dict(data, str(path))


def read_settings(model: str | Path | None) -> PromptSettings | None:
    """The settings saved with ``model`` (a local folder or a hub id); None when it has none, and for the
    offline tiny model (``None`` / ``"tiny"``), which ships untrained."""
    if model is None or str(model) == "tiny":
        return None
    path = Path(model)
    if path.is_dir():
        return _read(path / SETTINGS_FILE) if (path / SETTINGS_FILE).is_file() else None
    if path.exists() or str(model).startswith((".", "/", "~")) or str(model).count("/") > 1:
        return None  # a file, or a local path that is not there: not a hub id either
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError

    try:
        # The cache first: an unreachable hub costs half a minute of retries per file.
        cached = try_to_load_from_cache(str(model), SETTINGS_FILE)
        if isinstance(cached, str):
            return _read(Path(cached))
        if cached is not None or constants.HF_HUB_OFFLINE:  # known to be absent, or no network to ask
            return None
        return _read(Path(hf_hub_download(str(model), SETTINGS_FILE)))
    except (OSError, ValueError, EntryNotFoundError):  # no such file or repo, no network
        return None


def resolve(model: str | Path | None, **flags: Any) -> PromptSettings:
    """The settings to prompt ``model`` with: the defaults, then the model's ``srl-agent.json``, then
    ``flags`` (``PromptSettings`` field names) that were given; None means not given. ``context_steps``
    takes ``"all"`` for every earlier step."""
    unknown = set(flags) - {f.name for f in dataclasses.fields(PromptSettings)}
    if unknown:
        raise TypeError(f"unknown prompt setting(s): {', '.join(sorted(unknown))}")
    base = read_settings(model) or PromptSettings()
    given = {k: v for k, v in flags.items() if v is not None}
    if given.get("context_steps") == "all":
        given["context_steps"] = None
    return dataclasses.replace(base, **given)


# ---------------------------------------------------------------- the sidecar of a step file

def data_settings_path(steps: str | Path) -> Path:
    return Path(steps).with_suffix(".settings.json")


def write_data_settings(steps: str | Path, settings: PromptSettings) -> Path:
    path = data_settings_path(steps)
    path.write_text(json.dumps(settings.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def read_data_settings(steps: str | Path) -> PromptSettings | None:
    """The settings ``srl-agent prepare`` built ``steps`` with, if it left them beside the file."""
    path = data_settings_path(steps)
    return _read(path) if path.is_file() else None


def training_settings(data: str | Path, given: PromptSettings | None) -> tuple[PromptSettings, str]:
    """What an SFT / SRL run on the step file ``data`` trained with, and where that was learned: ``given``
    (the pipeline knows exactly how it prepared the file), else the file's sidecar, else the defaults,
    which are a guess: the rows hold finished prompts, not the settings behind them."""
    if given is not None:
        return given, "given by the caller"
    sidecar = read_data_settings(data)
    if sidecar is not None:
        return sidecar, str(data_settings_path(data))
    return PromptSettings(), f"defaults: {data} has no {data_settings_path(data).name} beside it"


def with_saved_prompt(model: str | Path | None, rollout: dict[str, Any]) -> dict[str, Any]:
    """An RLVR recipe's ``rlvr.rollout`` section with the style and prompt settings saved with ``model``
    under the keys the section does not set: episodes open with the prompts the model was trained on
    unless the recipe says otherwise."""
    saved = read_settings(model)
    if saved is None:
        return dict(rollout)
    prompt = {"system_prompt": saved.system_prompt, "context_steps": saved.context_steps,
              "observation_tokens": saved.observation_tokens, "issue_tokens": saved.issue_tokens,
              **(rollout.get("prompt") or {})}
    return {"style": saved.style, **rollout, "prompt": prompt}


def episode_settings(prompt: StepConfig, style: str) -> PromptSettings:
    """What an RLVR run trained with: its rollout prompt and style, the episode chat, budgets in the
    policy's tokens (the rollouts truncate with its tokenizer)."""
    return PromptSettings.from_step_config(prompt, style=style, budgets="tokens", history="episode")


def save_callback(settings: PromptSettings, source: str | None = None) -> Any:
    """A transformers ``TrainerCallback`` that writes the settings into every ``checkpoint-N`` it saves."""
    from transformers import TrainerCallback

    class SaveSettings(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                write_settings(folder, settings, source)
            return control

    return SaveSettings()


__all__ = ["BUDGETS", "SETTINGS_FILE", "PromptSettings", "data_settings_path", "episode_settings",
           "read_data_settings", "read_settings", "resolve", "save_callback", "training_settings",
           "with_saved_prompt", "write_data_settings", "write_settings"]
