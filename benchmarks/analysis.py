"""The arithmetic behind the benchmark's verdicts: SLO checks, capacity, cost and spreads.

Everything here is a pure function of plain data (the dicts of ``results.json``), so the
bench, the report and the notebook reach the same numbers, and tests can check them by hand.

Definitions
-----------
A load level (one step of one repetition) is **within the SLO** when all three hold:

* ``achieved_rps >= 0.95 * target_rps`` - the server kept up with the offered load;
* ``p99_ms <= slo_p99_ms`` - the slowest 1% of requests were still fast enough;
* ``error_rate <= 0.001`` - at most 1 request in 1,000 failed.

Otherwise the level is **beyond capacity**. A level with no completed request (``p99_ms`` is
null) is beyond capacity.

The **capacity** of a repetition is the highest ``target_rps`` among its levels that are within
the SLO, or None when none is. Tested rates are discrete steps, so the true capacity lies between
that step and the next one.

A level is **loadgen-bound** when the load generator used at least 85% of a core
(``LOADGEN_BOUND_CPU_PERCENT``): the client, not the server, may then have limited the rate.

Cost per million predictions (USD)
----------------------------------
Prices are per hour: ``vcpu_hour_usd`` per vCPU and ``gib_hour_usd`` per GiB of memory.

Provisioned - rent the whole CPU budget and run it at capacity::

    provisioned = (sut_vcpus * vcpu_hour_usd + sut_memory_gib * gib_hour_usd)
                  / (capacity_rps * 3600) * 1e6

Consumed - pay only for what the requests used::

    cpu_s   = cpu_seconds_per_1k / 1000            # CPU-seconds per request
    rss_gib = peak_rss_mb_total / 1024             # MB here are MiB, as psutil reports
    consumed = cpu_s * 1e6 / 3600 * vcpu_hour_usd
             + rss_gib * (cpu_s / sut_vcpus) * 1e6 / 3600 * gib_hour_usd

The memory term charges the services' peak resident memory for as long as a request's CPU work
occupies the machine: ``sut_vcpus`` cores work in parallel, so one CPU-second keeps the whole
machine's memory busy for ``1 / sut_vcpus`` seconds. With this definition a machine sized to
exactly the peak RSS and kept 100% busy costs the same either way; the gap between provisioned
and consumed is the idle CPU headroom and unused memory you pay for to stay within the SLO.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
PRICES_PATH = Path(__file__).with_name("prices.json")

MIN_ACHIEVED_FRACTION = 0.95
# The fewest answered requests whose nearest-rank p99 is not simply the slowest one.
MIN_P99_SAMPLES = 100
MAX_ERROR_RATE = 0.001
LOADGEN_BOUND_CPU_PERCENT = 85.0

SECONDS_PER_HOUR = 3600.0
PREDICTIONS_PER_MILLION = 1_000_000.0
MIB_PER_GIB = 1024.0

HOP_STAGE_PREFIX = "hop_"
HTTP_OTHER_STAGE = "http_other"


class ResultsValidationError(ValueError):
    """A results document does not match results.schema.json; ``errors`` lists every problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = "\n  ".join(errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} schema error(s):\n  {shown}{more}")


# --- SLO and capacity -----------------------------------------------------------------------


def beyond_capacity_reasons(level: Mapping[str, Any], slo_p99_ms: float) -> list[str]:
    """Why a level is beyond capacity, as short human-readable phrases; empty if within the SLO."""
    reasons = []
    target = level["target_rps"]
    achieved = level["achieved_rps"]
    if achieved < MIN_ACHIEVED_FRACTION * target:
        reasons.append(f"achieved {achieved / target:.0%} of target")
    p99 = level.get("p99_ms")
    if p99 is None:
        reasons.append("no request completed")
    elif p99 > slo_p99_ms:
        reasons.append(f"p99 {p99:g} ms > SLO {slo_p99_ms:g} ms")
    if level["error_rate"] > MAX_ERROR_RATE:
        reasons.append(f"error rate {level['error_rate']:.2%} > {MAX_ERROR_RATE:.1%}")
    return reasons


