"""Scenario 3, "one model server batching for everyone": the forest under high concurrency.

A random forest costs a lot per call and little per row, so answering several requests in one
call (micro-batching, `servinglab/serving/batching.py`) saves CPU. In microservices the inference
service batches calls from every gateway worker; a monolith worker can only batch the requests
its own threads hold at that moment. Whether that pays more than the hops cost is measured here.

1. Each side's candidates (gunicorn workers x threads, gRPC threads, batch wait; with BATCHING on,
   plus the monolith without batching) get a short closed-loop probe at the same CPU budget; the
   fastest is that side's best configuration, and the report states it with every candidate's
   figure. QUICK runs skip this search and take each side's first candidate (the BATCHING knob's
   own defaults): every start-up of the microservices' processes on one core costs more than a
   probe.
2. Each best configuration is deployed once: a closed-loop probe (which also warms it up), then
   the bench's own rate search (`ladder.climb`, one Locust step per rung through
   `loadgen.run_locust` and `results.summarise_step`) over offered loads that both sides share
   (fractions of the faster probe; in QUICK of the monolith's), scraping ``/metrics`` around each
   step for the histogram of requests per model call (`lab_batch_requests`): the mechanism.
3. Rows, at the offered loads both sides ran: capacity at the SLO, provisioned cost per million,
   CPU per request at the highest load both met the SLO, and requests per model call; the
   crossover is the offered load from which the other side's CPU per request is lower, outside
   the noise band of a single run.

One scenario in one module: its configuration search, its load sweep and the reading of the batch
histograms are three steps of one measurement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks import analysis, bench, ladder
from benchmarks.measure import interference, loadgen, metrics, targets
from benchmarks.results import StepResult, summarise_step
from benchmarks.scenarios import base
from lab.supervisor import Supervisor

PROFILE = "forest"
BATCH_HISTOGRAM = "lab_batch_requests_bucket"  # requests answered by one model call
# QUICK starts from three rungs and lets the bisection find the knee: every step costs its length
# plus ~2 s (Locust start-up, one settled /metrics scrape), and the whole QUICK `make scenarios`
# has 6 minutes. The lowest rung is low enough for microservices to meet the SLO too (the
# monolith's probe, which sets the rungs, varied 470-750 req/s here), so the CPU per request and
# the batch sizes have a load to be compared at.
QUICK_FRACTIONS = (0.25, 0.55, 0.85)
FRACTIONS = (0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.1)


@dataclass(frozen=True)
class Candidate:
    """One configuration of one side: bench knobs plus server settings."""

    label: str
    knobs: Mapping[str, str]
    settings: Mapping[str, Any] = field(default_factory=dict)
    quick: bool = True  # also tried in QUICK runs

    def describe(self) -> str:
        parts = [f"{key}={value}" for key, value in {**self.knobs, **self.settings}.items()]
        return ", ".join(parts)


BATCH = {"BATCHING": "on", "BATCH_MAX_SIZE": "32", "BATCH_MAX_WAIT_MS": "2"}
CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    "monolith": (
        Candidate("2 workers x 8 threads, batching", BATCH, {"HTTP_WORKERS": 2, "HTTP_THREADS": 8}),
        Candidate(
            "1 worker x 16 threads, batching", BATCH, {"HTTP_WORKERS": 1, "HTTP_THREADS": 16}
        ),
        Candidate("2 workers x 1 thread, no batching", {}, {"HTTP_WORKERS": 2}, quick=False),
        Candidate(
            "2 workers x 8 threads, batching, wait 5 ms",
            {**BATCH, "BATCH_MAX_WAIT_MS": "5"},
            {"HTTP_WORKERS": 2, "HTTP_THREADS": 8},
            quick=False,
        ),
    ),
    "microservices": (
        Candidate(
            "gateway 2 workers x 8 threads, 8 gRPC threads, batching",
            BATCH,
            {"HTTP_WORKERS": 2, "HTTP_THREADS": 8, "GRPC_THREADS": 8},
        ),
        Candidate(
            "gateway 2 workers x 16 threads, 16 gRPC threads, batching",
            BATCH,
            {"HTTP_WORKERS": 2, "HTTP_THREADS": 16, "GRPC_THREADS": 16},
        ),
        Candidate(
            "gateway 4 workers x 8 threads, 32 gRPC threads, batching",
            BATCH,
            {"HTTP_WORKERS": 4, "HTTP_THREADS": 8, "GRPC_THREADS": 32},
            quick=False,
        ),
        Candidate(
            "gateway 2 workers x 8 threads, 8 gRPC threads, batching, wait 5 ms",
            {**BATCH, "BATCH_MAX_WAIT_MS": "5"},
            {"HTTP_WORKERS": 2, "HTTP_THREADS": 8, "GRPC_THREADS": 8},
            quick=False,
        ),
    ),
}


def batch_buckets(text: str | None) -> dict[float, float]:
    """Cumulative counts of the requests-per-call histogram by upper bound (``le``), summed over
    processes; empty when the servers publish none (batching off)."""
    if text is None:
        return {}
    totals = metrics.totals_by_label(text, BATCH_HISTOGRAM, "le")
    return {float(bound): count for bound, count in totals.items()}


def histogram_between(
    before: Mapping[float, float], after: Mapping[float, float]
) -> dict[str, float]:
    """Model calls per bucket ("1", "2", "3-4", ..., "over 1024") between two scrapes."""
    bounds = sorted(after)
    counts: dict[str, float] = {}
    previous_bound, previous_total = 0.0, 0.0
    for bound in bounds:
        total = after[bound] - before.get(bound, 0.0)
        low = math.floor(previous_bound) + 1
        if math.isinf(bound):
            label = f"over {previous_bound:g}"
        elif low >= bound:
            label = f"{bound:g}"
        else:
            label = f"{low:g}-{bound:g}"
        counts[label] = max(total - previous_total, 0.0)
        previous_bound, previous_total = bound, total
    return counts


def mean_batch(histogram: Mapping[str, float]) -> float | None:
    """Mean requests per model call, each bucket at its upper bound's midpoint (an estimate)."""
    calls = sum(histogram.values())
    if not calls:
        return None
    weighted = 0.0
    for label, count in histogram.items():
        if label.startswith("over"):
            middle = float(label.split()[1])
        elif "-" in label:
            low, high = (float(part) for part in label.split("-"))
            middle = (low + high) / 2
        else:
            middle = float(label)
        weighted += middle * count
    return weighted / calls


