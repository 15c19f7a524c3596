"""The bench report's sentences: who won and by how much, what capacity means, where time goes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks import analysis
from benchmarks.report.context import vcpus
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
            f"{display_name(best)} served {rps(best_arch['capacity_rps'])} requests/s "
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
        if ratio(capacity_ratio) == "1.0x":
            clause = (
                f"{display_name(best)} and {display_name(other)} served about the same "
                f"requests/s within {slo_text} ({rps(best_arch['capacity_rps'])} vs "
                f"{rps(architectures[other]['capacity_rps'])})"
            )
        else:
            clause = (
                f"{display_name(best)} served {ratio(capacity_ratio)} the requests/s of "
                f"{display_name(other)} within {slo_text}"
            )
            if cost_ratio(other) is not None:
                clause += (
                    f", at {ratio(cost_ratio(other))} the provisioned cost per million predictions"
                )
    else:
        comparisons = [
            f"{ratio(analysis.ratio(best_arch['capacity_rps'], architectures[o]['capacity_rps']))} "
            f"{display_name(o)}"
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
    return f"{opening}{clause}."


def capacity_definition(results: Mapping[str, Any]) -> str:
    run = results["run"]
    repetitions = run["repetitions"]
    return (
        f"Capacity is the highest tested request rate an architecture served while keeping p99 "
        f"latency at or below {run['slo_p99_ms']:g} ms, achieving at least "
        f"{analysis.MIN_ACHIEVED_FRACTION:.0%} of the offered rate and failing at most "
        f"{analysis.MAX_ERROR_RATE:.1%} of requests. It is the median over {repetitions} "
        f"repetition{'s' if repetitions != 1 else ''}; the range shows the lowest and highest."
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
