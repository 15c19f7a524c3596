"""`make bench`: benchmark each architecture under Locust at an equal CPU budget, write a report.

For every repetition, architectures are interleaved (A B A B) so slow drifts of the machine hit
both alike. Each run: start the architecture through the supervisor pinned to SUT_CPUS; a short
closed-loop probe (which also warms up) estimates its throughput; then a ladder of constant
target rates around that estimate (`benchmarks.ladder`), one headless Locust run per step pinned
to LOADGEN_CPUS. Per step we record latency percentiles, errors, the SUT's CPU (psutil over the
process tree) and Locust's own CPU (`benchmarks.results`). Results go to
reports/<timestamp>-<label>/results.json, with report.md, report.html and Locust's CSVs beside
it; reports/latest points at the newest run.

Experiment knobs (CACHE, BATCHING, REPLICAS, HOP_DELAY_MS, ...) come from the table in
`benchmarks/knobs.py`, which says how each one reaches the servers, the launcher or Locust; the
bench records their values, what each architecture got, and the cache hit rate it saw.

    python -m benchmarks.bench --help

It is the one place where a run is put together (options, the loop over architectures and
repetitions, Ctrl-C, the results); measuring, the ladder and the report are in their kits, so
what remains is one cohesive driver.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import analysis, knobs, ladder, report
from benchmarks.measure import (
    floors,
    interference,
    loadgen,
    metrics,
    runs,
    servertiming,
    targets,
)
from benchmarks.measure.machine import machine_info, parse_cpus
from benchmarks.measure.stats import samples_for_quantile
from benchmarks.reporting.progress import Progress
from benchmarks.results import (
    ArchitectureResult,
    CacheCounts,
    RepetitionResult,
    RunInfo,
    StepResult,
    results_document,
    summarise_step,
)
from lab.supervisor import Supervisor
from lab.watchdog import StopRequested, StopSignals
from servinglab.model.training import git_sha

# A user sends at most this many requests/s, so a step has target/USER_RPS users: enough that
# each user's latency budget (1/USER_RPS = 100 ms) is twice the default SLO.
USER_RPS = 10.0
MIN_USERS = 4
# The entry point's /healthz, closed loop: its HTTP noop, held against its /v1/predict.
NOOP_SECONDS = 1.0

progress = Progress("bench")


@dataclass
class BenchConfig:
    archs: list[str]
    repetitions: int
    quick: bool
    slo_p99_ms: float
    sut_cpus: list[int]
    loadgen_cpus: list[int]
    sut_memory_gib: float
    profile: str
    step_seconds: float  # the shortest step; slower targets get longer ones, up to the next
    max_step_seconds: float
    probe_seconds: float
    label: str
    out: Path
    prices: Path | None
    models: Path
    target: str = "local"
    kube_context: str = "kind-servinglab"
    endpoints: dict[str, str] = field(default_factory=dict)  # kind: architecture -> URL
    namespaces: dict[str, str] = field(default_factory=dict)  # kind: architecture -> namespace
    image: str | None = None  # docker: image reference to run
    extra_settings: dict = field(default_factory=dict)
    knobs: dict = field(default_factory=knobs.defaults)  # knob key -> value (benchmarks/knobs.py)

    @property
    def ladder(self) -> tuple[float, ...]:
        return ladder.QUICK_LADDER if self.quick else ladder.LADDER

    @property
    def step_samples(self) -> int:
        """Requests a step wants for its p99 to mean something (`benchmarks.ladder`)."""
        tolerance = ladder.QUICK_P99_RANK_TOLERANCE if self.quick else ladder.P99_RANK_TOLERANCE
        return samples_for_quantile(0.99, tolerance)


def add_budget_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The options every experiment on the bench kit shares: QUICK, the SLO and the CPU and
    memory budget, each defaulting to its environment variable (`make bench`'s knobs)."""
    parser.add_argument(
        "--quick", action="store_true", default=env.get("QUICK", "") not in ("", "0")
    )
    parser.add_argument("--slo-ms", type=float, default=float(env.get("SLO_MS") or 50))
    parser.add_argument("--sut-cpus", default=env.get("SUT_CPUS") or "0")
    parser.add_argument("--loadgen-cpus", default=env.get("LOADGEN_CPUS") or "1")
    parser.add_argument(
        "--sut-memory-gib", type=float, default=float(env.get("SUT_MEMORY_GIB") or 2)
    )


