"""Training: SFT (``train_sft``) and SRL (``train_srl``: GRPO with the step reward and dynamic sampling),
configured by recipes, and the end-to-end ``pipeline``. Heavy imports (torch, TRL) happen inside the functions
that need them, except in ``dynamic_sampling``, which subclasses TRL's trainer."""

from __future__ import annotations

from typing import Any


def train_srl(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from .srl import train_srl as run

    return run(*args, **kwargs)


def train_sft(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from .sft import train_sft as run

    return run(*args, **kwargs)


__all__ = ["train_sft", "train_srl"]
