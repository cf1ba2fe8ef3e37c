"""Policies: the offline tiny default, or any causal LM named by hub id or local path."""

from __future__ import annotations

from pathlib import Path

from .tiny import TinyRecipe, cache_root, tiny_model_path

__all__ = ["TinyRecipe", "cache_root", "resolve_model", "tiny_model_path"]

TINY = "tiny"


def resolve_model(model: str | Path | None) -> str:
    """What to load: a hub id or local path as given; ``None`` or ``"tiny"`` builds (or reuses) the tiny model."""
    if model is None or str(model) == TINY:
        return str(tiny_model_path())
    return str(model)
