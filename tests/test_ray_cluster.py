"""The engine on a real Ray cluster: two Ray nodes on loopback, each with a Docker engine of its own and the
bundled task images loaded into it (``tests/cluster.py``), started and stopped by this module.

What is compared comes from the same run: the single-engine results of the same scripted policy (the
gold patches, which resolve every bundled task), the official harness on the local engine, local
rollouts' token sequences.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.cluster import LocalCluster, gold_driver, gold_generator, problem

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rows():
    from srl_agent.tasks import load_dataset

    return load_dataset()


@pytest.fixture(scope="module")
def cluster(images, docker_client, rows):
    why = problem()
    if why and os.environ.get("SRL_REQUIRE_DOCKER"):  # CI: the machine can run it, so not running it fails
        pytest.fail(why, pytrace=False)
    if why:
        pytest.skip(why)
    c = LocalCluster(nodes=2, slots=2, images=sorted({r["image"] for r in rows}))
    try:
        c.start()
        c.enter()
        yield c
    finally:
        c.stop()


def _no_containers(cluster: LocalCluster) -> None:
    for n in range(2):
        left = cluster.containers(n, label="srl-agent")
        assert left == [], f"engine {n} keeps {[(c.name, c.labels) for c in left]}"


def _view(ep) -> dict:
    """What an episode's consumers read of it, timings aside."""
    return {"instance_id": ep.instance_id, "exit_status": ep.exit_status, "outcome": ep.outcome, "reward": ep.reward,
            "patch": ep.patch, "grade": ep.grade, "edited_test_files": ep.edited_test_files, "turns": ep.turns,
            "steps": [(s.action.name, dict(s.action.arguments), s.observation) for s in ep.steps]}


def test_episodes_land_on_both_engines_and_grade_as_on_one(cluster, rows, docker_client, run_label):
    from srl_agent.engine import RESOLVED, EpisodeConfig, SandboxEnvironment, SandboxPool, run_episodes
    from srl_agent.engine.cluster import ClusterRunner

    config = EpisodeConfig(step_limit=5)
    key, value = run_label.split("=", 1)
    with SandboxPool(4, client=docker_client, labels={key: value}) as pool:
        local = run_episodes(rows, gold_driver(rows), lambda: SandboxEnvironment(pool, config), config, batch_size=4)
    with ClusterRunner(cluster.address) as runner:
        remote = runner.run(rows, gold_driver(rows), config)
        summary = runner.summary()
    assert [ep.outcome for ep in local] == [RESOLVED] * len(rows)  # the gold patches resolve every bundled task
    assert [_view(ep) for ep in remote] == [_view(ep) for ep in local]
    nodes = {ep.container["node"] for ep in remote}
    assert len(nodes) == 2 and all(summary["episodes_per_node"][n] > 0 for n in nodes)
    assert {summary["per_node"][n]["docker_host"] for n in nodes} == set(cluster.sockets)
    assert summary["nodes"] == 2 and summary["images_shipped"] == []  # every node had every image
    _no_containers(cluster)


def _run_with_fault(cluster, runner, rows, fault) -> list:
    """The gold episodes (each waiting 20 s before its patch), with ``fault()`` once node 1 runs two of them."""
    from srl_agent.engine import EpisodeConfig

    def when_busy():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len([c for c in cluster.containers(1) if c.status == "running"]) < 2:
            time.sleep(0.2)
        time.sleep(2)  # both of its episodes are in their 20 s wait now
        fault()

    thread = threading.Thread(target=when_busy)
    thread.start()
    try:
        return runner.run(rows, gold_driver(rows, wait=20), EpisodeConfig(step_limit=5))
    finally:
        thread.join()


