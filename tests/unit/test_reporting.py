"""The reporting kit: one document rendered to Markdown and to a self-contained page, and files."""

from __future__ import annotations

import base64
import re

import pytest
from matplotlib.figure import Figure

from benchmarks.reporting import html_page, markdown, text
from benchmarks.reporting.charts import architecture_colours, new_figure
from benchmarks.reporting.document import (
    Bullets,
    Chart,
    ChartSpec,
    Document,
    Heading,
    Paragraph,
    Table,
)
from benchmarks.reporting.output import write_document
from benchmarks.reporting.progress import Progress


def draw(data) -> Figure:
    figure = new_figure((4, 3))
    figure.add_subplot().plot(data["x"], data["y"])
    return figure


SPEC = ChartSpec("line", "A line", draw, "Read it left to right.")


def document() -> Document:
    return Document(
        "Tom & <Jerry>",
        [
            Heading(1, "A `code` title"),
            Paragraph("The verdict.", style="headline"),
            Paragraph("Plain <text> & `x|y`."),
            Paragraph("A note.", style="note"),
            Bullets(["one", "two `2`"]),
            Table(
                ["Name", "Value"],
                [["a|b", "1"], ["c", "2"]],
                numeric_columns={1},
                row_styles=["capacity", ""],
            ),
            Chart(SPEC, {"x": [0, 1], "y": [1, 2]}),
        ],
    )


def test_markdown_renders_every_block():
    rendered = markdown.render(document(), "pics")
    assert rendered == (
        "# A `code` title\n\n"
        "> **The verdict.**\n\n"
        "Plain <text> & `x|y`.\n\n"
        "*A note.*\n\n"
        "- one\n- two `2`\n\n"
        "| Name | Value |\n|---|---:|\n| a\\|b | 1 |\n| c | 2 |\n\n"
        "![A line](pics/line.png)\n"
    )


def test_html_page_escapes_text_and_embeds_charts():
    page = html_page.render(document())
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n')
    assert page.endswith("</main>\n</body>\n</html>\n")
    assert "<title>Tom &amp; &lt;Jerry&gt;</title>" in page
    assert "<h1>A <code>code</code> title</h1>" in page
    assert '<p class="headline">The verdict.</p>' in page and '<p class="note">A note.</p>' in page
    assert "<p>Plain &lt;text&gt; &amp; <code>x|y</code>.</p>" in page
    assert "<ul><li>one</li><li>two <code>2</code></li></ul>" in page
    assert '<tr class="capacity"><td>a|b</td><td class="num">1</td></tr><tr><td>c</td>' in page
    assert '<th class="num">Value</th>' in page
    [encoded] = re.findall(
        r'<img alt="A line chart" src="data:image/svg\+xml;base64,([^"]+)">', page
    )
    assert base64.b64decode(encoded).decode().lstrip().startswith("<?xml")
    assert "<style>\n:root {" in page and "@media print" in page
    assert "<script" not in page and "://" not in page.replace("http://www.w3.org", "")


def test_write_document_writes_markdown_html_and_one_png_per_chart(tmp_path):
    written = write_document(tmp_path, document(), stem="page")
    assert written[:2] == [tmp_path / "page.md", tmp_path / "page.html"]
    assert written[2:] == [tmp_path / "charts" / "line.png"]
    assert (tmp_path / "charts" / "line.png").read_bytes().startswith(b"\x89PNG")
    assert "![A line](charts/line.png)" in (tmp_path / "page.md").read_text()


def test_architectures_keep_their_colours_across_charts():
    both = architecture_colours(["monolith", "microservices", "split"])
    assert both["monolith"] == "#0072B2" and both["microservices"] == "#E69F00"
    assert architecture_colours(["split", "monolith"]) == {
        "split": both["split"],
        "monolith": both["monolith"],
    }


@pytest.mark.parametrize(
    "format_, value, shown",
    [
        (text.rps, 1234.4, "1,234"),
        (text.rps, 12.34, "12.3"),
        (text.rps, None, "n/a"),
        (text.ms, 0.1234, "0.123"),
        (text.ms, 4.9, "4.90"),
        (text.ms, 131.2, "131"),
        (text.usd, 0.009163, "$0.00916"),
        (text.usd, 2.5, "$2.50"),
        (text.usd, 0.00001, "$1.00e-05"),
        (text.ratio, 0.27, "0.27x"),
        (text.ratio, 3.75, "3.8x"),
        (text.ratio, 12.0, "12x"),
    ],
)
def test_numbers_read_the_same_in_every_report(format_, value, shown):
    assert format_(value) == shown


def test_words_are_joined_and_architectures_named_as_in_a_sentence():
    assert text.join(["a"]) == "a" and text.join(["a", "b", "c"]) == "a, b and c"
    assert text.display_name("monolith") == "the monolith"
    assert (
        text.wins("monolith") == "the monolith wins"
        and text.wins("microservices") == "microservices win"
    )


def test_progress_lines_carry_the_tag_and_the_time(capsys):
    progress = Progress("bench")
    progress("step 1/4: within SLO")
    progress.note("warning: CPUs overlap")
    progress.note("no Docker engine", error=True)
    out, err = capsys.readouterr()
    first, second = out.splitlines()
    assert re.fullmatch(r"\[bench \d\d:\d\d:\d\d\] step 1/4: within SLO", first)
    assert second == "[bench] warning: CPUs overlap" and err == "[bench] no Docker engine\n"
