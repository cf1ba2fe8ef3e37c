"""``srl-agent inspect``: the summary tables against the store (own SQL) and the source files (own counts),
and the HTML report in a real headless Chromium (Debian's, driven by Playwright).

The run is real: the bundled trajectories prepared into steps, completions made of the expert's action,
near misses and broken formats, scored by ``srl-agent score``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from srl_agent.actions import render
from srl_agent.inspector.sample import sample_completions
from srl_agent.jsonl import read_jsonl
from srl_agent.schema import ToolCall

SRL_AGENT = Path(sys.executable).with_name("srl-agent")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
POSITIONS = [(0, 0), (1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, 49), (50, 10**9)]


def jsonl(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "220"}
    result = subprocess.run([str(SRL_AGENT), *args], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def tool_of(call: dict) -> str:
    command = call["arguments"].get("command") if call["name"] == "str_replace_editor" else None
    return f"{call['name']}:{command}" if command else call["name"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """Prepare → completions → score, through the real commands; then ``inspect --json --html``."""
    folder = tmp_path_factory.mktemp("run")
    root = Path(__file__).resolve().parents[1]
    cli("prepare", str(root / "trajectories"), "--out", str(folder / "steps.jsonl"), "--json")
    steps = jsonl(folder / "steps.jsonl")
    (folder / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sample_completions(steps)))
    cli("score", "--steps", str(folder / "steps.jsonl"), "--completions", str(folder / "completions.jsonl"),
        "--out", str(folder / "scored.jsonl"), "--json")
    out = cli("inspect", str(folder), "--json", "--html", str(folder / "report.html"), "--worst", "12")
    return {"folder": folder, "steps": steps, "scored": jsonl(folder / "scored.jsonl"), "summary": json.loads(out.stdout)}


def test_summary_counts_equal_the_store_and_the_source(run):
    s, scored = run["summary"], run["scored"]
    expert = {(r["instance_id"], r["step_index"]): tool_of(r["expert_tool_call"]) for r in run["steps"]}
    db = sqlite3.connect(run["folder"] / "rewards.sqlite")
    sql = lambda q: db.execute(q).fetchall()  # noqa: E731
    join = "FROM candidates c JOIN steps s ON s.task_id = c.task_id AND s.step_index = c.step_index"

    assert s["candidates"] == len(scored) == sql("SELECT count(*) FROM candidates")[0][0]
    assert s["steps"] == len({(r["instance_id"], r["step_index"]) for r in scored}) == sql(
        "SELECT count(*) FROM (SELECT DISTINCT task_id, step_index FROM candidates)")[0][0]
    assert s["tasks"] == len({r["instance_id"] for r in scored}) == sql("SELECT count(*) FROM tasks")[0][0]

    errors = Counter(r["breakdown"]["format_error"] for r in scored if r["breakdown"]["format_error"])
    assert s["format_errors_by_reason"] == dict(errors) == dict(
        sql("SELECT format_error, count(*) FROM candidates WHERE format_error IS NOT NULL GROUP BY 1"))
    assert s["format_errors"] == sum(errors.values())
    assert s["format_error_rate"] == pytest.approx(sum(errors.values()) / len(scored))

    by_tool = Counter(expert[(r["instance_id"], r["step_index"])] for r in scored)
    assert {t["tool"]: t["candidates"] for t in s["by_tool"]} == dict(by_tool) == dict(
        sql(f"SELECT s.expert_tool, count(*) {join} GROUP BY 1"))
    rewards_by_tool = defaultdict(list)
    for r in scored:
        rewards_by_tool[expert[(r["instance_id"], r["step_index"])]].append(r["reward"])
    for t in s["by_tool"]:
        assert t["mean_reward"] == pytest.approx(sum(rewards_by_tool[t["tool"]]) / len(rewards_by_tool[t["tool"]]))

    by_position = Counter(next(i for i, (lo, hi) in enumerate(POSITIONS) if lo <= r["step_index"] <= hi) for r in scored)
    assert [p["candidates"] for p in s["by_position"]] == [by_position[i] for i in sorted(by_position)]
    assert sum(p["candidates"] for p in s["by_position"]) == len(scored)

    by_task = Counter(r["instance_id"] for r in scored)
    assert {t["instance_id"]: t["candidates"] for t in s["by_task"]} == dict(by_task) == dict(
        sql("SELECT t.instance_id, count(*) FROM candidates c JOIN tasks t ON t.id = c.task_id GROUP BY 1"))

    per_step = defaultdict(list)
    for r in scored:
        per_step[(r["instance_id"], r["step_index"])].append(r["reward"])
    means = sorted(sum(v) / len(v) for v in per_step.values())
    assert [w["mean_reward"] for w in s["worst_steps"]] == pytest.approx(means[:12])
    for w in s["worst_steps"]:
        assert w["candidates"] == len(per_step[(w["instance_id"], w["step_index"])])
    assert s["trend"] == [] and s["episodes"] == []  # a scoring: no training steps, no episodes


def test_the_tables_show_the_same_counts(run):
    out = cli("inspect", str(run["folder"])).stdout
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells:
            rows.setdefault(cells[0], cells)
    for t in run["summary"]["by_tool"]:
        assert rows[t["tool"]][1:3] == [str(t["steps"]), str(t["candidates"])]
    for t in run["summary"]["by_task"]:
        assert rows[t["instance_id"]][2] == str(t["candidates"])
    assert rows["scored completions"][1] == str(len(run["scored"]))
    for reason, n in run["summary"]["format_errors_by_reason"].items():
        assert rows[reason][1] == str(n)


def test_export_and_run_filter(run, tmp_path):
    out = json.loads(cli("inspect", str(run["folder"]), "--run", "scored", "--json",
                         "--export", str(tmp_path / "rows.parquet")).stdout)
    assert out["export"]["rows"] == len(run["scored"])
    result = subprocess.run([str(SRL_AGENT), "inspect", str(run["folder"]), "--run", "nope"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "no run 'nope'" in result.stderr


# ---------------------------------------------------------------- the report in a real browser


@pytest.fixture(scope="module")
def browser():
    problem = None if CHROMIUM.exists() else f"{CHROMIUM} is not installed (scripts/ensure-chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        problem = problem or f"playwright is not importable: {e}"
    if problem:
        if os.environ.get("SRL_REQUIRE_BROWSER"):
            pytest.fail(f"SRL_REQUIRE_BROWSER is set but {problem}", pytrace=False)
        pytest.skip(problem)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A page that records console errors, page errors and every request it makes."""

    def __init__(self, browser, path: Path):
        self.errors, self.requests = [], []
        self.page = browser.new_page(viewport={"width": 1360, "height": 900})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)