def test_a_lost_actor_fails_only_its_own_episodes(cluster, rows):
    import ray

    from srl_agent.engine import ERROR, RESOLVED
    from srl_agent.engine.cluster import ClusterRunner

    victim = cluster.node_ids()[1]  # the worker node: engine 1
    with ClusterRunner(cluster.address) as runner:
        name = runner.nodes[victim].name
        seen: dict = {}

        def kill():
            seen["inflight"] = runner.nodes[victim].inflight
            ray.kill(runner.actor(victim))

        episodes = _run_with_fault(cluster, runner, rows, kill)
        summary = runner.summary()
    errors = [ep for ep in episodes if ep.exit_status == ERROR]
    assert seen["inflight"] == 2 and len(errors) == 2, [(ep.instance_id, ep.error) for ep in errors]
    assert all(ep.container["node"] == name and ep.outcome == ERROR and ep.reward == 0.0 for ep in errors)
    assert all("lost" in ep.error for ep in errors)
    # RLVR keeps them out of the advantage computation: no reward at all, not a 0 (TRL: advantage 0, no baseline).
    from srl_agent.train.rlvr import episode_reward, tests_resolved

    assert tests_resolved(test_reward=[episode_reward(ep.to_dict("rlvr")) for ep in errors]) == [None, None]
    others = [ep for ep in episodes if ep.exit_status != ERROR]
    assert [ep.outcome for ep in others] == [RESOLVED] * len(others)
    assert any(ep.container["node"] == name for ep in others)  # the recreated actor took episodes again
    assert summary["per_node"][name]["restarts"] == 1 and summary["nodes"] == 2
    _no_containers(cluster)  # the lost actor's containers too: its successor removed them


def cli(cluster, *args) -> dict:
    """The srl-agent command in the cluster's namespace (where its address is reachable); its --json summary."""
    done = subprocess.run([*cluster.nsenter, sys.executable, "-m", "srl_agent.cli", *map(str, args), "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gold_evaluation_on_the_cluster_scores_as_the_local_harness(cluster, rows, tmp_path):
    """`srl-agent eval --gold --ray ADDRESS` against the same evaluation on the local engine."""
    from srl_agent.evaluation.run import run_eval

    local = run_eval(gold=True, output_dir=tmp_path / "local")
    remote = cli(cluster, "eval", "--gold", "--ray", cluster.address, "-o", tmp_path / "ray")

    def statuses(summary):
        return [(i["instance_id"], i["status"], i.get("FAIL_TO_PASS"), i.get("PASS_TO_PASS"))
                for i in summary["instances"]]

    assert local["resolved"] == remote["resolved"] == len(rows)
    assert statuses(remote) == statuses(local)
    per_node = remote["ray"]["episodes_per_node"]
    assert remote["ray"]["nodes"] == 2 and len(per_node) == 2 and all(per_node.values())
    assert sum(per_node.values()) == len(rows)
    assert "==== node" in Path(remote["harness_log"]).read_text()
    _no_containers(cluster)
    for n in range(2):  # the harness's own containers
        assert [c.name for c in cluster.client(n).containers.list(all=True)] == []


def test_rollouts_on_the_cluster_are_the_local_token_sequences(cluster, rows, docker_client, run_label):
    from transformers import AutoTokenizer

    from srl_agent.engine import SandboxPool
    from srl_agent.engine.cluster import ClusterRunner
    from srl_agent.models import resolve_model
    from srl_agent.prompts import SYSTEM_PROMPT
    from srl_agent.train.rollouts import ConversationTokens, RolloutConfig, run_rollouts

    some = rows[:4]
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None))
    tokens = ConversationTokens(tokenizer, SYSTEM_PROMPT)
    generate = gold_generator(tokenizer, some, tokens.stop_ids)
    key, value = run_label.split("=", 1)
    with SandboxPool(2, client=docker_client, labels={key: value}) as pool:
        local = run_rollouts(some, generate, tokens, pool, RolloutConfig())
    with ClusterRunner(cluster.address) as runner:
        remote = run_rollouts(some, generate, tokens, None, RolloutConfig(), runner=runner)
        per_node = runner.summary()["episodes_per_node"]
    assert [r.reward for r in local] == [1.0] * len(some)
    for a, b in zip(local, remote, strict=True):
        assert (a.prompt_ids, a.completion_ids, a.env_mask, a.turns) == (b.prompt_ids, b.completion_ids, b.env_mask,
                                                                          b.turns)
        assert (a.reward, a.record["status"], a.record["patch"]) == (b.reward, b.record["status"], b.record["patch"])
    assert len([n for n, count in per_node.items() if count]) == 2
    _no_containers(cluster)


