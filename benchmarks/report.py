"""Turn one run's results.json into a report a student can read and an instructor can project.

``write_report(run_dir)`` writes ``report.md`` (charts as PNG files in ``charts/``) and a
self-contained ``report.html`` (charts embedded as SVG data, inline CSS, no scripts and no
external links, so it opens straight from the file system or a USB stick).

Both formats are rendered from one list of blocks built by ``_build_report``, so they always
say the same thing. Usage::

    python -m benchmarks.report RUN_DIR
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from benchmarks import analysis, knobs, plots

RESULTS_FILE = "results.json"
CHARTS_DIR = "charts"


@dataclass(frozen=True)
class ChartSpec:
    key: str
    title: str
    draw: Callable[[Mapping[str, Any]], Figure]
    how_to_read: str


CHARTS = [
    ChartSpec(
        "latency_vs_throughput",
        "Latency vs throughput",
        plots.latency_vs_throughput,
        "Each line is one architecture. Moving right means more requests per second; moving up "
        "means slower requests. The red dashed line is the SLO. Where a line crosses it, that "
        "architecture has run out of capacity. The y axis is logarithmic: each grid line is 10x "
        "the one below.",
    ),
    ChartSpec(
        "capacity_spread",
        "Capacity in each repetition",
        plots.spread_chart,
        "Each dot is the capacity found in one repetition; the black bar is the median. Dots far "
        "apart mean a noisy measurement: trust a difference between architectures only when it "
        "is larger than this spread.",
    ),
    ChartSpec(
        "cost",
        "Cost per million predictions",
        plots.cost_chart,
        "Solid bars price the whole CPU budget running at capacity (provisioned). Hatched bars "
        "price only the CPU time and memory the requests used (consumed). The gap is headroom "
        "you pay for but do not use.",
    ),
    ChartSpec(
        "time_breakdown",
        "Where the time goes",
        plots.time_breakdown,
        "Median time a request spends inside the server, split into the model pipeline's own "
        "work (green), moving data between services (orange) and HTTP handling (grey).",
    ),
]


# --- Blocks shared by the Markdown and HTML renderers ------------------------------------------


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str
    style: str = ""  # "headline" or "note" change how it is shown


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    numeric_columns: set[int] = field(default_factory=set)
    row_styles: list[str] = field(default_factory=list)  # CSS classes per row, "" for none


@dataclass
class Chart:
    spec: ChartSpec
    # What `spec.draw` is given; None means the report's own results. Other reports (chaos,
    # sweeps) reuse these blocks and renderers with data of their own.
    data: Mapping[str, Any] | None = None


Block = Heading | Paragraph | Bullets | Table | Chart


# --- Number formatting -------------------------------------------------------------------------

MISSING = "n/a"


def _rps(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: float | None) -> str:
    if value is None:
        return MISSING
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _usd(value: float | None) -> str:
    if value is None:
        return MISSING
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:.2f}"
    return f"${value:.3g}" if value >= 1e-4 else f"${value:.2e}"


def _ratio(value: float | None) -> str:
    if value is None:
        return MISSING
    if value < 0.995:
        return f"{value:.2g}x"
    if value < 9.95:
        return f"{value:.1f}x"
    return f"{value:,.0f}x"


def _number(value: float | None, decimals: int = 2) -> str:
    return MISSING if value is None else f"{value:,.{decimals}f}"


def _percent(value: float | None, decimals: int = 0) -> str:
    return MISSING if value is None else f"{value:.{decimals}f}%"


def _join(words: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _display_name(name: str) -> str:
    """How an architecture reads inside a sentence."""
    return "the monolith" if name == "monolith" else name


def _vcpus(run: Mapping[str, Any]) -> str:
    count = run["cpu_budget"]["sut_vcpus"]
    return f"{count:g} vCPU" + ("s" if count > 1 else "")


# --- Content -----------------------------------------------------------------------------------


def headline(results: Mapping[str, Any]) -> str:
    """One sentence saying which architecture served more within the SLO, and at what cost."""
    run = results["run"]
    architectures = results["architectures"]
    slo_text = f"a p99 SLO of {run['slo_p99_ms']:g} ms"
    opening = f"On {_vcpus(run)}, "
    ranked = sorted(
        (name for name in architectures if architectures[name]["capacity_rps"] is not None),
        key=lambda name: -architectures[name]["capacity_rps"],
    )
    missed = [_display_name(name) for name in architectures if name not in ranked]

    if not ranked:
        if len(missed) == 1:
            return f"{opening}{missed[0]} did not meet {slo_text} at any tested rate."
        return f"{opening}no architecture ({_join(missed)}) met {slo_text} at any tested rate."

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
            f"{_display_name(best)} served {_rps(best_arch['capacity_rps'])} requests/s "
            f"within {slo_text}"
        )
        cost = best_arch["cost_per_million_usd"]["provisioned"]
        if cost is not None:
            clause += f", at {_usd(cost)} per million predictions (provisioned)"
    elif len(others) == 1:
        other = others[0]
        capacity_ratio = analysis.ratio(best_arch["capacity_rps"], architectures[other]["capacity_rps"])
        if _ratio(capacity_ratio) == "1.0x":
            clause = (
                f"{_display_name(best)} and {_display_name(other)} served about the same "
                f"requests/s within {slo_text} ({_rps(best_arch['capacity_rps'])} vs "
                f"{_rps(architectures[other]['capacity_rps'])})"
            )
        else:
            clause = (
                f"{_display_name(best)} served {_ratio(capacity_ratio)} the requests/s of "
                f"{_display_name(other)} within {slo_text}"
            )
            if cost_ratio(other) is not None:
                clause += f", at {_ratio(cost_ratio(other))} the provisioned cost per million predictions"
    else:
        comparisons = [
            f"{_ratio(analysis.ratio(best_arch['capacity_rps'], architectures[o]['capacity_rps']))} "
            f"{_display_name(o)}"
            for o in others
        ]
        clause = f"{_display_name(best)} served the most requests/s within {slo_text}: {_join(comparisons)}"
        cost_ratios = [cost_ratio(o) for o in others]
        if all(value is not None for value in cost_ratios):
            clause += (
                f", at {_join([_ratio(value) for value in cost_ratios])} their provisioned cost "
                f"per million predictions"
            )

    if missed:
        clause += f"; {_join(missed)} did not meet the SLO at any tested rate"
    return f"{opening}{clause}."


def _summary_table(results: Mapping[str, Any]) -> Table:
    rows = []
    for name, arch in results["architectures"].items():
        spread = arch["capacity_spread"]
        if spread["min"] is None:
            capacity_range = MISSING
        else:
            capacity_range = f"{_rps(spread['min'])}–{_rps(spread['max'])}"
        rows.append(
            [
                name,
                _rps(arch["capacity_rps"]),
                capacity_range,
                _ms(arch["p50_at_capacity_ms"]),
                _ms(arch["p99_at_capacity_ms"]),
                _usd(arch["cost_per_million_usd"]["provisioned"]),
                _usd(arch["cost_per_million_usd"]["consumed"]),
                _number(arch["cpu_seconds_per_1k"], 2),
                _number(arch["peak_rss_mb_total"], 0),
            ]
        )
    return Table(
        headers=[
            "Architecture",
            "Capacity (req/s, median)",
            "Capacity range (min–max)",
            "p50 at capacity (ms)",
            "p99 at capacity (ms)",
            "Provisioned $ per million",
            "Consumed $ per million",
            "CPU-seconds per 1k requests",
            "Peak memory, all processes (MB)",
        ],
        rows=rows,
        numeric_columns=set(range(1, 9)),
    )


def _capacity_definition(results: Mapping[str, Any]) -> str:
    run = results["run"]
    repetitions = run["repetitions"]
    return (
        f"Capacity is the highest tested request rate an architecture served while keeping p99 "
        f"latency at or below {run['slo_p99_ms']:g} ms, achieving at least "
        f"{analysis.MIN_ACHIEVED_FRACTION:.0%} of the offered rate and failing at most "
        f"{analysis.MAX_ERROR_RATE:.1%} of requests. It is the median over {repetitions} "
        f"repetition{'s' if repetitions != 1 else ''}; the range shows the lowest and highest."
    )


def _ratio_blocks(results: Mapping[str, Any]) -> list[Block]:
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
                _ratio(analysis.ratio(a["capacity_rps"], b["capacity_rps"])),
                _ratio(analysis.ratio(a["p99_at_capacity_ms"], b["p99_at_capacity_ms"])),
                _ratio(analysis.ratio(a["cost_per_million_usd"]["provisioned"],
                                      b["cost_per_million_usd"]["provisioned"])),
                _ratio(analysis.ratio(a["cost_per_million_usd"]["consumed"],
                                      b["cost_per_million_usd"]["consumed"])),
                _ratio(analysis.ratio(a["cpu_seconds_per_1k"], b["cpu_seconds_per_1k"])),
                _ratio(analysis.ratio(a["peak_rss_mb_total"], b["peak_rss_mb_total"])),
            ]
        )
    return [
        Paragraph(
            "Both architectures ran on the same machine, with the same CPU budget and the same "
            "load generator, one after the other. That makes these ratios fairer than comparing "
            "numbers from different runs or machines."
        ),
        Table(
            headers=[
                "Comparison",
                "Capacity",
                "p99 at capacity",
                "Provisioned cost",
                "Consumed cost",
                "CPU per request",
                "Peak memory",
            ],
            rows=rows,
            numeric_columns=set(range(1, 7)),
        ),
        Paragraph(
            "Read “2.0x” as “the first has twice as much as the second”. More capacity is "
            "better; for every other column lower is better.",
            style="note",
        ),
    ]


def _listed_stages(stages: Mapping[str, float]) -> str:
    return ", ".join(f"`{stage}` {_ms(ms)}" for stage, ms in stages.items())


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
        where = f"In {_display_name(name)}"
        if total == 0:
            sentences.append(f"{where}, no per-stage timings were recorded.")
            continue
        parts = [f"{_ms(compute)} ms of compute ({_listed_stages(groups['compute'])})"]
        if groups["hops"]:
            hop_detail = _listed_stages(groups["hops"])
            if compute > 0:
                hop_detail += f"; {_ratio(hops / compute)} the compute itself"
            parts.append(f"{_ms(hops)} ms of hop overhead ({hop_detail})")
            if hop_heaviest is None or hops / total > hop_heaviest[0]:
                hop_heaviest = (hops / total, name, hops, compute)
        parts.append(f"{_ms(other)} ms of HTTP handling and other work")
        sentence = f"{where}, a request spends {_ms(total)} ms inside the server: {_join(parts)}."
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
        where = f"In {_display_name(name)}, hops take {share:.0%} of the server time"
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
    return "; ".join(parts), " ".join(classes)


def _level_table(results: Mapping[str, Any], name: str) -> Table:
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
                _rps(level["target_rps"]),
                _rps(level["achieved_rps"]),
                _percent(100 * level["achieved_rps"] / level["target_rps"]),
                _ms(level["p50_ms"]),
                _ms(level["p99_ms"]),
                _percent(100 * level["error_rate"], 2),
                _number(level["cpu_seconds_per_1k"], 2),
                _percent(level["sut_cpu_percent"]),
                _percent(level["loadgen_cpu_percent"]),
                status,
            ]
        )
        styles.append(style)
    return Table(
        headers=[
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
        ],
        rows=rows,
        numeric_columns=set(range(11)),
        row_styles=styles,
    )


def _loadgen_bound_levels(results: Mapping[str, Any]) -> list[str]:
    found = []
    for name, arch in results["architectures"].items():
        for level in arch["levels"]:
            if level["loadgen_bound"]:
                found.append(
                    f"{name}, repetition {level['repetition']}, step {level['step']} "
                    f"(target {_rps(level['target_rps'])} req/s): load generator at "
                    f"{_percent(level['loadgen_cpu_percent'])} CPU"
                )
    return found


def _budget_sentence(run: Mapping[str, Any]) -> str:
    budget = run["cpu_budget"]
    sentence = (
        f"CPU budget: the system under test had {_vcpus(run)} and "
        f"{budget['sut_memory_gib']:g} GiB of memory"
    )
    if budget["sut_cpus"]:
        sentence += f", pinned to CPU {', '.join(map(str, budget['sut_cpus']))}"
    else:
        sentence += " (a CPU quota, not pinned to particular cores)"
    if budget["loadgen_cpus"]:
        sentence += f"; the load generator ran on CPU {', '.join(map(str, budget['loadgen_cpus']))}"
    return sentence + ". All costs assume exactly this budget."


def _caveats(results: Mapping[str, Any]) -> list[str]:
    run = results["run"]
    items = []
    if run["quick"]:
        items.append(
            "Quick mode: this run used short steps and few repetitions to check that everything "
            "works. Do not draw conclusions from its numbers; run the full benchmark for that."
        )
    items.append(_budget_sentence(run))
    bound = _loadgen_bound_levels(results)
    threshold = f"{analysis.LOADGEN_BOUND_CPU_PERCENT:g}%"
    if bound:
        items.append(
            f"Loadgen-bound steps (load generator at or above {threshold} of a core): "
            f"{'; '.join(bound)}. At these steps the load generator itself may have limited the "
            f"rate or added latency, so the server could be faster than measured there."
        )
    else:
        items.append(f"No step was loadgen-bound: the load generator stayed below {threshold} of a core.")
    for name, arch in results["architectures"].items():
        values = arch["capacity_spread"]["values"]
        missed = [str(index) for index, value in enumerate(values) if value is None]
        if missed and len(missed) < len(values):
            items.append(
                f"{name} met the SLO at no tested rate in repetition {', '.join(missed)}; its "
                f"median and range use the other repetitions only."
            )
    if run["repetitions"] == 1:
        items.append(
            "Only one repetition was run, so there is no spread: you cannot tell noise from a "
            "real difference."
        )
    items.append(
        "Tested rates are steps: the true capacity lies between the last step within the SLO "
        "and the next one."
    )
    items.append(
        "Provisioned cost = (vCPUs × vCPU-hour price + GiB × GiB-hour price) ÷ (capacity × 3,600 "
        "s) × 1,000,000. Consumed cost = CPU-seconds per request × 1,000,000 ÷ 3,600 × vCPU-hour "
        "price, plus peak memory (GiB) × CPU-seconds per request ÷ vCPUs × 1,000,000 ÷ 3,600 × "
        "GiB-hour price: the memory is charged for as long as the request's CPU work occupies "
        "the machine. Both use on-demand list prices, with no discounts, network, storage or "
        "load balancer."
    )
    profile = run["settings"].get("model_profile")
    workload = f"the “{profile}” model profile" if profile else "this model"
    items.append(
        f"These results are for this machine, {workload} and this software stack. Other "
        f"hardware, models, payloads or settings can change the numbers and even the ranking: "
        f"rerun before quoting them."
    )
    return items


def _setting_value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return MISSING
    return str(value)


def _machine_blocks(results: Mapping[str, Any]) -> list[Block]:
    run = results["run"]
    machine = run["machine"]
    budget = run["cpu_budget"]
    rows = [
        ["Label", run["label"]],
        ["Target", run["target"]],
        ["Started (UTC)", run["started_at"]],
        ["Finished (UTC)", run["finished_at"]],
        ["Duration", f"{run['duration_s']:,.0f} s"],
        ["Git commit", run["git_sha"] or "unknown"],
        ["Quick mode", "yes" if run["quick"] else "no"],
        ["Repetitions", str(run["repetitions"])],
        ["SLO", f"p99 ≤ {run['slo_p99_ms']:g} ms"],
        ["Server budget", f"{_vcpus(run)}, {budget['sut_memory_gib']:g} GiB"],
        ["Server CPUs", _setting_value(budget["sut_cpus"])],
        ["Load-generator CPUs", _setting_value(budget["loadgen_cpus"])],
        ["CPU model", machine["cpu_model"]],
        ["Logical cores", str(machine["logical_cores"])],
        ["Memory", f"{machine['memory_gib']:g} GiB"],
        ["Operating system", machine["os"]],
        ["Python", machine["python"]],
    ]
    shown = {"cpu_model", "logical_cores", "memory_gib", "os", "python", "libraries"}
    rows += [[key, _setting_value(value)] for key, value in machine.items() if key not in shown]
    blocks: list[Block] = [Table(["Run and machine", "Value"], rows)]
    settings = run["settings"]
    if settings:
        blocks.append(Table(["Setting", "Value"],
                            [[key, _setting_value(value)] for key, value in settings.items()]))
    libraries = machine["libraries"]
    if libraries:
        blocks.append(Table(["Library", "Version"],
                            [[key, _setting_value(value)] for key, value in sorted(libraries.items())]))
    return blocks


def _knob_blocks(results: Mapping[str, Any]) -> list[Block]:
    """Every knob with its value and default; old results without knobs show none."""
    recorded = results["run"].get("knobs")
    if not recorded:
        return []
    rows, styles = [], []
    for knob in knobs.KNOBS:
        if knob.key not in recorded:
            continue
        changed = not knob.is_default(recorded[knob.key])
        rows.append([knob.variable, knob.show(recorded[knob.key]), knob.show(knob.default), knob.summary])
        styles.append("capacity" if changed else "")  # the bold row style
    return [
        Table(["Knob (make variable)", "Value", "Default", "What it sets"], rows, row_styles=styles),
        Paragraph("Knobs in bold differ from their default; “What this run varies” explains them. "
                  "`make help` and the README list every knob.", style="note"),
    ]


def _hit_rate(arch: Mapping[str, Any]) -> str:
    cache = arch.get("cache")
    if not cache or cache["hit_rate"] is None:
        return MISSING
    return _percent(100 * cache["hit_rate"], 1)


def _cache_table(results: Mapping[str, Any]) -> Table | None:
    """Hit rate next to what it bought, per architecture; None when no cache was on."""
    architectures = results["architectures"]
    placed = {name: (arch.get("applied") or {}).get("cache_location") for name, arch in architectures.items()}
    if not any(placed.values()) and not any(arch.get("cache") for arch in architectures.values()):
        return None
    rows = []
    for name, arch in architectures.items():
        cache = arch.get("cache") or {}
        lookups = cache.get("hits", 0) + cache.get("misses", 0)
        rows.append([
            name,
            placed[name] or MISSING,
            _hit_rate(arch),
            f"{lookups:,}" if cache else MISSING,
            _rps(arch["capacity_rps"]),
            _ms(arch["p99_at_capacity_ms"]),
            _usd(arch["cost_per_million_usd"]["provisioned"]),
            _usd(arch["cost_per_million_usd"]["consumed"]),
        ])
    return Table(["Architecture", "Cache sits at", "Hit rate", "Lookups", "Capacity (req/s)",
                  "p99 at capacity (ms)", "Provisioned $ per million", "Consumed $ per million"],
                 rows, numeric_columns={2, 3, 4, 5, 6, 7})


def _experiment_blocks(results: Mapping[str, Any]) -> list[Block]:
    """One paragraph per knob away from its default, and the cache's numbers if it was on."""
    paragraphs = knobs.explanations(results)
    if not paragraphs:
        return []
    blocks: list[Block] = [Heading(2, "What this run varies")]
    for knob, text in paragraphs:
        value = results["run"]["knobs"][knob.key]
        blocks += [Heading(3, f"{knob.variable}={knob.show(value)}"), Paragraph(text)]
    table = _cache_table(results)
    if table is not None:
        blocks += [
            Heading(3, "Cache hits"),
            table,
            Paragraph("Hit rate = hits ÷ (hits + misses) over the load steps (not the warm-up probe), "
                      "counted by the servers' own cache counters (`/metrics`) or, "
                      "failing those, by the `cache` entries of the responses' Server-Timing header. "
                      "“n/a”: the servers reported no lookups.", style="note"),
        ]
    blocks.append(Paragraph(
        "One run shows one setting. To see a knob's effect, compare with a run at its default, or let "
        "`make bench-sweep SWEEP=<knob>` run several values and mark where the winner changes.", style="note"))
    return blocks