def p99_is_the_slowest_request(level: Mapping[str, Any]) -> bool:
    """Whether a level answered too few requests for a p99: with under `MIN_P99_SAMPLES`, the
    nearest-rank p99 is the slowest request, so one slow request decides the level."""
    return 0 < level["requests"] - level["failures"] < MIN_P99_SAMPLES


def level_within_slo(level: Mapping[str, Any], slo_p99_ms: float) -> bool:
    """True when the level kept up with its target rate, met the p99 SLO and had few errors."""
    return not beyond_capacity_reasons(level, slo_p99_ms)


def capacity_rps(levels: Iterable[Mapping[str, Any]], slo_p99_ms: float) -> float | None:
    """Highest target rate whose level is within the SLO, or None if no level is.

    Pass the levels of one repetition; ``capacities_by_repetition`` splits a whole run.
    """
    within = [level["target_rps"] for level in levels if level_within_slo(level, slo_p99_ms)]
    return max(within) if within else None


def capacities_by_repetition(
    levels: Iterable[Mapping[str, Any]], slo_p99_ms: float
) -> dict[int, float | None]:
    """Capacity of each repetition, keyed by repetition number in ascending order."""
    grouped: dict[int, list[Mapping[str, Any]]] = {}
    for level in levels:
        grouped.setdefault(level["repetition"], []).append(level)
    return {rep: capacity_rps(grouped[rep], slo_p99_ms) for rep in sorted(grouped)}


def median_at_capacity(
    levels: Iterable[Mapping[str, Any]], slo_p99_ms: float, field: str
) -> float | None:
    """Median over repetitions of ``field`` (e.g. "p99_ms") at each repetition's capacity level.

    Repetitions without a capacity, or whose capacity level lacks the field, are skipped.
    """
    levels = list(levels)
    values = []
    for repetition, capacity in capacities_by_repetition(levels, slo_p99_ms).items():
        for level in levels:
            if (
                level["repetition"] == repetition
                and level["target_rps"] == capacity
                and level_within_slo(level, slo_p99_ms)
                and level.get(field) is not None
            ):
                values.append(level[field])
                break
    return statistics.median(values) if values else None


def is_loadgen_bound(loadgen_cpu_percent: float, loadgen_cores: float = 1.0) -> bool:
    """True when the load generator ran hot enough to be the bottleneck itself.

    ``loadgen_cpu_percent`` uses psutil's convention (100 = one full core). One Locust process
    is single-threaded, so it saturates at one core whatever the machine has; pass
    ``loadgen_cores`` when running that many worker processes.
    """
    return loadgen_cpu_percent >= LOADGEN_BOUND_CPU_PERCENT * loadgen_cores


