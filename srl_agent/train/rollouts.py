"""RLVR episodes as token sequences: what TRL's ``rollout_func`` returns.

An episode is one chat: the SRL system prompt and the issue turn, then per turn the policy's completion
(``<think>…</think>`` + one call in the configured style, read by the reward's own parser) and the
environment's answer as the next user turn (the tool's observation, truncated as in SRL prompts, or
a format-error notice). Each turn is generated from the exact token sequence so far, so the sequence
the trainer scores is the one the policy sampled: ``completion_ids`` holds the model's tokens
(``env_mask`` 1) and the environment's (``env_mask`` 0, left out of the loss).

Why not TRL's ``environment_factory``: its loop reads tool calls with the tokenizer's response parser
(JSON ``<tool_call>`` for Qwen templates) and ends an episode at the first turn without a call, while
the policy here must act in the SRL action style (SWE-agent XML by default), be held to the same
strict parser as the SRL reward (one call, a think block) and be told about a malformed turn rather
than stopped by it. ``engine.SWEEnvironment`` keeps the ``environment_factory`` shape all the same.

The episodes themselves are the engine's (``srl_agent.engine.run_episodes``: budgets, statuses,
pristine grading, records); ``TokenDriver`` is the thin layer that keeps the token bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..engine import LENGTH, EpisodeConfig, EpisodeRecord, SandboxEnvironment, SandboxPool, run_episodes
from ..steps import StepConfig, Truncator, issue_turn


@dataclass
class RolloutConfig:
    style: str = "xml"
    """The action style, as in SRL and evaluation (``parse_completion``)."""
    max_new_tokens: int = 512
    """Tokens per turn."""
    max_episode_tokens: int = 8192
    """Model and environment tokens after the prompt; the episode ends (and is graded) before exceeding it."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    prompt: StepConfig = field(default_factory=StepConfig)
    """System prompt and token budgets (issue, observations), as the SRL step instances use them."""
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutConfig:
        data = dict(data or {})
        prompt = StepConfig(**(data.pop("prompt", None) or {}))
        episode = EpisodeConfig(**(data.pop("episode", None) or {}))
        return cls(prompt=prompt, episode=episode, **data)


class ConversationTokens:
    """Token ids of an episode's chat, cut where the model's turns begin and end, from the chat template."""

    _TURN, _OBS = "\u2063TURN\u2063", "\u2063OBS\u2063"

    def __init__(self, tokenizer: Any, system_prompt: str):
        self.tokenizer, self.system_prompt = tokenizer, system_prompt
        self.stop_ids = {i for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"))
                         if isinstance(i, int) and i != tokenizer.unk_token_id}
        chat = [{"role": "user", "content": "?"}, {"role": "assistant", "content": self._TURN},
                {"role": "user", "content": self._OBS}]
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        # What the template puts between the end of an assistant turn and the start of the next one.
        self._before, self._after = text[text.index(self._TURN) + len(self._TURN):].split(self._OBS)
        # The same after a turn that ended with a stop token, whose text the template would write again.
        self._before_ended = self._before
        for stop in self.stop_ids:
            stop_text = tokenizer.decode([stop])
            if stop_text and self._before.startswith(stop_text):
                self._before_ended = self._before[len(stop_text):]
                break

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, issue: str) -> list[int]:
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": issue}]
        return self.encode(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def environment(self, observation: str, turn_ended: bool) -> list[int]:
        """The tokens after a model turn up to the next one; ``turn_ended``: the turn ended with a stop token."""
        return self.encode((self._before_ended if turn_ended else self._before) + observation + self._after)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class Generator(Protocol):
    def __call__(self, batch: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """New token ids for each sequence, up to and including a stop token."""


class TransformersGenerator:
    """Sampling with a transformers model: left-padded batches, cut at the first stop token."""

    def __init__(self, model: Any, tokenizer: Any, stop_ids: set[int], *, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, set(stop_ids)
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k

    def __call__(self, batch: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        import torch
        from transformers import GenerationConfig

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.stop_ids)
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            mask[i, width - len(ids):] = 1
        sample = self.temperature > 0
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sample, pad_token_id=pad,
                                  eos_token_id=sorted(self.stop_ids),
                                  **({"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
                                     if sample else {}))
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                      generation_config=config)
        result = []
        for row in out[:, width:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in self.stop_ids), len(row))
            result.append(row[:cut])
        return result


@dataclass
class Rollout:
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    reward: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)
    turns: int = 0
    last: list[int] = field(default_factory=list, repr=False)  # the latest turn's tokens


class TokenDriver:
    """The engine's driver for RLVR: each turn generated from the episode's exact token sequence so far;
    the environment's answers appended as masked tokens; the episode ended (``length``) before a turn
    could overrun ``max_episode_tokens``."""

    def __init__(self, generate: Generator, tokens: ConversationTokens, config: RolloutConfig, truncate: Any):
        self.generate, self.tokens, self.config, self.truncate = generate, tokens, config, truncate

    def rollout(self, episode: EpisodeRecord) -> Rollout:
        if "rollout" not in episode.memo:
            issue = issue_turn((episode.task.get("problem_statement") or "").strip(), self.config.prompt,
                               self.truncate)
            episode.memo["rollout"] = Rollout(prompt_ids=self.tokens.prompt(issue))
        return episode.memo["rollout"]

    def act(self, episodes: list[EpisodeRecord]) -> list[str]:
        runs = [self.rollout(ep) for ep in episodes]
        new = self.generate([r.prompt_ids + r.completion_ids for r in runs], self.config.max_new_tokens)
        for run, ids in zip(runs, new, strict=True):
            run.completion_ids += ids
            run.env_mask += [1] * len(ids)
            run.turns += 1
            run.last = ids
        return [self.tokens.decode(ids) for ids in new]

    def observe(self, episode: EpisodeRecord, answer: str) -> None:
        run = self.rollout(episode)
        ids = self.tokens.environment(self.truncate(answer, self.config.prompt.observation_tokens),
                                      bool(run.last) and run.last[-1] in self.tokens.stop_ids)
        if len(run.completion_ids) + len(ids) + self.config.max_new_tokens > self.config.max_episode_tokens:
            episode.stop(LENGTH)  # no room for another turn: the episode ends here and is graded
            return
        run.completion_ids += ids
        run.env_mask += [0] * len(ids)


def run_rollouts(rows: list[dict[str, Any]], generate: Generator, tokens: ConversationTokens,
                 pool: SandboxPool | None, config: RolloutConfig | None = None, truncate: Any = None, *,
                 runner: Any = None) -> list[Rollout]:
    """One graded episode per row through the engine, at most ``pool.max_sandboxes`` side by side; with
    ``runner`` (``engine.cluster.ClusterRunner``) on the cluster's nodes instead, generation staying here."""
    config = config or RolloutConfig()
    driver = TokenDriver(generate, tokens, config, truncate or Truncator(tokens.tokenizer))
    if runner is not None:
        episodes = runner.run(rows, driver, config.episode, style=config.style)
    else:
        episodes = run_episodes(rows, driver, lambda: SandboxEnvironment(pool, config.episode), config.episode,
                                batch_size=pool.max_sandboxes, style=config.style)
    out = []
    for ep in episodes:
        run = driver.rollout(ep)
        run.reward = ep.reward
        run.record = {**ep.to_dict("rlvr"), "turns": run.turns, "completion": tokens.decode(run.completion_ids)}
        out.append(run)
    return out
