"""Evaluation on SWE-bench-style tasks: agent and oracle-file modes, scored by the official harness.

- ``data``: datasets (local swebench-5 files, hub names; older SWE-bench rows converted);
- ``oracle``: the oracle-file prompt, SEARCH/REPLACE answers, their unified diff;
- ``trajfile``: agent episodes as SWE-agent ``.traj`` files;
- ``harness``: ``swebench.harness.run_evaluation`` on a predictions file, per-instance status;
- ``run``: ``run_eval``, which ties them together (``srl-agent eval``, ``cli``).
"""

from __future__ import annotations

from .run import MODES, run_eval

__all__ = ["MODES", "run_eval"]
