"""What the charts show, read from the matplotlib objects they return, on recorded results.

The bench's charts (`benchmarks.plots`) and the sweep's (`benchmarks.sweep.plots`) are checked for
their content, not their pixels: each line's data against numbers computed here from the recorded
levels, where the SLO and capacity lines sit, where a crossover is drawn, that a missing figure
leaves a gap (never a zero), and the words shown when nothing met the SLO.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks import analysis, knobs, plots, sweep
from benchmarks.sweep.plots import sweep_chart, sweep_latency_chart

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def recorded(name: str = "results_small") -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def missing_the_slo_everywhere(results: dict, name: str) -> dict:
    """`results` as if `name` had met the SLO at no tested rate, in any repetition."""
    changed = copy.deepcopy(results)
    arch = changed["architectures"][name]
    for level in arch["levels"]:
        level["within_slo"] = False
    arch["capacity_rps"] = None
    arch["capacity_spread"] = {
        "median": None,
        "min": None,
        "max": None,
        "values": [None] * results["run"]["repetitions"],
    }
    arch["cost_per_million_usd"]["provisioned"] = None
    return changed


def plotted(axes) -> dict[str, tuple[list[float], list[float]]]:
    """The labelled data lines of an axes (reference lines carry matplotlib's `_child` labels)."""
    return {
        line.get_label(): (
            [float(x) for x in line.get_xdata()],
            [float(y) for y in line.get_ydata()],
        )
        for line in axes.get_lines()
        if not line.get_label().startswith("_")
    }


def reference_lines(axes, linestyle: str) -> list:
    return [line for line in axes.get_lines() if line.get_linestyle() == linestyle]


def texts(axes) -> list[str]:
    return [text.get_text() for text in axes.texts]


# --- benchmarks.plots: one bench run ------------------------------------------------------------


def test_latency_lines_join_the_median_of_the_repetitions_at_each_target():
    results = recorded()
    # A third, much slower repetition: with three values a median is not a mean.
    for arch in results["architectures"].values():
        arch["levels"] += [
            {**level, "repetition": 2, "p99_ms": level["p99_ms"] * 10}
            for level in arch["levels"]
            if level["repetition"] == 1
        ]
    axes = plots.latency_vs_throughput(results).axes[0]
    lines = plotted(axes)
    assert set(lines) == set(results["architectures"])
    for name, arch in results["architectures"].items():
        targets = sorted({level["target_rps"] for level in arch["levels"]})
        at = {t: [lv for lv in arch["levels"] if lv["target_rps"] == t] for t in targets}
        assert lines[name][0] == [
            statistics.median(lv["achieved_rps"] for lv in at[t]) for t in targets
        ]
        assert lines[name][1] == [statistics.median(lv["p99_ms"] for lv in at[t]) for t in targets]


def test_the_slo_and_each_capacity_are_drawn_where_the_results_put_them():
    results = recorded()
    axes = plots.latency_vs_throughput(results).axes[0]
    slo = results["run"]["slo_p99_ms"]
    (slo_line,) = reference_lines(axes, "--")
    assert list(slo_line.get_ydata()) == [slo, slo]
    capacities = {name: arch["capacity_rps"] for name, arch in results["architectures"].items()}
    assert sorted(line.get_xdata()[0] for line in reference_lines(axes, ":")) == sorted(
        capacities.values()
    )
    for name, capacity in capacities.items():
        assert f"{name} capacity\n{capacity:,.0f} req/s" in texts(axes)
    assert f"SLO: p99 ≤ {slo:g} ms" in texts(axes)
    # Every capacity fits on the axis, with room for its label.
    assert axes.get_xlim()[1] > max(capacities.values())


def test_an_architecture_without_capacity_gets_no_capacity_line_and_says_so_in_the_spread():
    results = missing_the_slo_everywhere(recorded(), "microservices")
    axes = plots.latency_vs_throughput(results).axes[0]
    assert [line.get_xdata()[0] for line in reference_lines(axes, ":")] == [
        results["architectures"]["monolith"]["capacity_rps"]
    ]
    assert not any(text.startswith("microservices capacity") for text in texts(axes))
    spread = plots.spread_chart(results).axes[0]
    assert "no repetition\nmet the SLO" in texts(spread)
    assert "median 750" in texts(spread) and "median 200" not in texts(spread)
    legend = [text.get_text() for text in spread.get_legend().get_texts()]
    assert "repetition met SLO at no tested rate" in legend
    assert "repetition met SLO at no tested rate" not in [
        text.get_text() for text in plots.spread_chart(recorded()).axes[0].get_legend().get_texts()
    ]


def test_a_step_without_a_p99_leaves_a_gap_rather_than_a_point_at_zero():
    results = recorded()
    levels = results["architectures"]["microservices"]["levels"]
    top = max(level["target_rps"] for level in levels)
    for level in levels:
        if level["target_rps"] == top:
            level["p99_ms"] = None  # no request of that step succeeded
    xs, ys = plotted(plots.latency_vs_throughput(results).axes[0])["microservices"]
    assert len(xs) == len({level["target_rps"] for level in levels}) - 1
    assert all(y > 0 for y in ys)


def test_cost_bars_are_the_recorded_costs_and_a_missing_one_reads_n_a():
    results = missing_the_slo_everywhere(recorded(), "microservices")
    axes = plots.cost_chart(results).axes[0]
    heights = sorted(round(bar.get_height(), 6) for bar in axes.patches)
    recorded_costs = sorted(
        value
        for arch in results["architectures"].values()
        for value in arch["cost_per_million_usd"].values()
        if value is not None
    )
    assert heights == recorded_costs
    assert texts(axes).count("n/a") == 1


def test_time_breakdown_stacks_each_group_of_the_recorded_stages():
    results = recorded()
    axes = plots.time_breakdown(results).axes[0]
    names = list(results["architectures"])
    for row, name in enumerate(names):
        groups = analysis.split_stages(results["architectures"][name]["stages_ms"])
        widths = [sum(groups[g].values()) for g in ("compute", "hops", "other")]
        bars = [bar for bar in axes.patches if math.isclose(bar.get_y() + 0.3, row)]
        assert [round(bar.get_width(), 6) for bar in bars] == [round(w, 6) for w in widths if w]
        assert f"{sum(widths):.2f} ms" in texts(axes)


# --- benchmarks.sweep.plots: a sweep of recorded runs -------------------------------------------


def swapped(results: dict, first: str, second: str) -> dict:
    """The recorded run with two architectures' figures exchanged: the winner changes."""
    changed = copy.deepcopy(results)
    arch = changed["architectures"]
    arch[first], arch[second] = arch[second], arch[first]
    return changed


def sweep_of(runs: list[tuple[str, dict]]) -> dict:
    """sweep.json for a HOP_DELAY_MS sweep whose values ran as `runs` (value, results.json)."""
    knob = knobs.BY_KEY["hop_delay_ms"]
    points = [
        sweep.point_from_results(value, float(value), f"runs/{index}", results)
        for index, (value, results) in enumerate(runs)
    ]
    first = runs[0][1]["run"]
    return sweep.assemble(knob, [value for value, _ in runs], True, points, first, NOW, NOW, True)


def test_the_crossover_is_drawn_where_the_capacity_lines_cross():
    results = recorded()
    faster = swapped(results, "monolith", "microservices")
    faster["architectures"]["microservices"]["capacity_rps"] = 900.0
    doc = sweep_of([("0", results), ("2", faster)])
    (crossover,) = doc["analysis"]["capacity"]["crossovers"]
    top, _ = sweep_chart(doc).axes
    lines = plotted(top)
    assert lines["monolith"] == ([0.0, 2.0], [750.0, 200.0])
    assert lines["microservices"] == ([0.0, 2.0], [200.0, 900.0])
    # 750 - 275 x = 200 + 350 x: the lines cross at x = 0.88, not halfway between the values.
    (marker,) = reference_lines(top, "--")
    assert list(marker.get_xdata()) == pytest.approx([0.88, 0.88]) and crossover["at"] == 0.88
    assert "monolith → microservices" in texts(top)


def test_a_categorical_crossover_is_drawn_halfway_between_its_values():
    results = recorded()
    doc = sweep_of([("0", results), ("2", swapped(results, "monolith", "microservices"))])
    for point, x in zip(doc["points"], (0.0, 1.0), strict=True):
        point["x"] = x  # positions in the order run, as for a categorical knob
    doc["analysis"] = sweep.analyse(doc["points"], numeric=False)
    top, _ = sweep_chart(doc).axes
    (marker,) = reference_lines(top, "--")
    assert list(marker.get_xdata()) == [0.5, 0.5]


def test_a_value_where_an_architecture_met_no_slo_is_a_gap_in_its_line():
    results = recorded()
    doc = sweep_of(
        [
            ("0", results),
            ("2", missing_the_slo_everywhere(results, "microservices")),
            ("5", results),
        ]
    )
    top, bottom = sweep_chart(doc).axes
    xs, ys = plotted(top)["microservices"]
    assert xs == [0.0, 2.0, 5.0]
    assert ys[0] == ys[2] == 200.0 and math.isnan(ys[1])
    assert plotted(top)["monolith"][1] == [750.0, 750.0, 750.0]
    provisioned = next(line for line in bottom.get_lines() if line.get_label() == "microservices")
    assert math.isnan(provisioned.get_ydata()[1])
    assert "no architecture met the SLO at any value tested" not in texts(top)


def test_when_no_architecture_met_the_slo_the_charts_say_so():
    results = recorded()
    nowhere = missing_the_slo_everywhere(
        missing_the_slo_everywhere(results, "microservices"), "monolith"
    )
    for arch in nowhere["architectures"].values():
        arch["p99_at_capacity_ms"] = None
        arch["cost_per_million_usd"]["consumed"] = None
    doc = sweep_of([("0", nowhere), ("2", nowhere)])
    top, bottom = sweep_chart(doc).axes
    assert texts(top) == ["no architecture met the SLO at any value tested"]
    assert "no architecture met the SLO at any value tested" in texts(bottom)
    assert all(math.isnan(y) for _, ys in plotted(top).values() for y in ys)
    (latency,) = sweep_latency_chart(doc).axes
    assert "no architecture met the SLO at any value tested" in texts(latency)


@pytest.mark.parametrize("fixture", ["results_small", "results_knobs"])
def test_every_recorded_architecture_has_a_line_in_every_sweep_chart(fixture):
    results = recorded(fixture)
    doc = sweep_of([("0", results), ("2", results)])
    for figure in (sweep_chart(doc), sweep_latency_chart(doc)):
        assert set(plotted(figure.axes[0])) == set(results["architectures"])
