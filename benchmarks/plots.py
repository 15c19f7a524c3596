"""Charts of one benchmark run, drawn from the parsed results.json, and of a sweep (sweep.json).

Each chart function takes the results dict and returns a matplotlib Figure. Figures are built
on an explicit Agg canvas instead of through pyplot, so they work in scripts, servers and
notebooks alike without touching the global backend or leaking open figures.

The report saves them as files; the notebook displays them directly.
"""

from __future__ import annotations

import base64
import io
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from benchmarks import analysis

# Okabe-Ito: distinguishable with the common colour-vision deficiencies and on projectors.
_PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]
_FIXED_COLOURS = {"monolith": "#0072B2", "microservices": "#E69F00"}

STAGE_GROUP_COLOURS = {"compute": "#009E73", "hops": "#D55E00", "other": "#999999"}
STAGE_GROUP_LABELS = {
    "compute": "compute (pre + infer + post)",
    "hops": "hop overhead (between services)",
    "other": "HTTP handling and other",
}

# Sized to stay legible when a slide is projected or the PNG is shrunk into a report.
_STYLE = {
    "font.size": 13,
    "axes.titlesize": 16,
    "axes.titleweight": "bold",
    "axes.labelsize": 14,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "path",
}
_FIGSIZE = (10, 5.8)


