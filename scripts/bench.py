#!/usr/bin/env python3
"""Benchmarks. Each prints its figures as one JSON line last; timings come with a baseline timed in
the same run, so figures compare across machines as ratios.

    python scripts/bench.py prepare [--copies N]
    python scripts/bench.py reward [--repeat N]
    python scripts/bench.py sandbox [--image IMAGE] [--runs N] [--exec-runs N] [--resets N]
    python scripts/bench.py agent [--tasks N] [--max-new-tokens N]
    python scripts/bench.py train [--steps N] [--warmup-steps N]
    python scripts/bench.py ray [--tasks N] [--rounds N] [--slots N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
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


def _reward_groups(src: Path) -> list[dict]:
    """One GRPO-like group per real step: the expert's action and its near misses, as completions."""
    from srl_agent.actions import render
    from srl_agent.readers import read_trajectories
    from srl_agent.rewards.perturb import perturbations
    from srl_agent.schema import ToolCall
    from srl_agent.steps import step_instances

    groups = []
    for traj in read_trajectories([src]):
        commands = [s.action.arguments["command"] for s in traj.steps if s.action.name == "bash"]
        for row in step_instances(traj):
            call = ToolCall.from_dict(row["expert_tool_call"])
            actions = [render(c) for c in [call, *perturbations(call, commands[::-1]).values()]]
            groups.append({"expert": row["expert_action"], "call": row["expert_tool_call"], "actions": actions,
                           "completions": [f"<think>The next step.</think>\n{a}" for a in actions]})
    return groups


def _best_of(repeat: int, fn) -> tuple[float, list]:
    import time

    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_reward(args) -> dict:
    """Step rewards per second, each mode × backend, against a plain difflib loop over the same pairs."""
    import difflib

    sys.path.insert(0, str(ROOT))
    from srl_agent.rewards import MODES, SIMILARITIES, get_similarity, srl_reward
    from srl_agent.rewards.completion import read_canonical
    from srl_agent.rewards.similarity import DIFFLIB_KERNEL

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, like the other benchmarks
    groups = _reward_groups(Path(args.data))
    pairs = [(a, g["expert"]) for g in groups for a in g["actions"]]

    def plain():
        return [difflib.SequenceMatcher(None, a, b).ratio() for a, b in pairs]

    base_s, base_values = _best_of(args.repeat, plain)
    out = {"bench": "reward", "steps": len(groups), "completions": len(pairs),
           "baseline_difflib_loop_per_second": round(len(pairs) / base_s, 1)}
    for mode in MODES:
        for sim in SIMILARITIES:
            reward = srl_reward(mode=mode, similarity=sim)

            def run(reward=reward):  # one call per group, as GRPO scores a prompt's G completions together
                out = []
                for g in groups:
                    k = len(g["completions"])
                    out += reward(None, g["completions"], expert_action=[g["expert"]] * k, expert_tool_call=[g["call"]] * k)
                return out

            secs, values = _best_of(args.repeat, run)
            key = f"{mode}/{sim}"
            out[f"{key}_per_second"] = round(len(pairs) / secs, 1)
            out[f"{key}_ratio"] = round(base_s / secs, 2)
            if (mode, sim) == ("paper", "difflib"):
                out["paper/difflib_bit_identical"] = values == base_values
    # With a reward log attached (as in training) every completion also gets its breakdown record.
    class Sink(list):
        write = list.append

    for sim in SIMILARITIES:
        reward = srl_reward(mode="paper", similarity=sim, log=Sink())
        secs, _ = _best_of(args.repeat, lambda reward=reward: [
            v for g in groups for v in reward(None, g["completions"], expert_action=[g["expert"]] * len(g["actions"]),
                                              expert_tool_call=[g["call"]] * len(g["actions"]))])
        out[f"paper/{sim}_with_breakdowns_ratio"] = round(base_s / secs, 2)
    for sim in SIMILARITIES:  # the similarity kernel alone, without parsing the completions
        fn = get_similarity(sim)
        secs, _ = _best_of(args.repeat, lambda fn=fn: [fn(a, b) for a, b in pairs])
        out[f"kernel/{sim}_ratio"] = round(base_s / secs, 2)
    fn = get_similarity("difflib")
    for label, subset in (("under_1000", [p for p in pairs if max(map(len, p)) < 1000]),
                          ("over_2000", [p for p in pairs if max(map(len, p)) > 2000])):
        t_plain, _ = _best_of(args.repeat, lambda s=subset: [difflib.SequenceMatcher(None, a, b).ratio() for a, b in s])
        t_fast, _ = _best_of(args.repeat, lambda s=subset: [fn(a, b) for a, b in s])
        out[f"kernel/difflib_ratio_actions_{label}_chars"] = round(t_plain / t_fast, 2)
        out[f"pairs_{label}_chars"] = len(subset)
    # Which implementations ran: without the compiled extensions (setup.py) both fall back, slower.
    out.update({"difflib_kernel": DIFFLIB_KERNEL, "canonical_reader": read_canonical is not None,
                "target_paper_difflib_ratio": 4, "target_lcs_ratio": 100})
    return out