def _prices_blocks(results: Mapping[str, Any]) -> list[Block]:
    prices = results["run"]["prices"]
    return [
        Table(
            ["Price", "USD per hour"],
            [["One vCPU", f"${prices['vcpu_hour_usd']:g}"],
             ["One GiB of memory", f"${prices['gib_hour_usd']:g}"]],
            numeric_columns={1},
        ),
        Paragraph(f"Source: {prices['source']}. Retrieved {prices['retrieved']}."),
        Paragraph(
            "Costs use the prices recorded with this run. To price another cloud or region, edit "
            "`benchmarks/prices.json` before the next run.",
            style="note",
        ),
    ]


def _title(results: Mapping[str, Any]) -> str:
    return "Serving benchmark: " + " vs ".join(results["architectures"])


def _summary_blocks(results: Mapping[str, Any]) -> list[Block]:
    return [
        Paragraph(headline(results), style="headline"),
        Heading(2, "Summary"),
        _summary_table(results),
        Paragraph(_capacity_definition(results), style="note"),
        Heading(2, "Comparing architectures in this run"),
        *_ratio_blocks(results),
    ]


def _build_report(results: Mapping[str, Any]) -> list[Block]:
    run = results["run"]
    intro = (
        f"Run “{run['label']}”, started {run['started_at']} on {run['machine']['cpu_model']} "
        f"({run['target']} target)."
    )
    if run["quick"]:
        intro += " This was a quick run: see the caveats before using its numbers."
    blocks: list[Block] = [Heading(1, _title(results)), Paragraph(intro), *_summary_blocks(results)]
    blocks += _experiment_blocks(results)
    blocks.append(Heading(2, "Charts"))
    for spec in CHARTS:
        blocks += [Heading(3, spec.title), Chart(spec), Paragraph(spec.how_to_read, style="note")]
    blocks += [Heading(2, "Where the time goes"), Paragraph(where_the_time_goes(results))]
    blocks.append(Heading(2, "Every load level"))
    blocks.append(
        Paragraph(
            "One row per step of each repetition, in the order they ran. “(capacity)” marks the "
            "step that set that repetition's capacity. “beyond capacity” says which rule the step "
            "broke. “loadgen-bound” means the load generator used at least "
            f"{analysis.LOADGEN_BOUND_CPU_PERCENT:g}% of a core, so it may have been the "
            "bottleneck rather than the server.",
            style="note",
        )
    )
    for name in results["architectures"]:
        blocks += [Heading(3, name), _level_table(results, name)]
    blocks += [Heading(2, "Caveats"), Bullets(_caveats(results))]
    blocks += [Heading(2, "Machine and settings"), *_machine_blocks(results), *_knob_blocks(results)]
    blocks += [Heading(2, "Prices"), *_prices_blocks(results)]
    return blocks


