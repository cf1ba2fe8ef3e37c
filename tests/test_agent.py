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
from srl_agent.rewards.completion import FormatError, parse_completion
from srl_agent.schema import Trajectory
from srl_agent.steps import StepConfig, Truncator, issue_turn
from srl_agent.tasks import load_dataset
from srl_agent.train.recipe import resolve_recipe

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


def test_episode_history_is_the_rlvr_chat(task_images, labels):
    """history="episode": each prompt is the previous one plus the turn as written and its answer (the
    observation, or the format-error notice), which is the chat RLVR trains on."""
    from srl_agent.prompts import FORMAT_ERROR_TEMPLATE, SYSTEM_PROMPT

    script = [bash("echo one"), "no think block at all", bash("printf 'a\\nb'"), SUBMIT]
    policy = ScriptedPolicy({LEAP: script})
    (ep,) = Agent(policy, AgentConfig(history="episode", format_error_limit=2)).run([ROWS[LEAP]], labels=labels)
    assert ep.exit_status == SUBMITTED and [s.observation for s in ep.steps[:2]] == ["one", "a\nb"]
    prompts = policy.prompts[LEAP]
    assert [m["role"] for m in prompts[0]] == ["system", "user"] and prompts[0][0]["content"] == SYSTEM_PROMPT
    answers = ["one", FORMAT_ERROR_TEMPLATE.format(reason="no_think", message=ep.format_errors[0]["message"]), "a\nb"]
    for k in range(1, len(prompts)):
        assert prompts[k] == prompts[k - 1] + [{"role": "assistant", "content": script[k - 1]},
                                               {"role": "user", "content": answers[k - 1]}]


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


# ----------------------------------------------------------------------------- a real model's episodes
# The tiny model after its SFT warm-up (conftest's warm_tiny_model), sampled with a fixed seed, on the
# prompts it was trained on: the tiny recipe's budgets, counted in its own tokens. It writes a valid call
# for about half of its completions, so a format-error limit of 8 lets every episode take steps.
WARM_PROMPT = StepConfig(**resolve_recipe("tiny")["pipeline"]["prepare"])
WARM = AgentConfig(step_limit=3, format_error_limit=8, max_new_tokens=256, temperature=0.6, seed=0, batch_size=2,
                   prompt=WARM_PROMPT)


class RecordingPolicy:
    """A real policy, keeping every (prompt, completion) it was asked for."""

    def __init__(self, policy, name: str):
        self.policy, self.name = policy, name
        self.tokenizer = policy.tokenizer  # exact budgets count the wrapped model's tokens
        self.calls: list[tuple[list[dict], str]] = []

    def generate(self, batch, **kwargs):
        out = self.policy.generate(batch, **kwargs)
        self.calls += list(zip(batch, out, strict=True))
        return out


def first_prompts(model_dir, ids) -> dict[str, list[dict]]:
    """Each task's step-0 training prompt, as the warm-up's data was prepared (budgets in the model's tokens)."""
    import tempfile
    from pathlib import Path

    from transformers import AutoTokenizer

    from srl_agent.prepare import prepare

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        for iid in ids:
            prepare([trajectory_path(iid)], Path(tmp) / "s.jsonl", WARM_PROMPT, tokenizer=tokenizer)
            out[iid] = json.loads((Path(tmp) / "s.jsonl").open().readline())["prompt"]
        return out


@pytest.fixture(scope="module")
def warm_run(warm_tiny_model, task_images, run_label, tmp_path_factory):
    """Agent mode with the warm model on two tasks, scored by the harness; the policy's calls per task."""
    from srl_agent.evaluation import run_eval
    from srl_agent.policy import make_policy

    key, value = run_label.split("=", 1)
    out = tmp_path_factory.mktemp("warm-run")
    policy = RecordingPolicy(make_policy(str(warm_tiny_model)), "warm-tiny")
    summary = run_eval(policy=policy, instance_ids=[LEAP, GET_IN], output_dir=out, agent_config=WARM,
                       exact_budgets=True, labels={key: value}, run_id="warm")
    first = first_prompts(warm_tiny_model, [LEAP, GET_IN])
    calls: dict[str, list[tuple[list[dict], str]]] = {iid: [] for iid in first}
    for messages, completion in policy.calls:  # a prompt belongs to the task whose issue turn it opens with
        (iid,) = [i for i in first if messages[1]["content"].startswith(first[i][1]["content"])]
        calls[iid].append((messages, completion))
    return {"out": out, "summary": summary, "calls": calls, "first": first, "model": warm_tiny_model}