# A throwaway repository image for the sandbox benchmark: 200 small files committed at /testbed.
BENCH_REPO = (
    "mkdir -p /testbed && cd /testbed && for i in $(seq 1 200); do printf 'value = %s\\n' $i > mod$i.py; done"
    " && git init -q && git add -A && git -c user.name=b -c user.email=b@example.invalid commit -qm base"
)


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def bench_sandbox(args) -> dict:
    """Round trip of a trivial command through the persistent session vs ``docker exec`` (the baseline,
    same container, same run), container start, and ``reset()`` after a small edit."""
    sys.path.insert(0, str(ROOT))
    import docker

    from srl_agent.sandbox import Sandbox, SandboxConfig

    client = docker.from_env()
    labels = {"srl-agent": "1", "srl-agent.bench": uuid.uuid4().hex[:8]}
    builder = client.containers.run(args.image, ["bash", "-c", BENCH_REPO], detach=True, labels=labels,
                                    network_mode="none")
    try:
        if builder.wait(timeout=300)["StatusCode"] != 0:
            raise SystemExit(f"building the bench repository failed: {builder.logs().decode()[-2000:]}")
        image = builder.commit("srl-agent/bench-repo", labels["srl-agent.bench"]).id
    finally:
        builder.remove(force=True)
    try:
        config = SandboxConfig(image=image, labels={"srl-agent.bench": labels["srl-agent.bench"]})
        t = time.perf_counter()
        sandbox = Sandbox(config, client=client).start()
        start_s = time.perf_counter() - t
        with sandbox:
            for _ in range(20):  # warm up both paths
                sandbox.run("true")
            sandbox.container.exec_run(["true"])
            session_ms = _median_ms(lambda: sandbox.run("true"), args.runs)
            exec_ms = _median_ms(lambda: sandbox.container.exec_run(["true"]), args.exec_runs)
            resets = []
            for i in range(args.resets):
                sandbox.run(f"echo changed >> mod{i + 1}.py && echo new > new{i}.py && cd /tmp")
                t = time.perf_counter()
                sandbox.reset()
                resets.append(time.perf_counter() - t)
            assert sandbox.diff() == "" and sandbox.cwd == "/testbed"
    finally:
        client.images.remove(image, force=True)
    return {
        "bench": "sandbox",
        "session_round_trip_ms": round(session_ms, 3),
        "docker_exec_round_trip_ms": round(exec_ms, 2),
        "exec_over_session_ratio": round(exec_ms / session_ms, 1),
        "container_start_s": round(start_s, 3),
        "reset_s": round(statistics.median(resets), 3),
        "runs": args.runs,
        "exec_runs": args.exec_runs,
        "resets": args.resets,
        "target_session_round_trip_ms": 2,
        "target_exec_over_session_ratio": 30,
        "target_reset_s": 0.3,
    }