# --- Markdown ----------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.headers) + " |"]
    lines.append(
        "|" + "|".join("---:" if i in table.numeric_columns else "---" for i in range(len(table.headers))) + "|"
    )
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown_blocks(blocks: Sequence[Block], chart_dir: str) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            if block.style == "headline":
                parts.append(f"> **{block.text}**")
            elif block.style == "note":
                parts.append(f"*{block.text}*")
            else:
                parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(_md_table(block))
        elif isinstance(block, Chart):
            parts.append(f"![{block.spec.title}]({chart_dir}/{block.spec.key}.png)")
    return "\n\n".join(parts) + "\n"


def render_markdown(results: Mapping[str, Any], chart_dir: str = CHARTS_DIR) -> str:
    """The full report as Markdown; charts are referenced as ``{chart_dir}/<key>.png``."""
    return render_markdown_blocks(_build_report(results), chart_dir)


def summary_markdown(results: Mapping[str, Any]) -> str:
    """Headline, summary table and ratios as Markdown (used by the notebook)."""
    return render_markdown_blocks(_summary_blocks(results), CHARTS_DIR)


# --- HTML --------------------------------------------------------------------------------------

_CSS = """
:root { --ink: #1a1a1a; --muted: #555; --rule: #d0d4da; --accent: #0072B2; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 20px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 2rem 2.5rem 4rem; }
h1 { font-size: 2.2rem; line-height: 1.2; margin: 0 0 0.5rem; }
h2 { font-size: 1.6rem; margin: 2.8rem 0 0.8rem; padding-bottom: 0.3rem; border-bottom: 3px solid var(--rule); }
h3 { font-size: 1.25rem; margin: 2rem 0 0.6rem; }
p { margin: 0.6rem 0; max-width: 60em; }
p.headline { font-size: 1.45rem; font-weight: 650; line-height: 1.4; margin: 1.5rem 0;
  padding: 1rem 1.4rem; border-left: 8px solid var(--accent); background: #eef5fb; }
p.note { color: var(--muted); font-size: 0.9rem; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.9em;
  background: #f2f3f5; padding: 0.05em 0.3em; border-radius: 4px; }
.table-wrap { overflow-x: auto; margin: 0.8rem 0; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { padding: 0.45rem 0.8rem; border-bottom: 1px solid var(--rule); vertical-align: top; }
th { text-align: left; background: #f4f6f8; border-bottom: 2px solid #9aa3ad; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.beyond td { color: #777; }
tr.capacity td { font-weight: 650; }
tr.loadgen td { background: #fff4cc; }
figure { margin: 1rem 0 0.4rem; }
figure img { width: 100%; height: auto; border: 1px solid var(--rule); border-radius: 6px; }
ul { padding-left: 1.3rem; max-width: 60em; }
li { margin: 0.45rem 0; }
@media print { body { font-size: 12pt; } main { max-width: none; padding: 0; } }
"""


