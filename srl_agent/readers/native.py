"""srl-agent's own trajectory rows (``Trajectory.to_dict``: ``schema_version``, ``task``, ``steps``), as
``replay --write-verified`` writes them: snapshots, per-step diffs and the replay's verdict included."""

from __future__ import annotations

from typing import Any

from ..schema import Trajectory
from .base import ReadError, register, require


def _is_native(r: Any) -> bool:
    return isinstance(r, dict) and "schema_version" in r and isinstance(r.get("task"), dict) and "steps" in r


@register("srl-agent", _is_native, "srl-agent's own rows (replay --write-verified)")
def parse(record: dict, source: str) -> Trajectory:
    require(record, "steps", list)
    require(record["task"], "instance_id", str, field="task.instance_id")
    try:
        traj = Trajectory.from_dict(record)
    except (KeyError, TypeError, ValueError) as e:
        raise ReadError(f"not a valid srl-agent row ({type(e).__name__}: {e})", field="steps",
                        reason="bad srl-agent row") from None
    traj.source = source  # where it was read; replay keeps where it came from in ``verified["source"]``
    return traj