def common_rates(probes: Sequence[float], fractions: Sequence[float]) -> list[float]:
    """The offered loads both sides get: fractions of the faster side's probe, rounded."""
    return ladder.ladder_targets(max(probes), fractions)


def _probe(
    context: base.ScenarioContext, architecture: str, candidate: Candidate, index: int
) -> float:
    config = context.bench_config(
        f"batching-{architecture}-c{index}",
        [architecture],
        profile=PROFILE,
        knobs=candidate.knobs,
        settings=candidate.settings,
    )
    folder = context.run_dir / "probes" / f"{architecture}-c{index}"
    folder.mkdir(parents=True, exist_ok=True)
    records = loadgen.write_records(folder)
    supervisor = Supervisor(log_dir=folder / "locust", cpus=context.loadgen_cpus)
    try:
        with targets.open_target(config, architecture, folder / "logs") as sut:
            samples = loadgen.probe(
                supervisor,
                sut.url,
                context.step_seconds or (3.0 if context.quick else 5.0),
                folder / "probe",
                records,
                context.stop,
                knobs_env(config),
            )
    finally:
        supervisor.stop(grace_s=2)
    return samples.closed_loop_rps


def knobs_env(config: Any) -> dict[str, str]:
    from benchmarks import knobs

    return knobs.locust_env(config.knobs)


