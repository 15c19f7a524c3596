"""Charts of a sweep (sweep.json): capacity, cost and latency against the swept knob.

These charts only draw what `benchmarks.sweep.verdict` decided (leaders, crossovers); the style
is the kit's (`benchmarks.reporting.charts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from benchmarks.reporting import charts
from benchmarks.sweep.verdict import architectures


def _sweep_positions(sweep: Mapping[str, Any]) -> list[float]:
    """x of each point: the value itself for a numeric knob, else its position in the order run."""
    return [float(point["x"]) for point in sweep["points"]]


def _crossover_x(sweep: Mapping[str, Any], crossover: Mapping[str, Any]) -> float:
    """Where to draw a crossover: the interpolated value, else halfway between the two points."""
    if crossover.get("at") is not None:
        return float(crossover["at"])
    positions = _sweep_positions(sweep)
    first, second = crossover["between_indexes"]
    return (positions[first] + positions[second]) / 2


def _sweep_axis(axes: Any, sweep: Mapping[str, Any]) -> None:
    positions = _sweep_positions(sweep)
    axes.set_xticks(positions, [point["value"] for point in sweep["points"]])
    span = (max(positions) - min(positions)) or 1.0
    axes.set_xlim(min(positions) - 0.08 * span, max(positions) + 0.08 * span)


def _sweep_series(
    axes: Any,
    sweep: Mapping[str, Any],
    read: Any,
    colours: Mapping[str, str],
    linestyle: str = "-",
    label_suffix: str = "",
) -> None:
    positions = _sweep_positions(sweep)
    drawn = False
    for name in architectures(sweep):
        ys = [read(point["architectures"].get(name)) for point in sweep["points"]]
        drawn = drawn or any(y is not None for y in ys)
        # None (e.g. met the SLO at no tested rate) leaves a gap rather than a fake zero.
        axes.plot(
            positions,
            [float("nan") if y is None else y for y in ys],
            marker="o",
            markersize=8,
            linewidth=2.5,
            linestyle=linestyle,
            color=colours[name],
            label=name + label_suffix,
        )
    if not drawn and linestyle == "-":
        axes.text(
            0.5,
            0.5,
            "no architecture met the SLO at any value tested",
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=13,
            color="#777777",
        )


def _mark_crossovers(
    axes: Any,
    sweep: Mapping[str, Any],
    crossovers: Sequence[Mapping[str, Any]],
    linestyle: str = "--",
    prefix: str = "",
) -> None:
    positions = _sweep_positions(sweep)
    middle = (min(positions) + max(positions)) / 2
    for index, crossover in enumerate(crossovers):
        x = _crossover_x(sweep, crossover)
        axes.axvline(x, color="#333333", linestyle=linestyle, linewidth=1.8, zorder=1)
        # Labels on the right half go to the left of their line, so they stay inside the axes.
        right_half = x > middle
        axes.annotate(
            f"{prefix}{crossover['from']} → {crossover['to']}",
            xy=(x, 0.97 - 0.12 * index),
            xycoords=("data", "axes fraction"),
            xytext=(-5 if right_half else 5, 0),
            textcoords="offset points",
            va="top",
            ha="right" if right_half else "left",
            fontsize=11,
            fontweight="bold",
            bbox={
                "boxstyle": "round,pad=0.2",
                "facecolor": "white",
                "edgecolor": "none",
                "alpha": 0.8,
            },
        )


def _cost_or_none(kind: str) -> Any:
    return lambda arch: None if arch is None else arch["cost_per_million_usd"][kind]


def sweep_chart(sweep: Mapping[str, Any]) -> Figure:
    """Capacity (top) and cost per million (bottom) against the swept knob, crossovers marked."""
    names = architectures(sweep)
    colours = charts.architecture_colours(names)
    analysis_ = sweep["analysis"]
    variable = sweep["knob"]["variable"]
    with matplotlib.rc_context(charts.STYLE):
        figure = charts.new_figure((charts.FIGSIZE[0], 9.5))
        top, bottom = figure.subplots(2, 1, sharex=True)
        _sweep_series(
            top, sweep, lambda arch: None if arch is None else arch["capacity_rps"], colours
        )
        _mark_crossovers(top, sweep, analysis_["capacity"]["crossovers"])
        top.set_ylim(0, top.get_ylim()[1] * 1.15)  # headroom for the crossover labels
        top.yaxis.set_major_formatter(FuncFormatter(charts.plain_number))
        top.set_ylabel("Capacity (req/s within SLO)")
        top.set_title(f"Capacity and cost as {variable} changes")
        top.legend(loc="lower left", framealpha=0.9)
        _sweep_series(bottom, sweep, _cost_or_none("provisioned"), colours)
        _sweep_series(bottom, sweep, _cost_or_none("consumed"), colours, linestyle=":")
        _mark_crossovers(bottom, sweep, analysis_["provisioned_cost"]["crossovers"])
        _mark_crossovers(
            bottom,
            sweep,
            analysis_["consumed_cost"]["crossovers"],
            linestyle=":",
            prefix="consumed: ",
        )
        bottom.set_ylim(0, bottom.get_ylim()[1] * 1.15)
        bottom.yaxis.set_major_formatter(FuncFormatter(charts.usd_tick))
        bottom.set_ylabel("USD per million predictions")
        bottom.legend(
            handles=[
                Line2D([], [], color="#555555", linewidth=2.5, label="provisioned"),
                Line2D([], [], color="#555555", linewidth=2.5, linestyle=":", label="consumed"),
            ],
            loc="upper left",
            framealpha=0.9,
        )
        _sweep_axis(bottom, sweep)
        bottom.set_xlabel(variable)
    return figure


def sweep_latency_chart(sweep: Mapping[str, Any]) -> Figure:
    """p99 at capacity against the knob, and the cache hit rate when the servers reported one."""
    names = architectures(sweep)
    colours = charts.architecture_colours(names)
    variable = sweep["knob"]["variable"]
    hit_rates = any(
        arch.get("hit_rate") is not None
        for point in sweep["points"]
        for arch in point["architectures"].values()
    )
    with matplotlib.rc_context(charts.STYLE):
        figure = charts.new_figure((charts.FIGSIZE[0], 9.5 if hit_rates else charts.FIGSIZE[1]))
        axes_list = figure.subplots(2, 1, sharex=True) if hit_rates else [figure.add_subplot()]
        latency = axes_list[0]
        _sweep_series(
            latency,
            sweep,
            lambda arch: None if arch is None else arch["p99_at_capacity_ms"],
            colours,
        )
        latency.axhline(
            float(sweep["run"]["slo_p99_ms"]), color=charts.SLO_COLOUR, linestyle="--", linewidth=2
        )
        latency.set_ylim(bottom=0)
        latency.set_ylabel("p99 at capacity (ms)")
        latency.set_title(
            f"Latency at capacity{' and cache hit rate' if hit_rates else ''} as {variable} changes"
        )
        latency.legend(loc="upper left", framealpha=0.9)
        if hit_rates:
            rate = axes_list[1]
            _sweep_series(
                rate,
                sweep,
                lambda arch: (
                    None if arch is None or arch.get("hit_rate") is None else 100 * arch["hit_rate"]
                ),
                colours,
            )
            rate.set_ylim(0, 100)
            rate.set_ylabel("Cache hit rate (%)")
        _sweep_axis(axes_list[-1], sweep)
        axes_list[-1].set_xlabel(variable)
    return figure
