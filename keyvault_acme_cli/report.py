"""``keyvault-acme report``: the fleet as one self-contained HTML page people actually open.

One file, no network at view time (no scripts, styles, fonts or images from anywhere): it can be mailed,
attached to a pipeline run or served from a static bucket. It holds the fleet table (sortable by clicking a
column header, or by ``#sort=<column>[:desc]`` in the address, so a sorted view can be linked), and an
expiry timeline: each certificate a bar from issue to expiry, a mark where it becomes due for renewal,
and a line for today. Certificates that need someone come first: failing (unreadable, expired, revoked,
missing, disabled), then overdue (due for longer than the alert's grace), then due and outdated.

Pure: rows in, text out. The rows come from the engine through the fleet module, like ``fleet status``.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

from .output import when  # the one date format of the CLI's tables and this page

# How long a certificate may stay due before it counts as overdue: the renewal-overdue alert's grace
# (two missed runs of a 6-hourly schedule), so the report and the alert agree.
OVERDUE_GRACE = timedelta(hours=12)

# Failing first, then what needs action soon; within a rank, the soonest expiry first.
RANK = {"error": 0, "expired": 1, "revoked": 2, "missing": 3, "disabled": 4, "overdue": 5, "due": 6,
        "outdated": 7, "valid": 8}
COLOURS = {"error": "#b00020", "expired": "#b00020", "revoked": "#b00020", "missing": "#b00020",
           "disabled": "#b00020", "overdue": "#d45500", "due": "#c98a00", "outdated": "#c98a00",
           "valid": "#2e7d32"}


@dataclass(frozen=True)
class FleetRow:
    """One certificate of the fleet as status reports it (state from the engine's renewal decision)."""

    stack: str
    workload: str
    environment: str
    name: str
    state: str  # status's states, or "error" when it could not be read
    reason: str  # the renewal decision's message, or the error
    decided_by: str  # "ARI" (the CA's renewal window) or "policy" (the stack's renewal policy); "" if unknown
    not_before: datetime | None = None
    not_after: datetime | None = None
    renew_after: datetime | None = None
    issuer: str = ""
    version: str = ""
    vault: str = ""

    def as_json(self, now: datetime) -> dict[str, object]:
        days = self.days_left(now)
        return {"stack": self.stack, "workload": self.workload, "environment": self.environment, "name": self.name,
                "state": self.state, "overdue": self.overdue(now), "reason": self.reason,
                "decided_by": self.decided_by or None, "vault_url": self.vault or None,
                "version": self.version or None, "issuer": self.issuer or None,
                "not_before": self.not_before.isoformat() if self.not_before else None,
                "not_after": self.not_after.isoformat() if self.not_after else None,
                "days_left": round(days, 6) if days is not None else None,
                "renew_after": self.renew_after.isoformat() if self.renew_after else None}

    def days_left(self, now: datetime) -> float | None:
        return None if self.not_after is None else (self.not_after - now).total_seconds() / 86400

    def overdue(self, now: datetime) -> bool:
        return self.state == "due" and self.renew_after is not None and now > self.renew_after + OVERDUE_GRACE

    def shown_state(self, now: datetime) -> str:
        return "overdue" if self.overdue(now) else self.state


def attention_order(rows: Sequence[FleetRow], now: datetime) -> list[FleetRow]:
    """Failing first, then overdue, due, outdated, valid; soonest expiry first within each."""
    far = datetime.max.replace(tzinfo=timezone.utc)
    return sorted(rows, key=lambda r: (RANK.get(r.shown_state(now), 0), r.not_after or far, r.stack, r.name))


def render_report(rows: Sequence[FleetRow], now: datetime, *, title: str = "keyvault-acme fleet report") -> str:
    rows = attention_order(rows, now)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.shown_state(now)] = counts.get(r.shown_state(now), 0) + 1
    summary = " ".join(
        f'<span class="pill" style="background:{COLOURS[s]}" data-state="{s}">{counts[s]} {s}</span>'
        for s in sorted(counts, key=lambda s: RANK.get(s, 0)))
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_CSS}</style></head>
<body>
<header><h1>{e(title)}</h1>
<p>Generated {e(when(now))} &middot; {_count(len(rows), "certificate")} in {_count(len({r.stack for r in rows}), "stack")}
&middot; <span id="summary">{summary}</span></p></header>
<section><h2>Expiry timeline</h2>
<p class="legend">Each bar runs from issue to expiry; the black mark is when renewal is due; the blue line is today.</p>
{_timeline(rows, now)}
</section>
<section><h2>Certificates</h2>
<p class="legend">Click a column to sort it (again to reverse); failing and overdue certificates come first.</p>
{_table(rows, now)}
</section>
<script>{_SCRIPT}</script>
</body></html>
"""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


_COLUMNS = (  # (key, header, kind): kind "text" or "num" tells the sorter how to compare
    ("stack", "Stack", "text"), ("workload", "Workload", "text"), ("environment", "Env", "text"),
    ("name", "Certificate", "text"), ("state", "State", "num"), ("days_left", "Days left", "num"),
    ("not_after", "Expires", "num"), ("renew_after", "Renew after", "num"), ("decided_by", "Decided by", "text"),
    ("reason", "Why", "text"),
)


def _table(rows: Sequence[FleetRow], now: datetime) -> str:
    e = html.escape
    head = "".join(f'<th data-key="{k}" data-kind="{kind}" tabindex="0">{e(label)}</th>' for k, label, kind in _COLUMNS)
    body = []
    for r in rows:
        state = r.shown_state(now)
        days = r.days_left(now)
        cells = {
            "stack": (r.stack, r.stack), "workload": (r.workload, r.workload),
            "environment": (r.environment, r.environment), "name": (r.name, r.name),
            "state": (str(RANK.get(state, 0)), f'<span class="pill" style="background:{COLOURS.get(state, "#555")}">'
                                               f'{e(state)}</span>'),
            "days_left": ("" if days is None else f"{days:.3f}", "-" if days is None else f"{days:.1f}"),
            "not_after": (_epoch(r.not_after), when(r.not_after)),
            "renew_after": (_epoch(r.renew_after), when(r.renew_after)),
            "decided_by": (r.decided_by, r.decided_by or "-"), "reason": (r.reason, r.reason or "-"),
        }
        tds = "".join(
            f'<td data-key="{k}" data-value="{e(value)}">{shown if k == "state" else e(shown)}</td>'
            for k, (value, shown) in ((k, cells[k]) for k, _, _ in _COLUMNS))
        body.append(f'<tr data-state="{e(state)}" data-stack="{e(r.stack)}" data-name="{e(r.name)}">{tds}</tr>')
    return f'<table id="fleet"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _epoch(value: datetime | None) -> str:
    return "" if value is None else f"{value.timestamp():.0f}"


def _timeline(rows: Sequence[FleetRow], now: datetime) -> str:
    """An SVG drawn here, not by a charting script: it needs no network and shows without JavaScript."""
    e = html.escape
    dated = [r for r in rows if r.not_before and r.not_after]
    start = min([r.not_before for r in dated if r.not_before] + [now - timedelta(days=1)])
    end = max([r.not_after for r in dated if r.not_after] + [now + timedelta(days=1)])
    label_w, plot_w, row_h, top = 260, 760, 22, 28
    height = top + row_h * max(1, len(rows)) + 24
    span_s = max(1.0, (end - start).total_seconds())

    def x(value: datetime) -> float:
        return label_w + plot_w * (value - start).total_seconds() / span_s

    parts = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 20}" '
             f'height="{height}" role="img" aria-label="certificate expiry timeline">']
    for tick in _ticks(start, end):
        parts.append(f'<line class="grid" x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{height - 16}"/>'
                     f'<text class="tick" x="{x(tick):.1f}" y="{top - 10}">{tick:%Y-%m-%d}</text>')
    for i, r in enumerate(rows):
        y = top + i * row_h
        state = r.shown_state(now)
        parts.append(f'<g class="cert" data-stack="{e(r.stack)}" data-name="{e(r.name)}" data-state="{e(state)}">'
                     f'<text class="label" x="{label_w - 8}" y="{y + 15}">{e(r.stack)} / {e(r.name)}</text>')
        if r.not_before and r.not_after:
            x0, x1 = x(r.not_before), x(r.not_after)
            parts.append(f'<rect class="bar" x="{x0:.1f}" y="{y + 4}" width="{max(2.0, x1 - x0):.1f}" height="14" '
                         f'rx="3" fill="{COLOURS.get(state, "#555")}"><title>{e(r.name)}: {e(when(r.not_before))} to '
                         f'{e(when(r.not_after))} ({e(state)})</title></rect>')
            if r.renew_after:
                xr = x(r.renew_after)
                parts.append(f'<rect class="renewal" x="{xr - 1.5:.1f}" y="{y + 1}" width="3" height="20" fill="#111">'
                             f'<title>renew after {e(when(r.renew_after))}</title></rect>')
        else:
            parts.append(f'<text class="nobar" x="{label_w + 4}" y="{y + 15}">{e(state)}: {e(r.reason)}</text>')
        parts.append("</g>")
    parts.append(f'<line id="today" x1="{x(now):.1f}" y1="{top - 6}" x2="{x(now):.1f}" y2="{height - 16}"/>'
                 f'<text class="today" x="{x(now):.1f}" y="{height - 4}">today</text></svg>')
    return "".join(parts)


def _ticks(start: datetime, end: datetime) -> list[datetime]:
    """Five or so dated grid lines, on whole days."""
    days = max(1, (end - start).days)
    step = max(1, round(days / 5))
    first = (start + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return [first + timedelta(days=step * i) for i in range(days // step + 1) if first + timedelta(days=step * i) < end]


_CSS = """
body{font-family:"Liberation Sans",Arial,Helvetica,sans-serif;margin:24px;color:#1b1b1b;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 6px}.legend{color:#555;font-size:13px;margin:2px 0 8px}
.pill{display:inline-block;color:#fff;border-radius:9px;padding:1px 8px;font-size:12px;font-weight:bold}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eee;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td{white-space:nowrap}td[data-key=reason]{white-space:normal;max-width:420px;color:#444}
svg{background:#fff;border:1px solid #ddd}.grid{stroke:#e3e3e3}.tick{font-size:11px;fill:#666;text-anchor:middle}
.label{font-size:12px;text-anchor:end;fill:#222}.nobar{font-size:12px;fill:#b00020}
#today{stroke:#1565c0;stroke-width:2}.today{font-size:11px;fill:#1565c0;text-anchor:middle}
"""

# Sorts the table in the page; ``#sort=<key>[:desc]`` in the address sorts it on load (linkable views).
_SCRIPT = """
(function(){
  var table=document.getElementById('fleet'),body=table.tBodies[0],heads=table.tHead.rows[0].cells;
  function sortBy(key,desc){
    var th=null;for(var i=0;i<heads.length;i++){heads[i].removeAttribute('aria-sort');if(heads[i].dataset.key===key)th=heads[i];}
    if(!th)return;var num=th.dataset.kind==='num';
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){
      var x=a.querySelector('td[data-key="'+key+'"]').dataset.value,y=b.querySelector('td[data-key="'+key+'"]').dataset.value;
      if(num){x=x===''?Infinity:parseFloat(x);y=y===''?Infinity:parseFloat(y);}
      var c=x<y?-1:x>y?1:0;return desc?-c:c;});
    rows.forEach(function(r){body.appendChild(r);});
    th.setAttribute('aria-sort',desc?'descending':'ascending');
  }
  for(var i=0;i<heads.length;i++){(function(th){
    function go(){sortBy(th.dataset.key,th.getAttribute('aria-sort')==='ascending');}
    th.addEventListener('click',go);th.addEventListener('keydown',function(ev){if(ev.key==='Enter')go();});
  })(heads[i]);}
  var m=/sort=([a-z_]+)(:desc)?/.exec(location.hash);if(m)sortBy(m[1],!!m[2]);
})();
"""