def test_train_rlvr_gathers_its_episodes_from_the_cluster(cluster, tmp_path):
    from srl_agent.train.rlvr import read_episodes, train_rlvr

    out = tmp_path / "rlvr"
    summary = train_rlvr(None, out, recipe="tiny", ray_address=cluster.address,
                         overrides={"rlvr.grpo.max_steps": 1, "rlvr.rollout.max_new_tokens": 8,
                                    "rlvr.rollout.episode.step_limit": 1})
    records = read_episodes(out / "rewards.jsonl")
    assert summary["steps"] == 1 and summary["episodes"] == len(records) == 4  # 2 tasks x 2 generations
    assert summary["pool"] is None and summary["ray"]["nodes"] == 2
    assert sum(summary["ray"]["episodes_per_node"].values()) == 4
    assert all(r["kind"] == "rlvr" and r["advantage"] is not None and r["status"] != "error" for r in records)
    _no_containers(cluster)


def test_replay_on_the_cluster_reports_as_locally(cluster, rows):
    """Replay's episodes (bundled expert trajectories: snapshots, step diffs, the pristine grade) run on the
    nodes as ``replay.replay`` runs them here, fresh containers as there."""
    from srl_agent.engine import EpisodeConfig
    from srl_agent.engine.cluster import ClusterRunner
    from srl_agent.readers import read_file
    from srl_agent.replay import ScriptedDriver, replay, report_of, script_of, trajectory_path

    some = rows[:4]
    trajs = [read_file(trajectory_path(r["instance_id"]))[0] for r in some]
    local = replay(trajs, some, timeout=120, batch_size=2)
    scripts = [script_of(t) for t in trajs]
    config = EpisodeConfig(step_limit=max(len(s.calls) for s in scripts), command_timeout=120)
    with ClusterRunner(cluster.address, warm=False) as runner:
        episodes = runner.run(some, ScriptedDriver(scripts), config, environment={"snapshots": True, "step_diffs": True})
        per_node = runner.summary()["episodes_per_node"]
    for traj, (report, ep), remote in zip(trajs, local, episodes, strict=True):
        assert report_of(traj, remote).to_dict() == report.to_dict()
        assert [(s.snapshot, s.diff) for s in remote.steps] == [(s.snapshot, s.diff) for s in ep.steps]
    assert all(per_node.values()) and len(per_node) == 2
    _no_containers(cluster)


def test_cli_replay_on_the_cluster_agrees_with_the_recorded_outcomes(cluster, rows, tmp_path):
    summary = cli(cluster, "replay", "--all", "--ray", cluster.address, "--report", tmp_path / "report.json")
    assert summary["total"] == summary["agree"] == summary["resolved"] == len(rows)
    assert summary["ray"]["nodes"] == 2 and sum(summary["ray"]["episodes_per_node"].values()) == len(rows)
    assert all(summary["ray"]["episodes_per_node"].values())
    _no_containers(cluster)


def test_agent_evaluation_generates_here_and_acts_on_the_nodes(cluster, rows, tmp_path):
    """A model driver stays in this process: the tiny model answers every node's turns through the relay."""
    from srl_agent.agent import AgentConfig
    from srl_agent.evaluation.run import run_eval

    ids = [r["instance_id"] for r in rows[:4]]
    summary = run_eval(None, mode="agent", output_dir=tmp_path, instance_ids=ids, do_score=False,
                       agent_config=AgentConfig(step_limit=2, max_new_tokens=16, batch_size=4),
                       ray_address=cluster.address)
    assert summary["submitted"] == 4 and sorted(p.stem for p in (tmp_path / "trajs").iterdir()) == sorted(ids)
    assert summary["ray"]["nodes"] == 2 and sum(summary["ray"]["episodes_per_node"].values()) == 4
    assert not summary["ray"]["errors_per_node"]  # every turn was answered
    _no_containers(cluster)


