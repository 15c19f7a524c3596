"""scenarios.json and its report: one table for every scenario, then a section and charts each.

The report is built from scenarios.json alone (``python -m benchmarks.scenarios --report DIR``
rebuilds it), through the reporting kit: a `Document` rendered to scenarios.md, a self-contained
scenarios.html and charts/<scenario>-<key>.png. Scenarios hand over chart *data* (`ChartData`);
the one `draw_chart` here draws every one of them, so all scenarios' charts look alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from benchmarks import analysis
from benchmarks.measure.runs import read_json
from benchmarks.reporting import charts, text
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

SCHEMA_PATH = Path(__file__).resolve().with_name("scenarios.schema.json")
SCENARIOS_FILE = "scenarios.json"
SCHEMA_VERSION = 1
TABLE_HEADERS = [
    "scenario",
    "metric",
    "monolith",
    "microservices",
    "winner",
    "by how much",
    "why, in one sentence",
    "crossover",
]


class ScenariosValidationError(ValueError):
    """scenarios.json does not match its schema; the message lists the first violations."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(f"scenarios.json does not match its schema: {'; '.join(errors[:3])}")


def validate(doc: Any) -> None:
    """Raise ScenariosValidationError unless `doc` matches scenarios.schema.json."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    errors = analysis.schema_errors(schema, doc)
    if errors:
        raise ScenariosValidationError(errors)


def figure(value: float | None, unit: str, interval: Mapping[str, float] | None = None) -> str:
    """How a figure reads in the table: "0.42 USD/h (0.39-0.47)"."""
    if value is None:
        return text.MISSING
    shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    spread = ""
    if interval and interval.get("low") != interval.get("high"):
        spread = f" ({interval['low']:.3g}-{interval['high']:.3g})"
    return f"{shown} {unit}{spread}".strip()


def table_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """The summary table: one line per metric of every scenario."""
    rows = []
    for scenario in doc["scenarios"]:
        name = f"{scenario['number']}. {scenario['title']}"
        if not scenario["complete"]:
            name += " (incomplete)"
        for item in scenario["rows"]:
            rows.append(
                [
                    name,
                    item["metric"],
                    figure(item["monolith"], item["unit"], item.get("monolith_interval")),
                    figure(item["microservices"], item["unit"], item.get("microservices_interval")),
                    item["winner"],
                    item["by_how_much"],
                    item["why"],
                    item["crossover"],
                ]
            )
    return rows


def summary_table(doc: Mapping[str, Any]) -> Table:
    """The table every report and the notebook show: one line per metric of every scenario."""
    return Table(TABLE_HEADERS, table_rows(doc), numeric_columns={2, 3})


def conclusion(doc: Mapping[str, Any]) -> str:
    """The run in a few lines: per scenario, who won what."""
    lines = []
    for scenario in doc["scenarios"]:
        winners = [item["winner"] for item in scenario["rows"]]
        tally = ", ".join(
            f"{winner} {winners.count(winner)}"
            for winner in ("microservices", "monolith", "tie", "n/a")
            if winner in winners
        )
        state = "" if scenario["complete"] else " (incomplete)"
        lines.append(
            f"Scenario {scenario['number']} ({scenario['title']}){state}: "
            f"{scenario['summary'] or 'no conclusion'} [rows won: {tally or 'none'}]"
        )
    if not lines:
        return "No scenario finished."
    return "\n".join(lines)


# --- Charts ---------------------------------------------------------------------------------


def _values(ys: Sequence[float | None] | None) -> list[float]:
    return [float("nan") if y is None else float(y) for y in (ys or [])]


def draw_chart(data: Mapping[str, Any]) -> Figure:
    """Any scenario's chart from its `ChartData` (as a dict): lines, steps or grouped bars."""
    with matplotlib.rc_context(charts.STYLE):
        fig = charts.new_figure()
        axes = fig.add_subplot()
        series = data["series"]
        colours = charts.architecture_colours([item["name"] for item in series])
        kind = data.get("kind", "line")
        if kind == "bar":
            width = 0.8 / max(len(series), 1)
            for index, item in enumerate(series):
                offsets = [x + (index - (len(series) - 1) / 2) * width for x in item["x"]]
                axes.bar(
                    offsets,
                    _values(item["y"]),
                    width,
                    label=item["name"],
                    color=colours[item["name"]],
                )
            categories = data.get("categories") or []
            if categories:
                axes.set_xticks(range(len(categories)), categories)
        else:
            for item in series:
                xs, ys = item["x"], _values(item["y"])
                colour = colours[item["name"]]
                if kind == "step":
                    axes.step(xs, ys, where="post", label=item["name"], color=colour, linewidth=2.5)
                else:
                    axes.plot(xs, ys, marker="o", label=item["name"], color=colour, linewidth=2.5)
                if item.get("low") and item.get("high"):
                    axes.fill_between(
                        xs, _values(item["low"]), _values(item["high"]), color=colour, alpha=0.15
                    )
        for x, label in data.get("marks") or []:
            axes.axvline(x, color=charts.SLO_COLOUR, linestyle="--", linewidth=1.5)
            axes.annotate(
                label,
                (x, 1),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=11,
                color=charts.SLO_COLOUR,
            )
        for y, label in data.get("hlines") or []:
            axes.axhline(y, color=charts.SLO_COLOUR, linestyle="--", linewidth=1.5)
            axes.annotate(
                label,
                (0, y),
                xycoords=("axes fraction", "data"),
                va="bottom",
                fontsize=11,
                color=charts.SLO_COLOUR,
            )
        if data.get("log_y"):
            axes.set_yscale("log")
        else:
            axes.yaxis.set_major_formatter(FuncFormatter(charts.plain_number))
            axes.set_ylim(bottom=0)
        axes.set_title(data["title"])
        axes.set_xlabel(data["x_label"])
        axes.set_ylabel(data["y_label"])
        if series:
            axes.legend()
        return fig