def bench_agent(args) -> dict:
    """Agent episodes on the bundled tasks with the tiny model: N episodes side by side (one generate
    call per round for all of them) vs the same N one at a time (the baseline, same run)."""
    sys.path.insert(0, str(ROOT))
    from srl_agent.agent import Agent, AgentConfig
    from srl_agent.images import build_images
    from srl_agent.policy import make_policy
    from srl_agent.tasks import load_dataset

    rows = load_dataset()[: args.tasks]
    build_images([r["instance_id"] for r in rows], progress=False)
    policy = make_policy(None)
    labels = {"srl-agent.bench": uuid.uuid4().hex[:8]}
    times, turns = {}, {}
    for name, size in (("one_at_a_time", 1), ("batched", len(rows))):
        config = AgentConfig(step_limit=3, format_error_limit=3, max_new_tokens=args.max_new_tokens, temperature=1.0,
                             batch_size=size)
        t = time.perf_counter()
        episodes = Agent(policy, config).run(rows, labels=labels)
        times[name] = time.perf_counter() - t
        turns[name] = sum(e.turns for e in episodes)
    return {
        "bench": "agent",
        "tasks": len(rows),
        "max_new_tokens": args.max_new_tokens,
        "turns": turns,
        "one_at_a_time_s": round(times["one_at_a_time"], 2),
        "batched_s": round(times["batched"], 2),
        "batched_speedup": round(times["one_at_a_time"] / times["batched"], 2),
    }


