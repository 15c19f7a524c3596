"""Charts of one benchmark run, drawn from the parsed results.json.

Each chart function takes the results dict and returns a matplotlib Figure in the house style of
`benchmarks.reporting.charts` (its colours per architecture, sizes and Agg canvas). The report
saves them as files; the notebook displays them directly.

The charts stay in one module, one short function each, because they share the series helpers and
the house style, and the notebook imports them together.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from benchmarks import analysis
from benchmarks.reporting.charts import (
    FIGSIZE,
    SLO_COLOUR,
    STYLE,
    architecture_colours,
    new_figure,
    plain_number,
    usd_tick,
)

STAGE_GROUP_COLOURS = {"compute": "#009E73", "hops": "#D55E00", "other": "#999999"}
STAGE_GROUP_LABELS = {
    "compute": "compute (pre + infer + post)",
    "hops": "hop overhead (between services)",
    "other": "HTTP handling and other",
}


def _slo(results: Mapping[str, Any]) -> float:
    return float(results["run"]["slo_p99_ms"])


def _median_curve(levels: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """Per target rate, ascending: (median achieved rps, median p99 ms) over repetitions."""
    by_target: dict[float, list[Mapping[str, Any]]] = {}
    for level in levels:
        if level.get("p99_ms") is not None:
            by_target.setdefault(level["target_rps"], []).append(level)
    return [
        (
            statistics.median(level["achieved_rps"] for level in by_target[target]),
            statistics.median(level["p99_ms"] for level in by_target[target]),
        )
        for target in sorted(by_target)
    ]


# A log axis cannot show zero; a p99 of 0 ms would only come from a broken timer anyway.
_LOG_FLOOR_MS = 1e-3


def latency_vs_throughput(results: Mapping[str, Any]) -> Figure:
    """p99 latency against achieved throughput, one line per architecture.

    Lines join the median over repetitions at each target rate; faint dots are the single
    repetitions. The dashed line is the SLO and each dotted vertical line an architecture's
    capacity. Circled dots are loadgen-bound repetitions.
    """
    architectures = results["architectures"]
    colours = architecture_colours(list(architectures))
    slo = _slo(results)
    with matplotlib.rc_context(STYLE):
        figure = new_figure()
        axes = figure.add_subplot()
        any_loadgen_bound = False
        for name, arch in architectures.items():
            colour = colours[name]
            measured = [lv for lv in arch["levels"] if lv.get("p99_ms") is not None]
            axes.scatter(
                [lv["achieved_rps"] for lv in measured],
                [max(lv["p99_ms"], _LOG_FLOOR_MS) for lv in measured],
                color=colour,
                alpha=0.35,
                s=30,
                zorder=2,
            )
            curve = _median_curve(measured)
            axes.plot(
                [achieved for achieved, _ in curve],
                [max(p99, _LOG_FLOOR_MS) for _, p99 in curve],
                marker="o",
                markersize=8,
                linewidth=2.5,
                color=colour,
                label=name,
                zorder=3,
            )
            bound = [lv for lv in measured if lv["loadgen_bound"]]
            if bound:
                any_loadgen_bound = True
                axes.scatter(
                    [lv["achieved_rps"] for lv in bound],
                    [max(lv["p99_ms"], _LOG_FLOOR_MS) for lv in bound],
                    s=300,
                    facecolors="none",
                    edgecolors="black",
                    linewidths=1.8,
                    zorder=4,
                )
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FuncFormatter(plain_number))
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.axhline(slo, color=SLO_COLOUR, linestyle="--", linewidth=2, zorder=1)
        axes.annotate(
            f"SLO: p99 ≤ {slo:g} ms",
            xy=(0.005, slo),
            xycoords=("axes fraction", "data"),
            xytext=(0, 5),
            textcoords="offset points",
            color=SLO_COLOUR,
            fontsize=12,
            fontweight="bold",
        )
        # Leave room for every capacity line, even one above the fastest achieved rate.
        widest = max(
            [lv["achieved_rps"] for arch in architectures.values() for lv in arch["levels"]]
            + [arch["capacity_rps"] or 0.0 for arch in architectures.values()]
            + [1.0]
        )
        right_edge = widest * 1.08
        axes.set_xlim(0, right_edge)
        for index, (name, arch) in enumerate(architectures.items()):
            capacity = arch["capacity_rps"]
            if capacity is None:
                continue
            axes.axvline(capacity, color=colours[name], linestyle=":", linewidth=2.2, zorder=1)
            near_right_edge = capacity > 0.8 * right_edge
            axes.annotate(
                f"{name} capacity\n{capacity:,.0f} req/s",
                xy=(capacity, 0.97 - 0.14 * index),
                xycoords=("data", "axes fraction"),
                xytext=(-6 if near_right_edge else 6, 0),
                textcoords="offset points",
                ha="right" if near_right_edge else "left",
                va="top",
                color=colours[name],
                fontsize=12,
                fontweight="bold",
                bbox={
                    "boxstyle": "round,pad=0.2",
                    "facecolor": "white",
                    "edgecolor": "none",
                    "alpha": 0.7,
                },
                zorder=5,
            )
        handles, labels = axes.get_legend_handles_labels()
        handles.append(
            Line2D([], [], marker="o", markersize=7, color="#999999", alpha=0.5, linestyle="none")
        )
        labels.append("one repetition")
        if any_loadgen_bound:
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    markersize=14,
                    markerfacecolor="none",
                    markeredgecolor="black",
                    linestyle="none",
                )
            )
            labels.append(f"load generator ≥ {analysis.LOADGEN_BOUND_CPU_PERCENT:g}% CPU")
        figure.legend(
            handles, labels, loc="outside lower center", ncols=min(len(handles), 4), frameon=False
        )
        axes.set_xlabel("Achieved throughput (requests/s)")
        axes.set_ylabel("p99 latency (ms, log scale)")
        axes.set_title("Latency vs throughput: where each architecture leaves the SLO")
    return figure


def cost_chart(results: Mapping[str, Any]) -> Figure:
    """Provisioned (solid) and consumed (hatched) cost per million predictions per architecture."""
    architectures = results["architectures"]
    colours = architecture_colours(list(architectures))
    kinds = [("provisioned", None, 1.0), ("consumed", "//", 0.55)]
    bar_width = 0.38
    with matplotlib.rc_context(STYLE):
        figure = new_figure()
        axes = figure.add_subplot()
        tallest = max(
            (
                value
                for arch in architectures.values()
                for value in arch["cost_per_million_usd"].values()
                if value is not None
            ),
            default=1.0,
        )
        for position, (name, arch) in enumerate(architectures.items()):
            for offset_index, (kind, hatch, alpha) in enumerate(kinds):
                x = position + (offset_index - 0.5) * bar_width
                value = arch["cost_per_million_usd"][kind]
                if value is None:
                    axes.text(x, tallest * 0.02, "n/a", ha="center", va="bottom", fontsize=12)
                    continue
                axes.bar(
                    x,
                    value,
                    width=bar_width * 0.95,
                    color=colours[name],
                    alpha=alpha,
                    hatch=hatch,
                    edgecolor="black",
                    linewidth=0.8,
                )
                axes.text(
                    x,
                    value,
                    usd_tick(value),
                    ha="center",
                    va="bottom",
                    fontsize=12,
                    fontweight="bold",
                )
        axes.set_xticks(range(len(architectures)), list(architectures))
        axes.set_ylim(0, tallest * 1.18)
        axes.yaxis.set_major_formatter(FuncFormatter(usd_tick))
        axes.grid(axis="x", visible=False)
        axes.legend(
            handles=[
                Patch(
                    facecolor="#BBBBBB",
                    edgecolor="black",
                    label="provisioned: whole budget at capacity",
                ),
                Patch(
                    facecolor="#BBBBBB",
                    edgecolor="black",
                    hatch="//",
                    alpha=0.55,
                    label="consumed: CPU and memory actually used",
                ),
            ],
            loc="upper left",
            framealpha=0.9,
        )
        axes.set_ylabel("USD per million predictions")
        axes.set_title("Cost per million predictions (lower is better)")
    return figure


def time_breakdown(results: Mapping[str, Any]) -> Figure:
    """Median server time per request, stacked: compute stages, hop overhead, HTTP/other."""
    architectures = results["architectures"]
    names = list(architectures)
    height = max(3.2, 1.3 * len(names) + 2.0)
    with matplotlib.rc_context(STYLE):
        figure = new_figure((FIGSIZE[0], height))
        axes = figure.add_subplot()
        totals = []
        for row, name in enumerate(names):
            groups = analysis.split_stages(architectures[name]["stages_ms"])
            left = 0.0
            for group in ("compute", "hops", "other"):
                width = sum(groups[group].values())
                if width > 0:
                    axes.barh(
                        row,
                        width,
                        left=left,
                        height=0.6,
                        color=STAGE_GROUP_COLOURS[group],
                        edgecolor="white",
                        linewidth=1.5,
                    )
                left += width
            totals.append(left)
        longest = max(totals, default=0.0) or 1.0
        for row, name in enumerate(names):
            groups = analysis.split_stages(architectures[name]["stages_ms"])
            left = 0.0
            for group in ("compute", "hops", "other"):
                width = sum(groups[group].values())
                # Label only segments wide enough to hold their text.
                if width >= 0.07 * longest:
                    axes.text(
                        left + width / 2,
                        row,
                        f"{width:.2f} ms",
                        ha="center",
                        va="center",
                        color="white",
                        fontsize=12,
                        fontweight="bold",
                    )
                left += width
            label = f"{totals[row]:.2f} ms" if totals[row] > 0 else "no stage timings"
            axes.text(totals[row] + longest * 0.01, row, label, va="center", fontsize=12)
        axes.set_yticks(range(len(names)), names)
        axes.invert_yaxis()
        axes.set_xlim(0, longest * 1.18)
        axes.grid(axis="y", visible=False)
        axes.set_xlabel("Median milliseconds per request inside the server")
        axes.set_title("Where the time goes")
        axes.legend(
            handles=[
                Patch(color=STAGE_GROUP_COLOURS[g], label=STAGE_GROUP_LABELS[g])
                for g in ("compute", "hops", "other")
            ],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.25 if len(names) > 1 else -0.4),
            ncols=3,
            frameon=False,
        )
    return figure


def spread_chart(results: Mapping[str, Any]) -> Figure:
    """Capacity found in each repetition (dots), the median (bar) and the min-max range."""
    architectures = results["architectures"]
    colours = architecture_colours(list(architectures))
    with matplotlib.rc_context(STYLE):
        figure = new_figure()
        axes = figure.add_subplot()
        highest = max(
            (
                value
                for arch in architectures.values()
                for value in arch["capacity_spread"]["values"]
                if value is not None
            ),
            default=1.0,
        )
        missed_any = False
        for position, (name, arch) in enumerate(architectures.items()):
            spread = arch["capacity_spread"]
            values = spread["values"]
            count = len(values)
            for index, value in enumerate(values):
                # Spread repetitions sideways so equal values stay visible as separate dots.
                x = position + (index - (count - 1) / 2) * (0.25 / max(count - 1, 1))
                if value is None:
                    missed_any = True
                    axes.scatter(
                        x,
                        0,
                        marker="x",
                        s=120,
                        color=colours[name],
                        linewidths=2.5,
                        zorder=3,
                        clip_on=False,
                    )
                else:
                    axes.scatter(x, value, s=110, color=colours[name], edgecolor="black", zorder=3)
            if spread["min"] is not None:
                axes.vlines(
                    position,
                    spread["min"],
                    spread["max"],
                    color=colours[name],
                    linewidth=3,
                    alpha=0.5,
                    zorder=2,
                )
            if spread["median"] is not None:
                axes.hlines(
                    spread["median"],
                    position - 0.3,
                    position + 0.3,
                    color="black",
                    linewidth=3,
                    zorder=4,
                )
                axes.annotate(
                    f"median {spread['median']:,.0f}",
                    xy=(position + 0.32, spread["median"]),
                    va="center",
                    fontsize=12,
                    fontweight="bold",
                )
            else:
                axes.annotate(
                    "no repetition\nmet the SLO",
                    xy=(position, highest * 0.08),
                    ha="center",
                    fontsize=12,
                )
        handles = [
            Line2D(
                [],
                [],
                marker="o",
                markersize=10,
                color="#777777",
                markeredgecolor="black",
                linestyle="none",
                label="one repetition",
            ),
            Line2D([], [], color="black", linewidth=3, label="median"),
        ]
        if missed_any:
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="x",
                    markersize=10,
                    color="#777777",
                    markeredgewidth=2.5,
                    linestyle="none",
                    label="repetition met SLO at no tested rate",
                )
            )
        axes.legend(handles=handles, loc="upper right", framealpha=0.9)
        axes.set_xticks(range(len(architectures)), list(architectures))
        axes.set_xlim(-0.6, len(architectures) - 0.4)
        axes.set_ylim(0, highest * 1.2)
        axes.yaxis.set_major_formatter(FuncFormatter(plain_number))
        axes.grid(axis="x", visible=False)
        axes.set_ylabel("Capacity (requests/s within SLO)")
        repetitions = results["run"]["repetitions"]
        axes.set_title(
            f"Capacity in each of {repetitions} repetitions"
            if repetitions > 1
            else "Capacity in the only repetition"
        )
    return figure
