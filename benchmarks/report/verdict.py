"""The bench report's sentences: who won and by how much, what capacity means, where time goes.

When the capacities carry intervals (``capacity_interval``, `benchmarks.ladder`), the headline's
ratio carries one too, and two architectures whose intervals overlap "cannot be told apart". A
run with steps where other work shared the CPUs says so, naming the steps (`disturbance`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks import analysis, ladder
from benchmarks.report.context import vcpus
from benchmarks.report.tables import capacity_with_interval
from benchmarks.reporting.text import display_name, join, ms, ratio, rps, usd


def headline(results: Mapping[str, Any]) -> str:
    """One sentence saying which architecture served more within the SLO, and at what cost."""
    run = results["run"]
    architectures = results["architectures"]
    slo_text = f"a p99 SLO of {run['slo_p99_ms']:g} ms"
    opening = f"On {vcpus(run)}, "
    ranked = sorted(
        (name for name in architectures if architectures[name]["capacity_rps"] is not None),
        key=lambda name: -architectures[name]["capacity_rps"],
    )
    missed = [display_name(name) for name in architectures if name not in ranked]

    if not ranked:
        if len(missed) == 1:
            return f"{opening}{missed[0]} did not meet {slo_text} at any tested rate."
        return f"{opening}no architecture ({join(missed)}) met {slo_text} at any tested rate."

    best = ranked[0]
    best_arch = architectures[best]
    others = ranked[1:]

    def cost_ratio(other: str) -> float | None:
        return analysis.ratio(
            best_arch["cost_per_million_usd"]["provisioned"],
            architectures[other]["cost_per_million_usd"]["provisioned"],
        )

    if not others:
        clause = (
            f"{display_name(best)} served {capacity_with_interval(best_arch)} requests/s "
            f"within {slo_text}"
        )
        cost = best_arch["cost_per_million_usd"]["provisioned"]
        if cost is not None:
            clause += f", at {usd(cost)} per million predictions (provisioned)"
    elif len(others) == 1:
        other = others[0]
        capacity_ratio = analysis.ratio(
            best_arch["capacity_rps"], architectures[other]["capacity_rps"]
        )
        intervals = (
            best_arch.get("capacity_interval"),
            architectures[other].get("capacity_interval"),
        )
        if ladder.overlap(*intervals):
            clause = (
                f"{display_name(best)} and {display_name(other)} cannot be told apart within "
                f"{slo_text}: {capacity_with_interval(best_arch)} vs "
                f"{capacity_with_interval(architectures[other])} requests/s, and the "
                f"{intervals[0]['confidence']:.0%} intervals overlap"
            )
        elif ratio(capacity_ratio) == "1.0x":
            clause = (
                f"{display_name(best)} and {display_name(other)} served about the same "
                f"requests/s within {slo_text} ({rps(best_arch['capacity_rps'])} vs "
                f"{rps(architectures[other]['capacity_rps'])})"
            )
        else:
            clause = (
                f"{display_name(best)} served {ratio(capacity_ratio)}"
                f"{_ratio_interval(best_arch, architectures[other])} the requests/s of "
                f"{display_name(other)} within {slo_text}"
            )
            if cost_ratio(other) is not None:
                clause += (
                    f", at {ratio(cost_ratio(other))} the provisioned cost per million predictions"
                )
    else:
        comparisons = [
            f"{ratio(analysis.ratio(best_arch['capacity_rps'], architectures[o]['capacity_rps']))}"
            f"{_ratio_interval(best_arch, architectures[o])} {display_name(o)}"
            for o in others
        ]
        clause = (
            f"{display_name(best)} served the most requests/s within {slo_text}: "
            f"{join(comparisons)}"
        )
        cost_ratios = [cost_ratio(o) for o in others]
        if all(value is not None for value in cost_ratios):
            clause += (
                f", at {join([ratio(value) for value in cost_ratios])} their provisioned cost "
                f"per million predictions"
            )

    if missed:
        clause += f"; {join(missed)} did not meet the SLO at any tested rate"
    disturbed = disturbance(results)
    return f"{opening}{clause}." + (f" {disturbed}" if disturbed else "")


def ratio_interval(
    first: Mapping[str, Any], second: Mapping[str, Any]
) -> tuple[float, float | None] | None:
    """The capacity ratio's interval, from the two capacity intervals' opposite ends (None
    without intervals; an open upper end when the second's interval reaches zero)."""
    a, b = first.get("capacity_interval"), second.get("capacity_interval")
    if not a or not b or not b["high"]:
        return None
    return a["low"] / b["high"], (a["high"] / b["low"] if b["low"] else None)


def _ratio_interval(first: Mapping[str, Any], second: Mapping[str, Any]) -> str:
    bounds = ratio_interval(first, second)
    if bounds is None:
        return ""
    low, high = bounds
    return f" ({ratio(low)} or more)" if high is None else f" ({ratio(low)}–{ratio(high)})"


def disturbed_steps(results: Mapping[str, Any]) -> list[str]:
    """ "monolith repetition 0 steps 1 and 3" per architecture with disturbed steps."""
    found = []
    for name, arch in results["architectures"].items():
        by_repetition: dict[int, list[str]] = {}
        for level in arch["levels"]:
            if (level.get("interference") or {}).get("disturbed"):
                by_repetition.setdefault(level["repetition"], []).append(str(level["step"]))
        for repetition, steps in sorted(by_repetition.items()):
            found.append(
                f"{name} repetition {repetition} step{'s' if len(steps) > 1 else ''} {join(steps)}"
            )
    return found


def disturbance(results: Mapping[str, Any]) -> str | None:
    """The sentence saying the run was disturbed, and where; None for a quiet (or old) run."""
    record = results["run"].get("interference") or {}
    before = record.get("before_run") or {}
    steps = disturbed_steps(results)
    if not steps and not before.get("disturbed"):
        return None
    limits = (
        f"more than {record.get('disturbed_percent', 5):g}% of the benchmark's CPUs, or the "
        f"hypervisor more than {record.get('steal_percent', 5):g}% in steal"
    )
    sentence = f"The run was disturbed: other work took {limits}"
    sentence += f", during {'; '.join(steps)}" if steps else ""
    if before.get("disturbed"):
        sentence += (
            f"{';' if steps else ','} and the CPUs were already busy before it started "
            f"(SUT CPUs {before['sut_others_percent']:g}%, load-generator CPUs "
            f"{before['loadgen_others_percent']:g}%, steal {before['steal_percent']:g}%)"
        )
    return sentence + ". Disturbed steps read slow: rerun on a quiet machine before quoting this."


def capacity_definition(results: Mapping[str, Any]) -> str:
    run = results["run"]
    repetitions = run["repetitions"]
    return (
        f"Capacity is the highest tested request rate an architecture served while keeping p99 "
        f"latency at or below {run['slo_p99_ms']:g} ms, achieving at least "
        f"{analysis.MIN_ACHIEVED_FRACTION:.0%} of the offered rate and failing at most "
        f"{analysis.MAX_ERROR_RATE:.1%} of requests. It is the median over {repetitions} "
        f"repetition{'s' if repetitions != 1 else ''}; the range shows the lowest and highest."
        + (_interval_definition(results) or "")
    )


def _interval_definition(results: Mapping[str, Any]) -> str | None:
    intervals = [
        arch["capacity_interval"]
        for arch in results["architectures"].values()
        if arch.get("capacity_interval")
    ]
    if not intervals:
        return None
    return (
        f" The interval in brackets holds the capacity with {intervals[0]['confidence']:.0%} "
        f"confidence: each step's requests are resampled ({intervals[0]['draws']:,} bootstrap "
        f"draws), the search's rule is applied to every draw, and the interval runs from the "
        f"lowest capacities drawn to the highest rates drawn as beyond capacity. A step that "
        f"missed the SLO was measured again before it was believed. Architectures whose "
        f"intervals overlap cannot be told apart."
    )


def _listed_stages(stages: Mapping[str, float]) -> str:
    return ", ".join(f"`{stage}` {ms(value)}" for stage, value in stages.items())


def where_the_time_goes(results: Mapping[str, Any]) -> str:
    """A paragraph comparing hop overhead with compute, from each architecture's stages_ms."""
    sentences = []
    hop_heaviest = None  # (hop share of server time, name, hops ms, compute ms)
    for name, arch in results["architectures"].items():
        groups = analysis.split_stages(arch["stages_ms"])
        compute = sum(groups["compute"].values())
        hops = sum(groups["hops"].values())
        other = sum(groups["other"].values())
        total = compute + hops + other
        where = f"In {display_name(name)}"
        if total == 0:
            sentences.append(f"{where}, no per-stage timings were recorded.")
            continue
        parts = [f"{ms(compute)} ms of compute ({_listed_stages(groups['compute'])})"]
        if groups["hops"]:
            hop_detail = _listed_stages(groups["hops"])
            if compute > 0:
                hop_detail += f"; {ratio(hops / compute)} the compute itself"
            parts.append(f"{ms(hops)} ms of hop overhead ({hop_detail})")
            if hop_heaviest is None or hops / total > hop_heaviest[0]:
                hop_heaviest = (hops / total, name, hops, compute)
        parts.append(f"{ms(other)} ms of HTTP handling and other work")
        sentence = f"{where}, a request spends {ms(total)} ms inside the server: {join(parts)}."
        if not groups["hops"]:
            sentence += " There are no calls between services."
        sentences.append(sentence)
    if hop_heaviest is not None:
        share, name, hops, compute = hop_heaviest
        sentences.append(
            "A hop is one service calling the next: the data is serialised, crosses the network "
            "stack, and another server parses it and handles the request. That cost does not "
            "shrink when the model gets cheaper."
        )
        where = f"In {display_name(name)}, hops take {share:.0%} of the server time"
        if hops > compute:
            sentences.append(
                f"{where}, more than the model's own work: for a model this cheap, splitting the "
                f"pipeline costs more than running it. With a heavier model the same hops would "
                f"matter less."
            )
        else:
            sentences.append(
                f"{where}, less than the model's own work: here the model dominates, so splitting "
                f"the pipeline costs relatively little."
            )
    return " ".join(sentences)
