"""The inspector: why a step got its reward, from the reward store (``srl_agent.store``).

- ``summary``: the summary tables as one dict (mean reward by tool, step position, trajectory;
  format errors; the worst steps; the trend over training steps; episodes);
- ``page`` (with ``plots``, ``diff``, ``details``, ``assets``): the self-contained HTML report;
- ``cli``: ``srl-agent inspect RUN [--json] [--html report.html] [--export rows.parquet]``;
- ``sample``: expert actions, near misses and broken formats for a short real scoring run.
"""

from __future__ import annotations

from .page import render_report, write_report
from .summary import heatmap, summarize

__all__ = ["heatmap", "render_report", "summarize", "write_report"]