def parse_config(argv: list[str] | None = None) -> BenchConfig:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--reps", type=int, default=int(env.get("REPS") or 0))
    add_budget_arguments(parser, env)
    parser.add_argument("--step-seconds", type=float, default=float(env.get("STEP_SECONDS") or 0))
    parser.add_argument("--probe-seconds", type=float, default=float(env.get("PROBE_SECONDS") or 0))
    parser.add_argument("--label", default=env.get("LABEL") or "")
    parser.add_argument("--out", type=Path, default=Path(env.get("REPORTS") or "reports"))
    parser.add_argument(
        "--prices", type=Path, default=Path(env["PRICES"]) if env.get("PRICES") else None
    )
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--target", choices=targets.TARGETS, default=env.get("TARGET") or "local")
    parser.add_argument("--kube-context", default=env.get("KUBE_CONTEXT") or "kind-servinglab")
    parser.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="ARCH=URL",
        help="kind: where an architecture answers (repeat per architecture)",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="ARCH=NAMESPACE",
        help="kind: the namespace of an architecture's pods (repeat per architecture)",
    )
    parser.add_argument("--image", default=env.get("IMAGE") or None, help="docker: image to run")
    for knob in knobs.KNOBS:
        parser.add_argument(
            knob.option,
            dest=f"knob_{knob.key}",
            default=env.get(knob.variable),
            metavar=knob.values,
            help=f"{knob.summary} (env {knob.variable}; default {knob.show(knob.default)})",
        )
    args = parser.parse_args(argv)
    try:
        values = knobs.parse_all(
            {knob.key: getattr(args, f"knob_{knob.key}") for knob in knobs.KNOBS}
        )
        warnings = knobs.validate(values)
        knobs.check_available(values)
    except knobs.KnobError as problem:
        parser.error(str(problem))
    for warning in warnings:
        progress.note(f"warning: {warning}")
    sut, loadgen_cpus = parse_cpus(args.sut_cpus), parse_cpus(args.loadgen_cpus)
    if set(sut) & set(loadgen_cpus):
        progress.note(
            f"warning: SUT_CPUS {sut} and LOADGEN_CPUS {loadgen_cpus} overlap; "
            "the load generator will steal CPU from the system under test"
        )
    return BenchConfig(
        archs=list(values["archs"]),
        repetitions=args.reps or (1 if args.quick else 2),
        quick=args.quick,
        slo_p99_ms=args.slo_ms,
        sut_cpus=sut,
        loadgen_cpus=loadgen_cpus,
        sut_memory_gib=args.sut_memory_gib,
        profile=values["profile"],
        step_seconds=args.step_seconds or (2.0 if args.quick else 5.0),
        # STEP_SECONDS given: every step that long; otherwise adapted to the rate, up to this.
        max_step_seconds=args.step_seconds or (4.0 if args.quick else 7.0),
        probe_seconds=args.probe_seconds or (4.0 if args.quick else 5.0),
        label=args.label or ("quick" if args.quick else "default"),
        out=args.out,
        prices=args.prices,
        models=args.models,
        target=args.target,
        kube_context=args.kube_context,
        endpoints=_pairs(parser, args.endpoint, "--endpoint"),
        namespaces=_pairs(parser, args.namespace, "--namespace"),
        image=args.image,
        knobs=values,
    )


