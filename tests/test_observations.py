"""Recorded vs regenerated observations: each harness's wrapping off, run-to-run noise out."""

from __future__ import annotations

from srl_agent.observations import normalise, recorded_exit_code, similarity, unwrap
from srl_agent.tools import NO_OUTPUT


def test_mini_swe_agent_observations_are_unwrapped():
    assert unwrap("<returncode>2</returncode>\n<output>\nls: cannot access 'x'\n</output>") == \
        ("ls: cannot access 'x'\n", 2, False)
    long = ("<returncode>0</returncode>\n<warning>\nThe output of your last command was too long.\n</warning>"
            "<output_head>\nHEAD</output_head>\n<elided_chars>\n9 characters elided\n</elided_chars>\n"
            "<output_tail>\nTAIL</output_tail>")
    assert unwrap(long) == ("HEADTAIL", 0, True)
    assert unwrap(NO_OUTPUT) == ("", None, False) and unwrap("plain text") == ("plain text", None, False)
    assert recorded_exit_code("<returncode>1</returncode>\n<output>\n</output>") == 1


def test_timings_paths_addresses_clocks_and_ls_dates_do_not_count():
    recorded = ("<returncode>0</returncode>\n<output>\n== 3 passed in 0.12s ==\n<Foo object at 0x7f3a2b1c9d60>\n"
                "/tmp/tmpab_c1/x.py\n-rw-r--r-- 1 root root 12 Oct 11 09:14 a.py\n</output>")
    replayed = ("== 3 passed in 1.50s ==\n<Foo object at 0x7ffe00112233>\n/tmp/tmpZZ9/x.py\n"
                "-rw-r--r-- 1 root root 12 Dec  2 15:20 a.py")
    assert similarity(recorded, replayed) == 1.0
    assert similarity(recorded, replayed.replace("3 passed", "2 passed, 1 failed")) < 1.0
    assert normalise("a  \r\nb\t \n") == "a\nb"


def test_an_empty_recording_matches_the_tools_no_output_notice():
    assert similarity("<returncode>0</returncode>\n<output>\n</output>", NO_OUTPUT) == 1.0
