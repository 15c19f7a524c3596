"""The sweep's report: sweep.md and a self-contained sweep.html, from sweep.json alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks import knobs
from benchmarks.measure.runs import read_json
from benchmarks.report.context import settings_blocks, vcpus
from benchmarks.reporting.document import (
    Block,
    Bullets,
    Chart,
    ChartSpec,
    Document,
    Heading,
    Paragraph,
    Table,
)
from benchmarks.reporting.output import write_document
from benchmarks.reporting.text import MISSING, display_name, join, ms, rps, usd
from benchmarks.sweep.document import SWEEP_FILE, validate
from benchmarks.sweep.plots import sweep_chart, sweep_latency_chart
from benchmarks.sweep.verdict import METRICS, TIE_TOLERANCE, architectures

CHARTS = (
    ChartSpec(
        "sweep_capacity_cost",
        "Capacity and cost against the knob",
        sweep_chart,
        "Top: each architecture's capacity (requests/s within the SLO) at every value; higher is "
        "better. Bottom: cost per million predictions, solid for provisioned (the whole budget at "
        "capacity) and dotted for consumed (only what the requests used); lower is better. A "
        "vertical dashed line marks a crossover, where the winner changes; for a numeric knob it "
        "sits where the two lines cross. A gap in a line: that architecture met the SLO at no "
        "tested rate there.",
    ),
    ChartSpec(
        "sweep_latency",
        "Latency at capacity (and cache hit rate)",
        sweep_latency_chart,
        "p99 latency at each architecture's capacity; the red dashed line is the SLO, so every "
        "point sits below it by definition, and a point close to it means the capacity was set by "
        "latency. When the servers reported cache lookups, the lower panel shows the hit rate.",
    ),
)


def _winner_cell(entry: Mapping[str, Any]) -> str:
    if entry["winner"]:
        return entry["winner"]
    return "tie: " + ", ".join(entry["tied"]) if entry["tied"] else MISSING


def build_document(doc: Mapping[str, Any]) -> Document:
    """The sweep's whole report."""
    knob = knobs.BY_KEY.get(doc["knob"]["key"])
    variable = doc["knob"]["variable"]
    run = doc["run"]
    points = doc["points"]
    blocks: list[Block] = [
        Heading(1, f"Sweep: {variable} = {', '.join(doc['knob']['values'])}"),
        Paragraph(doc["conclusion"], style="headline"),
        Paragraph(
            f"Each value is one whole benchmark run of {join(architectures(doc))} at the same "
            f"CPU budget ({vcpus(run)}), {run['repetitions']} repetition(s) each"
            f"{', short QUICK steps' if run['quick'] else ''}; everything else stayed as listed "
            f"under “Machine and settings”. Capacity is the highest tested rate within a p99 SLO "
            f"of {run['slo_p99_ms']:g} ms; an architecture wins at a value when it is more than "
            f"{TIE_TOLERANCE:.0%} ahead, otherwise it is a tie."
        ),
    ]
    if not run.get("complete", True):
        blocks.append(
            Paragraph(
                f"This sweep was interrupted after {len(points)} of {len(doc['knob']['values'])} "
                "values: the conclusion covers only those.",
                style="headline",
            )
        )
    if knob is not None:
        blocks += [Heading(2, f"What {variable} teaches"), Paragraph(knob.about)]
    methods = sorted(
        {
            arch["hop_delay_method"]
            for point in points
            for arch in point["architectures"].values()
            if arch["hop_delay_method"] not in (None, "none")
        }
    )
    if methods:
        blocks.append(
            Paragraph(
                f"The hop delay was applied by: {', '.join(methods)} (netem: the "
                "kernel's network emulator; sleep: an in-process sleep before each "
                "call).",
                style="note",
            )
        )
    blocks.append(Heading(2, "Charts"))
    for spec in CHARTS:
        blocks += [
            Heading(3, spec.title),
            Chart(spec, doc),
            Paragraph(spec.how_to_read, style="note"),
        ]
    analysed = doc["analysis"]
    blocks += [
        Heading(2, "Winner at each value"),
        Table(
            [variable, *[f"By {metric.label}" for metric in METRICS]],
            [
                [
                    point["value"],
                    *[_winner_cell(analysed[metric.key]["leaders"][i]) for metric in METRICS],
                ]
                for i, point in enumerate(points)
            ],
        ),
    ]
    crossings = [
        f"By {metric.label}: {display_name(c['from'])} → {display_name(c['to'])} "
        f"between {variable} = {c['between'][0]} and {c['between'][1]}"
        + (f", lines crossing near {c['at']:.3g}" if c["at"] is not None else "")
        for metric in METRICS
        for c in analysed[metric.key]["crossovers"]
    ]
    blocks.append(
        Bullets(crossings)
        if crossings
        else Paragraph(
            "No crossover: the winner is the same (or tied) at every value tested, by every measure."
        )
    )
    rows = []
    for point in points:
        for name, arch in point["architectures"].items():
            rows.append(
                [
                    point["value"],
                    name,
                    rps(arch["capacity_rps"]),
                    ms(arch["p99_at_capacity_ms"]),
                    usd(arch["cost_per_million_usd"]["provisioned"]),
                    usd(arch["cost_per_million_usd"]["consumed"]),
                    MISSING if arch["hit_rate"] is None else f"{100 * arch['hit_rate']:.1f}%",
                    f"`{point['run_dir']}`",
                ]
            )
    blocks += [
        Heading(2, "Every value"),
        Table(
            [
                variable,
                "Architecture",
                "Capacity (req/s)",
                "p99 at capacity (ms)",
                "Provisioned $ per million",
                "Consumed $ per million",
                "Cache hit rate",
                "Run (report.html inside)",
            ],
            rows,
            numeric_columns={2, 3, 4, 5, 6},
        ),
        Heading(2, "Caveats"),
        Bullets(
            [
                (
                    "Every value ran at a different time: slow drifts of the machine (heat, other load) "
                    "fall between values, not between architectures, which ran back to back within each "
                    "value."
                ),
                "Capacities are ladder steps: a crossover's position is as coarse as the steps and the "
                "values tested.",
                *(
                    [
                        "Quick runs: one short repetition per value, enough to see a trend, not to quote a "
                        "number."
                    ]
                    if run["quick"]
                    else []
                ),
                "The verdict is for this machine, this model and this load; other hardware can move "
                "the crossover.",
            ]
        ),
        *settings_blocks({"run": run}),
    ]
    return Document(f"Sweep of {variable}", blocks)


def write_sweep_report(sweep_dir: Path) -> list[Path]:
    """Validate sweep.json and write sweep.md, sweep.html and charts/*.png beside it."""
    doc = read_json(sweep_dir / SWEEP_FILE)
    validate(doc)
    return write_document(sweep_dir, build_document(doc), stem="sweep")
