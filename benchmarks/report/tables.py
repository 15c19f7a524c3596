"""The bench report's tables: the summary, the ratios, every load level, the cache's hits."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any

from benchmarks import analysis
from benchmarks.reporting.document import Block, Paragraph, Table
from benchmarks.reporting.text import MISSING, ms, number, percent, ratio, rps, usd


def capacity_with_interval(arch: Mapping[str, Any]) -> str:
    """A capacity and, when the run gave it one, its interval in brackets: "330 (280-400)"."""
    interval = arch.get("capacity_interval")
    text = rps(arch["capacity_rps"])
    return f"{text} ({rps(interval['low'])}–{rps(interval['high'])})" if interval else text


def summary_table(results: Mapping[str, Any]) -> Table:
    """One row per architecture: capacity, latency at capacity, both costs, CPU, memory."""
    rows = []
    for name, arch in results["architectures"].items():
        spread = arch["capacity_spread"]
        capacity_range = (
            MISSING if spread["min"] is None else f"{rps(spread['min'])}–{rps(spread['max'])}"
        )
        rows.append(
            [
                name,
                capacity_with_interval(arch),
                capacity_range,
                ms(arch["p50_at_capacity_ms"]),
                ms(arch["p99_at_capacity_ms"]),
                usd(arch["cost_per_million_usd"]["provisioned"]),
                usd(arch["cost_per_million_usd"]["consumed"]),
                number(arch["cpu_seconds_per_1k"], 2),
                number(arch["peak_rss_mb_total"], 0),
            ]
        )
    headers = [
        "Architecture",
        "Capacity (req/s, median)",
        "Capacity range (min–max)",
        "p50 at capacity (ms)",
        "p99 at capacity (ms)",
        "Provisioned $ per million",
        "Consumed $ per million",
        "CPU-seconds per 1k requests",
        "Peak memory, all processes (MB)",
    ]
    return Table(headers, rows, numeric_columns=set(range(1, 9)))


def ratio_blocks(results: Mapping[str, Any]) -> list[Block]:
    """Every pair of architectures as ratios, or why there is nothing to compare."""
    architectures = results["architectures"]
    if len(architectures) < 2:
        return [
            Paragraph(
                "Only one architecture was measured in this run, so there is nothing to compare "
                "it with. Ratios are only fair between architectures measured in the same run."
            )
        ]
    rows = []
    for first, second in combinations(architectures, 2):
        a, b = architectures[first], architectures[second]
        rows.append(
            [
                f"{first} ÷ {second}",
                ratio(analysis.ratio(a["capacity_rps"], b["capacity_rps"])),
                ratio(analysis.ratio(a["p99_at_capacity_ms"], b["p99_at_capacity_ms"])),
                ratio(
                    analysis.ratio(
                        a["cost_per_million_usd"]["provisioned"],
                        b["cost_per_million_usd"]["provisioned"],
                    )
                ),
                ratio(
                    analysis.ratio(
                        a["cost_per_million_usd"]["consumed"], b["cost_per_million_usd"]["consumed"]
                    )
                ),
                ratio(analysis.ratio(a["cpu_seconds_per_1k"], b["cpu_seconds_per_1k"])),
                ratio(analysis.ratio(a["peak_rss_mb_total"], b["peak_rss_mb_total"])),
            ]
        )
    return [
        Paragraph(
            "Both architectures ran on the same machine, with the same CPU budget and the same "
            "load generator, one after the other. That makes these ratios fairer than comparing "
            "numbers from different runs or machines."
        ),
        Table(
            [
                "Comparison",
                "Capacity",
                "p99 at capacity",
                "Provisioned cost",
                "Consumed cost",
                "CPU per request",
                "Peak memory",
            ],
            rows,
            numeric_columns=set(range(1, 7)),
        ),
        Paragraph(
            "Read “2.0x” as “the first has twice as much as the second”. More capacity is "
            "better; for every other column lower is better.",
            style="note",
        ),
    ]


def _level_status(level: Mapping[str, Any], slo: float, is_capacity: bool) -> tuple[str, str]:
    """Status text and CSS classes for one row of a per-level table."""
    reasons = analysis.beyond_capacity_reasons(level, slo)
    parts, classes = [], []
    if reasons:
        parts.append("beyond capacity: " + "; ".join(reasons))
        classes.append("beyond")
    else:
        parts.append("within SLO" + (" (capacity)" if is_capacity else ""))
        if is_capacity:
            classes.append("capacity")
    if level["loadgen_bound"]:
        parts.append("loadgen-bound")
        classes.append("loadgen")
    if level.get("attempt"):
        parts.append("measured again")
    others = level.get("interference")
    if others and others["disturbed"]:
        parts.append(
            f"disturbed: others took {others['sut_others_percent']:g}% of the SUT CPUs, "
            f"{others['loadgen_others_percent']:g}% of the load generator's, steal "
            f"{others['steal_percent']:g}%"
        )
        classes.append("loadgen")  # the same warning style as a loadgen-bound step
    return "; ".join(parts), " ".join(classes)


def level_table(results: Mapping[str, Any], name: str) -> Table:
    """Every step of one architecture, in the order they ran, with why it was beyond capacity."""
    slo = results["run"]["slo_p99_ms"]
    levels = results["architectures"][name]["levels"]
    capacities = analysis.capacities_by_repetition(levels, slo)
    rows, styles = [], []
    for level in levels:
        is_capacity = capacities.get(level["repetition"]) == level["target_rps"]
        status, style = _level_status(level, slo, is_capacity)
        rows.append(
            [
                str(level["repetition"]),
                str(level["step"]),
                rps(level["target_rps"]),
                rps(level["achieved_rps"]),
                percent(100 * level["achieved_rps"] / level["target_rps"]),
                ms(level["p50_ms"]),
                ms(level["p99_ms"]),
                percent(100 * level["error_rate"], 2),
                number(level["cpu_seconds_per_1k"], 2),
                percent(level["sut_cpu_percent"]),
                percent(level["loadgen_cpu_percent"]),
                status,
            ]
        )
        styles.append(style)
    headers = [
        "Rep",
        "Step",
        "Target (req/s)",
        "Achieved (req/s)",
        "Achieved / target",
        "p50 (ms)",
        "p99 (ms)",
        "Errors",
        "CPU-s per 1k",
        "Server CPU",
        "Load-gen CPU",
        "Status",
    ]
    return Table(headers, rows, numeric_columns=set(range(11)), row_styles=styles)


def _hit_rate(arch: Mapping[str, Any]) -> str:
    cache = arch.get("cache")
    if not cache or cache["hit_rate"] is None:
        return MISSING
    return percent(100 * cache["hit_rate"], 1)


def cache_table(results: Mapping[str, Any]) -> Table | None:
    """Hit rate next to what it bought, per architecture; None when no cache was on."""
    architectures = results["architectures"]
    placed = {
        name: (arch.get("applied") or {}).get("cache_location")
        for name, arch in architectures.items()
    }
    if not any(placed.values()) and not any(arch.get("cache") for arch in architectures.values()):
        return None
    rows = []
    for name, arch in architectures.items():
        cache = arch.get("cache") or {}
        lookups = cache.get("hits", 0) + cache.get("misses", 0)
        rows.append(
            [
                name,
                placed[name] or MISSING,
                _hit_rate(arch),
                f"{lookups:,}" if cache else MISSING,
                rps(arch["capacity_rps"]),
                ms(arch["p99_at_capacity_ms"]),
                usd(arch["cost_per_million_usd"]["provisioned"]),
                usd(arch["cost_per_million_usd"]["consumed"]),
            ]
        )
    return Table(
        [
            "Architecture",
            "Cache sits at",
            "Hit rate",
            "Lookups",
            "Capacity (req/s)",
            "p99 at capacity (ms)",
            "Provisioned $ per million",
            "Consumed $ per million",
        ],
        rows,
        numeric_columns={2, 3, 4, 5, 6, 7},
    )
