"""RLVR: multi-turn episodes in task sandboxes, rewarded by the task's tests.

- ``pool``: ``SandboxPool``, warm sandboxes per task image, reset between episodes, bounded;
- ``environment``: ``SWEEnvironment``, the tools + ``reset`` + ``get_reward`` of one episode (TRL's
  ``environment_factory`` shape), graded with swebench;
- ``rollout``: episodes as one token sequence each (model tokens + masked environment tokens), for
  TRL's ``rollout_func``.
"""

from .environment import EpisodeConfig, SWEEnvironment, patch_files, task_test_files
from .pool import PoolExhausted, SandboxPool

__all__ = ["EpisodeConfig", "PoolExhausted", "SWEEnvironment", "SandboxPool", "patch_files", "task_test_files"]
