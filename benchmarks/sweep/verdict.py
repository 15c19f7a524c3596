"""The sweep's verdict, a pure function of its points: the leader at every value, the crossovers,
and the conclusion in words.

A point is one knob value with per-architecture figures (sweep.json ``points[]``). At each value,
per metric (capacity, provisioned cost, consumed cost), the best architecture leads unless
another is within `TIE_TOLERANCE` of it: a tie. A crossover is a change of leader between two
consecutive decided values; for a numeric knob its position is interpolated where the two lines
cross.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.reporting.text import display_name, join, rps, wins

# Capacities are ladder steps rounded to two significant figures, and quick runs are noisy:
# architectures within this fraction of each other are called a tie, not a win.
TIE_TOLERANCE = 0.05


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    read: Callable[[Mapping[str, Any]], float | None]


METRICS = (
    Metric("capacity", "capacity", True, lambda arch: arch["capacity_rps"]),
    Metric(
        "provisioned_cost",
        "provisioned cost",
        False,
        lambda arch: arch["cost_per_million_usd"]["provisioned"],
    ),
    Metric(
        "consumed_cost",
        "consumed cost",
        False,
        lambda arch: arch["cost_per_million_usd"]["consumed"],
    ),
)


def architectures(sweep: Mapping[str, Any]) -> list[str]:
    """Every architecture of the sweep, in the order they first appear."""
    names: list[str] = []
    for point in sweep["points"]:
        names += [name for name in point["architectures"] if name not in names]
    return names


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TIE_TOLERANCE * max(abs(a), abs(b))


def leader(figures: Mapping[str, float | None], higher_is_better: bool) -> dict[str, Any]:
    """The best architecture at one value: {"winner": name, "tied": []}, or a tie, or no data.

    An architecture without a figure (it met the SLO at no tested rate) loses to any with one.
    """
    known = {name: value for name, value in figures.items() if value is not None}
    if not known:
        return {"winner": None, "tied": []}
    ranked = sorted(known, key=lambda name: known[name], reverse=higher_is_better)
    best = ranked[0]
    tied = [name for name in ranked[1:] if _close(known[name], known[best])]
    return {"winner": None, "tied": [best, *tied]} if tied else {"winner": best, "tied": []}


def _margin(
    points: Sequence[Mapping[str, Any]], metric: Metric, index: int, first: str, second: str
) -> float | None:
    """How far `first` is ahead of `second` at one point, positive when ahead."""
    archs = points[index]["architectures"]
    a = metric.read(archs[first]) if first in archs else None
    b = metric.read(archs[second]) if second in archs else None
    if a is None or b is None:
        return None
    return (a - b) if metric.higher_is_better else (b - a)


def _interpolate(
    points: Sequence[Mapping[str, Any]],
    metric: Metric,
    start: int,
    end: int,
    first: str,
    second: str,
) -> float | None:
    """Where the lines of `first` and `second` cross between two points, by linear interpolation."""
    for k in range(start, end):
        d0 = _margin(points, metric, k, first, second)
        d1 = _margin(points, metric, k + 1, first, second)
        if d0 is None or d1 is None or d0 == d1:
            continue
        if d0 >= 0 >= d1:
            x0, x1 = float(points[k]["x"]), float(points[k + 1]["x"])
            return round(x0 + (x1 - x0) * d0 / (d0 - d1), 6)
    return None


def crossovers(
    points: Sequence[Mapping[str, Any]],
    leaders: Sequence[Mapping[str, Any]],
    metric: Metric,
    numeric: bool,
) -> list[dict[str, Any]]:
    """Every change of winner between consecutive decided values (ties and gaps are skipped).

    For a numeric knob, `at` estimates the value where the two lines cross; for a categorical one
    (profile, cache, ...) there is nothing between the values, and `at` is null.
    """
    decided = [(index, entry["winner"]) for index, entry in enumerate(leaders) if entry["winner"]]
    found = []
    for (i, before), (j, after) in itertools.pairwise(decided):
        if before == after:
            continue
        found.append(
            {
                "between_indexes": [i, j],
                "between": [points[i]["value"], points[j]["value"]],
                "from": before,
                "to": after,
                "at": _interpolate(points, metric, i, j, before, after) if numeric else None,
            }
        )
    return found


def analyse(points: Sequence[Mapping[str, Any]], numeric: bool) -> dict[str, Any]:
    """Per metric: the leader at every value and the crossovers."""
    result = {}
    for metric in METRICS:
        leaders = [
            leader(
                {name: metric.read(arch) for name, arch in point["architectures"].items()},
                metric.higher_is_better,
            )
            for point in points
        ]
        result[metric.key] = {
            "higher_is_better": metric.higher_is_better,
            "leaders": leaders,
            "crossovers": crossovers(points, leaders, metric, numeric),
        }
    return result


def _describe(doc: Mapping[str, Any], metric_key: str) -> str:
    variable = doc["knob"]["variable"]
    points = doc["points"]
    entry = doc["analysis"][metric_key]
    leaders, found = entry["leaders"], entry["crossovers"]
    winners = [item["winner"] for item in leaders]
    tie_values = [points[i]["value"] for i, item in enumerate(leaders) if item["tied"]]
    decided = [name for name in winners if name]
    tie_note = (
        f" (within {TIE_TOLERANCE:.0%} of each other, a tie, at {variable} = {join(tie_values)})"
        if tie_values
        else ""
    )
    if not decided:
        if tie_values:
            return (
                f"the architectures are within {TIE_TOLERANCE:.0%} of each other at every "
                "value tested"
            )
        return "no architecture met the SLO at any value tested"
    if len(set(decided)) == 1:
        qualifier = " or ties" if tie_values else ""
        return f"{wins(decided[0])}{qualifier} at every value tested{tie_note}"
    numeric = doc["knob"]["numeric"]
    if numeric and len(found) == 1:
        crossing = found[0]
        below = [points[i]["value"] for i, name in enumerate(winners) if name == crossing["from"]]
        above = [points[i]["value"] for i, name in enumerate(winners) if name == crossing["to"]]
        text = (
            f"{wins(crossing['from'])} when {variable} is {below[-1]} or less, "
            f"{wins(crossing['to'])} when it is {above[0]} or more"
        )
        if crossing["at"] is not None:
            text += f" (the lines cross near {variable} = {crossing['at']:.3g})"
        return text + tie_note
    by_winner: dict[str, list[str]] = {}
    for index, name in enumerate(winners):
        if name:
            by_winner.setdefault(name, []).append(points[index]["value"])
    parts = [f"{wins(name)} at {variable} = {join(values)}" for name, values in by_winner.items()]
    changes = [
        f"between {c['between'][0]} and {c['between'][1]} ({display_name(c['from'])} to "
        f"{display_name(c['to'])})"
        for c in found
    ]
    return "; ".join(parts) + f"; the winner changes {join(changes)}" + tie_note


def conclusion(doc: Mapping[str, Any]) -> str:
    """The sweep's verdict in words, by capacity and by cost, with where it holds."""
    points = doc["points"]
    variable = doc["knob"]["variable"]
    names = architectures(doc)
    if not points:
        return "No value was measured."
    if len(names) == 1:
        name = names[0]
        capacities = [point["architectures"][name]["capacity_rps"] for point in points]
        shown = ", ".join(
            f"{rps(c)} at {p['value']}" for c, p in zip(capacities, points, strict=True)
        )
        sentence = (
            f"Only {display_name(name)} was measured; its capacity (req/s) by {variable}: {shown}."
        )
    else:
        # Measures with the same winner at every value share one sentence, described by the first
        # of them (provisioned cost usually follows capacity: the budget is the same for all).
        groups: dict[str, list[Metric]] = {}
        for metric in METRICS:
            leaders = json.dumps(doc["analysis"][metric.key]["leaders"], sort_keys=True)
            groups.setdefault(leaders, []).append(metric)
        sentences = []
        for metrics in groups.values():
            labels = [metric.label for metric in metrics]
            sentences.append(f"By {join(labels)}, {_describe(doc, metrics[0].key)}.")
        sentence = " ".join(sentences)
        sentence = sentence[0].upper() + sentence[1:]
    tested = join([point["value"] for point in points])
    caveat = (
        "short QUICK runs, so confirm with QUICK=0 before relying on it"
        if doc["run"]["quick"]
        else ""
    )
    where = f"This holds on this machine, for this workload, at {variable} = {tested}"
    return f"{sentence} {where}{' (' + caveat + ')' if caveat else ''}."