def _sweep(
    context: base.ScenarioContext,
    architecture: str,
    candidate: Candidate,
    rates: Sequence[float] | None,
    steps: list[dict[str, Any]],
) -> float:
    """Probe one deployment (which also warms it up), then climb the ladder from `rates` (or,
    when None, from fractions of this probe) with the bench's `ladder.climb`, one Locust step
    per rung; `steps` grows as they finish. Returns the probe's closed-loop throughput."""
    config = context.bench_config(
        f"batching-{architecture}-sweep",
        [architecture],
        profile=PROFILE,
        knobs=candidate.knobs,
        settings=candidate.settings,
    )
    folder = context.run_dir / "sweep" / architecture
    folder.mkdir(parents=True, exist_ok=True)
    records = loadgen.write_records(folder)
    supervisor = Supervisor(log_dir=folder / "locust", cpus=context.loadgen_cpus)
    env = knobs_env(config)
    try:
        with targets.open_target(config, architecture, folder / "logs") as sut:
            probe = loadgen.probe(
                supervisor, sut.url, config.probe_seconds, folder / "probe", records,
                context.stop, env,
            )  # fmt: skip
            start = (
                list(rates) if rates else common_rates([probe.closed_loop_rps], _fractions(context))
            )
            # One settled scrape per step (settling takes over a second): nothing but a step
            # moves the histogram, so each step's "before" is the scrape that ended the one
            # before it (or the probe).
            latest = batch_buckets(metrics.scrape(sut.url))

            def measure(rung: ladder.Rung) -> StepResult:
                nonlocal latest
                rate = rung.target_rps
                users = max(bench.MIN_USERS, math.ceil(rate / bench.USER_RPS))
                before = latest
                with interference.StepWatch(
                    context.sut_cpus, context.loadgen_cpus, interference.local_sut_pids(sut.sampler)
                ) as watch:
                    samples = loadgen.run_locust(
                        supervisor,
                        f"locust-step{rung.index}",
                        sut.url,
                        users,
                        rate / users,
                        # The bench's rule: long enough for the samples its p99 needs.
                        ladder.step_seconds(
                            rate, config.step_samples, config.step_seconds, config.max_step_seconds
                        ),
                        folder / f"s{rung.index}",
                        records,
                        context.stop,
                        env,
                        seed=rung.index + 1,
                    )
                level, _ = summarise_step(
                    samples,
                    rate,
                    rate / users,
                    sut.sampler,
                    context.vcpus,
                    context.slo_ms,
                    0,
                    rung.index,
                    f"{architecture}/s{rung.index}",
                )
                latest = batch_buckets(metrics.scrape(sut.url))
                histogram = histogram_between(before, latest)
                disturbed = watch.result is not None and watch.result.disturbed
                steps.append(
                    {
                        **level.as_dict(),
                        "batch_histogram": histogram,
                        "mean_batch": mean_batch(histogram),
                        "disturbed": disturbed,
                    }
                )
                context.progress(
                    f"{architecture} step {rung.index + 1}/{rung.planned}: {rate:g} req/s -> "
                    f"{level.achieved_rps:g}, p99 {level.p99_ms} ms, CPU "
                    f"{level.cpu_seconds_per_1k} s/1k, {mean_batch(histogram) or 0:.1f} requests "
                    f"per model call, {'within SLO' if level.within_slo else 'beyond capacity'}"
                    f"{interference.step_note(watch.result)}"
                )
                return level

            ladder.climb(start, measure)
    finally:
        supervisor.stop(grace_s=2)
    return probe.closed_loop_rps


def _fractions(context: base.ScenarioContext) -> Sequence[float]:
    return QUICK_FRACTIONS if context.quick else FRACTIONS


def _at(steps: Sequence[Mapping[str, Any]], rate: float, key: str) -> Any:
    """`key` of the last step at `rate` (the ladder retries a missed step once: the retry)."""
    found = [step.get(key) for step in steps if step["target_rps"] == round(rate, 1)]
    return found[-1] if found else None


def check(context: base.ScenarioContext) -> None:
    base.require_profile(context.models, PROFILE)