def median_cpu_seconds_per_1k(
    levels: Sequence[Mapping[str, Any]], slo_p99_ms: float
) -> float | None:
    """Median CPU-seconds per 1,000 requests over levels within the SLO (all levels if none)."""
    within = [level for level in levels if level_within_slo(level, slo_p99_ms)]
    chosen = within or levels
    values = [level["cpu_seconds_per_1k"] for level in chosen]
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def summarise_repetitions(values: Sequence[float | None]) -> dict[str, Any]:
    """Median, min and max of per-repetition values, plus the values themselves.

    None marks a repetition that produced no value (e.g. met the SLO at no tested rate). It is
    kept in ``values`` so readers can see it, and left out of median/min/max, which are None
    only when every value is None.
    """
    known = [value for value in values if value is not None]
    if not known:
        return {"median": None, "min": None, "max": None, "values": list(values)}
    return {
        "median": statistics.median(known),
        "min": min(known),
        "max": max(known),
        "values": list(values),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


# --- Cost -------------------------------------------------------------------------------------


def provisioned_cost_per_million(
    capacity: float | None,
    sut_vcpus: float,
    sut_memory_gib: float,
    vcpu_hour_usd: float,
    gib_hour_usd: float,
) -> float | None:
    """USD per million predictions when renting the whole budget and serving at capacity."""
    if capacity is None or capacity <= 0:
        return None
    budget_per_hour = sut_vcpus * vcpu_hour_usd + sut_memory_gib * gib_hour_usd
    return budget_per_hour / (capacity * SECONDS_PER_HOUR) * PREDICTIONS_PER_MILLION


def consumed_cost_per_million(
    cpu_seconds_per_1k: float | None,
    vcpu_hour_usd: float,
    peak_rss_mb: float = 0.0,
    gib_hour_usd: float = 0.0,
    sut_vcpus: float = 1.0,
) -> float | None:
    """USD per million predictions for the CPU time and memory the requests actually used.

    See the module docstring for the formula and why memory is divided by ``sut_vcpus``.
    """
    if cpu_seconds_per_1k is None:
        return None
    cpu_seconds_per_request = cpu_seconds_per_1k / 1000.0
    cpu_hours = cpu_seconds_per_request * PREDICTIONS_PER_MILLION / SECONDS_PER_HOUR
    peak_rss_gib = peak_rss_mb / MIB_PER_GIB
    memory_gib_hours = peak_rss_gib * cpu_hours / sut_vcpus
    return cpu_hours * vcpu_hour_usd + memory_gib_hours * gib_hour_usd


def cost_per_million(
    capacity: float | None,
    cpu_seconds_per_1k: float | None,
    peak_rss_mb_total: float,
    cpu_budget: Mapping[str, Any],
    prices: Mapping[str, Any],
) -> dict[str, float | None]:
    """Both costs for one architecture, shaped like ``cost_per_million_usd`` in results.json."""
    return {
        "provisioned": provisioned_cost_per_million(
            capacity,
            cpu_budget["sut_vcpus"],
            cpu_budget["sut_memory_gib"],
            prices["vcpu_hour_usd"],
            prices["gib_hour_usd"],
        ),
        "consumed": consumed_cost_per_million(
            cpu_seconds_per_1k,
            prices["vcpu_hour_usd"],
            peak_rss_mb=peak_rss_mb_total,
            gib_hour_usd=prices["gib_hour_usd"],
            sut_vcpus=cpu_budget["sut_vcpus"],
        ),
    }


# --- Where the time goes ----------------------------------------------------------------------


def split_stages(stages_ms: Mapping[str, float | None]) -> dict[str, dict[str, float]]:
    """Group per-request stage timings into compute stages, hop overheads and HTTP/other.

    Any key that is neither a hop nor ``http_other`` counts as compute, so new pipeline stages
    show up without code changes. Null timings are dropped.
    """
    groups: dict[str, dict[str, float]] = {"compute": {}, "hops": {}, "other": {}}
    for name, milliseconds in stages_ms.items():
        if milliseconds is None or (isinstance(milliseconds, float) and math.isnan(milliseconds)):
            continue
        if name.startswith(HOP_STAGE_PREFIX):
            groups["hops"][name] = milliseconds
        elif name == HTTP_OTHER_STAGE:
            groups["other"][name] = milliseconds
        else:
            groups["compute"][name] = milliseconds
    return groups


# --- Files and validation ---------------------------------------------------------------------


def load_schema() -> dict[str, Any]:
    """The results.json schema shipped next to this module."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def schema_errors(schema: Mapping[str, Any], doc: Any) -> list[str]:
    """Every violation of `schema` in `doc`, as 'json.path: message' strings, in document order."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = sorted(validator.iter_errors(doc), key=lambda error: list(error.absolute_path))
    return [f"{error.json_path}: {error.message}" for error in problems]


def results_validation_errors(doc: Any) -> list[str]:
    """Every schema violation in a results document, as 'json.path: message' strings."""
    return schema_errors(load_schema(), doc)


def validate_results(doc: Any) -> None:
    """Raise ResultsValidationError unless ``doc`` matches results.schema.json."""
    errors = results_validation_errors(doc)
    if errors:
        raise ResultsValidationError(errors)


def load_prices(path: str | Path | None = None) -> dict[str, Any]:
    """Read a prices file (default: benchmarks/prices.json) and check its required fields."""
    prices_path = Path(path) if path is not None else PRICES_PATH
    prices = json.loads(prices_path.read_text(encoding="utf-8"))
    schema = load_schema()
    prices_schema = {"$defs": schema["$defs"], "$ref": "#/$defs/prices"}
    errors = schema_errors(prices_schema, prices)
    if errors:
        raise ResultsValidationError([f"{prices_path}: {error}" for error in errors])
    return prices
