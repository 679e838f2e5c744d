"""The HTML fleet report, rendered by a real browser (Debian's headless Chromium): what people see is
checked on the DOM Chromium builds (after the page's own script ran) and on a screenshot of it.

KEYVAULT_ACME_UPDATE_SCREENSHOT=1 also copies the screenshot to docs/images/fleet-report.png (the README's).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from keyvault_acme_cli.report import COLOURS, FleetRow, attention_order, render_report

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "images" / "fleet-report.png"
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def days(n: float) -> datetime:
    return NOW + timedelta(days=n)


def fleet() -> list[FleetRow]:
    """Three stacks with one certificate in every state a fleet shows."""
    def row(stack, name, state, issued, lifetime, renew_at, decided_by="policy", reason=""):
        workload, environment = stack.split("-")
        nb = days(issued) if issued is not None else None
        return FleetRow(stack, workload, environment, name, state, reason, decided_by, nb,
                        nb + timedelta(days=lifetime) if nb else None, days(renew_at) if renew_at is not None else None,
                        "R11" if nb else "")
    return [
        row("shop-prod", "www", "valid", -20, 90, 40),
        row("shop-prod", "api", "due", -64, 90, -4, "ARI", "Renewing: the CA's renewal window made it due"),
        row("shop-dev", "www", "valid", -2, 6, 2, reason=""),
        row("shop-dev", "admin", "missing", None, 0, None, "", "Issuing: the certificate does not exist in Key Vault"),
        row("blog-prod", "www", "expired", -95, 90, -35, reason="Renewing: the certificate expired"),
        row("blog-prod", "feeds", "due", -61, 90, -0.2, reason="Renewing: the renewal policy made it due"),
        row("blog-prod", "static", "outdated", -10, 45, 20, reason="Re-issuing: DNS names changed"),
        FleetRow("pay-prod", "pay", "prod", "?", "error", "cannot read stacks/Pulumi.pay-prod.yaml: permission denied", ""),
    ]


def chromium(*args: str, cwd: Path) -> str:
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is not installed: run scripts/install-system-deps.sh"
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    done = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", f"--user-data-dir={cwd / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Dom(HTMLParser):
    """The parts of the DOM the tests read: rows of the table, groups of the timeline, resource references."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.bars: list[dict] = []
        self.marks: list[dict] = []
        self.groups: list[dict] = []
        self.today: dict | None = None
        self.references: list[tuple[str, str, str]] = []
        self.sorted_by: list[tuple[str, str]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-state" in a:
            self.rows.append(a)
        elif tag == "g" and a.get("class") == "cert":
            self.groups.append(a)
        elif tag == "rect" and a.get("class") == "bar":
            self.bars.append({**a, "group": self.groups[-1]})
        elif tag == "rect" and a.get("class") == "renewal":
            self.marks.append({**a, "group": self.groups[-1]})
        elif tag == "line" and a.get("id") == "today":
            self.today = a
        elif tag == "th" and a.get("aria-sort"):
            self.sorted_by.append((a["data-key"], a["aria-sort"]))
        for name in ("src", "href", "srcset", "poster", "data"):
            if name in a:
                self.references.append((tag, name, a[name]))


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("report")
    (directory / "report.html").write_text(render_report(fleet(), NOW), encoding="utf-8")
    return directory / "report.html"


def test_the_page_is_self_contained(page):
    text = page.read_text()
    dom = Dom(text)
    assert dom.references == []  # no script, style, image, font or link fetched from anywhere
    assert "@import" not in text and "url(" not in text
    # The only URL on the page is the SVG namespace, which a browser never fetches.
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) == {"http://www.w3.org/2000/svg"}


def test_failing_and_overdue_certificates_come_first_in_the_browsers_dom(page):
    dom = Dom(chromium("--dump-dom", page.as_uri(), cwd=page.parent))
    order = [(r["data-stack"], r["data-name"], r["data-state"]) for r in dom.rows]
    assert order == [
        ("pay-prod", "?", "error"), ("blog-prod", "www", "expired"), ("shop-dev", "admin", "missing"),
        ("shop-prod", "api", "overdue"),  # due for 4 days: past the alert's 12 h grace
        ("blog-prod", "feeds", "due"),  # due for 5 hours: not overdue yet
        ("blog-prod", "static", "outdated"), ("shop-dev", "www", "valid"), ("shop-prod", "www", "valid")]
    assert dom.sorted_by == []  # the script only sorts when asked


def test_the_timeline_has_a_bar_per_issued_certificate_with_its_renewal_point_and_today(page):
    dom = Dom(chromium("--dump-dom", page.as_uri(), cwd=page.parent))
    assert [(g["data-stack"], g["data-name"]) for g in dom.groups] == [
        (r.stack, r.name) for r in attention_order(fleet(), NOW)]
    by_name = {(b["group"]["data-stack"], b["group"]["data-name"]): b for b in dom.bars}
    assert set(by_name) == {(r.stack, r.name) for r in fleet() if r.not_after}  # missing/error: no bar
    marks = {(m["group"]["data-stack"], m["group"]["data-name"]): float(m["x"]) + 1.5 for m in dom.marks}
    today = float(dom.today["x1"])
    for key, bar in by_name.items():
        start, end = float(bar["x"]), float(bar["x"]) + float(bar["width"])
        assert start < marks[key] < end, key  # the renewal point lies on its bar
    shop_www, shop_api = by_name[("shop-prod", "www")], by_name[("shop-prod", "api")]
    assert float(shop_www["x"]) < today < marks[("shop-prod", "www")]  # issued before today, renews later
    assert marks[("shop-prod", "api")] < today  # due since 4 days
    assert float(by_name[("blog-prod", "www")]["x"]) + float(by_name[("blog-prod", "www")]["width"]) < today  # expired
    assert shop_api["fill"] == COLOURS["overdue"] and shop_www["fill"] == COLOURS["valid"]


def test_the_table_sorts_in_the_browser(page):
    dom = Dom(chromium("--dump-dom", page.as_uri() + "#sort=days_left:desc", cwd=page.parent))
    lefts = [r for r in dom.rows]
    names = [(r["data-stack"], r["data-name"]) for r in lefts]
    # Most days left first; certificates without an expiry (never issued, unreadable) sort as "infinitely" many.
    assert names[:2] in ([("shop-dev", "admin"), ("pay-prod", "?")], [("pay-prod", "?"), ("shop-dev", "admin")])
    assert names[2:] == [("shop-prod", "www"), ("blog-prod", "static"), ("blog-prod", "feeds"), ("shop-prod", "api"),
                         ("shop-dev", "www"), ("blog-prod", "www")]
    assert dom.sorted_by == [("days_left", "descending")]


def test_screenshot_shows_the_report(page):
    shot = page.parent / "fleet-report.png"
    chromium("--window-size=1200,720", "--hide-scrollbars", f"--screenshot={shot}", page.as_uri(), cwd=page.parent)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 720)
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}

    def rgb(hex_colour: str) -> tuple[int, int, int]:
        return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]

    # Drawn, not blank: the failing, overdue and valid bars, the today line, and text (many anti-aliased shades).
    for state in ("expired", "overdue", "valid"):
        assert rgb(COLOURS[state]) in colours, state
    assert (0x15, 0x65, 0xC0) in colours
    assert len(colours) > 200
    if os.environ.get("KEYVAULT_ACME_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
