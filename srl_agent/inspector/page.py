"""The HTML report: one self-contained file (inline CSS, JS and SVG) that opens from disk.

Sections: headline figures; reward and format-error curves over training steps; the heatmap of step
rewards per trajectory; the detail panel (expert action vs each candidate, side by side with a diff,
the breakdown and the context the model saw), filled by clicking a step; the summary tables.
"""

from __future__ import annotations

import sqlite3
import time
from html import escape
from pathlib import Path
from typing import Any

from ..actions import render
from ..schema import ToolCall
from .assets import CSS, JS
from .details import step_details, step_id
from .diff import side_by_side
from .plots import heatmap as heatmap_svg
from .plots import legend, line_chart, reward_color
from .summary import heatmap, summarize

_COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed")


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(cols: list[tuple[str, str]], rows: list[dict[str, Any]], step_key: bool = False) -> str:
    """``cols``: (key, header); numeric values are right-aligned. Rows with a ``_step`` id are clickable."""
    numeric = {k for k, _ in cols if rows and all(isinstance(r.get(k), (int, float)) or r.get(k) is None for r in rows)}
    head = "".join(f'<th class="n">{escape(h)}</th>' if k in numeric else f"<th>{escape(h)}</th>" for k, h in cols)
    body = []
    for r in rows:
        attr = f' data-step="{r["_step"]}" tabindex="0"' if step_key and r.get("_step") else ""
        cells = "".join(f'<td class="n">{_f(r.get(k))}</td>' if isinstance(r.get(k), (int, float)) or r.get(k) is None
                        else f"<td>{escape(str(r[k]))}</td>" for k, _ in cols)
        body.append(f"<tr{attr}>{cells}</tr>")
    return f'<table class="t"><tr>{head}</tr>{"".join(body)}</table>' if rows else '<p class="muted">nothing yet</p>'


def _cards(s: dict[str, Any]) -> str:
    items = [(s["candidates"], "scored completions"), (s["steps"], "steps"), (s["tasks"], "trajectories"),
             (_f(s["mean_reward"]), "mean reward"), (f"{s['format_error_rate']:.1%}", "format errors")]
    items += [(e["episodes"], f"{e['kind']} episodes ({e['run']})") for e in s["episodes"]]
    return '<div class="cards">' + "".join(f'<div class="card"><b>{escape(str(v))}</b><span>{escape(k)}</span></div>'
                                         for v, k in items) + "</div>"


def _training(trend: list[dict[str, Any]]) -> str:
    if not trend:
        return ('<section><h2>Reward over training</h2><p class="muted">No training steps in this store '
                "(scorings only): the curves appear for runs whose records carry <code>global_step</code>.</p></section>")
    runs = list(dict.fromkeys(r["run"] for r in trend))
    mean, errors = [], []
    for i, run in enumerate(runs):
        rows = [r for r in trend if r["run"] == run]
        color = _COLORS[i % len(_COLORS)]
        mean.append({"label": f"{run}: mean", "color": color,
                     "points": [(r["global_step"], r["mean_reward"]) for r in rows],
                     "band": [(r["global_step"], r["min_reward"], r["max_reward"]) for r in rows]})
        errors.append({"label": f"{run}: format errors", "color": color,
                       "points": [(r["global_step"], r["format_error_rate"]) for r in rows]})
        if any(r["dropped_rate"] for r in rows):
            errors.append({"label": f"{run}: dropped groups", "color": "#9ca3af",
                           "points": [(r["global_step"], r["dropped_rate"]) for r in rows]})
    charts = (line_chart(mean, (-1, 1), "Mean reward per training step (band: min–max)")
              + line_chart(errors, (0, 1), "Share of completions per training step"))
    return f'<section id="training"><h2>Reward over training</h2><div class="charts">{charts}</div></section>'


def _candidate_action(c: dict[str, Any]) -> str:
    if c["call"]:
        try:
            return render(ToolCall.from_dict(c["call"]))
        except (KeyError, TypeError):
            pass
    text = c["completion"] or ""
    return (text.split("</think>", 1)[1] if "</think>" in text else text).strip() or text


def _badge(reward: float | None) -> str:
    light = reward is not None and -0.55 < reward < 0.6
    return (f'<span class="badge" style="background:{reward_color(reward)};color:{"#111827" if light else "#fff"}">'
            f"reward {_f(reward)}</span>")


