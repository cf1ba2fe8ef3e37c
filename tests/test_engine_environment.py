"""The RLVR environment against the real engine: a scripted policy replays the expert's tool calls
(gold fix → 1.0), an empty answer and a PASS_TO_PASS-breaking one score 0.0, test-file edits are
restored before grading and flagged, crashed and timed-out episodes score 0 and leave no container,
and the warm pool reuses containers. Expected values come from the task rows and the expert
trajectories, not from the environment's own output."""

from __future__ import annotations

import pytest

from srl_agent.engine import EpisodeConfig, PoolExhausted, SandboxPool, SWEEnvironment
from srl_agent.readers import read_file
from srl_agent.replay import trajectory_path
from srl_agent.schema import ToolCall
from srl_agent.tasks import load_dataset
from srl_agent.tools import NO_OUTPUT

LEAP = "gweis__isodate.0.7.2.leap-year-centuries"
MERGE = "pytoolz__toolz.1.0.0.merge-sorted-key-order"
ROWS = {r["instance_id"]: r for r in load_dataset()}


def expert_calls(iid: str) -> list[ToolCall]:
    (traj,) = read_file(trajectory_path(iid))
    return [s.action for s in traj.steps]


def bash(command: str) -> ToolCall:
    return ToolCall("bash", {"command": command})


def test_tools_have_the_schema_trl_reads():
    from transformers.utils import get_json_schema

    names = {}
    for tool in (SWEEnvironment.bash, SWEEnvironment.str_replace_editor, SWEEnvironment.submit):
        schema = get_json_schema(tool)["function"]
        names[schema["name"]] = schema["parameters"].get("required", [])
    assert names == {"bash": ["command"], "str_replace_editor": ["command", "path"], "submit": []}


@pytest.mark.parametrize("iid", [LEAP, MERGE])
def test_the_expert_tool_calls_resolve(pool, iid):
    row = ROWS[iid]
    env = SWEEnvironment(pool)
    issue = env.reset(**row)
    assert row["problem_statement"].strip() in issue
    calls = expert_calls(iid)
    assert calls[-1].name == "submit"
    for call in calls:
        env.execute(call)
    assert env.done and env.status == "submitted"
    record = env.finish()
    assert env.get_reward() == 1.0, {k: record[k] for k in ("status", "error", "reason", "FAIL_TO_PASS", "patch")}
    assert record["status"] == "resolved" and record["exit_status"] == "submitted"
    assert [s["tool"] for s in record["steps"]] == [c.name for c in calls]
    assert sorted(record["FAIL_TO_PASS"]["success"]) == sorted(row["FAIL_TO_PASS"])
    assert sorted(record["PASS_TO_PASS"]["success"]) == sorted(row["PASS_TO_PASS"])
    assert record["edited_test_files"] == []
    env.close()


def test_an_empty_answer_scores_zero_and_the_warm_container_is_reused(pool):
    row = ROWS[LEAP]
    env = SWEEnvironment(pool)
    env.reset(**row)
    env.bash("echo scratch > /testbed/notes.txt && rm /testbed/notes.txt")
    env.submit()
    assert env.get_reward() == 0.0
    assert env.finish()["status"] == "empty_patch"
    # The next episode of the same task gets the same container back, at the base state.
    env.reset(**row)
    assert pool.stats.created == 1 and pool.stats.reused == 1
    env.bash("touch /testbed/leftover.py")
    env.reset(**row)
    assert pool.stats.created == 1 and pool.stats.reused == 2
    assert env.bash("git -C /testbed status --porcelain") == NO_OUTPUT
    env.close()


def test_breaking_a_pass_to_pass_test_scores_zero(pool):
    row = ROWS[MERGE]
    env = SWEEnvironment(pool)
    env.reset(**row)
    for call in expert_calls(MERGE)[:-1]:
        env.execute(call)
    env.bash(r"sed -i 's/d\[item\] += 1/d[item] += 2/' /testbed/toolz/itertoolz.py")
    env.submit()
    assert env.get_reward() == 0.0
    record = env.finish()
    assert record["status"] == "unresolved"
    assert "toolz/tests/test_itertoolz.py::test_frequencies" in record["PASS_TO_PASS"]["failure"]
    assert sorted(record["FAIL_TO_PASS"]["success"]) == sorted(row["FAIL_TO_PASS"])
    env.close()


def test_test_file_edits_are_restored_before_grading_and_flagged(pool):
    """Renaming a PASS_TO_PASS test away and adding a new test file: were they graded as written, the
    renamed test would be missing (a failure); restored, the fix still resolves, and both are flagged."""
    row = ROWS[LEAP]
    victim = "tests/test_duration.py::test_neg"
    assert victim in row["PASS_TO_PASS"]
    env = SWEEnvironment(pool)
    env.reset(**row)
    for call in expert_calls(LEAP)[:-1]:
        env.execute(call)
    env.bash("sed -i 's/^def test_neg(/def disabled_neg(/' /testbed/tests/test_duration.py")
    env.bash("printf 'def test_extra():\\n    assert True\\n' > /testbed/tests/test_extra.py")
    env.submit()
    assert env.get_reward() == 1.0
    record = env.finish()
    assert sorted(record["edited_test_files"]) == ["tests/test_duration.py", "tests/test_extra.py"]
    assert "+def disabled_neg(" in record["patch"] and "tests/test_extra.py" in record["patch"]
    assert victim in record["PASS_TO_PASS"]["success"]
    env.close()


