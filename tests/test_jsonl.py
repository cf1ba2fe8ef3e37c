"""The one JSONL reader: line numbers, blank lines, bad lines named by file and line."""

from __future__ import annotations

import json

import pytest

from srl_agent.jsonl import JsonlError, read_jsonl


def test_values_with_their_line_numbers(tmp_path):
    path = tmp_path / "x.jsonl"
    odd = {"text": "a\u2028b\x85c"}  # line separators json.dumps leaves raw: not line ends in JSONL
    path.write_text(json.dumps({"a": 1}) + "\n\n   \n" + json.dumps(odd, ensure_ascii=False) + "\n[1, 2]", encoding="utf-8")
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, odd), (5, [1, 2])]


def test_a_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"b": 2}\n', encoding="utf-8")
    with pytest.raises(JsonlError, match=r"bad\.jsonl:2: not JSON: Expecting value") as err:
        list(read_jsonl(path))
    assert isinstance(err.value, ValueError) and err.value.line_no == 2
    got = list(read_jsonl(path, errors="yield"))
    assert [n for n, _ in got] == [1, 2, 3] and got[0][1] == {"a": 1} and got[2][1] == {"b": 2}
    assert isinstance(got[1][1], JsonlError) and got[1][1].msg.startswith("Expecting value")
    with pytest.raises(ValueError, match="errors must be one of"):
        list(read_jsonl(path, errors="skip"))
