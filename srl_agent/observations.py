"""Recorded and regenerated observations, made comparable.

Each harness wraps a command's output its own way (mini-swe-agent: ``<returncode>N</returncode>`` and
``<output>…</output>``, or a head and a tail when the output was long); ``unwrap`` takes the wrapping
off. ``normalise`` removes what differs from run to run on a faithful image: timings, temporary paths,
object addresses, process ids, clock times. ``similarity`` is the Indel similarity of the two results.
"""

from __future__ import annotations

import re

from rapidfuzz.distance import Indel

from .tools import NO_OUTPUT

_MINI = re.compile(r"\A\s*<returncode>(-?\d+)</returncode>\s*(.*)\Z", re.S)
_MINI_OUTPUT = re.compile(r"\A<output>\n?(.*?)</output>\s*\Z", re.S)
_MINI_LONG = re.compile(r"<output_head>\n?(.*?)</output_head>.*?<output_tail>\n?(.*?)</output_tail>", re.S)
MINI_LONG_HALF = 5000  # characters mini-swe-agent keeps at each end of an output over 10,000

_NOISE = (
    (re.compile(r"0x[0-9a-fA-F]{6,16}"), "0x…"),  # object addresses
    (re.compile(r"/tmp/(?:tmp|pytest-of-[^/\s]+/pytest-\d+/)[\w.-]*"), "/tmp/…"),  # tempfile / pytest tmp_path
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|sec|secs|seconds)\b"), "<t>"),  # durations (pytest's "in 0.12s")
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<clock>"),
    # `ls -l` dates: "Dec  2 15:20" (this year) or "Mar 14  2023"
    (re.compile(r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d (?: ?\d{4}|\d{2}:\d{2})\b"), "<date>"),
    (re.compile(r"\b(pid|PID|process)(\s*[=:]?\s*)\d+\b"), r"\1\2<pid>"),
)


def unwrap(observation: str) -> tuple[str, int | None, bool]:
    """(the output, its exit code if the harness recorded one, whether it was cut to head and tail)."""
    m = _MINI.match(observation)
    if m is None:
        return ("" if observation.strip() == NO_OUTPUT else observation), None, False
    code, rest = int(m.group(1)), m.group(2)
    out = _MINI_OUTPUT.match(rest)
    if out is not None:
        return out.group(1), code, False
    long = _MINI_LONG.search(rest)
    if long is not None:
        return long.group(1) + long.group(2), code, True
    return rest, code, False


def normalise(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()
    for pattern, replacement in _NOISE:
        text = pattern.sub(replacement, text)
    return text


def similarity(recorded: str, regenerated: str) -> float:
    """How alike a recorded observation and the one replay produced are (1.0: the same, once unwrapped
    and normalised). A recording cut to head and tail is compared with the same cut of ours."""
    rec, _, cut = unwrap(recorded)
    ours, _, _ = unwrap(regenerated)
    if cut:
        ours = ours.strip()
        ours = ours[:MINI_LONG_HALF] + ours[-MINI_LONG_HALF:] if len(ours) > 2 * MINI_LONG_HALF else ours
    return Indel.normalized_similarity(normalise(rec), normalise(ours))


def recorded_exit_code(recorded: str) -> int | None:
    return unwrap(recorded)[1]