def _breakdown(c: dict[str, Any]) -> str:
    parts = [("mode", c["mode"]), ("similarity", c["similarity"]), ("style", c["style"]),
             ("tool match", None if c["tool_match"] is None else bool(c["tool_match"])),
             ("fallback", None if c["fallback"] is None else bool(c["fallback"]))]
    parts += [(name, value) for name, value in c["components"].items()]
    spans = "".join(f"<span>{escape(k)}: <b>{escape(_f(v) if not isinstance(v, bool) else str(v).lower())}</b></span>"
                    for k, v in parts if v is not None)
    if c["format_error"]:
        spans += f'<span class="tag err">format error: {escape(c["format_error"])} — {escape(c["error"] or "")}</span>'
    return f'<div class="bd" data-role="breakdown">{spans}</div>'


def _candidate(c: dict[str, Any], expert: str | None) -> str:
    tags = [f'<span class="tag">{escape(", ".join(c["runs"]))}</span>']
    if c["count"] > 1:
        tags.append(f'<span class="tag">×{c["count"]}</span>')
    if c["extra"].get("label"):
        tags.append(f'<span class="tag">{escape(str(c["extra"]["label"]))}</span>')
    for key, name in (("global_step", "train step"), ("round", "round"), ("group_index", "group"), ("generation", "gen")):
        if c[key] is not None:
            tags.append(f'<span class="tag">{name} {c[key]}</span>')
    if c["advantage"] is not None:
        tags.append(f'<span class="tag">advantage {c["advantage"]:+.3f}</span>')
    if c["dropped"]:
        tags.append('<span class="tag">dropped group</span>')
    action = _candidate_action(c)
    body = (side_by_side(expert, action, "expert action", "candidate action") if expert is not None
            else f'<pre class="box" data-role="candidate">{escape(action)}</pre>')
    head = "".join([_badge(c["reward"]), *tags])
    return (f'<div class="cand"><div class="chead">{head}</div>{body}{_breakdown(c)}'
            f'<details><summary>full completion</summary><pre class="box">{escape(c["completion"] or "")}</pre>'
            "</details></div>")


def _context(prompt: list[dict[str, Any]] | None) -> str:
    if not prompt:
        return ""
    msgs = "".join(f'<div class="msg {escape(str(m.get("role", "")))}"><b>{escape(str(m.get("role", "")))}</b>'
                   f'<pre>{escape(str(m.get("content", "")))}</pre></div>' for m in prompt)
    return f'<details class="ctx"><summary>Context the model saw ({len(prompt)} messages)</summary>{msgs}</details>'


def _panel(d: dict[str, Any]) -> str:
    e = d["expert"]
    of = f" of {d['num_steps']}" if d["num_steps"] else ""
    meta = (f"expert tool {escape(e['expert_tool'] or '?') if e else '?'} · mean reward {_f(d['mean_reward'])} over "
            f"{d['total']} candidates · {d['distinct']} distinct, {len(d['candidates'])} shown · {escape(d['source'])}")
    if e is None:
        expert = ('<p class="muted">The expert step is not in the store: give the step file '
                  "(<code>srl-agent inspect RUN --steps steps.jsonl</code>).</p>")
    else:
        thought = (f'<details><summary>expert thought</summary><pre class="box">{escape(e["expert_thought"])}</pre></details>'
                   if e.get("expert_thought") else "")
        expert = (f'<h4>Expert action</h4><pre class="box" data-role="expert">{escape(e["expert_action"] or "")}</pre>'
                  f"{thought}{_context(e['prompt'])}")
    cands = "".join(_candidate(c, e["expert_action"] if e else None) for c in d["candidates"])
    return (f'<article class="step" id="{d["id"]}" hidden><h3>{escape(d["instance_id"])} · step {d["step_index"]}{of}</h3>'
            f'<p class="meta">{meta}</p>{expert}<h4>Candidates (worst first)</h4>{cands}</article>')


def _heat_rows(hm: list[dict[str, Any]], max_rows: int) -> tuple[list[dict[str, Any]], str]:
    """At most ``max_rows`` trajectories, the lowest mean reward first when some must go."""
    if len(hm) <= max_rows:
        return hm, ""

    def mean(t: dict[str, Any]) -> float:
        cells = [c["mean_reward"] for c in t["steps"].values() if c["mean_reward"] is not None]
        return sum(cells) / len(cells) if cells else 0.0

    kept = sorted(hm, key=mean)[:max_rows]
    return kept, f" Showing the {max_rows} trajectories with the lowest mean reward of {len(hm)}."