def columns(panel, index: int) -> tuple[str, str]:
    """The left (expert) and right (candidate) texts of the ``index``-th side-by-side table of a panel."""
    return tuple(panel.locator("table.sbs").nth(index).evaluate(
        """t => [1, 3].map(c => Array.from(t.rows).slice(1).filter(r => r.cells[c - 1].textContent !== '')
                 .map(r => r.cells[c].textContent).join('\\n'))"""))


def test_the_report_opens_offline_and_shows_a_step(run, browser):
    html = (run["folder"] / "report.html").read_text(encoding="utf-8")
    assert "<link" not in html and "<script src" not in html and not re.search(r"(src|href)=\"(https?:)?//", html)
    page = Page(browser, run["folder"] / "report.html")
    p = page.page
    db = sqlite3.connect(run["folder"] / "rewards.sqlite")
    n_steps = db.execute("SELECT count(*) FROM (SELECT DISTINCT task_id, step_index FROM candidates)").fetchone()[0]
    assert p.locator("svg.heat rect[data-step]").count() == n_steps
    assert p.locator("article.step:visible").count() == 0

    # The worst step, clicked in the heatmap.
    worst = run["summary"]["worst_steps"][0]
    (task_id,) = db.execute("SELECT id FROM tasks WHERE instance_id = ?", (worst["instance_id"],)).fetchone()
    ident = f"s-{task_id}-{worst['step_index']}"
    p.click(f'svg.heat rect[data-step="{ident}"]')
    panel = p.locator(f"article#{ident}")
    assert panel.is_visible() and p.locator("article.step:visible").count() == 1
    step = next(s for s in run["steps"] if (s["instance_id"], s["step_index"]) == (worst["instance_id"],
                                                                                  worst["step_index"]))
    assert panel.locator('[data-role="expert"]').text_content() == step["expert_action"]
    rows = sorted((r for r in run["scored"] if (r["instance_id"], r["step_index"]) == (step["instance_id"],
                                                                                       step["step_index"])),
                  key=lambda r: r["reward"])
    assert panel.locator("div.cand").count() == len(rows) == worst["candidates"]
    for i, row in enumerate(rows):
        left, right = columns(panel, i)
        assert left == step["expert_action"]
        call = row["breakdown"]["call"]
        if call is not None:
            assert right == render(ToolCall.from_dict(call))
        else:
            assert right.strip() in row["completion"]
        breakdown = panel.locator('[data-role="breakdown"]').nth(i).text_content()
        assert "mode: tool-aware" in breakdown
        for name in row["breakdown"]["components"]:
            assert f"{name}:" in breakdown
        if row["breakdown"]["format_error"]:
            assert f"format error: {row['breakdown']['format_error']}" in breakdown
        assert f"reward {row['reward']:.3f}" in panel.locator("div.chead").nth(i).text_content()

    # The context the model saw, one block per prompt message.
    panel.locator("details.ctx summary").click()
    assert panel.locator("details.ctx .msg").count() == len(step["prompt"])
    assert panel.locator("details.ctx .msg pre").last.is_visible()

    # A row of the worst-steps table opens its step too.
    second = p.locator("table.t tr[data-step]").nth(1)
    other = second.get_attribute("data-step")
    second.click()
    assert p.locator(f"article#{other}").is_visible() and not panel.is_visible()
    assert page.errors == []
    assert set(page.requests) == {page.url}  # nothing but the file itself: no network, no other file


def test_the_report_says_when_the_expert_step_is_unknown(run, browser, tmp_path):
    """Scored rows without their step file: the page still works and says how to add the steps."""
    rows = run["scored"][:20]
    (tmp_path / "scored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = json.loads(cli("inspect", str(tmp_path), "--json", "--html", str(tmp_path / "r.html")).stdout)
    assert out["missing_steps"] == len({(r["instance_id"], r["step_index"]) for r in rows})
    assert out["by_tool"] == [dict(out["by_tool"][0], tool="(expert unknown)")]
    page = Page(browser, tmp_path / "r.html")
    page.page.locator("svg.heat rect[data-step]").first.click()
    panel = page.page.locator("article.step:visible")
    assert "--steps" in panel.text_content() and panel.locator('[data-role="candidate"]').count() >= 1
    assert page.errors == []