def test_a_node_without_the_image_gets_the_layers_it_lacks(cluster, rows):
    from srl_agent.engine import RESOLVED
    from srl_agent.engine.cluster import ClusterRunner

    row = rows[-1]
    engine = cluster.client(1)
    try:
        engine.images.remove(row["image"])
        with ClusterRunner(cluster.address, nodes=[cluster.node_ids()[1]]) as runner:
            [episode] = runner.run([row], gold_driver([row]))
            shipped = list(runner.shipped)
            ghost = {**row, "instance_id": "ghost", "image": "srl-agent/task.ghost:missing"}
            [lost] = runner.run([ghost], gold_driver([ghost]))
        assert lost.exit_status == lost.outcome == "error" and "is on no engine in reach" in lost.error
        assert episode.outcome == RESOLVED
        assert [s["image"] for s in shipped] == [row["image"]]
        # The base image's layers are on the node already: only the task's own travel (a few MB, not ~250).
        assert shipped[0]["layers_skipped"] >= 1 and 0 < shipped[0]["bytes"] < 50 * 2**20
        assert row["image"] in {t for image in engine.images.list() for t in image.tags}
    finally:
        engine.close()
    _no_containers(cluster)


DRIVER = """
import sys
sys.path.insert(0, {root!r})
from srl_agent import signals
signals.install()
from srl_agent.engine import EpisodeConfig
from srl_agent.engine.cluster import ClusterRunner
from srl_agent.tasks import load_dataset
from tests.cluster import gold_driver
rows = load_dataset()[:4]
runner = ClusterRunner({address!r})
runner.run(rows, gold_driver(rows, wait=120), EpisodeConfig(step_limit=5))
print("not interrupted")
"""


def test_sigterm_of_the_driver_leaves_no_container_on_any_node(cluster):
    proc = subprocess.Popen([*cluster.nsenter, sys.executable, "-c", DRIVER.format(root=str(ROOT), address=cluster.address)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not all(cluster.containers(n) for n in range(2)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no sandbox started on both engines"
            time.sleep(0.5)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "not interrupted" not in out
    _no_containers(cluster)


def test_a_dead_engine_fails_only_its_own_episodes_and_its_node_is_left_out(cluster, rows):
    """Last in this module: it stops node 1's dockerd for good."""
    from srl_agent.engine import ERROR, RESOLVED
    from srl_agent.engine.cluster import ClusterRunner

    victim = cluster.node_ids()[1]
    with ClusterRunner(cluster.address) as runner:
        name = runner.nodes[victim].name

        episodes = _run_with_fault(cluster, runner, rows, cluster.dockerds[1].terminate)
        summary = runner.summary()
    errors = [ep for ep in episodes if ep.exit_status == ERROR]
    assert len(errors) == 2 and all(ep.container["node"] == name and ep.reward == 0.0 for ep in errors)
    others = [ep for ep in episodes if ep.exit_status != ERROR]
    assert [ep.outcome for ep in others] == [RESOLVED] * len(others) and len(others) == len(rows) - 2
    assert all(ep.container["node"] != name for ep in others)
    assert summary["nodes"] == 1 and summary["per_node"][name]["lost"] == "its Docker engine does not answer"
    assert cluster.containers(0) == []


@pytest.mark.parametrize("command", [["replay", "--all"], ["eval", "--gold"], ["train", "rlvr", "--recipe", "tiny"]],
                         ids=["replay", "eval", "rlvr"])
def test_a_ray_address_where_nothing_answers_is_one_error_line(command, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = ["-o", str(tmp_path / "out")] if command[0] != "replay" else ["--report", str(tmp_path / "r.json")]
    done = subprocess.run([sys.executable, "-m", "srl_agent.cli", *command, *out, "--ray", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: --ray 127.0.0.1:") and "no Ray cluster answers" in line