def run(context: base.ScenarioContext) -> base.ScenarioResult:
    prices = analysis.load_prices(context.prices)
    result = base.ScenarioResult(
        "batching",
        budget=f"{context.vcpus} vCPU (CPUs {context.sut_cpus}) and {context.sut_memory_gib:g} "
        "GiB for every process of each side; Locust on its own CPUs",
    )
    probes: dict[str, list[dict[str, Any]]] = {name: [] for name in base.ARCHITECTURES}
    result.raw["probes"] = probes
    best: dict[str, tuple[Candidate, float | None]] = {}
    if context.quick:
        # One deployment per side: every start-up of four Python processes on one core costs
        # more than the measurement itself. The default run compares all the candidates.
        best = {name: (CANDIDATES[name][0], None) for name in base.ARCHITECTURES}
        result.notes.append(
            "QUICK: each side ran its first candidate only (BATCHING=on at the knob's defaults); "
            "a default run probes every candidate and keeps the fastest."
        )
    else:
        for architecture in base.ARCHITECTURES:
            for index, candidate in enumerate(CANDIDATES[architecture]):
                context.check_stop()
                context.progress(
                    f"{architecture} candidate {index + 1}/{len(CANDIDATES[architecture])}: "
                    f"{candidate.label}"
                )
                throughput = _probe(context, architecture, candidate, index)
                probes[architecture].append(
                    {
                        "label": candidate.label,
                        "setup": candidate.describe(),
                        "closed_loop_rps": throughput,
                    }
                )
                if architecture not in best or throughput > (best[architecture][1] or 0):
                    best[architecture] = (candidate, throughput)
            context.checkpoint(result)
    result.configurations = {
        name: f"{candidate.label} ({candidate.describe()})"
        + (
            f": closed-loop {rps:.0f} req/s, best of "
            + ", ".join(f"{p['label']} {p['closed_loop_rps']:.0f}" for p in probes[name])
            if rps is not None
            else ""
        )
        for name, (candidate, rps) in best.items()
    }
    rates: list[float] | None = None
    if not context.quick:
        rates = common_rates([rps or 0.0 for _, rps in best.values()], FRACTIONS)
    steps: dict[str, list[dict[str, Any]]] = {name: [] for name in base.ARCHITECTURES}
    result.raw["steps"] = steps
    for architecture in base.ARCHITECTURES:
        context.check_stop()
        context.progress(f"{architecture}: {best[architecture][0].label}")
        try:
            probe_rps = _sweep(
                context, architecture, best[architecture][0], rates, steps[architecture]
            )
            probes[architecture].append({"label": "sweep deployment", "closed_loop_rps": probe_rps})
            # Every side gets the first side's offered loads (the ladder may add rungs to them).
            rates = rates or sorted({step["target_rps"] for step in steps[architecture]})
        finally:
            _conclude(result, steps, prices, context)
            context.checkpoint(result)
    result.complete = True
    return result