def bench_train(args) -> dict:
    """SRL optimizer steps on the tiny model (tiny recipe, after a short SFT warm-up so completions parse):
    seconds per step, and the share of the step spent computing rewards (measured inside the run, and
    bounded from above by scoring the expert's own actions, which all take the full reward path)."""
    sys.path.insert(0, str(ROOT))
    from transformers import AutoTokenizer

    from srl_agent.jsonl import read_jsonl
    from srl_agent.models import resolve_model
    from srl_agent.prepare import prepare
    from srl_agent.rewards import srl_reward
    from srl_agent.steps import StepConfig
    from srl_agent.train import train_sft, train_srl
    from srl_agent.train.data import read_steps
    from srl_agent.train.recipe import load_recipe

    recipe = load_recipe("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = resolve_model(None)
        prepare([ROOT / "trajectories"], tmp / "steps.jsonl", StepConfig(**recipe["pipeline"]["prepare"]),
                tokenizer=AutoTokenizer.from_pretrained(model))
        train_sft(tmp / "steps.jsonl", tmp / "sft", model=model, recipe=recipe,
                  overrides={"sft.max_steps": args.warmup_steps, "sft.disable_tqdm": True})
        s = train_srl(tmp / "steps.jsonl", tmp / "srl", model=tmp / "sft", recipe=recipe,
                      overrides={"grpo.max_steps": args.steps, "grpo.disable_tqdm": True})
        log = [record for _, record in read_jsonl(tmp / "srl" / "rewards.jsonl")]
        rows = read_steps(tmp / "steps.jsonl")
    # Upper bound: every completion valid. Score the expert's actions as completions, as many per step as the run scored.
    reward = srl_reward(**recipe["reward"])
    completions = [f"<think>bench</think>\n{r['expert_action']}" for r in rows]
    columns = {"expert_action": [r["expert_action"] for r in rows], "expert_tool_call": [r["expert_tool_call"] for r in rows],
               "file_snapshot": [r.get("file_snapshot") for r in rows]}
    t = time.perf_counter()
    for _ in range(3):
        reward(completions=completions, **columns)
    per_valid = (time.perf_counter() - t) / (3 * len(rows))
    per_step = s["train_seconds"] / s["steps"]
    scored_per_step = len(log) / s["steps"]
    return {
        "bench": "train",
        "steps": s["steps"],
        "seconds_per_step": round(per_step, 3),
        "completions_scored_per_step": scored_per_step,
        "format_error_rate": round(sum(r["breakdown"]["format_error"] is not None for r in log) / len(log), 3),
        "reward_seconds_per_step": round(s["reward_seconds"] / s["steps"], 5),
        "reward_share": round(s["reward_share"], 5),
        "reward_share_if_all_valid": round(per_valid * scored_per_step / per_step, 5),
        "target_reward_share": 0.05,
    }


def bench_episode(args) -> dict:
    """Episode overhead: everything an episode costs beyond the agent's own commands and the tests' own run
    (sandbox ready, reset, the diff, the pristine grading container, the pool's hygiene check, giving the
    container back), with the warm pool vs a fresh container per episode (the baseline, same run). Each
    episode applies the task's gold patch with one bash command and submits, so every episode is graded
    on a full test run in a pristine container."""
    import statistics
    import time

    sys.path.insert(0, str(ROOT))
    from srl_agent.engine import SandboxPool, SWEEnvironment
    from srl_agent.tasks import load_dataset

    rows = load_dataset()[: args.tasks]
    out: dict = {"bench": "episode", "tasks": len(rows), "episodes_per_mode": len(rows) * args.rounds}
    for mode in ("fresh", "warm"):
        overheads, walls, tests = [], [], []
        with SandboxPool(len(rows), warm=mode == "warm") as pool:
            env = SWEEnvironment(pool)
            for round_ in range(args.rounds + (mode == "warm")):  # the warm pool is primed by one untimed round
                for row in rows:
                    start = time.perf_counter()
                    env.reset(**row)
                    acted = time.perf_counter()
                    env.bash(f"cd /testbed && git apply - <<'EOF_GOLD'\n{row['patch']}EOF_GOLD")
                    env.submit()
                    acting = time.perf_counter() - acted
                    record = env.finish()
                    wall = time.perf_counter() - start
                    if record["status"] != "resolved":
                        raise SystemExit(f"{row['instance_id']}: the gold patch did not resolve ({record['status']})")
                    if mode == "warm" and round_ == 0:
                        continue
                    overheads.append(wall - acting - record["seconds"]["tests"])
                    walls.append(wall)
                    tests.append(record["seconds"]["tests"])
            env.close()
        out[f"{mode}_overhead_s_mean"] = round(statistics.mean(overheads), 3)
        out[f"{mode}_overhead_s_max"] = round(max(overheads), 3)
        out[f"{mode}_episode_s_mean"] = round(statistics.mean(walls), 3)
        out[f"{mode}_tests_s_mean"] = round(statistics.mean(tests), 3)
        out[f"{mode}_pool"] = pool.stats.to_dict() | {"start_seconds": round(pool.stats.start_seconds, 2),
                                                     "reset_seconds": round(pool.stats.reset_seconds, 2)}
    out["overhead_ratio_fresh_to_warm"] = round(out["fresh_overhead_s_mean"] / out["warm_overhead_s_mean"], 2)
    out.update(_bench_side_by_side(rows, args.rounds))
    out["target_warm_overhead_s"] = 1.0
    return out


def _bench_side_by_side(rows: list[dict], rounds: int) -> dict:
    """The same gold-patch episodes through ``run_rollouts`` (tokens, tools, grading), all tasks side by side
    (their sandbox work in threads) vs one at a time (the baseline), warm pools primed by one round."""
    import time

    from transformers import AutoTokenizer

    from srl_agent.actions import render
    from srl_agent.engine import SandboxPool
    from srl_agent.models import resolve_model
    from srl_agent.prompts import SYSTEM_PROMPT
    from srl_agent.schema import ToolCall
    from srl_agent.train.rollouts import ConversationTokens, RolloutConfig, run_rollouts

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None))
    tokens = ConversationTokens(tokenizer, SYSTEM_PROMPT)
    fixes = {r["problem_statement"].strip()[:60]: render(ToolCall("bash", {
        "command": f"cd /testbed && git apply - <<'EOF_GOLD'\n{r['patch']}EOF_GOLD"})) for r in rows}
    submit = render(ToolCall("submit", {}))

    def generate(batch, max_new_tokens):  # turn 1 applies the task's gold patch, turn 2 submits
        out = []
        for ids in batch:
            text = tokenizer.decode(ids)
            action = submit if "<function=bash>" in text else next(v for k, v in fixes.items() if k in text)
            out.append(tokenizer(f"<think>Next.</think>\n{action}", add_special_tokens=False)["input_ids"]
                       + sorted(tokens.stop_ids)[:1])
        return out

    times = {}
    for label, size in (("one_at_a_time", 1), ("side_by_side", len(rows))):
        with SandboxPool(size) as pool:
            run_rollouts(rows, generate, tokens, pool, RolloutConfig())  # primes the pool
            start = time.perf_counter()
            for _ in range(rounds):
                runs = run_rollouts(rows, generate, tokens, pool, RolloutConfig())
                if any(r.reward != 1.0 for r in runs):
                    raise SystemExit(f"a gold episode did not resolve: {[r.record['status'] for r in runs]}")
            times[label] = (time.perf_counter() - start) / (rounds * len(rows))
    return {"rollout_episode_s_one_at_a_time": round(times["one_at_a_time"], 3),
            "rollout_episode_s_side_by_side": round(times["side_by_side"], 3),
            "rollout_side_by_side_speedup": round(times["one_at_a_time"] / times["side_by_side"], 2)}


