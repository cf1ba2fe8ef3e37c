"""The one episode loop: drivers propose actions, environments run them, the budget rule ends episodes.

A driver is anything with ``act(episodes) -> actions`` (one per running episode, in order), if it
keeps per-episode state, ``begin(episode)`` (called once per episode, in row order, before its
sandbox starts: ``episode.memo`` is the driver's), and, if it wants to see them,
``observe(episode, text)``: the environment's answer to a turn, a tool's observation or a format-error notice, given only while the episode goes on (a driver may end it, e.g. RLVR when its
token budget is spent: ``episode.stop(LENGTH)``). An action is a completion to parse (``<think>…</think>``
and one call in ``style``), a ``ToolCall`` (scripted drivers: replay), or None (the driver has nothing
more: ``stopped``). Who drives it:

- replay: a script of a recorded trajectory's calls (``srl_agent.replay``);
- evaluation: a model's completions from SRL step prompts or the episode chat (``srl_agent.agent``);
- RLVR: the policy under training, its turns and the environment's tokens kept as one token
  sequence (``srl_agent.train.rollouts``).

Up to ``batch_size`` episodes run side by side: one ``act`` call per round for all of them (batched
generation), their sandbox work (start, commands, finish and grading) in threads, since that is
waiting on the engine. A driver that raises an ordinary exception ends its batch, not the run: the
batch's running episodes end with ``error`` (the traceback in their records) and are finished like
any other, and the next batch goes on, so no record is lost. Only KeyboardInterrupt / SystemExit (a
signal) end the run, and every sandbox of the batch is still given back (removed) first.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ..prompts import FORMAT_ERROR_TEMPLATE
from ..rewards.completion import FormatError, parse_completion
from ..schema import ToolCall
from .records import ERROR, STOPPED, EpisodeConfig, EpisodeRecord


class Driver(Protocol):
    def act(self, episodes: list[EpisodeRecord]) -> list[str | ToolCall | None]:
        """One action per running episode."""


class Environment(Protocol):
    def start(self, episode: EpisodeRecord) -> None: ...
    def execute(self, episode: EpisodeRecord, call: ToolCall, *, thought: str = "", response: str = "") -> str: ...
    def finish(self, episode: EpisodeRecord) -> EpisodeRecord: ...
    def close(self) -> None: ...


def read_action(text: Any, style: str) -> tuple[Any, tuple[str, str] | None]:
    """``(parsed completion, None)`` or ``(None, (reason code, message))``, whatever the text holds."""
    try:
        return parse_completion(text, style), None
    except FormatError as e:
        return None, (e.reason, e.message)
    except Exception as e:  # model-written text must never end a run: anything the parser trips on is malformed
        return None, ("bad_arguments", f"the completion could not be read ({type(e).__name__})")


def run_episodes(rows: list[dict[str, Any]], driver: Any, environment: Callable[[], Environment],
                 config: EpisodeConfig | None = None, *, batch_size: int = 4, style: str = "xml",
                 progress: Callable[[int, int], None] | None = None) -> list[EpisodeRecord]:
    """One finished (and, if the environment grades, graded) episode record per row, in order."""
    config = config or EpisodeConfig()
    size = max(1, batch_size)
    out: list[EpisodeRecord] = []
    for i in range(0, len(rows), size):
        out += _run_batch(rows[i : i + size], driver, environment, config, style)
        if progress is not None:
            progress(len(out), len(rows))
    return out


def _run_batch(rows, driver, environment, config: EpisodeConfig, style: str) -> list[EpisodeRecord]:
    episodes = [EpisodeRecord(task=row) for row in rows]
    begin = getattr(driver, "begin", None)
    for ep in episodes if begin is not None else ():
        try:
            begin(ep)
        except Exception as e:
            _fail([ep], f"driver: {type(e).__name__}: {e}")
    envs = [environment() for _ in rows]
    observe = getattr(driver, "observe", None)
    workers = ThreadPoolExecutor(max_workers=len(rows), thread_name_prefix="srl-agent-episode")
    try:
        list(workers.map(lambda env, ep: env.start(ep), envs, episodes))
        active = [i for i, ep in enumerate(episodes) if ep.running]
        while active:
            for i in active:
                episodes[i].out_of_time(config)
            active = [i for i in active if episodes[i].running]
            if not active:
                break
            try:
                actions = driver.act([episodes[i] for i in active])
                if len(actions) != len(active):
                    raise ValueError(f"the driver gave {len(actions)} actions for {len(active)} episodes")
            except Exception as e:
                _fail([episodes[i] for i in active], f"driver: {type(e).__name__}: {e}")
                break
            calls: dict[int, tuple[ToolCall, str, str]] = {}
            answers: dict[int, str] = {}
            for i, action in zip(active, actions, strict=True):
                ep = episodes[i]
                ep.turns += 1
                if action is None:
                    ep.stop(STOPPED)
                elif isinstance(action, ToolCall):
                    calls[i] = (action, "", "")
                else:
                    parsed, problem = read_action(action, style)
                    if parsed is None:
                        reason, message = problem
                        ep.malformed(reason, message, str(action), config)
                        answers[i] = FORMAT_ERROR_TEMPLATE.format(reason=reason, message=message)
                    else:
                        calls[i] = (parsed.call, parsed.thought, action)
            ran = workers.map(lambda i, call: envs[i].execute(episodes[i], call[0], thought=call[1], response=call[2]),
                              list(calls), list(calls.values()))
            answers.update(zip(calls, ran, strict=True))
            for i in active:
                if episodes[i].running and observe is not None and i in answers:
                    try:
                        observe(episodes[i], answers[i])
                    except Exception as e:
                        _fail([episodes[i]], f"driver: {type(e).__name__}: {e}")
            active = [i for i in active if episodes[i].running]
        list(workers.map(lambda env, ep: env.finish(ep), envs, episodes))
    finally:
        workers.shutdown(wait=True)
        for env in envs:  # unfinished episodes (a driver error above) give their sandboxes back as broken
            env.close()
    return episodes


def _fail(episodes: list[EpisodeRecord], error: str) -> None:
    trace = traceback.format_exc(limit=-8)
    for ep in episodes:
        ep.stop(ERROR, error)
        ep.traceback = ep.traceback or trace