def _pairs(parser: argparse.ArgumentParser, items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value:
            parser.error(f"{option} takes ARCH=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def locust_seed(repetition: int, step: int | None) -> int:
    """Distinct per Locust run of a repetition (None = the probe), the same for every architecture,
    so they all get the same request sequences."""
    return 1000 * repetition + (0 if step is None else step + 1)


def _cache_counts(
    before: dict[str, float] | None, after: dict[str, float] | None, timings: list[str]
) -> CacheCounts:
    """Lookups between two scrapes of the servers' counters; failing those, from Server-Timing."""
    if before is not None and after is not None:
        hits, misses = (after[key] - before[key] for key in ("hits", "misses"))
        if hits + misses > 0:
            return CacheCounts(hits, misses, "metrics")
    counted = servertiming.cache_counts(timings)
    if counted["hits"] + counted["misses"] > 0:
        return CacheCounts(counted["hits"], counted["misses"], "server-timing")
    return CacheCounts()


def run_architecture(
    architecture: str,
    repetition: int,
    config: BenchConfig,
    run_dir: Path,
    supervisor: Supervisor,
    stop: StopSignals | None = None,
) -> RepetitionResult:
    """Start one architecture, probe it, climb the ladder, stop it."""
    records = run_dir / "locust" / loadgen.RECORDS_FILE
    # Server-Timing headers by whether their step was within the SLO: the breakdown describes
    # the server working normally, not drowning in its own queue.
    timings: dict[bool, list[str]] = {True: [], False: []}
    errors: dict[str, int] = {}
    locust_env = knobs.locust_env(config.knobs)
    # Hit rates only mean something with a cache on; the scrape waits for the servers' counters.
    measure_cache = config.knobs["cache"] != "none"
    log_dir = run_dir / "logs" / f"{architecture}-r{repetition}"
    with targets.open_target(config, architecture, log_dir) as sut:
        probe = loadgen.probe(
            supervisor,
            sut.url,
            config.probe_seconds,
            run_dir / "locust" / architecture / f"r{repetition}-probe",
            records,
            stop,
            locust_env,
            seed=locust_seed(repetition, None),
        )
        noop = entry_noop(config, sut)
        # After the probe, so the hit rate is the load steps' own (each step has its own inputs).
        cache_before = metrics.scrape_cache_counts(sut.url) if measure_cache else None
        rates = ladder.ladder_targets(probe.closed_loop_rps, config.ladder)
        progress(
            f"{architecture} r{repetition}: probe {probe.closed_loop_rps:.0f} req/s "
            f"closed-loop; ladder {', '.join(f'{t:g}' for t in rates)} req/s"
        )

        def measure(rung: ladder.Rung) -> StepResult:
            target = rung.target_rps
            users = max(MIN_USERS, math.ceil(target / USER_RPS))
            prefix = f"{architecture}/r{repetition}-s{rung.index}"
            seconds = ladder.step_seconds(
                target, config.step_samples, config.step_seconds, config.max_step_seconds
            )
            with interference.StepWatch(config.sut_cpus, config.loadgen_cpus, sut_pids) as watch:
                samples = loadgen.run_locust(
                    supervisor,
                    f"locust-step{rung.index}",
                    sut.url,
                    users,
                    target / users,
                    seconds,
                    run_dir / "locust" / prefix,
                    records,
                    stop,
                    locust_env,
                    seed=locust_seed(repetition, rung.index),
                )
            level, statuses = summarise_step(
                samples,
                target,
                target / users,
                sut.sampler,
                len(config.sut_cpus),
                config.slo_p99_ms,
                repetition,
                rung.index,
                prefix,
                attempt=rung.attempt,
                interference=watch.result,
            )
            timings[level.within_slo].extend(samples.server_timings)
            for status, count in statuses.items():
                if not status.startswith("2"):
                    errors[status] = errors.get(status, 0) + count
            verdict = "within SLO" if level.within_slo else "beyond capacity"
            bound = ", LOADGEN-BOUND" if level.loadgen_bound else ""
            bound += interference.step_note(level.interference)
            again = " (again)" if rung.attempt else ""
            progress(
                f"{architecture} r{repetition} step {rung.index + 1}/{rung.planned}: target "
                f"{target:g}{again} -> {level.achieved_rps:g} req/s ({seconds:g} s), p99 "
                f"{level.p99_ms} ms, "
                f"errors {level.error_rate:.2%}, SUT CPU {level.sut_cpu_percent:.0f}%, "
                f"Locust CPU {level.loadgen_cpu_percent:.0f}% -> {verdict}{bound}"
            )
            return level

        sut_pids = interference.local_sut_pids(sut.sampler)
        refine = ladder.QUICK_REFINE_STEPS if config.quick else ladder.MAX_REFINE_STEPS
        steps = ladder.climb(rates, measure, refine).steps
        cache_after = metrics.scrape_cache_counts(sut.url) if measure_cache else None
        entry = entry_counts(sut.url, noop) if noop is not None else {}
    cache = (
        _cache_counts(cache_before, cache_after, [*timings[True], *timings[False]])
        if measure_cache
        else CacheCounts()
    )
    applied = {**knobs.applied_for(config.knobs, architecture), **sut.details}
    return RepetitionResult(
        steps,
        timings[True] or timings[False],
        sut.sampler.processes(),
        errors,
        sut.budget,
        cache,
        applied,
        entry,
    )


def measure_floors(config: BenchConfig) -> dict | None:
    """The run's floors (benchmarks.measure.floors) on the SUT CPUs; None off the local target."""
    if config.target != "local":
        return None
    progress(f"floors: bare gRPC echo and the in-process pipeline on CPUs {config.sut_cpus}")
    transport = floors.measure_transport(config.sut_cpus, 1.0 if config.quick else 2.0)
    with floors.pinned(config.sut_cpus):
        pipeline = floors.measure_pipeline(
            config.models, config.profile, 300 if config.quick else 1000
        )
    return {"transport": transport.as_dict(), "pipeline": pipeline}


def shared_floors(config: BenchConfig, measured: dict[str, dict | None]) -> dict | None:
    """`measure_floors(config)`, measured once per profile and SUT CPU set into `measured`: the
    several bench runs of one sweep or scenario share them (seconds each, and they cannot differ
    within minutes on the same CPUs)."""
    key = f"{config.profile} on CPUs {config.sut_cpus}"
    if key not in measured:
        measured[key] = measure_floors(config)
    elif measured[key] is not None:
        progress(f"floors: {key}, as an earlier run of this sweep or scenario measured them")
    return measured[key]


def entry_noop(config: BenchConfig, sut: targets.Target) -> dict | None:
    """The entry point's /healthz on its own gunicorn, from the load generator's CPUs (local)."""
    if config.target != "local":
        return None

    def sut_cpu_seconds() -> float:
        return sum(cpu for _, cpu, _ in sut.sampler.read().values())

    with floors.pinned(config.loadgen_cpus):
        return floors.measure_http_noop(sut.url, sut_cpu_seconds, NOOP_SECONDS).as_dict()


def entry_counts(url: str, noop: dict) -> dict:
    """results ``entry[]``: the noop, requests per gunicorn worker and /v1/predict requests."""
    text = metrics.scrape(url)
    if text is None:
        return {"noop": noop, "workers": {}, "predict_requests": None}
    routes = metrics.totals_by_label(text, "lab_http_requests_total", "route")
    workers = metrics.totals_by_label(text, "lab_http_worker_requests_total", "worker")
    return {"noop": noop, "workers": workers, "predict_requests": routes.get("/v1/predict")}


def run_info(
    config: BenchConfig,
    results: dict[str, ArchitectureResult],
    prices: dict,
    started: datetime,
    finished: datetime,
    before_run: interference.Interference | None = None,
) -> RunInfo:
    budget = {
        "sut_cpus": config.sut_cpus,
        "loadgen_cpus": config.loadgen_cpus,
        "sut_vcpus": len(config.sut_cpus),
        "sut_memory_gib": config.sut_memory_gib,
    }
    platform_budgets = [result.budget for result in results.values() if result.budget]
    if platform_budgets:
        # On kind the pods' requests are the budget: the scheduler reserves them, used or not.
        budget = {"sut_cpus": None, "loadgen_cpus": config.loadgen_cpus, **platform_budgets[0]}
    settings = {
        "architectures": config.archs,
        "model_profile": config.profile,
        "step_seconds": config.step_seconds,
        "probe_seconds": config.probe_seconds,
        "ladder_fractions": list(config.ladder),
        "max_step_seconds": config.max_step_seconds,
        "step_samples_wanted": config.step_samples,
        "user_rps": USER_RPS,
        "probe_users": loadgen.PROBE_USERS,
        **{key.lower(): value for key, value in config.extra_settings.items()},
        **targets.run_settings(config),  # TARGET=docker: the image and the containers' limits
    }
    return RunInfo(
        config.label,
        started,
        finished,
        git_sha(),
        config.quick,
        config.repetitions,
        config.slo_p99_ms,
        config.target,
        budget,
        machine_info(),
        settings,
        knobs.record(config.knobs),
        prices,
        interference.run_record(before_run) if config.target == "local" else None,
    )


def run(
    config: BenchConfig,
    stop: StopSignals | None = None,
    link_latest: bool = True,
    floors_cache: dict[str, dict | None] | None = None,
) -> Path:
    """The whole benchmark: every repetition of every architecture, results.json, the report.

    `floors_cache`: floors kept across the several runs of one sweep or scenario (`shared_floors`);
    None measures them for this run alone.
    """
    started = datetime.now(UTC)
    clock = time.monotonic()
    where = targets.check(config)
    run_dir = runs.new_run_dir(config.out, f"{runs.stamp()}-{config.label}", exist_ok=True)
    prices = analysis.load_prices(config.prices)
    progress(f"target: {where}")
    before_run = interference.before_run_check(config.target, config.sut_cpus, config.loadgen_cpus)
    if before_run is not None and before_run.disturbed:
        progress.note(
            interference.disturbed_warning(before_run, config.sut_cpus, config.loadgen_cpus)
        )
    progress(
        f"run {run_dir}: {', '.join(config.archs)} x {config.repetitions} repetition(s), "
        f"SUT on CPUs {config.sut_cpus}, Locust on CPUs {config.loadgen_cpus}, SLO p99 "
        f"{config.slo_p99_ms:g} ms, profile {config.profile}"
        f"{', QUICK' if config.quick else ''}"
    )
    changed = knobs.non_default(config.knobs)
    if changed:
        progress(
            "knobs: " + ", ".join(f"{k.variable}={k.show(config.knobs[k.key])}" for k in changed)
        )
    results = {architecture: ArchitectureResult() for architecture in config.archs}
    loadgen.write_records(run_dir / "locust")
    supervisor = Supervisor(log_dir=run_dir / "logs" / "locust", cpus=config.loadgen_cpus)
    run_floors = shared_floors(config, {} if floors_cache is None else floors_cache)
    try:
        for repetition in range(config.repetitions):
            for architecture in config.archs:
                progress(f"{architecture} r{repetition}: starting")
                results[architecture].add(
                    run_architecture(architecture, repetition, config, run_dir, supervisor, stop)
                )
    finally:
        supervisor.stop(grace_s=2)
    document = results_document(
        run_info(config, results, prices, started, datetime.now(UTC), before_run),
        results,
        run_floors,
    )
    analysis.validate_results(document)
    runs.write_json(run_dir / report.RESULTS_FILE, document)
    written = report.write_report(run_dir)
    if link_latest:
        runs.link_latest(run_dir)
    progress(f"done in {time.monotonic() - clock:.0f}s")
    for path in written:
        print(f"  {path}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    stop = StopSignals()
    try:
        run_dir = run(config, stop)
    except StopRequested as reason:
        print()
        progress.note(f"{reason}: stopped every process; partial output left in {config.out}")
        return 130
    except targets.TargetUnavailable as missing:
        progress.note(str(missing), error=True)
        return 3
    print("\n" + report.headline(runs.read_json(run_dir / report.RESULTS_FILE)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
