"""Hypothesis: the canonical action text reads back to the same call, and the readers answer every
mangled real record with a Trajectory or a ReadError that names the field, never a crash."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srl_agent.actions import find_xml_calls, normalise, render
from srl_agent.readers import ReadError, parse_record
from srl_agent.readers.base import iter_file_records, iter_paths
from srl_agent.schema import ToolCall, Trajectory

from .conftest import SHARED

# Parameter values may hold anything a shell command or source file holds, except our own delimiters.
values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200).filter(
    lambda s: "</parameter>" not in s and "<parameter=" not in s and "</function>" not in s
)
paths = st.from_regex(r"/testbed/[a-z_/]{1,30}\.py", fullmatch=True)
calls = st.one_of(
    st.builds(lambda c: ToolCall("bash", {"command": c}), values),
    st.just(ToolCall("submit", {})),
    st.builds(lambda p, r: ToolCall("str_replace_editor", {"command": "view", "path": p, "view_range": r}),
              paths, st.lists(st.integers(-1, 10_000), min_size=2, max_size=2)),
    st.builds(lambda p, t: ToolCall("str_replace_editor", {"command": "create", "path": p, "file_text": t}), paths, values),
    st.builds(lambda p, o, n: ToolCall("str_replace_editor", {"command": "str_replace", "path": p, "old_str": o, "new_str": n}),
              paths, values, values),
    st.builds(lambda p, i, n: ToolCall("str_replace_editor", {"command": "insert", "path": p, "insert_line": i, "new_str": n}),
              paths, st.integers(0, 10_000), values),
)


@given(calls)
def test_render_then_parse_is_identity(call):
    found = find_xml_calls(render(call))
    assert len(found) == 1
    name, params, _ = found[0]
    assert normalise(name, params).call == call


def _samples():
    """One small real record of every file that holds trajectories (none without the shared data: the
    tests that use them ask for ``shared_data``, which skips or fails then)."""
    out = []
    if not SHARED.is_dir():
        return out
    for path in iter_paths([SHARED]):
        if path.stat().st_size > 400_000:
            continue
        for rec in iter_file_records(path):
            if rec.error is None:
                try:
                    parse_record(rec.value, str(path))
                except ReadError:
                    break
                out.append((path.name, rec.value))
            break
    return out


SAMPLES = _samples()


def _locations(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _locations(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:6]):
            yield from _locations(v, (*prefix, i))


junk = st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2), st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mangled_records_fail_cleanly(shared_data, data):
    name, record = data.draw(st.sampled_from(SAMPLES), label="file")
    locs = [loc for loc in _locations(record) if loc]
    loc = data.draw(st.sampled_from(locs), label="location")
    mangled = copy.deepcopy(record)
    parent = mangled
    for key in loc[:-1]:
        parent = parent[key]
    if data.draw(st.booleans(), label="delete") and isinstance(parent, dict):
        del parent[loc[-1]]
    else:
        parent[loc[-1]] = data.draw(junk, label="value")
    try:
        traj = parse_record(mangled, name)
    except ReadError as e:
        assert str(e)  # says what is wrong
        return
    assert isinstance(traj, Trajectory)
    json.dumps(traj.to_dict())  # whatever was read is still valid schema


def test_fuzzing_covers_the_formats(shared_data):
    fmts = {parse_record(r, n).source_format.split(":")[0] for n, r in SAMPLES}
    assert fmts >= {"sweagent", "swesmith", "minisweagent", "nebius", "openhands-events", "openhands-output",
                    "openhands-completion"}
