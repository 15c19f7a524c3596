"""A `Document` as one self-contained HTML page: inline CSS, charts embedded as SVG, no scripts.

The page opens straight from the file system or a USB stick: no external link or resource. The
blocks are rendered here; the page around them (head, style, body) is the Jinja2 template
``page.html.j2`` with ``page.css`` beside it.
"""

from __future__ import annotations

import base64
import html
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

from benchmarks.reporting.charts import figure_to_svg
from benchmarks.reporting.document import Bullets, Chart, Document, Heading, Paragraph, Table


@cache
def _environment() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(Path(__file__).parent)
    return jinja2.Environment(
        loader=loader, autoescape=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )


def inline(text: str) -> str:
    """Escape text; `backticks` become <code>."""
    pieces = text.split("`")
    return "".join(
        f"<code>{html.escape(piece)}</code>" if index % 2 else html.escape(piece)
        for index, piece in enumerate(pieces)
    )


def _table(table: Table) -> str:
    def cell(tag: str, index: int, text: str) -> str:
        css = ' class="num"' if index in table.numeric_columns else ""
        return f"<{tag}{css}>{inline(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(table.headers))
    body = []
    for row_index, row in enumerate(table.rows):
        style = table.row_styles[row_index] if row_index < len(table.row_styles) else ""
        css = f' class="{html.escape(style)}"' if style else ""
        body.append(f"<tr{css}>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>")
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _chart(chart: Chart) -> str:
    svg = figure_to_svg(chart.spec.draw(chart.data))
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(chart.spec.title)} chart" '
        f'src="data:image/svg+xml;base64,{encoded}"></figure>'
    )


def _block(block: Heading | Paragraph | Bullets | Table | Chart) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        css = f' class="{block.style}"' if block.style else ""
        return f"<p{css}>{inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        return _table(block)
    return _chart(block)


def render(document: Document) -> str:
    """The whole document as one page; each chart is drawn from its own data."""
    # Every block escapes its own text (`inline`); the page must not escape the markup again.
    body = Markup("\n".join(_block(block) for block in document.blocks))
    return _environment().get_template("page.html.j2").render(title=document.title, body=body)
