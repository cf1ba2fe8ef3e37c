"""SIGTERM, SIGHUP and SIGINT to a running `srl-agent` command: every container it started is removed,
the official harness's too, the command exits non-zero, and what it wrote stays readable.

Before, SIGTERM to `train rlvr` left its sandboxes running and SIGTERM to `eval` left the harness's
containers (and the harness itself, as an orphan)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from srl_agent.sandbox import LABELS_ENV

SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


def labelled(client, run_label: str, name: str = "") -> list:
    return [c for c in client.containers.list(all=True, filters={"label": run_label}) if c.name.startswith(name)]


def run_until_containers(argv: list[str], client, run_label: str, name: str, sig: int, tmp_path) -> subprocess.Popen:
    """Start ``argv``, wait until one of its labelled containers (named ``name``…) exists, send ``sig``."""
    assert os.environ.get(LABELS_ENV) == run_label  # conftest tags every container of this session
    log = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "srl_agent.cli", *argv], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 300
    while not labelled(client, run_label, name):
        assert proc.poll() is None, (tmp_path / "stderr.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "no container appeared"
        time.sleep(0.2)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return proc


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_to_eval_removes_the_harness_and_its_containers(sig, images, docker_client, run_label, tmp_path):
    """The harness's own containers carry this session's label (so they are seen at all), and go."""
    out = tmp_path / "eval"
    proc = run_until_containers(["eval", "--gold", "--output-dir", str(out), "--run-id", "sigtest", "--json"],
                                docker_client, run_label, "sweb.eval.", sig, tmp_path)
    assert proc.returncode != 0
    assert labelled(docker_client, run_label) == []
    assert [c.name for c in docker_client.containers.list(all=True) if c.name.endswith(".sigtest")] == []
    harness = subprocess.run(["pgrep", "-f", "srl_agent.evaluation.harness_main"], capture_output=True, text=True)
    assert harness.stdout.strip() == ""  # no orphaned harness


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_to_replay_removes_its_sandboxes(sig, images, docker_client, run_label, tmp_path):
    proc = run_until_containers(["replay", "--all", "--report", str(tmp_path / "report.json"), "--json"],
                                docker_client, run_label, "", sig, tmp_path)
    assert proc.returncode != 0
    assert labelled(docker_client, run_label) == []


def test_sigterm_to_train_rlvr_removes_its_sandboxes_and_keeps_the_log_valid(images, docker_client, run_label,
                                                                             tmp_path):
    out = tmp_path / "rlvr"
    proc = run_until_containers(["train", "rlvr", "--output-dir", str(out), "--recipe", "tiny", "--json"],
                                docker_client, run_label, "", signal.SIGTERM, tmp_path)
    assert proc.returncode == 128 + signal.SIGTERM
    assert labelled(docker_client, run_label) == []
    log = out / "rewards.jsonl"
    if log.exists():  # whatever was logged before the signal is whole JSON lines
        for line in log.read_text().splitlines():
            json.loads(line)