def bench_replay(args) -> dict:
    """Replayed steps per second on the real SWE-bench tasks (the engine: a persistent session per episode,
    each harness's shell semantics, per-step checkpoints and diffs) vs the baseline of the same expert
    commands run one ``docker exec bash -lc`` each in a container of the same image (how mini-swe-agent
    runs them), timed in the same run. Grading is left out of both: it is the same pristine run."""
    sys.path.insert(0, str(ROOT))
    import docker

    from srl_agent.evaluation.data import load_rows
    from srl_agent.readers import read_trajectories
    from srl_agent.replay import replay

    client = docker.from_env()
    rows = {r["instance_id"]: r for r in load_rows(args.dataset)}
    trajectories = [t for t in read_trajectories([args.trajectories]) if t.instance_id in rows]
    if not trajectories:
        raise SystemExit(f"no trajectory in {args.trajectories} has a row in {args.dataset}")
    commands = {t.instance_id: [s.action.arguments["command"] for s in t.steps if s.action.name == "bash"]
                for t in trajectories}
    labels = {"srl-agent": "1", "srl-agent.bench": uuid.uuid4().hex[:8]}
    exec_s = steps = 0.0
    for traj in trajectories:
        row = rows[traj.instance_id]
        box = client.containers.run(row["image"], ["sleep", "infinity"], detach=True, labels=labels,
                                    network_mode="none", working_dir="/testbed")
        try:
            t = time.perf_counter()
            for command in commands[traj.instance_id]:
                box.exec_run(["bash", "-lc", command], workdir="/testbed")
            exec_s += time.perf_counter() - t
            steps += len(commands[traj.instance_id])
        finally:
            box.remove(force=True)
    t = time.perf_counter()
    done = replay(trajectories, [rows[t.instance_id] for t in trajectories], client=client, batch_size=args.batch_size)
    wall = time.perf_counter() - t
    replayed = sum(len(ep.steps) for _, ep in done)
    acting = sum(ep.seconds.get("episode", 0.0) for _, ep in done)
    return {
        "bench": "replay",
        "tasks": len(trajectories),
        "steps": replayed,
        "replay_steps_per_s": round(replayed / acting, 2),
        "exec_steps_per_s": round(steps / exec_s, 2),
        "replay_over_exec_ratio": round((replayed / acting) / (steps / exec_s), 2),
        "replay_wall_s_with_grading": round(wall, 1),
        "batch_size": args.batch_size,
        "resolved": sum(r.resolved for r, _ in done),
    }