def expected_episode(calls: list[tuple[list[dict], str]]) -> dict:
    """What the episode must be, from the completions alone: the valid ones are the steps, in order."""
    steps, errors = [], []
    for _, completion in calls:
        try:
            parsed = parse_completion(completion, "xml")
            steps.append((parsed.thought, parsed.call))
        except FormatError as e:
            errors.append(e.reason)
    if steps and steps[-1][1].name == "submit":
        status = SUBMITTED
    elif len(steps) == WARM.step_limit:
        status = STEP_LIMIT
    else:
        status = FORMAT_ERRORS
    return {"steps": steps, "errors": errors, "status": status}


def harness_status(report: dict, iid: str) -> str:
    """An instance's status as the harness's own report lists it."""
    (status,) = [s for s, key in (("resolved", "resolved_ids"), ("unresolved", "unresolved_ids"),
                                  ("empty_patch", "empty_patch_ids"), ("error", "error_ids"))
                 if iid in report.get(key, [])] or ["error"]  # infrastructure or ambiguous failures
    return status


def test_warm_tiny_model_agent_run_takes_real_steps(warm_run, docker_client, run_label):
    """The warm tiny model through the whole path: generation on its training prompts, parsing, tools in the
    task sandbox, stopping, .traj and predictions files, the official harness."""
    from transformers import AutoTokenizer

    out, summary, calls = warm_run["out"], warm_run["summary"], warm_run["calls"]
    truncate = Truncator(AutoTokenizer.from_pretrained(str(warm_run["model"])))
    preds = {p["instance_id"]: p for p in map(json.loads, (out / "predictions.jsonl").open())}
    assert sorted(preds) == sorted(calls) and summary["total"] == 2
    assert all(sorted(p) == ["instance_id", "model_name_or_path", "model_patch"] for p in preds.values())
    assert all(p["model_name_or_path"] == "warm-tiny" for p in preds.values())
    expected = {iid: expected_episode(c) for iid, c in calls.items()}
    assert sum(len(e["steps"]) for e in expected.values()) >= 1  # real steps were taken
    report = json.loads((out / "warm-tiny.warm.json").read_text())  # what the harness itself wrote
    for iid, exp in expected.items():
        # The first prompt is the warm-up's step-0 training prompt, to the character.
        assert calls[iid][0][0] == warm_run["first"][iid]
        (traj,) = read_file(out / "trajs" / f"{iid}.traj")
        raw = json.loads((out / "trajs" / f"{iid}.traj").read_text())
        assert traj.instance_id == iid and traj.task.base_commit == ROWS[iid]["base_commit"]
        assert [s.action for s in traj.steps] == [call for _, call in exp["steps"]]
        assert [s.thought for s in traj.steps] == [thought for thought, _ in exp["steps"]]
        assert [e["reason"] for e in raw["info"]["srl_agent"]["format_errors"]] == exp["errors"]
        assert raw["info"]["exit_status"] == exp["status"]
        assert raw["info"]["model_stats"]["api_calls"] == len(calls[iid])
        assert raw["info"]["srl_agent"]["budgets"] == "tokens"
        # Each observation is what the policy was shown after that action (truncated to the prompt budget).
        valid = [n for n, (_, c) in enumerate(calls[iid]) if expected_episode([(None, c)])["steps"]]
        for k, n in enumerate(valid):
            if n + 1 < len(calls[iid]):
                seen = calls[iid][n + 1][0]
                assert seen[-2] == {"role": "assistant", "content": render(traj.steps[k].action)}
                assert seen[-1] == {"role": "user",
                                    "content": truncate(traj.steps[k].observation, WARM_PROMPT.observation_tokens)}
        # The prediction is the episode's final diff, and the harness graded it as such.
        assert preds[iid]["model_patch"] == traj.submission == raw["info"]["submission"]
        status = next(i["status"] for i in summary["instances"] if i["instance_id"] == iid)
        assert status == harness_status(report, iid) and (status == "empty_patch") == (not traj.submission)
    assert summary["generation"] == {"steps": sum(len(e["steps"]) for e in expected.values()),
                                     "format_errors": sum(len(e["errors"]) for e in expected.values())}
    assert docker_client.containers.list(all=True, filters={"label": run_label}) == []
    assert [c.name for c in docker_client.containers.list(all=True) if c.name.endswith(".warm")] == []


