"""The bench report at a glance, checked in a real browser (headless Chromium).

The report of `tests/fixtures/results_knobs.json` (three architectures, every knob section) is
laid out by Chromium at 1280 and 800 px wide. At 1280 no table is wider than the page (no
horizontal scroll, neither of the page nor inside a table's box) and no row of a load-level table
grows past two lines of text (the "blank, stretched rows" a squeezed status column made); at 800
the page itself still never scrolls sideways (a table may, inside its own box). Screenshots of
both widths are written beside this test, in `screenshots/`, for a person to look at.

The page has no scripts of its own; the test measures a copy with one added (`MEASURE`), whose
results Chromium's `--dump-dom` prints once the page has loaded.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.report.build import render_html

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "fixtures" / "results_knobs.json"
SCREENSHOTS = HERE / "screenshots"
WIDE, NARROW = 1280, 800
MAX_LEVEL_ROW_LINES = 2
BROWSER_TIMEOUT_S = 120  # a hung browser fails the test instead of hanging it; not a timing check
LEVEL_TABLE_FIRST_HEADER = "Rep"  # benchmarks.report.tables.level_table

MEASURE = """<script>
addEventListener('load', () => {
  const px = (element, property) => parseFloat(getComputedStyle(element)[property]) || 0;
  const tables = [...document.querySelectorAll('.table-wrap')].map(wrap => ({
    first_header: wrap.querySelector('th').textContent,
    scroll_width: wrap.scrollWidth,
    client_width: wrap.clientWidth,
    row_lines: [...wrap.querySelectorAll('tbody tr')].map(row => Math.max(...[...row.cells].map(
      cell => (cell.clientHeight - px(cell, 'paddingTop') - px(cell, 'paddingBottom'))
        / px(cell, 'lineHeight')))),
  }));
  document.body.setAttribute('data-layout', JSON.stringify({
    page_width: document.documentElement.scrollWidth,
    page_height: document.documentElement.scrollHeight,
    viewport_width: innerWidth,
    tables,
  }));
});
</script>"""


def browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


pytestmark = pytest.mark.skipif(
    browser() is None,
    reason="no Chromium binary on PATH (as root: apt-get install -y chromium)",
)


def chromium(*arguments: str) -> str:
    command = [
        browser() or "chromium",
        "--headless",
        "--no-sandbox",  # the lab's machines run tests as root, where the sandbox refuses
        "--disable-gpu",
        "--hide-scrollbars",
        *arguments,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def layout(page: Path, width: int) -> dict:
    dom = chromium(
        f"--window-size={width},900", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()
    )
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, "the measuring script did not run"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> tuple[Path, Path]:
    """The report as written, and a copy with the measuring script."""
    folder = tmp_path_factory.mktemp("report-layout")
    page = render_html(json.loads(FIXTURE.read_text(encoding="utf-8")))
    assert "</body>" in page
    report, probe = folder / "report.html", folder / "probe.html"
    report.write_text(page, encoding="utf-8")
    probe.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    return report, probe


def level_tables(measured: dict) -> list[dict]:
    found = [t for t in measured["tables"] if t["first_header"] == LEVEL_TABLE_FIRST_HEADER]
    assert found, "no load-level table in the report"
    return found


def test_tables_fit_a_1280_px_page_and_level_rows_stay_short(pages):
    _, probe = pages
    measured = layout(probe, WIDE)
    assert measured["page_width"] <= measured["viewport_width"]
    too_wide = [
        (t["first_header"], t["scroll_width"], t["client_width"])
        for t in measured["tables"]
        if t["scroll_width"] > t["client_width"]
    ]
    assert not too_wide, f"tables wider than the page (header, width, room): {too_wide}"
    for table in level_tables(measured):
        tallest = max(table["row_lines"])
        # Rounding: a cell of two lines measures 2.0 give or take a pixel's worth.
        assert round(tallest, 1) <= MAX_LEVEL_ROW_LINES, (
            f"a load-level row is {tallest:.1f} lines tall: {table['row_lines']}"
        )


def test_an_800_px_page_never_scrolls_sideways(pages):
    _, probe = pages
    measured = layout(probe, NARROW)
    assert measured["page_width"] <= measured["viewport_width"]


@pytest.mark.parametrize("width", [WIDE, NARROW])
def test_screenshots_of_the_whole_page_are_kept_with_the_test(pages, width):
    report, probe = pages
    height = layout(probe, width)["page_height"]
    SCREENSHOTS.mkdir(exist_ok=True)
    target = SCREENSHOTS / f"report-{width}px.png"
    chromium(f"--window-size={width},{height}", f"--screenshot={target}", report.as_uri())
    assert target.stat().st_size > 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
