"""``SRLTrainer``: TRL's ``GRPOTrainer`` with the paper's dynamic sampling and the run's reward log.

**The seam.** ``GRPOTrainer._prepare_inputs`` calls ``_generate_and_score_completions(batch)`` once per
generation batch (the local prompts, each repeated G times in a row), then shuffles the returned
tensors and splits them into ``steps_per_generation`` micro-batches. We override that one method and
``_calculate_rewards`` (to keep the gathered rewards of every process):

1. call TRL's method on the batch: generate, score, compute group advantages, as usual;
2. compute each group's population std from the gathered rewards (every process sees all groups,
   so every process takes the same decisions) and drop the groups with std ≤ ε;
3. while some process has fewer kept groups than its batch needs, draw that many new prompts
   (the global maximum, so every process runs the same number of rounds and the collectives inside
   TRL's method stay in step) from a seeded refill stream over the dataset, and repeat 1–2;
4. return the first kept groups, exactly as many as the original batch held: the same number of rows,
   so TRL's split into micro-batches, gradient accumulation and ``steps_per_generation`` /
   ``num_iterations`` buffering work unchanged. Sequences are re-padded to a common width (prompts on
   the left, completions on the right, as TRL pads) and ``num_items_in_batch`` is recounted over the
   rows that are kept.

Advantages stay TRL's: a group's advantage depends only on its own rewards (``scale_rewards`` "group"
or "none"); with "batch" the std is the one of the round the group came from. If ``max_rounds``
rounds cannot fill the batch, dropped groups fill the rest — their advantages are 0, so they add no
gradient — and the share is logged (``dynamic_sampling/filled_fraction``). Each batch logs
``dynamic_sampling/dropped_fraction`` (dropped groups / groups drawn) and ``dynamic_sampling/rounds``.

Requirements, checked at start: the local generation batch (``per_device_train_batch_size ×
steps_per_generation``) holds whole groups, so no group spans two processes; text-only prompts; a
map-style dataset. The refill stream's position is saved with every checkpoint and restored on resume.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import gather_object
from trl import GRPOTrainer

from .reward_log import CollectingReward

STATE_FILE = "dynamic_sampling.json"
_PROMPT_KEYS = ("prompt_ids", "prompt_mask")  # left-padded; every other 2-D tensor is completion-aligned


@dataclass
class DynamicSampling:
    enabled: bool = True
    epsilon: float = 1e-6  # a group is dropped when the population std of its G rewards is <= epsilon
    max_rounds: int = 16  # generation rounds per batch before zero-variance groups fill the rest


class RefillStream:
    """The prompts of extra rounds: a seeded permutation of the dataset, lap after lap (state = lap, position)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.lap, self.pos = size, seed, 0, 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        return random.Random(f"refill:{self.seed}:{self.lap}").sample(range(self.size), self.size)

    def take(self, k: int, rank: int = 0, world: int = 1) -> list[int]:
        """``k`` indices for process ``rank``; the stream advances by ``k × world`` on every process."""
        drawn = []
        for _ in range(k * world):
            if self.pos == self.size:
                self.lap, self.pos = self.lap + 1, 0
                self._order = self._permutation()
            drawn.append(self._order[self.pos])
            self.pos += 1
        return drawn[rank * k : (rank + 1) * k]

    def state_dict(self) -> dict[str, int]:
        return {"size": self.size, "seed": self.seed, "lap": self.lap, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.size, self.seed, self.lap, self.pos = state["size"], state["seed"], state["lap"], state["pos"]
        self._order = self._permutation()


class SRLTrainer(GRPOTrainer):
    def __init__(self, *args: Any, dynamic_sampling: DynamicSampling | None = None, reward_log: Any = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling if dynamic_sampling and dynamic_sampling.enabled else None
        self.reward_log = reward_log
        self.refill = RefillStream(len(self.train_dataset) if self.train_dataset is not None else 0, self.args.seed)
        # Totals over the run (all processes), for the summary; the per-batch figures go to TRL's metrics.
        self.sampling_stats = {"groups_drawn": 0, "groups_dropped": 0, "groups_filled": 0, "rounds": 0, "batches": 0}
        self._round_rewards: torch.Tensor | None = None
        if self.dynamic_sampling is not None:
            local = self.args.per_device_train_batch_size * self.args.steps_per_generation
            if local % self.num_generations:
                raise ValueError(
                    f"dynamic sampling needs whole prompt groups on each process: per_device_train_batch_size × "
                    f"steps_per_generation = {local} is not a multiple of num_generations = {self.num_generations}")
            if not hasattr(self.train_dataset, "__getitem__"):
                raise ValueError("dynamic sampling draws extra prompts by index: use a map-style dataset")

    # --- rewards: keep the gathered total of every round --------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        self._round_rewards = (rewards_per_func * weights).nansum(dim=1)  # all processes, TRL's aggregation
        return rewards_per_func

    # --- the seam ------------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        if self.dynamic_sampling is None:
            out = super()._generate_and_score_completions(inputs)
            records = self._round_records(inputs, out, round_=0, group_offset=0, dropped=None, std=None)
            for r in records:
                r["in_batch"] = True
            self._write_records(records)
            return out
        return self._sample_dynamically(inputs)

    def _sample_dynamically(self, inputs):
        G, eps = self.num_generations, self.dynamic_sampling.epsilon
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        need = len(inputs) // G  # groups this process returns, as TRL's batch had
        kept, spare, records = [], [], []  # kept/spare: (group id, tensors of its G rows)
        batch, rounds, drawn, dropped = inputs, 0, 0, 0
        while True:
            out = super()._generate_and_score_completions(batch)
            std = self._round_rewards.view(-1, G).std(dim=1, correction=0)  # population std, every group
            drop = std <= eps
            n_local = len(batch) // G
            first = rank * n_local  # this process's groups in the gathered order
            records += self._round_records(batch, out, rounds, drawn, drop, std)
            for g in range(n_local):
                part = (drawn + first + g, _rows(out, g * G, (g + 1) * G))
                (spare if drop[first + g] else kept).append(part)
            drawn += drop.numel()
            dropped += int(drop.sum())
            rounds += 1
            missing = int(self.accelerator.gather(torch.tensor([need - len(kept)], device=out["advantages"].device)).max())
            if missing <= 0 or rounds >= self.dynamic_sampling.max_rounds:
                break
            rows = [self.train_dataset[i] for i in self.refill.take(missing, rank, world)]
            batch = [{k: row[k] for k in inputs[0]} for row in rows for _ in range(G)]
        filled = max(0, need - len(kept))  # rounds ran out: zero-variance groups (advantage 0) make up the rest
        chosen = kept[:need] + spare[:filled]
        used = {gid for gid, _ in chosen}
        for r in records:
            r["in_batch"] = r["group"] in used
        self._write_records(records)
        merged = self._concat([part for _, part in chosen])
        self._log_sampling(rounds, drawn, dropped, filled, need)
        return merged

    # --- helpers ---------------------------------------------------------------------------------------

    def _concat(self, parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        merged = {}
        for key in parts[0]:
            tensors = [p[key] for p in parts]
            if tensors[0].dim() == 2:
                width = max(t.size(1) for t in tensors)
                if self.pad_to_multiple_of:
                    width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
                value = self._tokenizer.pad_token_id if key in ("prompt_ids", "completion_ids") else 0
                left = key in _PROMPT_KEYS
                tensors = [F.pad(t, (width - t.size(1), 0) if left else (0, width - t.size(1)), value=value)
                           for t in tensors]
            merged[key] = torch.cat(tensors)
        mask = merged["completion_mask"] * merged["tool_mask"] if "tool_mask" in merged else merged["completion_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        return merged

    def _round_records(self, batch, out, round_, group_offset, dropped, std) -> list[dict[str, Any]]:
        """This process's records of one round: the reward's breakdowns joined with group and advantage."""
        G, rank = self.num_generations, self.accelerator.process_index
        first_row = rank * len(batch)
        rewards = self._round_rewards[first_row : first_row + len(batch)].tolist()
        advantages = out["advantages"].tolist()
        details = [r for f in self.reward_funcs if isinstance(f, CollectingReward) for r in f.take()]
        records = []
        for i, row in enumerate(batch):
            g = (first_row + i) // G
            record = {
                "kind": "srl", "global_step": self.state.global_step, "round": round_, "group": group_offset + g,
                "generation": i % G, "instance_id": row.get("instance_id"), "step_index": row.get("step_index"),
                "reward": rewards[i], "advantage": advantages[i],
                "group_std": None if std is None else float(std[g]),
                "dropped": None if dropped is None else bool(dropped[g]),
            }
            if len(details) == len(batch):  # the SRL reward's own view: completion text and breakdown
                detail = dict(details[i])
                record["source"] = detail.pop("source", row.get("source"))
                record["completion"] = detail.pop("completion", None)
                for key in ("instance_id", "step_index", "global_step"):
                    detail.pop(key, None)
                record["breakdown"] = detail
            records.append(record)
        return records

    def _write_records(self, records: list[dict[str, Any]]) -> None:
        # Every rank joins the gather (a collective), whether or not it holds the log: only rank 0 does.
        everyone = gather_object(records) if self.accelerator.num_processes > 1 else records
        if self.reward_log is not None and self.accelerator.is_main_process:
            for record in everyone:
                self.reward_log.write(record)
            if hasattr(self.reward_log, "flush"):
                self.reward_log.flush()

    def _log_sampling(self, rounds: int, drawn: int, dropped: int, filled: int, need: int) -> None:
        filled = int(self.accelerator.gather(torch.tensor([filled], device=self.accelerator.device)).sum())
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/dropped_fraction"].append(dropped / drawn)
        metrics["dynamic_sampling/rounds"].append(float(rounds))
        metrics["dynamic_sampling/filled_fraction"].append(filled / (need * self.accelerator.num_processes))
        s = self.sampling_stats
        s["groups_drawn"] += drawn
        s["groups_dropped"] += dropped
        s["groups_filled"] += filled
        s["rounds"] += rounds
        s["batches"] += 1

    # --- checkpoints: the refill stream's position travels with model, optimizer, scheduler and RNG -----

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            with open(os.path.join(folder, STATE_FILE), "w", encoding="utf-8") as fh:
                json.dump({"refill": self.refill.state_dict(), "stats": self.sampling_stats,
                           "config": asdict(self.dynamic_sampling) if self.dynamic_sampling else None}, fh)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, STATE_FILE) if checkpoint else None
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                state = json.load(fh)
            self.refill.load_state_dict(state["refill"])
            self.sampling_stats.update(state.get("stats") or {})


def _rows(out: dict[str, Any], start: int, end: int) -> dict[str, torch.Tensor]:
    """Rows [start, end) of every per-row tensor of TRL's batch (``num_items_in_batch`` is recounted later)."""
    part = {}
    for key, value in out.items():
        if key == "num_items_in_batch":
            continue
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            raise NotImplementedError(f"dynamic sampling handles text-only batches; got {key!r}")
        part[key] = value[start:end]
    return part
