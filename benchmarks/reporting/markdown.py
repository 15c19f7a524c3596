"""A `Document` as Markdown: charts are referenced as PNG files beside it."""

from __future__ import annotations

from benchmarks.reporting.document import Bullets, Chart, Document, Heading, Paragraph, Table

CHARTS_DIR = "charts"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in table.headers) + " |"]
    aligns = ("---:" if i in table.numeric_columns else "---" for i in range(len(table.headers)))
    lines.append("|" + "|".join(aligns) + "|")
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render(document: Document, chart_dir: str = CHARTS_DIR) -> str:
    """Every block of the document; a chart becomes ``![title](chart_dir/<key>.png)``."""
    parts = []
    for block in document.blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            if block.style == "headline":
                parts.append(f"> **{block.text}**")
            elif block.style == "note":
                parts.append(f"*{block.text}*")
            else:
                parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Chart):
            parts.append(f"![{block.spec.title}]({chart_dir}/{block.spec.key}.png)")
    return "\n\n".join(parts) + "\n"
