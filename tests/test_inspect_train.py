"""The inspector on a real SRL training run: the tiny model, TRL's GRPO with dynamic sampling, two steps.

The run logs every completion to ``rewards.jsonl`` and, through ``Tee``, live to the store; expected
values are counted from the JSONL log.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter, defaultdict

import pytest

from srl_agent.prepare import prepare
from srl_agent.steps import StepConfig
from srl_agent.store import StoreWriter, Tee
from tests.test_inspect import Page, browser, cli, jsonl  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

STEPS = 2
SRL = {"grpo.num_generations": 4, "grpo.per_device_train_batch_size": 8, "prompts_per_step": 2,
       "grpo.max_completion_length": 40, "grpo.learning_rate": 1e-3, "grpo.logging_steps": 1,
       "grpo.max_steps": STEPS, "dynamic_sampling.max_rounds": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    try:
        from srl_agent.train import train_srl
        from srl_agent.train.reward_log import JsonlRewardLog
    except ImportError as e:  # the training package is someone else's and may be mid-change
        pytest.skip(f"srl_agent.train is not usable: {e}")
    from srl_agent.models.tiny import TRAJECTORY_DIR

    folder = tmp_path_factory.mktemp("train")
    steps = folder / "steps.jsonl"
    prepare([TRAJECTORY_DIR], steps, StepConfig(context_steps=1, observation_tokens=16, issue_tokens=16))
    out = folder / "srl"
    log = Tee(JsonlRewardLog(out / "rewards.jsonl"),
              StoreWriter(out / "rewards.sqlite", run="srl", source=out / "rewards.jsonl", steps=steps, batch_size=8))
    summary = train_srl(steps, out, recipe="tiny", reward_log=log, overrides=SRL)
    assert summary["steps"] == STEPS
    records = jsonl(out / "rewards.jsonl")
    report = json.loads(cli("inspect", str(out), "--json", "--html", str(folder / "report.html")).stdout)
    return {"folder": folder, "out": out, "records": records, "summary": report}


def test_the_live_store_holds_every_logged_completion(trained):
    records = trained["records"]
    db = sqlite3.connect(trained["out"] / "rewards.sqlite")
    rows = db.execute("SELECT t.instance_id, c.step_index, c.global_step, c.round, c.group_index, c.generation, "
                      "c.reward, c.advantage, c.dropped, c.in_batch, c.completion, c.format_error "
                      "FROM candidates c JOIN tasks t ON t.id = c.task_id ORDER BY c.id").fetchall()
    want = [(r["instance_id"], r["step_index"], r["global_step"], r["round"], r["group"], r["generation"], r["reward"],
             r["advantage"], int(r["dropped"]), int(r["in_batch"]), r["completion"], r["breakdown"]["format_error"])
            for r in records]
    assert rows == want
    assert db.execute("SELECT live, source FROM runs").fetchall() == [(1, str((trained["out"] / "rewards.jsonl")
                                                                               .resolve()))]
    named = {(r["instance_id"], r["step_index"]) for r in records}
    assert db.execute("SELECT count(*) FROM steps").fetchone()[0] == len(named)


def test_the_trend_counts_equal_the_log(trained):
    s, records = trained["summary"], trained["records"]
    assert s["imported"] == []  # the JSONL log was mirrored live: not imported a second time
    assert s["candidates"] == len(records) and s["missing_steps"] == 0
    per_step = defaultdict(list)
    for r in records:
        per_step[r["global_step"]].append(r)
    assert [t["global_step"] for t in s["trend"]] == sorted(per_step) == list(range(STEPS))
    for t in s["trend"]:
        rs = per_step[t["global_step"]]
        assert t["candidates"] == len(rs)
        assert t["mean_reward"] == pytest.approx(sum(r["reward"] for r in rs) / len(rs))
        assert t["format_error_rate"] == pytest.approx(sum(bool(r["breakdown"]["format_error"]) for r in rs) / len(rs))
        assert t["dropped_rate"] == pytest.approx(sum(r["dropped"] for r in rs) / len(rs))
    errors = Counter(r["breakdown"]["format_error"] for r in records if r["breakdown"]["format_error"])
    assert s["format_errors_by_reason"] == dict(errors)
    assert {t["instance_id"]: t["candidates"] for t in s["by_task"]} == dict(Counter(r["instance_id"] for r in records))


def test_importing_the_log_alone_gives_the_same_summary(trained, tmp_path):
    """The same run, from rewards.jsonl and the step file only (no live store)."""
    (tmp_path / "srl").mkdir()
    shutil.copy(trained["out"] / "rewards.jsonl", tmp_path / "srl" / "rewards.jsonl")
    shutil.copy(trained["folder"] / "steps.jsonl", tmp_path / "steps.jsonl")
    s = json.loads(cli("inspect", str(tmp_path / "srl"), "--json").stdout)
    assert [(i["run"], i["imported"]) for i in s["imported"]] == [("srl", len(trained["records"]))]
    for key in ("candidates", "steps", "tasks", "format_errors", "format_errors_by_reason", "by_tool", "by_position",
                "by_task", "trend", "worst_steps"):
        assert s[key] == trained["summary"][key], key


def test_the_training_report_plots_the_steps_and_opens_a_step(trained, browser):  # noqa: F811
    page = Page(browser, trained["folder"] / "report.html")
    p = page.page
    charts = p.locator("#training svg.chart")
    assert charts.count() == 2
    assert charts.first.locator("circle").count() == STEPS
    p.locator("svg.heat rect[data-step]").first.click()
    panel = p.locator("article.step:visible")
    assert panel.count() == 1
    assert panel.locator('[data-role="expert"]').text_content()
    heads = " ".join(panel.locator("div.chead").all_text_contents())
    assert "advantage" in heads and "group" in heads
    assert panel.locator('[data-role="breakdown"]').count() == panel.locator("div.cand").count() >= 1
    assert page.errors == [] and set(page.requests) == {page.url}
