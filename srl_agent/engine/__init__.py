"""The one episode engine: replay, evaluation and RLVR drive the same loop over the same environment.

- ``records``: ``EpisodeRecord`` (what every consumer reads), the statuses, ``EpisodeConfig`` (the one
  budget rule);
- ``loop``: ``run_episodes(rows, driver, environment)``, the batched episode loop;
- ``environment``: ``SandboxEnvironment`` (a pooled sandbox, the tools, pristine grading) and
  ``SWEEnvironment`` (the same in TRL's ``environment_factory`` shape);
- ``pool``: ``SandboxPool``, warm sandboxes per image, replaced when an episode changed them outside
  the work tree;
- ``integrity``: the test-infrastructure files a patch touches, left out before grading.
"""

from .environment import EPISODE_OVER, SandboxEnvironment, SWEEnvironment
from .loop import Driver, Environment, read_action, run_episodes
from .pool import PoolExhausted, SandboxPool
from .records import (
                      BROKEN,
                      DISK_LIMIT,
                      EMPTY_PATCH,
                      ERROR,
                      EXIT_STATUSES,
                      FORMAT_ERRORS,
                      LENGTH,
                      RESOLVED,
                      RUNNING,
                      STEP_LIMIT,
                      STOPPED,
                      SUBMITTED,
                      TIMEOUT,
                      UNGRADED,
                      UNRESOLVED,
                      EpisodeConfig,
                      EpisodeRecord,
                      StepRecord,
)

__all__ = ["BROKEN", "DISK_LIMIT", "EMPTY_PATCH", "EPISODE_OVER", "ERROR", "EXIT_STATUSES", "FORMAT_ERRORS", "LENGTH", "RESOLVED",
           "RUNNING", "STEP_LIMIT", "STOPPED", "SUBMITTED", "TIMEOUT", "UNGRADED", "UNRESOLVED", "Driver",
           "Environment", "EpisodeConfig", "EpisodeRecord", "PoolExhausted", "SWEEnvironment", "SandboxEnvironment",
           "SandboxPool", "StepRecord", "read_action", "run_episodes"]
