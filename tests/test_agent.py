"""The agent loop in real task sandboxes, and the model backends.

The prompt the agent builds at step k must be the SRL step instance's prompt for the same trajectory
prefix: a scripted policy replays a bundled expert trajectory's first steps (the expert's own
``<think>`` + action) and every prompt it is shown is compared with ``prepare``'s rows.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from srl_agent.actions import render
from srl_agent.agent import FORMAT_ERRORS, STEP_LIMIT, SUBMITTED, Agent, AgentConfig
from srl_agent.readers import read_file
from srl_agent.replay import trajectory_path
from srl_agent.schema import Trajectory
from srl_agent.tasks import load_dataset

ROWS = {r["instance_id"]: r for r in load_dataset()}
LEAP = "gweis__isodate.0.7.2.leap-year-centuries"
GET_IN = "pytoolz__toolz.1.0.0.get-in-list-index"
SUBMIT = "<think>That is all for now.</think>\n<function=submit>\n</function>"


def bash(command: str, thought: str = "Look around.") -> str:
    return f"<think>{thought}</think>\n<function=bash>\n<parameter=command>{command}</parameter>\n</function>"


class ScriptedPolicy:
    """Answers each task's prompts with the next completion of that task's script; keeps every prompt.

    The task is recognised by its issue text, which sits in the second prompt turn."""

    name = "scripted"

    def __init__(self, scripts: dict[str, list[str]]):
        self.scripts = scripts
        self.prompts: dict[str, list[list[dict]]] = {i: [] for i in scripts}
        self.batches: list[int] = []

    def generate(self, batch, *, max_new_tokens, temperature, seed):
        self.batches.append(len(batch))
        out = []
        for messages in batch:
            (iid,) = [i for i in self.scripts if ROWS[i]["problem_statement"].strip() in messages[1]["content"]]
            self.prompts[iid].append(messages)
            out.append(self.scripts[iid][len(self.prompts[iid]) - 1])
        return out


@pytest.fixture(scope="module")
def task_images(docker_client):
    from srl_agent.images import build_images

    build_images([LEAP, GET_IN], client=docker_client, progress=False)  # existing tags are skipped


@pytest.fixture
def labels(run_label):
    key, value = run_label.split("=", 1)
    return {key: value}


def test_agent_prompts_equal_the_step_instances(task_images, labels, tmp_path):
    from srl_agent.evaluation import run_eval
    from srl_agent.prepare import prepare

    prefix = {LEAP: 5, GET_IN: 3}  # the first steps: commands whose output is the same on every run
    experts = {i: read_file(trajectory_path(i))[0] for i in prefix}
    scripts = {i: [f"<think>{s.thought}</think>\n\n{render(s.action)}" for s in experts[i].steps[:n]] + [SUBMIT]
               for i, n in prefix.items()}
    policy = ScriptedPolicy(scripts)
    summary = run_eval(policy=policy, instance_ids=list(prefix), output_dir=tmp_path / "run", do_score=False,
                       agent_config=AgentConfig(step_limit=10), labels=labels)
    assert summary["total"] == summary["submitted"] == 2 and policy.batches[0] == 2  # both tasks in one call

    for iid, n in prefix.items():
        prepare([trajectory_path(iid)], tmp_path / f"{iid}.jsonl")
        rows = [json.loads(line) for line in (tmp_path / f"{iid}.jsonl").open()]
        (traj,) = read_file(tmp_path / "run" / "trajs" / f"{iid}.traj")
        # The sandbox answered these steps exactly as it did when the expert file was recorded,
        # so the two prefixes are the same and so must the prompts be.
        assert [s.observation for s in traj.steps[:n]] == [s.observation for s in experts[iid].steps[:n]]
        assert len(policy.prompts[iid]) == n + 1
        for k, prompt in enumerate(policy.prompts[iid]):
            assert prompt == rows[k]["prompt"], (iid, k)

        # The .traj reads back as the episode: the expert's actions and thoughts, then submit.
        assert traj.instance_id == iid and traj.source_format == "sweagent:xml"
        assert traj.task.problem_statement == ROWS[iid]["problem_statement"]
        assert traj.task.image == ROWS[iid]["image"] and traj.task.base_commit == ROWS[iid]["base_commit"]
        assert [s.action for s in traj.steps[:n]] == [s.action for s in experts[iid].steps[:n]]
        assert len(traj.steps) == n + 1 and traj.steps[-1].action.name == "submit"
        assert [s.thought for s in traj.steps[:n]] == [s.thought.strip() for s in experts[iid].steps[:n]]
        raw = json.loads((tmp_path / "run" / "trajs" / f"{iid}.traj").read_text())
        assert raw["info"]["exit_status"] == SUBMITTED and raw["info"]["submission"] == traj.submission

    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").open()]
    assert [sorted(p) for p in preds] == [["instance_id", "model_name_or_path", "model_patch"]] * 2
    by_id = {p["instance_id"]: p for p in preds}
    # The leap-year expert created a reproduction script in its first steps: the diff holds it.
    assert "repro_leap.py" in by_id[LEAP]["model_patch"]
    assert by_id[LEAP]["model_patch"] == read_file(tmp_path / "run" / "trajs" / f"{LEAP}.traj")[0].submission


def test_stops_on_format_errors_and_on_the_step_limit(task_images, labels):
    bad = ["no think block at all", "<think>Only thinking.</think> and no call", "<think>a</think><think>b</think>"]
    scripts = {
        LEAP: [bad[0], bad[1], bash("echo one"), bad[0], bad[1], bad[2]],  # a valid call resets the count
        GET_IN: [bash("echo one"), bad[0], bash("echo two"), bash("echo three")],
    }
    policy = ScriptedPolicy(scripts)
    config = AgentConfig(step_limit=2, format_error_limit=3, batch_size=2)
    leap, get_in = Agent(policy, config).run([ROWS[LEAP], ROWS[GET_IN]], labels=labels)

    assert leap.exit_status == FORMAT_ERRORS and len(leap.steps) == 1 and leap.turns == 6
    assert [e["reason"] for e in leap.format_errors] == ["no_think", "no_call", "no_think", "no_call", "no_think"]
    assert leap.steps[0].observation == "one"
    assert get_in.exit_status == STEP_LIMIT and [s.observation for s in get_in.steps] == ["one", "two"]
    assert get_in.submission == "" and get_in.error is None
    assert policy.batches[:2] == [2, 2]  # side by side while both run
    # A format error is not a step: the next prompt is the one the error was an answer to.
    assert policy.prompts[LEAP][0] == policy.prompts[LEAP][1]
    assert policy.prompts[GET_IN][1] == policy.prompts[GET_IN][2]


def test_json_style_episode_round_trips_through_the_traj_reader(task_images, labels, tmp_path):
    from srl_agent.evaluation.trajfile import write_traj

    view = {"name": "str_replace_editor", "arguments": {"command": "view", "path": "/testbed/setup.py", "view_range": [1, 3]}}
    create = {"name": "str_replace_editor", "arguments": {"command": "create", "path": "/testbed/notes 1.txt",
                                                          "file_text": "it's \"quoted\"\nand $HOME\n"}}
    script = [f"<think>Step {i}.</think>\n<tool_call>{json.dumps(c)}</tool_call>" for i, c in enumerate((view, create))]
    script.append('<think>Done.</think>\n<tool_call>{"name": "submit", "arguments": {}}</tool_call>')
    config = AgentConfig(style="json")
    (ep,) = Agent(ScriptedPolicy({GET_IN: script}), config).run([ROWS[GET_IN]], labels=labels)
    assert ep.exit_status == SUBMITTED and len(ep.steps) == 3
    assert "notes 1.txt" in ep.submission and ep.steps[0].observation.startswith("Here's the result of running `cat -n`")

    schema = ep.trajectory("json")  # the episode as the project's own Trajectory
    assert Trajectory.from_json(schema.to_json()) == schema and schema.submission == ep.submission
    assert [s.action.name for s in schema.steps] == ["str_replace_editor", "str_replace_editor", "submit"]

    path = write_traj(tmp_path / f"{GET_IN}.traj", ep, model="scripted", config=config, issue_turn="issue")
    (traj,) = read_file(path)
    assert [s.action for s in traj.steps] == [s.action for s in ep.steps]
    assert [s.observation for s in traj.steps] == [s.observation for s in ep.steps]
    assert traj.submission == ep.submission


def test_tiny_model_agent_run_writes_predictions_and_trajectories(task_images, labels, tmp_path):
    """The offline tiny model (random weights: it rarely if ever writes a valid call) through the whole
    path: generation, parsing, stopping, .traj and predictions files, the official harness."""
    from srl_agent.evaluation import run_eval

    ids = [LEAP, GET_IN]
    config = AgentConfig(step_limit=2, format_error_limit=2, max_new_tokens=16, temperature=1.0)
    summary = run_eval(None, instance_ids=ids, output_dir=tmp_path, agent_config=config, labels=labels)
    assert summary["model"] == "tiny" and summary["total"] == 2
    assert 0.0 <= summary["resolve_rate"] <= 1.0 and summary["resolved"] == sum(i["resolved"] for i in summary["instances"])
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").open()]
    assert sorted(p["instance_id"] for p in preds) == sorted(ids)
    assert all(p["model_name_or_path"] == "tiny" and isinstance(p["model_patch"], str) for p in preds)
    for iid in ids:
        raw = json.loads((tmp_path / "trajs" / f"{iid}.traj").read_text())
        (traj,) = read_file(tmp_path / "trajs" / f"{iid}.traj")
        assert traj.instance_id == iid and len(traj.steps) == len(raw["trajectory"]) <= 2
        info = raw["info"]
        assert info["exit_status"] in (SUBMITTED, STEP_LIMIT, FORMAT_ERRORS)
        assert info["model_stats"]["api_calls"] == len(traj.steps) + len(info["srl_agent"]["format_errors"])
        assert summary["generation"]["steps"] >= len(traj.steps)


# ----------------------------------------------------------------------------- backends


@pytest.fixture(scope="module")
def tiny_policy():
    from srl_agent.policy import make_policy

    return make_policy(None)


PROMPTS = [
    [{"role": "system", "content": "You fix bugs."}, {"role": "user", "content": "Fix get_in."}],
    [{"role": "user", "content": "A longer prompt, so that the batch needs padding: " + "pad " * 40}],
]


def test_transformers_batches_like_single_prompts(tiny_policy):
    batched = tiny_policy.generate(PROMPTS, max_new_tokens=12, temperature=0.0, seed=0)
    single = [tiny_policy.generate([p], max_new_tokens=12, temperature=0.0, seed=0)[0] for p in PROMPTS]
    assert batched == single and len(batched) == 2
    sampled = [tiny_policy.generate(PROMPTS[:1], max_new_tokens=12, temperature=1.0, seed=s)[0] for s in (1, 1, 2)]
    assert sampled[0] == sampled[1]  # a seed makes sampling repeatable


class _ChatServer(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible /v1/chat/completions endpoint in front of ``answer(body) -> message``."""

    answer = None
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        data = json.dumps({"choices": [{"index": 0, "message": type(self).answer(body)}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    _ChatServer.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def test_openai_backend_serves_the_same_completions(tiny_policy, chat_server):
    from srl_agent.policy import make_policy

    def answer(body):
        (text,) = tiny_policy.generate([body["messages"]], max_new_tokens=body["max_tokens"],
                                       temperature=body["temperature"], seed=body.get("seed"))
        return {"role": "assistant", "content": text}

    _ChatServer.answer = staticmethod(answer)
    remote = make_policy("tiny-served", backend="openai", base_url=chat_server)
    assert remote.generate(PROMPTS, max_new_tokens=12, temperature=0.0, seed=3) == \
        tiny_policy.generate(PROMPTS, max_new_tokens=12, temperature=0.0, seed=3)
    sent = _ChatServer.requests
    assert len(sent) == 2 and {r["path"] for r in sent} == {"/v1/chat/completions"}
    assert all(r["model"] == "tiny-served" and r["max_tokens"] == 12 and r["seed"] == 3 for r in sent)
    assert sorted(json.dumps(r["messages"]) for r in sent) == sorted(json.dumps(p) for p in PROMPTS)


def test_openai_backend_puts_separate_reasoning_back_as_a_think_block(chat_server):
    from srl_agent.policy import make_policy
    from srl_agent.rewards.completion import parse_completion

    _ChatServer.answer = staticmethod(lambda body: {"role": "assistant", "reasoning_content": "Nothing left to do.",
                                                    "content": "<function=submit>\n</function>"})
    (text,) = make_policy("m", backend="openai", base_url=chat_server).generate(PROMPTS[:1], max_new_tokens=8,
                                                                               temperature=0.0, seed=None)
    parsed = parse_completion(text)
    assert parsed.thought == "Nothing left to do." and parsed.call.name == "submit"
    assert "seed" not in _ChatServer.requests[0]


def test_backend_choice_errors():
    import importlib.util

    from srl_agent.policy import make_policy

    with pytest.raises(ValueError, match="unknown backend"):
        make_policy(None, backend="nope")
    with pytest.raises(ValueError, match="--base-url"):
        make_policy("m", backend="openai")
    with pytest.raises(ValueError, match="openai backend"):
        make_policy(None, backend="transformers", base_url="http://x")
    with pytest.raises(ValueError, match="style"):
        AgentConfig(style="yaml")
    with pytest.raises(ValueError, match="step_limit"):
        AgentConfig(step_limit=0)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(RuntimeError, match="vllm"):
            make_policy(None, backend="vllm")