def architecture_colours(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per architecture, so every chart uses the same one."""
    spare = [colour for colour in _PALETTE if colour not in _FIXED_COLOURS.values()]
    unknown = [name for name in names if name not in _FIXED_COLOURS]
    colours = {name: spare[index % len(spare)] for index, name in enumerate(unknown)}
    return {name: _FIXED_COLOURS.get(name) or colours[name] for name in names}


def _new_figure(figsize: tuple[float, float] = _FIGSIZE) -> Figure:
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _slo(results: Mapping[str, Any]) -> float:
    return float(results["run"]["slo_p99_ms"])


def _plain_number(value: float, _position: Any = None) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def _median_curve(levels: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """Per target rate, in ascending order: (median achieved rps, median p99 ms) over repetitions."""
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
    with matplotlib.rc_context(_STYLE):
        figure = _new_figure()
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
        axes.yaxis.set_major_formatter(FuncFormatter(_plain_number))
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.axhline(slo, color="#CC0000", linestyle="--", linewidth=2, zorder=1)
        axes.annotate(
            f"SLO: p99 ≤ {slo:g} ms",
            xy=(0.005, slo),
            xycoords=("axes fraction", "data"),
            xytext=(0, 5),
            textcoords="offset points",
            color="#CC0000",
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
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none",
                      "alpha": 0.7},
                zorder=5,
            )
        handles, labels = axes.get_legend_handles_labels()
        handles.append(Line2D([], [], marker="o", markersize=7, color="#999999", alpha=0.5,
                              linestyle="none"))
        labels.append("one repetition")
        if any_loadgen_bound:
            handles.append(
                Line2D([], [], marker="o", markersize=14, markerfacecolor="none",
                       markeredgecolor="black", linestyle="none")
            )
            labels.append(f"load generator ≥ {analysis.LOADGEN_BOUND_CPU_PERCENT:g}% CPU")
        figure.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 4),
                      frameon=False)
        axes.set_xlabel("Achieved throughput (requests/s)")
        axes.set_ylabel("p99 latency (ms, log scale)")
        axes.set_title("Latency vs throughput: where each architecture leaves the SLO")
    return figure


def _usd(value: float) -> str:
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.3g}"


def cost_chart(results: Mapping[str, Any]) -> Figure:
    """Provisioned (solid) and consumed (hatched) cost per million predictions per architecture."""
    architectures = results["architectures"]
    colours = architecture_colours(list(architectures))
    kinds = [("provisioned", None, 1.0), ("consumed", "//", 0.55)]
    bar_width = 0.38
    with matplotlib.rc_context(_STYLE):
        figure = _new_figure()
        axes = figure.add_subplot()
        tallest = max(
            (value for arch in architectures.values()
             for value in arch["cost_per_million_usd"].values() if value is not None),
            default=1.0,
        )
        for position, (name, arch) in enumerate(architectures.items()):
            for offset_index, (kind, hatch, alpha) in enumerate(kinds):
                x = position + (offset_index - 0.5) * bar_width
                value = arch["cost_per_million_usd"][kind]
                if value is None:
                    axes.text(x, tallest * 0.02, "n/a", ha="center", va="bottom", fontsize=12)
                    continue
                axes.bar(x, value, width=bar_width * 0.95, color=colours[name], alpha=alpha,
                         hatch=hatch, edgecolor="black", linewidth=0.8)
                axes.text(x, value, _usd(value), ha="center", va="bottom", fontsize=12,
                          fontweight="bold")
        axes.set_xticks(range(len(architectures)), list(architectures))
        axes.set_ylim(0, tallest * 1.18)
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: _usd(value) if value else "$0"))
        axes.grid(axis="x", visible=False)
        axes.legend(
            handles=[
                Patch(facecolor="#BBBBBB", edgecolor="black", label="provisioned: whole budget at capacity"),
                Patch(facecolor="#BBBBBB", edgecolor="black", hatch="//", alpha=0.55,
                      label="consumed: CPU and memory actually used"),
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
    with matplotlib.rc_context(_STYLE):
        figure = _new_figure((_FIGSIZE[0], height))
        axes = figure.add_subplot()
        totals = []
        for row, name in enumerate(names):
            groups = analysis.split_stages(architectures[name]["stages_ms"])
            left = 0.0
            for group in ("compute", "hops", "other"):
                width = sum(groups[group].values())
                if width > 0:
                    axes.barh(row, width, left=left, height=0.6, color=STAGE_GROUP_COLOURS[group],
                              edgecolor="white", linewidth=1.5)
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
                    axes.text(left + width / 2, row, f"{width:.2f} ms", ha="center", va="center",
                              color="white", fontsize=12, fontweight="bold")
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
            handles=[Patch(color=STAGE_GROUP_COLOURS[g], label=STAGE_GROUP_LABELS[g])
                     for g in ("compute", "hops", "other")],
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
    with matplotlib.rc_context(_STYLE):
        figure = _new_figure()
        axes = figure.add_subplot()
        highest = max(
            (value for arch in architectures.values()
             for value in arch["capacity_spread"]["values"] if value is not None),
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
                    axes.scatter(x, 0, marker="x", s=120, color=colours[name], linewidths=2.5,
                                 zorder=3, clip_on=False)
                else:
                    axes.scatter(x, value, s=110, color=colours[name], edgecolor="black",
                                 zorder=3)
            if spread["min"] is not None:
                axes.vlines(position, spread["min"], spread["max"], color=colours[name],
                            linewidth=3, alpha=0.5, zorder=2)
            if spread["median"] is not None:
                axes.hlines(spread["median"], position - 0.3, position + 0.3, color="black",
                            linewidth=3, zorder=4)
                axes.annotate(f"median {spread['median']:,.0f}", xy=(position + 0.32, spread["median"]),
                              va="center", fontsize=12, fontweight="bold")
            else:
                axes.annotate("no repetition\nmet the SLO", xy=(position, highest * 0.08),
                              ha="center", fontsize=12)
        handles = [
            Line2D([], [], marker="o", markersize=10, color="#777777", markeredgecolor="black",
                   linestyle="none", label="one repetition"),
            Line2D([], [], color="black", linewidth=3, label="median"),
        ]
        if missed_any:
            handles.append(Line2D([], [], marker="x", markersize=10, color="#777777",
                                  markeredgewidth=2.5, linestyle="none",
                                  label="repetition met SLO at no tested rate"))
        axes.legend(handles=handles, loc="upper right", framealpha=0.9)
        axes.set_xticks(range(len(architectures)), list(architectures))
        axes.set_xlim(-0.6, len(architectures) - 0.4)
        axes.set_ylim(0, highest * 1.2)
        axes.yaxis.set_major_formatter(FuncFormatter(_plain_number))
        axes.grid(axis="x", visible=False)
        axes.set_ylabel("Capacity (requests/s within SLO)")
        repetitions = results["run"]["repetitions"]
        axes.set_title(
            f"Capacity in each of {repetitions} repetitions" if repetitions > 1
            else "Capacity in the only repetition"
        )
    return figure


def figure_to_png_bytes(figure: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def figure_to_base64_png(figure: Figure, dpi: int = 150) -> str:
    """The figure as base64-encoded PNG text, ready for a data: URI."""
    return base64.b64encode(figure_to_png_bytes(figure, dpi=dpi)).decode("ascii")


def figure_to_svg(figure: Figure) -> str:
    """The figure as standalone SVG text, text drawn as paths so no font is needed to view it.

    Metadata is dropped so the output carries no date or links and is reproducible.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "servinglab", "svg.fonttype": "path"}):
        figure.savefig(
            buffer,
            format="svg",
            facecolor="white",
            metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
        )
    return buffer.getvalue()


# --- Sweeps (benchmarks/sweep.py) ----------------------------------------------------------------
# A sweep document holds one point per knob value, each with per-architecture figures, and the
# crossovers found by benchmarks.sweep.analyse; these charts only draw what it decided.


def _sweep_positions(sweep: Mapping[str, Any]) -> list[float]:
    """x of each point: the value itself for a numeric knob, else its position in the order run."""
    return [float(point["x"]) for point in sweep["points"]]