def _chart_blocks(scenario: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    for data in scenario["charts"]:
        if not any(
            y is not None and math.isfinite(y) for item in data["series"] for y in item["y"]
        ):
            continue  # nothing measured yet: no empty chart
        spec = ChartSpec(
            key=f"{scenario['name']}-{data['key']}",
            title=data["title"],
            draw=draw_chart,
            how_to_read=data["how_to_read"],
        )
        blocks.append(Chart(spec, data))
    return blocks


def _run_bullets(run: Mapping[str, Any]) -> list[str]:
    prices = run.get("prices") or {}
    return [
        f"Started {run['started_at']}, git {run['git_sha'][:10]}; "
        f"{'QUICK (short classroom run)' if run['quick'] else 'default length'}; "
        f"{'complete' if run['complete'] else 'INCOMPLETE: stopped before every scenario finished'}.",
        f"Equal budget: the system under test on CPUs {run['sut_cpus']} "
        f"({run['sut_vcpus']} vCPU, {run['sut_memory_gib']:g} GiB) for both architectures, "
        f"Locust on CPUs {run['loadgen_cpus']}; SLO: p99 <= {run['slo_p99_ms']:g} ms.",
        f"Prices: {prices.get('vcpu_hour_usd')} USD per vCPU-hour, {prices.get('gib_hour_usd')} "
        f"USD per GiB-hour ({prices.get('source', 'prices file')}).",
        "Ties: a difference inside the measured interval, or under the noise band a row states, is "
        "a tie, not a win; QUICK runs have one repetition, so their band is wide.",
    ]


def build_document(doc: Mapping[str, Any]) -> Document:
    """The whole report of one `make scenarios` run."""
    blocks: list[Block] = [
        Heading(1, "When do microservices win? Measured scenarios"),
        Paragraph(conclusion(doc), "headline"),
        Bullets(_run_bullets(doc["run"])),
        Heading(2, "The table"),
        summary_table(doc),
    ]
    for scenario in doc["scenarios"]:
        blocks.append(Heading(2, f"Scenario {scenario['number']}: {scenario['title']}"))
        blocks.append(Paragraph(f"Question: {scenario['question']}"))
        if scenario["summary"]:
            blocks.append(Paragraph(scenario["summary"], "headline"))
        setup = [f"Budget: {scenario['budget']}"] if scenario["budget"] else []
        setup += [
            f"Best configuration, {name}: {config}"
            for name, config in scenario["configurations"].items()
        ]
        if setup:
            blocks.append(Bullets(setup))
        blocks.extend(_chart_blocks(scenario))
        if scenario["notes"]:
            blocks.append(Bullets(scenario["notes"]))
        if not scenario["complete"]:
            blocks.append(Paragraph("Stopped before it finished: partial figures.", "note"))
        blocks.append(Paragraph(f"Took {scenario['seconds']:.0f} s.", "note"))
    return Document("When do microservices win? Measured scenarios", blocks)


def write_scenarios_report(run_dir: Path) -> list[Path]:
    """scenarios.md, scenarios.html and the charts, from run_dir/scenarios.json."""
    doc = read_json(run_dir / SCENARIOS_FILE)
    validate(doc)
    return write_document(run_dir, build_document(doc), stem="scenarios")