def bench_ray(args) -> dict:
    """Episodes on a real Ray cluster on this machine (tests/cluster.py: nodes on loopback in a network
    namespace, each with its own dockerd): episodes per second with one node vs two, and the per-episode
    overhead Ray adds over the local engine (one episode at a time on each, warm pools primed by one
    round), all in the same run; and what a task image costs to reach a node that lacks it (built there,
    the whole ``docker save | docker load``, or only the layers the node lacks, which the runner ships).
    Each episode applies its task's gold patch and submits, so each is graded on a full test run."""
    import time

    sys.path.insert(0, str(ROOT))
    import docker

    from srl_agent.engine import EpisodeConfig, SandboxEnvironment, SandboxPool, run_episodes
    from srl_agent.engine.cluster import ClusterRunner
    from srl_agent.images import BASE_IMAGE, build_images
    from srl_agent.tasks import load_dataset
    from tests.cluster import LocalCluster, gold_driver, problem

    why = problem()
    if why:
        raise SystemExit(f"bench ray: {why}")
    rows = load_dataset()[: args.tasks]
    build_images([r["instance_id"] for r in rows], progress=False)
    labels = {"srl-agent.bench": uuid.uuid4().hex[:8]}
    config = EpisodeConfig(step_limit=5)
    timed = rows * args.rounds
    out: dict = {"bench": "ray", "tasks": len(rows), "episodes_timed": len(timed), "slots_per_node": args.slots,
                 "same_machine": True}
    start = time.perf_counter()
    cluster = LocalCluster(nodes=2, slots=args.slots, images=sorted({r["image"] for r in rows}))
    cluster.start()
    try:
        cluster.enter()
        out["cluster_start_s"] = round(time.perf_counter() - start, 2)
        head, worker = cluster.node_ids()

        def check(episodes):
            if any(ep.outcome != "resolved" for ep in episodes):
                raise SystemExit(f"a gold episode did not resolve: {[(ep.instance_id, ep.outcome, ep.error) for ep in episodes]}")
            return episodes

        def walls(run):  # seconds per episode of each call, after a priming call
            check(run(rows))
            t = time.perf_counter()
            check(run(timed))
            return (time.perf_counter() - t) / len(timed)

        # The local baseline drives the head node's own engine directly: the same dockerd, only Ray taken away.
        engine = cluster.client(0)
        with SandboxPool(1, client=engine, labels=labels) as pool:
            local_seq = walls(lambda rs: run_episodes(rs, gold_driver(rs), lambda: SandboxEnvironment(pool, config),
                                                      config, batch_size=1))
        engine.close()
        with ClusterRunner(cluster.address, nodes=[head], max_sandboxes=1, labels=labels) as runner:
            ray_seq = walls(lambda rs: runner.run(rs, gold_driver(rs), config))
            actor = runner.actor(head)
            pings = []
            for _ in range(50):
                t = time.perf_counter()
                runner.ray.get(actor.ping.remote())
                pings.append(time.perf_counter() - t)
            out["ray_actor_call_round_trip_ms"] = round(sorted(pings)[len(pings) // 2] * 1000, 2)
        per_node = {}
        for name, nodes in (("one_node", [head]), ("two_nodes", [head, worker])):
            with ClusterRunner(cluster.address, nodes=nodes, labels=labels) as runner:
                per_node[name] = walls(lambda rs, runner=runner: runner.run(rs, gold_driver(rs), config))
                out[f"{name}_episodes_per_node"] = runner.summary()["episodes_per_node"]
        out.update({
            "local_one_at_a_time_episode_s": round(local_seq, 3),
            "ray_one_at_a_time_episode_s": round(ray_seq, 3),
            "ray_overhead_per_episode_s": round(ray_seq - local_seq, 3),
            "ray_overhead_ratio": round(ray_seq / local_seq, 3),
            "one_node_episodes_per_s": round(1 / per_node["one_node"], 3),
            "two_nodes_episodes_per_s": round(1 / per_node["two_nodes"], 3),
            "two_nodes_speedup": round(per_node["one_node"] / per_node["two_nodes"], 2),
        })
        # One task image to a node that lacks it (the base image's layers it has), three ways.
        image, iid = rows[0]["image"], rows[0]["instance_id"]
        node = cluster.client(1)
        try:
            cluster.load_images([BASE_IMAGE], nodes=[1])  # the tag a build there starts FROM (its layers are there)
            costs = {}
            node.images.remove(image)
            t = time.perf_counter()
            build_images([iid], client=node, progress=False)
            costs["build_on_node_s"] = time.perf_counter() - t
            node.images.remove(image)
            t = time.perf_counter()
            saved = subprocess.run(["docker", "save", image], check=True, capture_output=True).stdout
            node.images.load(saved)
            costs["full_save_load_s"], costs["full_bytes"] = time.perf_counter() - t, len(saved)
            node.images.remove(image)
            with ClusterRunner(cluster.address, nodes=[worker], labels=labels) as runner:
                t = time.perf_counter()
                runner._ensure_images(runner.nodes[worker], {image})
                costs["delta_save_load_s"] = time.perf_counter() - t
                costs["delta_bytes"] = runner.shipped[0]["bytes"]
                costs["delta_layers_skipped"] = runner.shipped[0]["layers_skipped"]
                costs["delta_export_s"] = runner.shipped[0]["export_seconds"]  # docker save here (once per run)
                costs["delta_load_s"] = runner.ray.get(runner.actor(worker).state.remote())["loaded"][0]["load_seconds"]
        finally:
            node.close()
        out.update({f"image_{k}": round(v, 3) if isinstance(v, float) else v for k, v in costs.items()})
        out["image_delta_over_full_bytes"] = round(costs["delta_bytes"] / costs["full_bytes"], 5)
        out["image_full_over_delta_s_ratio"] = round(costs["full_save_load_s"] / costs["delta_save_load_s"], 2)
    finally:
        cluster.stop()
        main = docker.from_env()
        for c in main.containers.list(all=True, filters={"label": f"srl-agent.bench={labels['srl-agent.bench']}"}):
            c.remove(force=True)
        main.close()
    out["target_ray_overhead_per_episode_s"] = 0.5
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("prepare", help="step instances per second and peak memory of `prepare`")
    p.add_argument("--data", default=str(SHARED))
    p.add_argument("--copies", type=int, default=40, help="replications of the data (default: 40)")
    p.set_defaults(fn=bench_prepare)
    p = sub.add_parser("sandbox", help="session round trip vs docker exec, container start, reset()")
    p.add_argument("--image", default="srl-agent/base:latest", help="base image the bench repository is built on")
    p.add_argument("--runs", type=int, default=200, help="session round trips timed (default: 200)")
    p.add_argument("--exec-runs", type=int, default=30, help="docker exec round trips timed (default: 30)")
    p.add_argument("--resets", type=int, default=10, help="resets timed (default: 10)")
    p.set_defaults(fn=bench_sandbox)
    p = sub.add_parser("reward", help="SRL step rewards per second, each mode and backend, vs a plain difflib loop")
    p.add_argument("--data", default=str(SHARED))
    p.add_argument("--repeat", type=int, default=3, help="timed runs per configuration; the best is kept")
    p.set_defaults(fn=bench_reward)
    p = sub.add_parser("agent", help="agent episodes with the tiny model: batched rounds vs one episode at a time")
    p.add_argument("--tasks", type=int, default=4, help="bundled tasks, run side by side (default: 4)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens per completion (default: 64)")
    p.set_defaults(fn=bench_agent)
    p = sub.add_parser("train", help="SRL on the tiny model: seconds per optimizer step, share spent on rewards")
    p.add_argument("--steps", type=int, default=6, help="SRL optimizer steps timed (default: 6)")
    p.add_argument("--warmup-steps", type=int, default=60, help="SFT steps first, so completions parse (default: 60)")
    p.set_defaults(fn=bench_train)
    p = sub.add_parser("episode", help="RLVR episode overhead: warm sandbox pool vs a fresh container per episode")
    p.add_argument("--tasks", type=int, default=4, help="bundled tasks (default: 4)")
    p.add_argument("--rounds", type=int, default=3, help="episodes per task and mode (default: 3)")
    p.set_defaults(fn=bench_episode)
    p = sub.add_parser("replay", help="replayed steps per second on the real SWE-bench tasks vs one docker exec each")
    p.add_argument("--trajectories", default=str(SHARED / "minisweagent" / "verified"))
    p.add_argument("--dataset", default=str(ROOT.parent / "shared" / "swebench" / "rows.jsonl"))
    p.add_argument("--batch-size", type=int, default=1, help="episodes side by side (default: 1, as the baseline)")
    p.set_defaults(fn=bench_replay)
    p = sub.add_parser("ray", help="episodes per second on a real two-node Ray cluster (one node vs two), Ray's "
                       "per-episode overhead over the local engine, and a task image's cost to reach a node")
    p.add_argument("--tasks", type=int, default=4, help="bundled tasks (default: 4)")
    p.add_argument("--rounds", type=int, default=2, help="timed episodes per task and configuration (default: 2)")
    p.add_argument("--slots", type=int, default=2, help="sandboxes per node (default: 2)")
    p.set_defaults(fn=bench_ray)
    args = parser.parse_args()
    print(json.dumps(args.fn(args)))


if __name__ == "__main__":
    main()