def render_report(conn: sqlite3.Connection, runs: list[str] | None = None, title: str = "reward store",
                  max_steps: int = 500, max_candidates: int = 12, max_rows: int = 300) -> str:
    """The page. At most ``max_steps`` steps get a detail panel (the worst first), with at most
    ``max_candidates`` distinct candidates each; the heatmap shows at most ``max_rows`` trajectories."""
    s = summarize(conn, runs, worst=15)
    details = step_details(conn, runs, max_steps, max_candidates)
    ids = {(d["task_id"], d["step_index"]): d["id"] for d in details}
    hm = heatmap(conn, runs)
    by_name = {(t["instance_id"], t["source"]): t["task_id"] for t in hm}
    hm, cut = _heat_rows(hm, max_rows)
    if len(details) < s["steps"]:
        cut += f" The {len(details)} lowest-scored of {s['steps']} steps open a detail panel."
    worst = [dict(r, _step=ids.get((by_name.get((r["instance_id"], r["source"])), r["step_index"])))
             for r in s["worst_steps"]]
    runs_line = ", ".join(f"{r['name']} ({r['kind']}, {r['candidates']})" for r in s["runs"])
    tables = "".join(f"<section><h2>{h}</h2>{t}</section>" for h, t in (
        ("Mean reward by expert tool", _table([("tool", "tool"), ("steps", "steps"), ("candidates", "candidates"),
                                               ("mean_reward", "mean reward"), ("format_errors", "format errors"),
                                               ("tool_match_rate", "tool match")], s["by_tool"])),
        ("Mean reward by step position", _table([("position", "step"), ("candidates", "candidates"),
                                                 ("mean_reward", "mean reward"), ("format_errors", "format errors")],
                                                s["by_position"])),
        ("Format errors", _table([("reason", "reason"), ("count", "count")],
                                 [{"reason": k, "count": v} for k, v in s["format_errors_by_reason"].items()])),
        ("Runs", _table([("name", "run"), ("kind", "kind"), ("candidates", "records"), ("mean_reward", "mean reward")],
                        s["runs"])),
    ))
    by_task = _table([("instance_id", "trajectory"), ("steps", "steps"), ("candidates", "candidates"),
                      ("mean_reward", "mean reward"), ("format_errors", "format errors")], s["by_task"])
    episodes = "" if not s["episodes"] else "<section><h2>Episodes (evaluation, RLVR)</h2>" + _table(
        [("run", "run"), ("kind", "kind"), ("episodes", "episodes"), ("resolved", "resolved"),
         ("mean_reward", "mean reward")], s["episodes"]) + "</section>"
    worst_table = _table([("instance_id", "trajectory"), ("step_index", "step"), ("expert_tool", "expert tool"),
                          ("candidates", "candidates"), ("mean_reward", "mean"), ("min_reward", "min"),
                          ("max_reward", "max")], worst, step_key=True)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>srl-agent inspector: {escape(title)}</title><style>{CSS}</style></head><body>
<header><h1>srl-agent inspector · {escape(title)}</h1>
<p>{escape(runs_line)} · generated {time.strftime("%Y-%m-%d %H:%M")}</p></header>
<main>{_cards(s)}{_training(s["trend"])}
<section id="heatmap"><h2>Step rewards per trajectory</h2>
<p class="muted">Each cell is one expert step, coloured by the mean reward of its candidates. Click a cell for the step.{cut}</p>
{legend()}<div class="heatwrap">{heatmap_svg(hm, ids)}</div></section>
<section id="detail"><h2>Step detail</h2><p id="detail-empty">Click a step in the heatmap or in the table below.</p>
{"".join(_panel(d) for d in details)}</section>
<section><h2>Worst-scored steps</h2>{worst_table}</section>
<div class="grid2">{tables}</div>{episodes}
<section><h2>Mean reward by trajectory</h2>{by_task}</section>
</main><script>{JS}</script></body></html>
"""


def write_report(conn: sqlite3.Connection, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(conn, **kwargs)
    out.write_text(text, encoding="utf-8")
    return {"html": str(out), "bytes": len(text.encode("utf-8"))}


__all__ = ["render_report", "step_id", "write_report"]
