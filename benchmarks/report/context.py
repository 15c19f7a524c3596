"""What a reader needs around the numbers: what the run varied, caveats, machine, knobs, prices.

`machine_blocks`, `knob_blocks` and `prices_blocks` read only ``results["run"]``, so every report
built on a bench run (the sweep's too) describes its settings the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from benchmarks import analysis, knobs
from benchmarks.report.floors import floor_blocks
from benchmarks.report.tables import cache_table
from benchmarks.reporting.document import Block, Heading, Paragraph, Table
from benchmarks.reporting.text import MISSING, percent, rps


def vcpus(run: Mapping[str, Any]) -> str:
    """The budget as a phrase: "1 vCPU", "2 vCPUs"."""
    count = run["cpu_budget"]["sut_vcpus"]
    return f"{count:g} vCPU" + ("s" if count > 1 else "")


def experiment_blocks(results: Mapping[str, Any]) -> list[Block]:
    """One paragraph per knob away from its default, and the cache's numbers if it was on."""
    paragraphs = knobs.explanations(results)
    if not paragraphs:
        return []
    blocks: list[Block] = [Heading(2, "What this run varies")]
    for knob, text in paragraphs:
        value = results["run"]["knobs"][knob.key]
        blocks += [Heading(3, f"{knob.variable}={knob.show(value)}"), Paragraph(text)]
    table = cache_table(results)
    if table is not None:
        blocks += [
            Heading(3, "Cache hits"),
            table,
            Paragraph(
                "Hit rate = hits ÷ (hits + misses) over the load steps (not the warm-up "
                "probe), counted by the servers' own cache counters (`/metrics`) or, "
                "failing those, by the `cache` entries of the responses' Server-Timing "
                "header. “n/a”: the servers reported no lookups.",
                style="note",
            ),
        ]
    blocks.append(
        Paragraph(
            "One run shows one setting. To see a knob's effect, compare with a run at its default, "
            "or let `make bench-sweep SWEEP=<knob>` run several values and mark where the winner "
            "changes.",
            style="note",
        )
    )
    return blocks


def _loadgen_bound_levels(results: Mapping[str, Any]) -> list[str]:
    found = []
    for name, arch in results["architectures"].items():
        for level in arch["levels"]:
            if level["loadgen_bound"]:
                found.append(
                    f"{name}, repetition {level['repetition']}, step {level['step']} "
                    f"(target {rps(level['target_rps'])} req/s): load generator at "
                    f"{percent(level['loadgen_cpu_percent'])} CPU"
                )
    return found


def _few_request_levels(results: Mapping[str, Any]) -> list[str]:
    """Per architecture, the steps whose p99 is their slowest request, as "name: steps ..."."""
    found = []
    for name, arch in results["architectures"].items():
        steps = [
            f"{level['repetition']}.{level['step']}"
            for level in arch["levels"]
            if analysis.p99_is_the_slowest_request(level)
        ]
        if steps:
            found.append(f"{name} {len(steps)} of {len(arch['levels'])} (steps {', '.join(steps)})")
    return found


def _budget_sentence(run: Mapping[str, Any]) -> str:
    budget = run["cpu_budget"]
    sentence = (
        f"CPU budget: the system under test had {vcpus(run)} and "
        f"{budget['sut_memory_gib']:g} GiB of memory"
    )
    if budget["sut_cpus"]:
        sentence += f", pinned to CPU {', '.join(map(str, budget['sut_cpus']))}"
    else:
        sentence += " (a CPU quota, not pinned to particular cores)"
    if budget["loadgen_cpus"]:
        sentence += f"; the load generator ran on CPU {', '.join(map(str, budget['loadgen_cpus']))}"
    return sentence + ". All costs assume exactly this budget."


def caveats(results: Mapping[str, Any]) -> list[str]:
    """What limits this run's numbers: quick mode, the budget, loadgen-bound steps, spread."""
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
        items.append(
            f"No step was loadgen-bound: the load generator stayed below {threshold} of a core."
        )
    few = _few_request_levels(results)
    if few:
        items.append(
            f"Steps that answered fewer than {analysis.MIN_P99_SAMPLES} requests, so their p99 "
            f"is their slowest request and one slow request decides them (repetition.step): "
            f"{'; '.join(few)}. Longer steps (STEP_SECONDS) give them a real p99."
        )
    for name, arch in results["architectures"].items():
        values = arch["capacity_spread"]["values"]
        missed = [str(index) for index, value in enumerate(values) if value is None]
        if missed and len(missed) < len(values):
            items.append(
                f"{name} met the SLO at no tested rate in repetition {', '.join(missed)}; its "
                f"median and range use the other repetitions only."
            )
    with_intervals = any(a.get("capacity_interval") for a in results["architectures"].values())
    if run["repetitions"] == 1 and with_intervals:
        items.append(
            "Only one repetition was run: the capacity intervals come from resampling each "
            "step's requests, which catches a noisy tail but not a slow drift of the machine "
            "between runs. Repetitions (REPS) catch that too."
        )
    elif run["repetitions"] == 1:
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


def machine_blocks(results: Mapping[str, Any]) -> list[Block]:
    """The run, the machine, the settings and the library versions, as tables."""
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
        ["Server budget", f"{vcpus(run)}, {budget['sut_memory_gib']:g} GiB"],
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
        blocks.append(
            Table(
                ["Setting", "Value"],
                [[key, _setting_value(value)] for key, value in settings.items()],
            )
        )
    libraries = machine["libraries"]
    if libraries:
        blocks.append(
            Table(
                ["Library", "Version"],
                [[key, _setting_value(value)] for key, value in sorted(libraries.items())],
            )
        )
    return blocks


def knob_blocks(results: Mapping[str, Any]) -> list[Block]:
    """Every knob with its value and default; old results without knobs show none."""
    recorded = results["run"].get("knobs")
    if not recorded:
        return []
    rows, styles = [], []
    for knob in knobs.KNOBS:
        if knob.key not in recorded:
            continue
        changed = not knob.is_default(recorded[knob.key])
        rows.append(
            [knob.variable, knob.show(recorded[knob.key]), knob.show(knob.default), knob.summary]
        )
        styles.append("capacity" if changed else "")  # the bold row style
    return [
        Table(
            ["Knob (make variable)", "Value", "Default", "What it sets"], rows, row_styles=styles
        ),
        Paragraph(
            "Knobs in bold differ from their default; “What this run varies” explains "
            "them. `make help` and the README list every knob.",
            style="note",
        ),
    ]


def prices_blocks(results: Mapping[str, Any]) -> list[Block]:
    """The prices the costs were computed with, and where they came from."""
    prices = results["run"]["prices"]
    return [
        Table(
            ["Price", "USD per hour"],
            [
                ["One vCPU", f"${prices['vcpu_hour_usd']:g}"],
                ["One GiB of memory", f"${prices['gib_hour_usd']:g}"],
            ],
            numeric_columns={1},
        ),
        Paragraph(f"Source: {prices['source']}. Retrieved {prices['retrieved']}."),
        Paragraph(
            "Costs use the prices recorded with this run. To price another cloud or region, edit "
            "`benchmarks/prices.json` before the next run.",
            style="note",
        ),
    ]


def settings_blocks(results: Mapping[str, Any]) -> list[Block]:
    """The report's closing sections: the floors (when measured), "Machine and settings", "Prices"."""
    return [
        *floor_blocks(results),
        Heading(2, "Machine and settings"),
        *machine_blocks(results),
        *knob_blocks(results),
        Heading(2, "Prices"),
        *prices_blocks(results),
    ]
