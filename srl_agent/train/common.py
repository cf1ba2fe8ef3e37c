"""What the SFT and SRL runs share: checkpoints to resume from, the vLLM check, run summaries."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any


class TrainError(RuntimeError):
    """A run that cannot start (missing checkpoint, missing optional dependency); the message says what to do."""


def resolve_checkpoint(output_dir: str | Path, resume: bool | str | Path | None) -> str | None:
    """``resume=True``: the last ``checkpoint-N`` in ``output_dir``; a path: that checkpoint; falsy: none."""
    if not resume:
        return None
    if resume is True:
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
        if last is None:
            raise TrainError(f"--resume: no checkpoint-N folder in {output_dir}")
        return last
    if not (Path(resume) / "trainer_state.json").is_file():
        raise TrainError(f"--resume: {resume} is not a checkpoint (no trainer_state.json)")
    return str(resume)


def checkpoint_step(checkpoint: str | None) -> int:
    if checkpoint is None:
        return 0
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])


def require_vllm(grpo: dict[str, Any]) -> None:
    if grpo.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        raise TrainError("use_vllm is set but vLLM is not installed: pip install 'srl-agent[vllm]' on a GPU machine, "
                         "or drop --use-vllm to generate with transformers")


def is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def end_distributed() -> None:
    """Tear down the process group a launcher started: a gloo group left to the interpreter's exit aborts it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def log_series(trainer: Any, key: str) -> list[float]:
    """The values of one logged metric over the run (``trainer.state.log_history``)."""
    return [entry[key] for entry in trainer.state.log_history if key in entry]