def _conclude(
    result: base.ScenarioResult,
    steps: Mapping[str, Sequence[Mapping[str, Any]]],
    prices: Mapping[str, Any],
    context: base.ScenarioContext,
) -> None:
    """Rows, charts and summary from the steps measured so far (called after each side), over
    the offered loads at which both sides were measured."""
    measured = [{step["target_rps"] for step in steps[name]} for name in base.ARCHITECTURES]
    rates = sorted(set.intersection(*measured)) or sorted(set.union(*measured))
    result.raw["rates_rps"] = rates

    def capacity(name: str) -> float | None:
        within = [step["target_rps"] for step in steps[name] if step["within_slo"]]
        return max(within) if within else None

    def series(key: str) -> dict[str, list[Any]]:
        return {
            name: [_at(steps[name], rate, key) for rate in rates] for name in base.ARCHITECTURES
        }

    cpu = series("cpu_seconds_per_1k")
    p99 = series("p99_ms")
    batches = series("mean_batch")
    within = series("within_slo")
    both_within = [
        rate for index, rate in enumerate(rates)
        if within["monolith"][index] and within["microservices"][index]
    ]  # fmt: skip
    top = max(both_within) if both_within else None
    index = rates.index(top) if top is not None else None
    changes = base.crossovers(
        rates, cpu["monolith"], cpu["microservices"], "lower", base.SINGLE_RUN_NOISE
    )
    crossing = base.describe_crossovers(changes, rates, "req/s")

    def provisioned(name: str) -> float | None:
        return analysis.provisioned_cost_per_million(
            capacity(name),
            context.vcpus,
            context.sut_memory_gib,
            prices["vcpu_hour_usd"],
            prices["gib_hour_usd"],
        )

    at = f" at {top:g} req/s" if top is not None else ""
    pick = (lambda values: values[index]) if index is not None else (lambda _values: None)
    result.rows = [
        base.row(
            "capacity at the SLO over the common offered loads",
            "req/s",
            "higher",
            capacity("monolith"),
            capacity("microservices"),
            "the inference service's batches hold requests from every gateway worker, but each "
            "request also pays the gateway and three gRPC hops on the same CPUs",
            f"p99 and CPU per request at every rate in the chart; {crossing} (CPU per request)",
            noise=base.SINGLE_RUN_NOISE,
        ),
        base.row(
            "provisioned cost per million at capacity",
            "USD",
            "lower",
            provisioned("monolith"),
            provisioned("microservices"),
            "the whole budget rented and run at capacity, so the cost follows capacity",
            crossing,
            noise=base.SINGLE_RUN_NOISE,
        ),
        base.row(
            f"CPU per 1,000 requests{at} (highest rate both met the SLO)",
            "CPU-s",
            "lower",
            pick(cpu["monolith"]),
            pick(cpu["microservices"]),
            "bigger batches spread the forest's per-call cost over more requests; the hops add "
            "CPU per request that no batching removes",
            crossing,
            noise=base.SINGLE_RUN_NOISE,
        ),
        base.row(
            f"requests per model call{at} (mean, from /metrics)",
            "requests",
            "higher",
            pick(batches["monolith"]),
            pick(batches["microservices"]),
            "one inference service sees the concurrent requests of all gateway workers, a "
            "monolith worker only those of its own threads",
            "n/a",
            noise=base.SINGLE_RUN_NOISE,
        ),
    ]
    result.charts = [
        base.ChartData(
            "p99",
            "p99 latency against offered load (best configuration of each side)",
            "offered load, req/s",
            "p99, ms",
            f"Same offered loads for both sides; the dashed line is the SLO ({context.slo_ms:g} "
            "ms). A side's capacity is the highest load whose p99 stays under it.",
            [base.Series(name, list(rates), p99[name]) for name in base.ARCHITECTURES],
            log_y=True,
            hlines=[(context.slo_ms, f"SLO {context.slo_ms:g} ms")],
        ),
        base.ChartData(
            "cpu-per-request",
            "CPU per 1,000 requests against offered load",
            "offered load, req/s",
            "CPU-seconds per 1,000 requests",
            "Batching makes CPU per request fall as the load rises; where the lines cross (outside "
            "the noise) is the crossover in consumed cost.",
            [base.Series(name, list(rates), cpu[name]) for name in base.ARCHITECTURES],
            marks=[(change["at"], f"{change['to']} lead") for change in changes],
        ),
    ]
    histograms = {
        name: (_at(steps[name], top, "batch_histogram") if top is not None else None) or {}
        for name in base.ARCHITECTURES
    }
    labels = sorted(
        {label for histogram in histograms.values() for label in histogram},
        key=lambda label: float(label.split()[-1].split("-")[0]),
    )
    if labels:
        result.charts.append(
            base.ChartData(
                "batch-sizes",
                f"Requests per model call{at}",
                "requests in one model call",
                "share of model calls",
                "From each side's /metrics (lab_batch_requests) over the step: how many requests "
                "one call of the forest answered. Bars further right mean bigger batches.",
                [
                    base.Series(
                        name,
                        [float(i) for i in range(len(labels))],
                        [
                            (histograms[name].get(label, 0.0) / total) if total else None
                            for label in labels
                        ],
                    )
                    for name in base.ARCHITECTURES
                    for total in [sum(histograms[name].values())]
                ],
                kind="bar",
                categories=labels,
            )
        )
    note = base.disturbed_note([step for side in steps.values() for step in side])
    result.notes = [n for n in result.notes if not n.startswith(base.DISTURBED_PREFIX)]
    if note:
        result.notes.append(note)
    capacity_row = result.rows[0]
    result.summary = (
        f"Capacity at the SLO: {capacity_row.winner} ({capacity_row.by_how_much}); CPU per request "
        f"crossover: {crossing}. Batches{at}: monolith "
        f"{_mean(pick(batches['monolith']))}, microservices "
        f"{_mean(pick(batches['microservices']))} requests per model call."
    )


def _mean(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


SCENARIO = base.Scenario(
    name="batching",
    number=3,
    title="One model server batching for everyone",
    question="With the forest (expensive per call, cheap per row) and many concurrent users, "
    "does one inference service batching for every gateway worker beat monolith workers that "
    "each batch only their own requests, in capacity or cost, at the same budget? From what load?",
    run=run,
    estimate_s=(85.0, 270.0),
    check=check,
)