def test_warm_agent_run_imports_into_the_reward_store(warm_run):
    """The same folder through ``srl-agent inspect --json`` and the store: one episode per task, with the
    harness's verdict, the prediction and the counts of the policy's own completions."""
    from typer.testing import CliRunner

    from srl_agent.cli import app
    from srl_agent.store import open_run

    out, calls = warm_run["out"], warm_run["calls"]
    report = json.loads((out / "warm-tiny.warm.json").read_text())
    preds = {p["instance_id"]: p["model_patch"] for p in map(json.loads, (out / "predictions.jsonl").open())}
    res = CliRunner().invoke(app, ["inspect", str(out), "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout.strip().splitlines()[-1])
    (episodes,) = shown["episodes"]
    assert (episodes["kind"], episodes["episodes"]) == ("eval", len(calls))
    assert episodes["resolved"] == len(report["resolved_ids"])
    assert episodes["mean_reward"] == pytest.approx(len(report["resolved_ids"]) / len(calls))
    conn, info = open_run(out)
    assert info["imported"] == []  # inspect imported it already
    rows = {r["instance_id"]: r for r in map(dict, conn.execute(
        "SELECT t.instance_id, c.kind, c.step_index, c.reward, c.status, c.completion, c.extra "
        "FROM candidates c JOIN tasks t ON t.id = c.task_id"))}
    assert sorted(rows) == sorted(calls)
    for iid, c in calls.items():
        exp = expected_episode(c)
        row, extra = rows[iid], json.loads(rows[iid]["extra"])
        assert (row["kind"], row["step_index"]) == ("eval", None)
        assert row["reward"] == (1.0 if iid in report["resolved_ids"] else 0.0)
        assert row["completion"] == preds[iid]
        assert (extra["agent_steps"], extra["agent_format_errors"]) == (len(exp["steps"]), len(exp["errors"]))
        assert extra["exit_status"] == exp["status"]


def test_cli_agent_settings_reach_the_episode(warm_tiny_model, task_images, tmp_path):
    """``srl-agent eval`` flags: the prompt settings and exact budgets make the first prompt the warm-up's
    step-0 training prompt; the sampling and limit settings are the episode's."""
    from typer.testing import CliRunner

    from srl_agent.cli import app

    res = CliRunner().invoke(app, [
        "eval", "--model", str(warm_tiny_model), "--instance", GET_IN, "--output-dir", str(tmp_path), "--no-score",
        "--step-limit", "1", "--format-error-limit", "1", "--max-new-tokens", "4", "--temperature", "0.6",
        "--seed", "7", "--context-steps", "2", "--observation-tokens", "32", "--issue-tokens", "64",
        "--exact-budgets", "--batch-size", "1", "--json"])
    assert res.exit_code == 0, res.output
    raw = json.loads((tmp_path / "trajs" / f"{GET_IN}.traj").read_text())
    settings = raw["info"]["srl_agent"]["config"]
    assert {k: settings[k] for k in ("step_limit", "format_error_limit", "max_new_tokens", "temperature", "seed")} \
        == {"step_limit": 1, "format_error_limit": 1, "max_new_tokens": 4, "temperature": 0.6, "seed": 7}
    assert settings["prompt"] == {"context_steps": 2, "observation_tokens": 32, "issue_tokens": 64, "drop_legacy": False}
    assert raw["info"]["srl_agent"]["budgets"] == "tokens"
    (prompt,) = first_prompts(warm_tiny_model, [GET_IN]).values()
    assert raw["history"][:2] == [{**prompt[0], "agent": "main", "message_type": "system_prompt"},
                                  {**prompt[1], "agent": "main", "message_type": "user"}]
    # Characters / 4 would have cut the issue elsewhere: the flag is what made the prompts equal.
    chars = issue_turn(ROWS[GET_IN]["problem_statement"].strip(), WARM_PROMPT, Truncator())
    assert chars != prompt[1]["content"]


def test_exact_budgets_need_the_policys_tokenizer(task_images, labels, tmp_path):
    from srl_agent.evaluation import run_eval

    with pytest.raises(ValueError, match="tokenizer"):
        run_eval(policy=ScriptedPolicy({GET_IN: [SUBMIT]}), instance_ids=[GET_IN], output_dir=tmp_path,
                 do_score=False, exact_budgets=True, labels=labels)


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
