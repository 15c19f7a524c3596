"""Hostile strings in a report's inputs reach the reader as text, never as markup.

A run's label, the CPU model the machine reports, knob values and model versions are free text
from outside the lab. Each report (bench, sweep, chaos) is built here from recorded results with
such strings in them, and rendered: in the HTML page they must come back, verbatim, as text (the
parser sees no element they would have opened), and in the Markdown a `|` must not split a table
cell (a GFM-style table parser, markdown-it, finds each of them whole in one cell).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from benchmarks import knobs, report, sweep
from benchmarks.chaos import ChaosConfig, Event, build_blocks, summarise
from benchmarks.measure.loadgen import Samples
from benchmarks.reporting import html_page, markdown
from benchmarks.reporting.document import Document, Paragraph, Table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

# What a page could do with an unescaped string: open elements, close the cell, break attributes.
LABEL = '<script>alert("label")</script> & </td><b>label</b> | 2'
CPU_MODEL = 'AMD <img src=x onerror="alert(1)"> EPYC | 7B13 & co'
PROFILE = "<i>forest</i>|'quoted'"
VERSION = 'linear-<u>v2</u>|"x"'


class PageReader(HTMLParser):
    """Every element the page opens, and its text as a reader sees it (entities decoded)."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.chunks: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


# The elements the renderer itself writes (benchmarks/reporting/html_page.py, page.html.j2).
PAGE_ELEMENTS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "main",
    "h1",
    "h2",
    "h3",
    "p",
    "ul",
    "li",
    "code",
    "div",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "figure",
    "img",
}


def assert_shown_as_text(page: str, *hostile: str) -> None:
    reader = PageReader(page)
    assert set(reader.tags) <= PAGE_ELEMENTS, set(reader.tags) - PAGE_ELEMENTS
    assert {name for name, _ in reader.attributes} <= {
        "lang",
        "charset",
        "name",
        "content",
        "class",
        "alt",
        "src",
    }
    # The charts are base64 in `src`; every other attribute value is the renderer's or escaped text.
    assert not any("alert" in (value or "") for name, value in reader.attributes if name != "src")
    for text in hostile:
        assert text in reader.text, f"{text!r} is not shown verbatim"


def table_rows(text: str) -> list[list[str]]:
    """Every table row of a Markdown document, as the text of each cell."""
    rows, row = [], None
    for token in MarkdownIt("commonmark").enable("table").parse(text):
        if token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append(token.content)
        elif token.type == "tr_close":
            rows.append(row)
            row = None
    return rows


def assert_cells_intact(text: str, *hostile: str) -> None:
    cells = [cell for row in table_rows(text) for cell in row]
    for string in hostile:
        assert any(string in cell for cell in cells), f"no cell holds {string!r} whole"


# --- the kit itself -----------------------------------------------------------------------------


def test_the_renderers_escape_every_block_and_the_title():
    document = Document(
        LABEL,
        [Paragraph(LABEL), Table(["name", CPU_MODEL], [[LABEL, CPU_MODEL], ["`code|x`", "y"]])],
    )
    page = html_page.render(document)
    assert_shown_as_text(page, LABEL, CPU_MODEL)
    assert f"<title>{LABEL}" not in page
    text = markdown.render(document)
    assert [LABEL, CPU_MODEL] in table_rows(text)
    assert ["`code|x`", "y"] in table_rows(text)  # escaped inside inline code too


# --- the bench report ---------------------------------------------------------------------------


def hostile_results() -> dict:
    results = json.loads((FIXTURES / "results_knobs.json").read_text(encoding="utf-8"))
    results["run"]["label"] = LABEL
    results["run"]["machine"]["cpu_model"] = CPU_MODEL
    results["run"]["knobs"]["profile"] = PROFILE
    results["run"]["settings"]["model_profile"] = PROFILE
    return results


def test_the_bench_report_shows_a_hostile_label_cpu_and_knob_as_text():
    results = hostile_results()
    page = report.render_html(results)
    assert_shown_as_text(page, LABEL, CPU_MODEL, PROFILE)
    text = report.render_markdown(results)
    assert_cells_intact(text, CPU_MODEL, PROFILE)
    assert ["Label", LABEL] in table_rows(text) and ["CPU model", CPU_MODEL] in table_rows(text)


# --- the sweep report ---------------------------------------------------------------------------


def hostile_sweep() -> dict:
    results = hostile_results()
    other = copy.deepcopy(results)
    other["run"]["knobs"]["hop_delay_ms"] = 5.0
    knob = knobs.BY_KEY["hop_delay_ms"]
    points = [
        sweep.point_from_results(value, float(value), f"runs/{index}-{LABEL}", run)
        for index, (value, run) in enumerate((("2", results), ("5", other)))
    ]
    return sweep.assemble(knob, ["2", "5"], True, points, results["run"], NOW, NOW, True)


def test_the_sweep_report_shows_hostile_strings_as_text():
    doc = hostile_sweep()
    assert sweep.validation_errors(doc) == []
    document = sweep.build_document(doc)
    page = html_page.render(document)
    assert_shown_as_text(page, CPU_MODEL, PROFILE, f"runs/0-{LABEL}")
    text = markdown.render(document)
    assert_cells_intact(text, CPU_MODEL, PROFILE)


# --- the chaos report ---------------------------------------------------------------------------


def steady(start_s: float, end_s: float, origin: float, rate: int = 40) -> list[tuple]:
    count = round((end_s - start_s) * rate)
    return [(origin + start_s + i / rate, 5.0, 200) for i in range(count)]


@pytest.fixture
def hostile_chaos() -> dict:
    origin = 1000.0
    requests = steady(0, 20, origin)
    samples = Samples(
        started_at=origin,
        stopped_at=origin + 20,
        requests=requests,
        versions=[VERSION] * len(requests),
    )
    config = ChaosConfig(["monolith"], 40, 8, 10, PROFILE, [0], [1], None, None, slo_ms=50.0)
    events = [Event(f"model rollout {LABEL}", "roll", origin + 10, origin + 12)]
    result = summarise(samples, events, origin, config)
    return {
        "settings": {
            "rate": 40,
            "users": 8,
            "phase_seconds": 10,
            "profile": PROFILE,
            "sut_cpus": [0],
            "loadgen_cpus": [1],
            "slo_ms": 50.0,
        },
        "versions": {"from": "linear-1", "to": VERSION},
        "machine": {"cpu_model": CPU_MODEL, "logical_cores": 2},
        "started_at": "2026-11-30T00:00:00+00:00",
        "architectures": {"monolith": {**result, "capacity_rps": 100.0}},
    }


def test_the_chaos_report_shows_hostile_strings_as_text(hostile_chaos):
    document = Document("Chaos report", build_blocks(hostile_chaos))
    page = html_page.render(document)
    assert_shown_as_text(page, CPU_MODEL, PROFILE, VERSION, f"model rollout {LABEL}")
    text = markdown.render(document)
    assert_cells_intact(text, f"model rollout {LABEL}")
