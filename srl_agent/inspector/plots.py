"""Inline SVG: line charts (reward over training) and the step-reward heatmap. No scripts, no fonts to load."""

from __future__ import annotations

import math
from html import escape
from typing import Any

# Reward colours: −1 (format error) red, 0 amber, 1 green; None (not scored) grey.
_STOPS = ((-1.0, (215, 48, 39)), (0.0, (254, 224, 139)), (1.0, (26, 152, 80)))
NO_DATA = "#e5e7eb"


def reward_color(r: float | None) -> str:
    if r is None:
        return NO_DATA
    r = max(-1.0, min(1.0, r))
    for (x0, c0), (x1, c1) in zip(_STOPS, _STOPS[1:], strict=False):
        if r <= x1:
            t = (r - x0) / (x1 - x0)
            return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1, strict=True))
    return "#1a9850"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def line_chart(series: list[dict[str, Any]], y_range: tuple[float, float] | None = None, title: str = "",
               x_label: str = "training step", width: int = 560, height: int = 220) -> str:
    """Series: ``{"label", "color", "points": [(x, y)], "band": [(x, lo, hi)] (optional)}``."""
    pad_l, pad_r, pad_t, pad_b = 46, 12, 44, 34
    xs = [x for s in series for x, _ in s["points"]] or [0]
    ys = [y for s in series for _, y in s["points"] if y is not None]
    ys += [v for s in series for _, lo, hi in s.get("band", ()) for v in (lo, hi) if v is not None]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = y_range or (min(ys or [0]), max(ys or [1]))
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b

    def px(x: float) -> float:
        return round(pad_l + (x - x0) / (x1 - x0) * pw, 1)

    def py(y: float) -> float:
        return round(pad_t + (1 - (y - y0) / (y1 - y0)) * ph, 1)

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(title)}"><text x="{pad_l}" y="16" class="ct">{escape(title)}</text>']
    for t in nice_ticks(y0, y1, 4):
        if y0 - 1e-9 <= t <= y1 + 1e-9:
            out.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{py(t)}" y2="{py(t)}" class="grid"/>'
                       f'<text x="{pad_l - 6}" y="{py(t) + 4}" class="yt">{_fmt(t)}</text>')
    for t in nice_ticks(x0, x1, 6):
        if x0 <= t <= x1 and float(t).is_integer():
            out.append(f'<text x="{px(t)}" y="{height - pad_b + 16}" class="xt">{int(t)}</text>')
    out.append(f'<text x="{pad_l + pw / 2}" y="{height - 4}" class="xt">{escape(x_label)}</text>')
    for s in series:
        band = s.get("band") or []
        if band:
            pts = [f"{px(x)},{py(hi)}" for x, _, hi in band] + [f"{px(x)},{py(lo)}" for x, lo, _ in reversed(band)]
            out.append(f'<polygon points="{" ".join(pts)}" fill="{s["color"]}" opacity="0.15"/>')
        pts = [(x, y) for x, y in s["points"] if y is not None]
        if len(pts) > 1:
            out.append(f'<polyline points="{" ".join(f"{px(x)},{py(y)}" for x, y in pts)}" fill="none" '
                       f'stroke="{s["color"]}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x)}" cy="{py(y)}" r="3" fill="{s["color"]}">'
                       f'<title>{escape(s["label"])} at step {x}: {y:.3f}</title></circle>')
    lx = pad_l
    for s in series:  # the legend: one row under the title
        out.append(f'<text x="{lx}" y="34" class="lg" style="fill:{s["color"]}">■ {escape(s["label"])}</text>')
        lx += 7 * len(s["label"]) + 30
    out.append("</svg>")
    return "".join(out)


def heatmap(tasks: list[dict[str, Any]], step_ids: dict[tuple[int, int], str], cell: int | None = None) -> str:
    """Rows: trajectories; columns: step index; colour: the step's mean reward. Cells with a detail
    panel carry ``data-step`` (the panel's id) and are focusable."""
    label_w = 300
    cols = max([max(t["steps"], default=-1) + 1 for t in tasks] + [t["num_steps"] or 0 for t in tasks] + [1])
    cell = cell or (22 if cols <= 30 else 16 if cols <= 60 else 10)  # cell width
    row_h = max(cell, 15)  # rows stay tall enough for their labels
    width, height = label_w + cols * cell + 10, 22 + len(tasks) * row_h + 4
    out = [f'<svg class="heat" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           'aria-label="mean reward per step and trajectory">']
    for k in range(0, cols, 5 if cols > 12 else 1):
        out.append(f'<text x="{label_w + k * cell + cell / 2}" y="14" class="xt">{k}</text>')
    for row, t in enumerate(tasks):
        y = 22 + row * row_h
        name = t["instance_id"] if len(t["instance_id"]) <= 44 else t["instance_id"][:43] + "…"
        out.append(f'<text x="{label_w - 6}" y="{y + row_h - 5}" class="yl"><title>{escape(t["instance_id"])} '
                   f'{escape(t["source"])}</title>{escape(name)}</text>')
        for k in range(max(t["num_steps"] or 0, max(t["steps"], default=-1) + 1)):
            s = t["steps"].get(k)
            x = label_w + k * cell
            ident = step_ids.get((t["task_id"], k))
            attrs = f' data-step="{ident}" tabindex="0" class="cell"' if ident else ' class="cell off"'
            tip = (f"{t['instance_id']} step {k}: no candidates" if s is None else
                   f"{t['instance_id']} step {k}: mean reward {s['mean_reward']:.3f} over {s['candidates']}")
            out.append(f'<rect x="{x}" y="{y + (row_h - cell) / 2}" width="{cell - 2}" height="{cell - 2}" rx="2" '
                       f'fill="{reward_color(None if s is None else s["mean_reward"])}"{attrs}>'
                       f'<title>{escape(tip)}</title></rect>')
    out.append("</svg>")
    return "".join(out)


def legend() -> str:
    stops = "".join(f'<stop offset="{(v + 1) / 2:.2f}" stop-color="{reward_color(v)}"/>' for v in (-1, -0.5, 0, 0.5, 1))
    return ('<svg class="legend" viewBox="0 0 260 34" width="260" height="34"><defs><linearGradient id="rg">'
            f'{stops}</linearGradient></defs><rect x="10" y="4" width="240" height="12" fill="url(#rg)" rx="2"/>'
            '<text x="10" y="30" class="xt">−1</text><text x="130" y="30" class="xt">0</text>'
            '<text x="250" y="30" class="xt">1</text></svg>')
