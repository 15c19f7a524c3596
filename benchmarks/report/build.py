"""The bench report as one `Document`, and the files it is written to."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks import analysis, plots
from benchmarks.report.context import caveats, experiment_blocks, settings_blocks
from benchmarks.report.tables import level_table, ratio_blocks, summary_table
from benchmarks.report.verdict import capacity_definition, headline, where_the_time_goes
from benchmarks.reporting import document as doc
from benchmarks.reporting import html_page, markdown
from benchmarks.reporting.output import CHARTS_DIR, write_document
from benchmarks.scenarios.regime import regime_sentence

RESULTS_FILE = "results.json"

CHARTS = [
    doc.ChartSpec(
        "latency_vs_throughput",
        "Latency vs throughput",
        plots.latency_vs_throughput,
        "Each line is one architecture. Moving right means more requests per second; moving up "
        "means slower requests. The red dashed line is the SLO. Where a line crosses it, that "
        "architecture has run out of capacity. The y axis is logarithmic: each grid line is 10x "
        "the one below.",
    ),
    doc.ChartSpec(
        "capacity_spread",
        "Capacity in each repetition",
        plots.spread_chart,
        "Each dot is the capacity found in one repetition; the black bar is the median. Dots far "
        "apart mean a noisy measurement: trust a difference between architectures only when it "
        "is larger than this spread.",
    ),
    doc.ChartSpec(
        "cost",
        "Cost per million predictions",
        plots.cost_chart,
        "Solid bars price the whole CPU budget running at capacity (provisioned). Hatched bars "
        "price only the CPU time and memory the requests used (consumed). The gap is headroom "
        "you pay for but do not use.",
    ),
    doc.ChartSpec(
        "time_breakdown",
        "Where the time goes",
        plots.time_breakdown,
        "Median time a request spends inside the server, split into the model pipeline's own "
        "work (green), moving data between services (orange) and HTTP handling (grey).",
    ),
]


def title(results: Mapping[str, Any]) -> str:
    return "Serving benchmark: " + " vs ".join(results["architectures"])


def summary_blocks(results: Mapping[str, Any]) -> list[doc.Block]:
    """The headline, the regime it holds for, the summary table and the ratios: the first screen."""
    regime = regime_sentence(results)
    return [
        doc.Paragraph(headline(results), style="headline"),
        *([doc.Paragraph(regime)] if regime else []),
        doc.Heading(2, "Summary"),
        summary_table(results),
        doc.Paragraph(capacity_definition(results), style="note"),
        doc.Heading(2, "Comparing architectures in this run"),
        *ratio_blocks(results),
    ]


def build_report(results: Mapping[str, Any]) -> doc.Document:
    """The whole report of one run."""
    run = results["run"]
    quick = (
        " This was a quick run: see the caveats before using its numbers." if run["quick"] else ""
    )
    intro = (
        f"Run “{run['label']}”, started {run['started_at']} on {run['machine']['cpu_model']} "
        f"({run['target']} target).{quick}"
    )
    blocks: list[doc.Block] = [
        doc.Heading(1, title(results)),
        doc.Paragraph(intro),
        *summary_blocks(results),
    ]
    blocks += experiment_blocks(results)
    blocks.append(doc.Heading(2, "Charts"))
    for spec in CHARTS:
        blocks += [
            doc.Heading(3, spec.title),
            doc.Chart(spec, results),
            doc.Paragraph(spec.how_to_read, style="note"),
        ]
    blocks += [doc.Heading(2, "Where the time goes"), doc.Paragraph(where_the_time_goes(results))]
    blocks.append(doc.Heading(2, "Every load level"))
    blocks.append(
        doc.Paragraph(
            "One row per step of each repetition, in the order they ran. “(capacity)” marks the "
            "step that set that repetition's capacity. “beyond capacity” says which rule the step "
            "broke. “loadgen-bound” means the load generator used at least "
            f"{analysis.LOADGEN_BOUND_CPU_PERCENT:g}% of a core, so it may have been the "
            "bottleneck rather than the server.",
            style="note",
        )
    )
    for name in results["architectures"]:
        blocks += [doc.Heading(3, name), level_table(results, name)]
    blocks += [doc.Heading(2, "Caveats"), doc.Bullets(caveats(results))]
    blocks += settings_blocks(results)
    return doc.Document(title(results), blocks)


def render_markdown(results: Mapping[str, Any], chart_dir: str = CHARTS_DIR) -> str:
    """The full report as Markdown; charts are referenced as ``{chart_dir}/<key>.png``."""
    return markdown.render(build_report(results), chart_dir)


def render_html(results: Mapping[str, Any]) -> str:
    """The full report as one self-contained HTML page (inline CSS, charts embedded as SVG)."""
    return html_page.render(build_report(results))


def summary_markdown(results: Mapping[str, Any]) -> str:
    """Headline, summary table and ratios as Markdown (used by the notebook)."""
    return markdown.render(doc.Document(title(results), summary_blocks(results)))


def write_report(run_dir: str | Path) -> list[Path]:
    """Validate ``run_dir/results.json`` and write report.md, report.html and charts/*.png.

    Returns the paths written. Raises ResultsValidationError if the results do not match
    the schema, so a broken run never produces a plausible-looking report.
    """
    run_path = Path(run_dir)
    results = json.loads((run_path / RESULTS_FILE).read_text(encoding="utf-8"))
    analysis.validate_results(results)
    return write_document(run_path, build_report(results))
