"""The report's inline stylesheet and script (the page loads nothing else)."""

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#fff; --accent:#2563eb;
        --del:#fde2e1; --del-strong:#f9b4b0; --ins:#dcfce7; --ins-strong:#9ee6b4; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#111827; color:#f9fafb; padding:16px 28px; }
header h1 { margin:0; font-size:20px; font-weight:600; }
header p { margin:4px 0 0; color:#cbd5e1; font-size:13px; }
main { max-width:1280px; margin:0 auto; padding:18px 28px 60px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 18px; margin:16px 0; }
h2 { font-size:16px; margin:0 0 10px; }
h3 { font-size:15px; margin:0 0 6px; }
h4 { font-size:13px; margin:12px 0 4px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin-top:16px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 16px; min-width:150px; }
.card b { display:block; font-size:22px; font-weight:600; }
.card span { color:var(--muted); font-size:12px; }
.muted { color:var(--muted); }
.charts { display:flex; flex-wrap:wrap; gap:18px; }
svg text { font-size:11px; fill:#4b5563; }
svg .ct { font-size:12px; font-weight:600; fill:#111827; }
svg .yt { text-anchor:end; } svg .xt { text-anchor:middle; } svg .yl { text-anchor:end; }
svg .lg { font-size:12px; }
svg .grid { stroke:#eef0f3; }
.heatwrap { overflow-x:auto; }
.heat .cell { cursor:pointer; stroke:#fff; stroke-width:1; }
.heat .cell.off { cursor:default; }
.heat .cell:hover, .heat .cell:focus, .heat .cell.sel { stroke:#111827; stroke-width:2; outline:none; }
table.t { border-collapse:collapse; width:100%; font-size:13px; }
table.t th, table.t td { padding:4px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
table.t th { color:var(--muted); font-weight:600; font-size:12px; }
table.t th.n { text-align:right; }
table.t td.n { text-align:right; font-variant-numeric:tabular-nums; }
table.t tr[data-step] { cursor:pointer; }
table.t tr[data-step]:hover, table.t tr.sel { background:#eff6ff; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit,minmax(440px,1fr)); gap:16px; }
.grid2 section { margin:0; }
.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:middle; }
#detail-empty { color:var(--muted); }
.step .meta { color:var(--muted); margin:0 0 8px; }
pre { margin:0; white-space:pre-wrap; word-break:break-word; font:12px/1.45 ui-monospace,"DejaVu Sans Mono",Menlo,monospace; }
pre.box { background:#f3f4f6; border-radius:6px; padding:8px 10px; max-height:360px; overflow:auto; }
details { margin:6px 0; }
summary { cursor:pointer; color:var(--accent); }
.msg { border-left:3px solid var(--line); padding:2px 0 2px 10px; margin:8px 0; }
.msg b { font-size:11px; text-transform:uppercase; color:var(--muted); }
.msg.assistant { border-color:#93c5fd; } .msg.user { border-color:#d1d5db; } .msg.system { border-color:#fcd34d; }
.cand { border:1px solid var(--line); border-radius:8px; padding:10px 12px; margin:12px 0; }
.chead { display:flex; flex-wrap:wrap; gap:8px; align-items:center; margin-bottom:8px; }
.badge { border-radius:12px; padding:1px 10px; font-weight:600; font-variant-numeric:tabular-nums; }
.tag { background:#f3f4f6; border-radius:4px; padding:0 6px; font-size:12px; }
.tag.err { background:#fee2e2; color:#991b1b; }
table.sbs { border-collapse:collapse; width:100%; table-layout:fixed;
            font:12px/1.45 ui-monospace,"DejaVu Sans Mono",Menlo,monospace; }
table.sbs th { text-align:left; font:600 12px system-ui,sans-serif; color:var(--muted); padding:2px 6px; }
table.sbs td { padding:0 6px; white-space:pre-wrap; word-break:break-word; vertical-align:top; }
table.sbs col.lnc { width:34px; }
table.sbs td.ln { color:#9ca3af; text-align:right; user-select:none; }
table.sbs td.del { background:var(--del); } table.sbs td.ins { background:var(--ins); }
table.sbs td.chg { background:#fefce8; } table.sbs td.void { background:#f9fafb; }
table.sbs del { background:var(--del-strong); text-decoration:none; }
table.sbs ins { background:var(--ins-strong); text-decoration:none; }
.bd { display:flex; flex-wrap:wrap; gap:6px; margin-top:8px; }
.bd span { background:#f3f4f6; border-radius:4px; padding:1px 8px; font-size:12px; }
.bd span b { font-weight:600; }
"""

# Show one step's panel: clicks (and Enter) on anything with data-step, and the URL's #fragment.
JS = """
(function () {
  var current = null;
  function show(id, scroll) {
    var panel = document.getElementById(id);
    if (!panel) return;
    if (current) current.hidden = true;
    panel.hidden = false;
    current = panel;
    document.getElementById('detail-empty').hidden = true;
    var marked = document.querySelectorAll('.sel');
    for (var i = 0; i < marked.length; i++) marked[i].classList.remove('sel');
    var mine = document.querySelectorAll('[data-step="' + id + '"]');
    for (var j = 0; j < mine.length; j++) mine[j].classList.add('sel');
    if (scroll) document.getElementById('detail').scrollIntoView({block: 'start'});
    try { history.replaceState(null, '', '#' + id); } catch (e) { /* some file:// pages refuse */ }
  }
  function target(ev) { return ev.target.closest ? ev.target.closest('[data-step]') : null; }
  document.addEventListener('click', function (ev) {
    var t = target(ev);
    if (t) { ev.preventDefault(); show(t.getAttribute('data-step'), true); }
  });
  document.addEventListener('keydown', function (ev) {
    var t = target(ev);
    if (t && (ev.key === 'Enter' || ev.key === ' ')) { ev.preventDefault(); show(t.getAttribute('data-step'), true); }
  });
  if (location.hash.length > 1) show(location.hash.slice(1), false);
})();
"""