def test_a_timed_out_episode_scores_zero_and_its_container_goes(pool):
    env = SWEEnvironment(pool, EpisodeConfig(episode_timeout=1.0))
    env.reset(**ROWS[LEAP])
    env.bash("sleep 1.5")
    assert not env.done
    assert "episode is over" in env.bash("ls")
    assert env.status == "timeout" and env.get_reward() == 0.0
    record = env.finish()
    assert record["status"] == "timeout" and "ran past" in record["error"]
    assert pool.open == 0 and pool.stats.removed == 1
    env.close()


def test_a_crashed_sandbox_scores_zero_and_is_removed(pool, docker_client):
    env = SWEEnvironment(pool)
    env.reset(**ROWS[LEAP])
    docker_client.containers.get(env.sandbox.container.id).remove(force=True)
    env.bash("ls")
    assert env.status == "error" and env.get_reward() == 0.0
    assert env.finish()["status"] == "error"
    assert pool.open == 0
    env.close()


def test_the_step_limit_ends_the_episode_and_the_tree_is_still_graded(pool):
    row = ROWS[LEAP]
    calls = [c for c in expert_calls(LEAP) if c.name != "submit"]
    env = SWEEnvironment(pool, EpisodeConfig(step_limit=len(calls)))
    env.reset(**row)
    for call in calls:
        env.execute(call)
    assert env.status == "step_limit"
    assert "episode is over" in env.bash("ls")
    assert env.get_reward() == 1.0  # the fix is in the tree, as SWE-agent submits what is there
    env.close()


def test_the_pool_bounds_open_sandboxes(images, docker_client, run_label):
    key, value = run_label.split("=", 1)
    with SandboxPool(1, client=docker_client, labels={key: value}, wait_seconds=0.2) as pool:
        first = pool.acquire(ROWS[LEAP])

        with pytest.raises(PoolExhausted):
            pool.acquire(ROWS[MERGE])
        pool.release(first)
        second = pool.acquire(ROWS[MERGE])  # evicts the idle LEAP sandbox
        assert second.config.image == ROWS[MERGE]["image"] and pool.open == 1 and pool.stats.removed == 1
        pool.release(second)


def test_the_episode_sees_no_history_beyond_the_base_commit(pool):
    row = ROWS[MERGE]
    env = SWEEnvironment(pool)
    env.reset(**row)
    assert env.bash("git -C /testbed rev-list --all").split() == [row["base_commit"]]
    env.close()


def test_the_pool_takes_the_engine_from_docker_host(tmp_path):
    import subprocess
    import sys

    code = "from srl_agent.engine import SandboxPool\nSandboxPool(1)"
    where = f"unix://{tmp_path}/no-engine.sock"
    done = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": where},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no-engine.sock" in done.stderr


def test_environments_never_closed_give_their_slots_back_when_collected(images, docker_client, run_label):
    """Two environments dropped mid-episode once held a two-slot pool for good: every later episode
    waited out the pool's wait and failed."""
    import gc

    key, value = run_label.split("=", 1)
    with SandboxPool(2, client=docker_client, labels={key: value}, wait_seconds=5) as pool:
        for _ in range(2):
            SWEEnvironment(pool).reset(**ROWS[LEAP])  # dropped at once, never closed
        gc.collect()
        env = SWEEnvironment(pool)
        env.reset(**ROWS[MERGE])
        assert not env.done and pool.open == 1 and pool.stats.removed == 2
        env.close()


def test_pool_close_removes_sandboxes_still_out(images, docker_client, run_label):
    import docker

    key, value = run_label.split("=", 1)
    pool = SandboxPool(1, client=docker_client, labels={key: value})
    sandbox = pool.acquire(ROWS[LEAP])
    cid = sandbox.container.id
    pool.close()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(cid)
    assert pool.open == 0
    pool.release(sandbox)  # an episode finishing late: nothing to do, no slot freed twice
    assert pool.open == 0


def test_disk_hog_episode_ends_with_its_own_status_and_scores_zero(images, docker_client, run_label):
    """Writing past the sandbox's disk budget (here 200 MiB; 4 GiB by default) ends the episode: status
    disk_limit, reward 0 ungraded, container removed. Without the budget the writes went straight onto
    the host's disk, where /var/lib/docker lives."""
    import docker

    key, value = run_label.split("=", 1)
    with SandboxPool(1, client=docker_client, labels={key: value}, sandbox={"disk": "200m"}) as pool:
        env = SWEEnvironment(pool)
        env.reset(**ROWS[LEAP])
        cid = env.sandbox.container.id
        env.bash("dd if=/dev/zero of=/testbed/big bs=1M count=400 2>&1 | tail -1; sleep 5")
        assert env.status == "disk_limit"
        record = env.finish()
        assert record["reward"] == 0.0 and record["status"] == "disk_limit" and "disk budget" in record["error"]
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(cid)
        env.reset(**ROWS[LEAP])  # a quick writer is caught when the episode ends
        env.bash("head -c 300000000 /dev/zero > /testbed/quick")
        assert env.finish()["status"] == "disk_limit"
        env.close()


def test_an_episode_whose_sandbox_never_started_is_an_error_scoring_zero(pool):
    env = SWEEnvironment(pool)
    env.reset(**{**ROWS[LEAP], "image": "srl-agent/no-such-image:missing"})
    assert env.status == "error" and env.get_reward() == 0.0
    record = env.finish()
    assert record["status"] == "error" and record["exit_status"] == "error" and "sandbox" in record["error"]
    env.close()