def _sweep_architectures(sweep: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for point in sweep["points"]:
        names += [name for name in point["architectures"] if name not in names]
    return names


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


def _sweep_series(axes: Any, sweep: Mapping[str, Any], read: Any, colours: Mapping[str, str],
                  linestyle: str = "-", label_suffix: str = "") -> None:
    positions = _sweep_positions(sweep)
    drawn = False
    for name in _sweep_architectures(sweep):
        ys = [read(point["architectures"].get(name)) for point in sweep["points"]]
        drawn = drawn or any(y is not None for y in ys)
        # None (e.g. met the SLO at no tested rate) leaves a gap rather than a fake zero.
        axes.plot(positions, [float("nan") if y is None else y for y in ys], marker="o", markersize=8,
                  linewidth=2.5, linestyle=linestyle, color=colours[name], label=name + label_suffix)
    if not drawn and linestyle == "-":
        axes.text(0.5, 0.5, "no architecture met the SLO at any value tested", transform=axes.transAxes,
                  ha="center", va="center", fontsize=13, color="#777777")


def _mark_crossovers(axes: Any, sweep: Mapping[str, Any], crossovers: Sequence[Mapping[str, Any]],
                     linestyle: str = "--", prefix: str = "") -> None:
    positions = _sweep_positions(sweep)
    middle = (min(positions) + max(positions)) / 2
    for index, crossover in enumerate(crossovers):
        x = _crossover_x(sweep, crossover)
        axes.axvline(x, color="#333333", linestyle=linestyle, linewidth=1.8, zorder=1)
        # Labels on the right half go to the left of their line, so they stay inside the axes.
        right_half = x > middle
        axes.annotate(f"{prefix}{crossover['from']} → {crossover['to']}", xy=(x, 0.97 - 0.12 * index),
                      xycoords=("data", "axes fraction"), xytext=(-5 if right_half else 5, 0),
                      textcoords="offset points", va="top", ha="right" if right_half else "left",
                      fontsize=11, fontweight="bold",
                      bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})


def _cost_or_none(kind: str) -> Any:
    return lambda arch: None if arch is None else arch["cost_per_million_usd"][kind]


def sweep_chart(sweep: Mapping[str, Any]) -> Figure:
    """Capacity (top) and cost per million (bottom) against the swept knob, crossovers marked."""
    names = _sweep_architectures(sweep)
    colours = architecture_colours(names)
    analysis_ = sweep["analysis"]
    variable = sweep["knob"]["variable"]
    with matplotlib.rc_context(_STYLE):
        figure = _new_figure((_FIGSIZE[0], 9.5))
        top, bottom = figure.subplots(2, 1, sharex=True)
        _sweep_series(top, sweep, lambda arch: None if arch is None else arch["capacity_rps"], colours)
        _mark_crossovers(top, sweep, analysis_["capacity"]["crossovers"])
        top.set_ylim(0, top.get_ylim()[1] * 1.15)  # headroom for the crossover labels
        top.yaxis.set_major_formatter(FuncFormatter(_plain_number))
        top.set_ylabel("Capacity (req/s within SLO)")
        top.set_title(f"Capacity and cost as {variable} changes")
        top.legend(loc="lower left", framealpha=0.9)
        _sweep_series(bottom, sweep, _cost_or_none("provisioned"), colours)
        _sweep_series(bottom, sweep, _cost_or_none("consumed"), colours, linestyle=":")
        _mark_crossovers(bottom, sweep, analysis_["provisioned_cost"]["crossovers"])
        _mark_crossovers(bottom, sweep, analysis_["consumed_cost"]["crossovers"], linestyle=":", prefix="consumed: ")
        bottom.set_ylim(0, bottom.get_ylim()[1] * 1.15)
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: _usd(value) if value else "$0"))
        bottom.set_ylabel("USD per million predictions")
        bottom.legend(handles=[Line2D([], [], color="#555555", linewidth=2.5, label="provisioned"),
                               Line2D([], [], color="#555555", linewidth=2.5, linestyle=":", label="consumed")],
                      loc="upper left", framealpha=0.9)
        _sweep_axis(bottom, sweep)
        bottom.set_xlabel(variable)
    return figure


def sweep_latency_chart(sweep: Mapping[str, Any]) -> Figure:
    """p99 at capacity against the knob, and the cache hit rate when the servers reported one."""
    names = _sweep_architectures(sweep)
    colours = architecture_colours(names)
    variable = sweep["knob"]["variable"]
    hit_rates = any(arch.get("hit_rate") is not None for point in sweep["points"]
                    for arch in point["architectures"].values())
    with matplotlib.rc_context(_STYLE):
        figure = _new_figure((_FIGSIZE[0], 9.5 if hit_rates else _FIGSIZE[1]))
        axes_list = figure.subplots(2, 1, sharex=True) if hit_rates else [figure.add_subplot()]
        latency = axes_list[0]
        _sweep_series(latency, sweep, lambda arch: None if arch is None else arch["p99_at_capacity_ms"], colours)
        latency.axhline(float(sweep["run"]["slo_p99_ms"]), color="#CC0000", linestyle="--", linewidth=2)
        latency.set_ylim(bottom=0)
        latency.set_ylabel("p99 at capacity (ms)")
        latency.set_title(f"Latency at capacity{' and cache hit rate' if hit_rates else ''} as {variable} changes")
        latency.legend(loc="upper left", framealpha=0.9)
        if hit_rates:
            rate = axes_list[1]
            _sweep_series(rate, sweep, lambda arch: None if arch is None or arch.get("hit_rate") is None
                          else 100 * arch["hit_rate"], colours)
            rate.set_ylim(0, 100)
            rate.set_ylabel("Cache hit rate (%)")
        _sweep_axis(axes_list[-1], sweep)
        axes_list[-1].set_xlabel(variable)
    return figure
