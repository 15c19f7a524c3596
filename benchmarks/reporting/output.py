"""Writing a report: the one place where a `Document` becomes files."""

from __future__ import annotations

from pathlib import Path

from benchmarks.reporting import html_page, markdown
from benchmarks.reporting.charts import write_pngs
from benchmarks.reporting.document import Document

CHARTS_DIR = markdown.CHARTS_DIR


def write_document(directory: Path, document: Document, stem: str = "report") -> list[Path]:
    """Write ``<stem>.md``, a self-contained ``<stem>.html`` and ``charts/<key>.png``.

    Returns the paths written: the Markdown, the page, then the charts.
    """
    charts = write_pngs(document.charts(), directory / CHARTS_DIR)
    markdown_file = directory / f"{stem}.md"
    markdown_file.write_text(markdown.render(document, CHARTS_DIR), encoding="utf-8")
    page = directory / f"{stem}.html"
    page.write_text(html_page.render(document), encoding="utf-8")
    return [markdown_file, page, *charts]