def _inline_html(text: str) -> str:
    """Escape text; `backticks` become <code>."""
    pieces = text.split("`")
    return "".join(
        f"<code>{html.escape(piece)}</code>" if index % 2 else html.escape(piece)
        for index, piece in enumerate(pieces)
    )


def _html_table(table: Table) -> str:
    def cell(tag: str, index: int, text: str) -> str:
        css = ' class="num"' if index in table.numeric_columns else ""
        return f"<{tag}{css}>{_inline_html(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(table.headers))
    body = []
    for row_index, row in enumerate(table.rows):
        style = table.row_styles[row_index] if row_index < len(table.row_styles) else ""
        css = f' class="{html.escape(style)}"' if style else ""
        body.append(f"<tr{css}>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>")
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _html_chart(spec: ChartSpec, results: Mapping[str, Any]) -> str:
    svg = plots.figure_to_svg(spec.draw(results))
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(spec.title)} chart" '
        f'src="data:image/svg+xml;base64,{encoded}"></figure>'
    )


def render_html(results: Mapping[str, Any]) -> str:
    """The full report as one self-contained HTML page (inline CSS, charts embedded as SVG)."""
    return render_html_page(_build_report(results), _title(results), results)


def render_html_page(blocks: Sequence[Block], title: str, results: Mapping[str, Any]) -> str:
    """Any list of blocks as one self-contained page; charts without data of their own draw `results`."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            css = f' class="{block.style}"' if block.style else ""
            parts.append(f"<p{css}>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_html_table(block))
        elif isinstance(block, Chart):
            parts.append(_html_chart(block.spec, results if block.data is None else block.data))
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


# --- Files and command line --------------------------------------------------------------------


def write_chart_pngs(charts: Iterable[tuple[ChartSpec, Mapping[str, Any]]], directory: Path) -> list[Path]:
    """Draw each chart from its data into `directory/<key>.png` (every report's charts/ folder)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec, data in charts:
        path = directory / f"{spec.key}.png"
        path.write_bytes(plots.figure_to_png_bytes(spec.draw(data)))
        written.append(path)
    return written


def write_report(run_dir: str | Path) -> list[Path]:
    """Validate ``run_dir/results.json`` and write report.md, report.html and charts/*.png.

    Returns the paths written. Raises ResultsValidationError if the results do not match
    the schema, so a broken run never produces a plausible-looking report.
    """
    run_path = Path(run_dir)
    results = json.loads((run_path / RESULTS_FILE).read_text(encoding="utf-8"))
    analysis.validate_results(results)
    written = write_chart_pngs(((spec, results) for spec in CHARTS), run_path / CHARTS_DIR)
    markdown_file = run_path / "report.md"
    markdown_file.write_text(render_markdown(results, CHARTS_DIR), encoding="utf-8")
    html_file = run_path / "report.html"
    html_file.write_text(render_html(results), encoding="utf-8")
    return [markdown_file, html_file, *written]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Write report.md, report.html and charts/ for one benchmark run.",
    )
    parser.add_argument("run_dir", help="directory containing results.json")
    arguments = parser.parse_args(argv)
    try:
        paths = write_report(arguments.run_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except analysis.ResultsValidationError as error:
        print(f"error: {arguments.run_dir}/{RESULTS_FILE} is not valid: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
