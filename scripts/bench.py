#!/usr/bin/env python3
"""Benchmarks. Each prints its figures as one JSON line last; timings come with a baseline timed in
the same run, so figures compare across machines as ratios.

    python scripts/bench.py prepare [--copies N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "trajectories"


def _replicate(src: Path, dest: Path, copies: int) -> None:
    """``copies`` hard-linked copies of the trajectory files (the reader sees distinct files)."""
    from srl_agent.readers.base import iter_paths

    files = list(iter_paths([src]))
    for c in range(copies):
        d = dest / f"copy{c:04d}"
        d.mkdir(parents=True)
        for f in files:
            target = d / f.relative_to(src).as_posix().replace("/", "~")
            try:
                os.link(f, target)
            except OSError:
                shutil.copy(f, target)


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter pinned to one core; return the JSON it prints last."""
    cmd = [sys.executable, "-c", code]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


PREPARE = """
import json, resource, time
from srl_agent.prepare import prepare
t = time.perf_counter()
s = prepare([{src!r}], {out!r})
print(json.dumps({{"seconds": time.perf_counter() - t, "steps": s["steps_written"], "trajectories": s["trajectories_read"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

# Baseline: the I/O floor — decode every record and encode it again, without any reading logic.
DECODE = """
import json, time
from srl_agent.readers.base import iter_paths, iter_file_records
t = time.perf_counter(); n = 0
with open({out!r}, "w") as fh:
    for p in iter_paths([{src!r}]):
        for r in iter_file_records(p):
            fh.write(json.dumps(r.value)); n += 1
print(json.dumps({{"seconds": time.perf_counter() - t, "records": n}}))
"""


def bench_prepare(args) -> dict:
    sys.path.insert(0, str(ROOT))
    src = Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, big = tmp / "small", tmp / "big"
        _replicate(src, small, max(1, args.copies // 4))
        _replicate(src, big, args.copies)
        base = _child(DECODE.format(src=str(big), out=str(tmp / "decode.jsonl")))
        run_small = _child(PREPARE.format(src=str(small), out=str(tmp / "small.jsonl")))
        run = _child(PREPARE.format(src=str(big), out=str(tmp / "big.jsonl")))
    return {
        "bench": "prepare",
        "trajectories": run["trajectories"],
        "steps": run["steps"],
        "steps_per_second": round(run["steps"] / run["seconds"], 1),
        "seconds": round(run["seconds"], 2),
        "baseline_decode_seconds": round(base["seconds"], 2),
        "ratio_to_decode_baseline": round(run["seconds"] / base["seconds"], 2),
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "peak_rss_mb_quarter_input": round(run_small["peak_rss_mb"], 1),
        "target_steps_per_second": 2000,
        "target_peak_rss_mb": 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("prepare", help="step instances per second and peak memory of `prepare`")
    p.add_argument("--data", default=str(SHARED))
    p.add_argument("--copies", type=int, default=40, help="replications of the data (default: 40)")
    p.set_defaults(fn=bench_prepare)
    args = parser.parse_args()
    print(json.dumps(args.fn(args)))


if __name__ == "__main__":
    main()
