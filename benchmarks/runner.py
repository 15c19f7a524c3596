"""`make bench`: benchmark each architecture under Locust at an equal CPU budget, write a report.

For every repetition, architectures are interleaved (A B A B) so slow drifts of the machine hit
both alike. Each run: start the architecture through the supervisor pinned to SUT_CPUS; a short
closed-loop probe (which also warms up) estimates its throughput; then a ladder of constant
target rates around that estimate, one headless Locust run per step pinned to LOADGEN_CPUS. Per
step we record latency percentiles, errors, the SUT's CPU (psutil over the process tree) and
Locust's own CPU. Results go to reports/<timestamp>-<label>/results.json, with report.md,
report.html and Locust's CSVs beside it; reports/latest points at the newest run.

Experiment knobs (CACHE, BATCHING, REPLICAS, HOP_DELAY_MS, ...) come from the table in
`benchmarks/knobs.py`, which says how each one reaches the servers, the launcher or Locust; the
runner records their values, what each architecture got, and the cache hit rate it saw.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

import psutil
import requests

from benchmarks import analysis, knobs, targets
from benchmarks.resources import CpuSeries
from servinglab.model.data import held_out_records
from lab.supervisor import ProcessSpec, StopRequested, StopSignals, Supervisor
from servinglab.model.training import git_sha

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RECORDS_FILE = "records.json"  # the held-out birds the load generator sends, beside the Locust CSVs
SCHEMA_VERSION = 1
LIBRARIES = ("flask", "gunicorn", "grpcio", "protobuf", "scikit-learn", "numpy", "locust", "psutil")
# Each step's target as a fraction of the probe's closed-loop throughput: dense near the knee.
# Measured here: p99 crosses a 50 ms SLO at 50-80% of closed-loop throughput, long before the
# server is saturated, so the steps are dense there.
LADDER = (0.3, 0.45, 0.6, 0.7, 0.8, 0.9)
QUICK_LADDER = (0.35, 0.55, 0.7, 0.85)
# A user sends at most this many requests/s, so a step has target/USER_RPS users: enough that
# each user's latency budget (1/USER_RPS = 100 ms) is twice the default SLO.
USER_RPS = 10.0
# When the top of the ladder is still within the SLO the knee lies above it: step up this much,
# at most this many times.
EXTEND_FACTOR = 1.15
MAX_EXTRA_STEPS = 3
MAX_LOWER_STEPS = 2  # halvings of the rate when even the first step misses the SLO
MIN_USERS = 4
PROBE_USERS = 32
METRICS_FLUSH_WAIT_S = 1.2


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
    step_seconds: float
    probe_seconds: float
    label: str
    out: Path
    prices: Path | None
    models: Path
    target: str = "local"
    kube_context: str = "kind-servinglab"
    endpoints: dict[str, str] = field(default_factory=dict)   # kind: architecture -> URL
    namespaces: dict[str, str] = field(default_factory=dict)  # kind: architecture -> namespace
    image: str | None = None                                  # docker: image reference to run
    extra_settings: dict = field(default_factory=dict)
    knobs: dict = field(default_factory=knobs.defaults)  # knob key -> value (benchmarks/knobs.py)

    @property
    def ladder(self) -> tuple[float, ...]:
        return QUICK_LADDER if self.quick else LADDER


def parse_cpus(text: str) -> list[int]:
    """"0", "0,2" or "0-3" -> CPU numbers."""
    cpus: list[int] = []
    for part in text.replace(" ", "").split(","):
        if "-" in part:
            low, high = part.split("-")
            cpus.extend(range(int(low), int(high) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


def parse_config(argv: list[str] | None = None) -> BenchConfig:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=int(env.get("REPS") or 0))
    parser.add_argument("--quick", action="store_true", default=env.get("QUICK", "") not in ("", "0"))
    parser.add_argument("--slo-ms", type=float, default=float(env.get("SLO_MS") or 50))
    parser.add_argument("--sut-cpus", default=env.get("SUT_CPUS") or "0")
    parser.add_argument("--loadgen-cpus", default=env.get("LOADGEN_CPUS") or "1")
    parser.add_argument("--sut-memory-gib", type=float, default=float(env.get("SUT_MEMORY_GIB") or 2))
    parser.add_argument("--step-seconds", type=float, default=float(env.get("STEP_SECONDS") or 0))
    parser.add_argument("--probe-seconds", type=float, default=float(env.get("PROBE_SECONDS") or 0))
    parser.add_argument("--label", default=env.get("LABEL") or "")
    parser.add_argument("--out", type=Path, default=Path(env.get("REPORTS") or "reports"))
    parser.add_argument("--prices", type=Path, default=Path(env["PRICES"]) if env.get("PRICES") else None)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--target", choices=targets.TARGETS, default=env.get("TARGET") or "local")
    parser.add_argument("--kube-context", default=env.get("KUBE_CONTEXT") or "kind-servinglab")
    parser.add_argument("--endpoint", action="append", default=[], metavar="ARCH=URL",
                        help="kind: where an architecture answers (repeat per architecture)")
    parser.add_argument("--namespace", action="append", default=[], metavar="ARCH=NAMESPACE",
                        help="kind: the namespace of an architecture's pods (repeat per architecture)")
    parser.add_argument("--image", default=env.get("IMAGE") or None, help="docker: image to run")
    for knob in knobs.KNOBS:
        parser.add_argument(knob.option, dest=f"knob_{knob.key}", default=env.get(knob.variable), metavar=knob.values,
                            help=f"{knob.summary} (env {knob.variable}; default {knob.show(knob.default)})")
    args = parser.parse_args(argv)
    try:
        values = knobs.parse_all({knob.key: getattr(args, f"knob_{knob.key}") for knob in knobs.KNOBS})
        warnings = knobs.validate(values)
        knobs.check_available(values)
    except knobs.KnobError as problem:
        parser.error(str(problem))
    for warning in warnings:
        print(f"[bench] warning: {warning}", flush=True)
    sut, loadgen = parse_cpus(args.sut_cpus), parse_cpus(args.loadgen_cpus)
    if set(sut) & set(loadgen):
        print(f"[bench] warning: SUT_CPUS {sut} and LOADGEN_CPUS {loadgen} overlap; "
              "the load generator will steal CPU from the system under test", flush=True)
    return BenchConfig(
        archs=list(values["archs"]),
        repetitions=args.reps or (1 if args.quick else 2),
        quick=args.quick,
        slo_p99_ms=args.slo_ms,
        sut_cpus=sut,
        loadgen_cpus=loadgen,
        sut_memory_gib=args.sut_memory_gib,
        profile=values["profile"],
        step_seconds=args.step_seconds or (4.0 if args.quick else 7.0),
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


def machine_info() -> dict:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return {
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count() or 0,
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": libraries,
    }


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(math.ceil(q * len(ordered)) - 1, len(ordered) - 1)] if q > 0 else ordered[0]


def run_locust(loadgen: Supervisor, url: str, users: int, user_rps: float, seconds: float,
               csv_prefix: Path, name: str, stop: StopSignals | None = None,
               extra_env: dict[str, str] | None = None, seed: int = 0) -> dict:
    """One headless Locust run; returns what the locustfile's recorder measured.

    `seed` fixes the request sequence. Give every run of one deployment its own: with CACHE_RATE
    the workload's new inputs derive from it, and a cache outliving a step must not find the next
    step's new inputs already cached.
    """
    samples_path = csv_prefix.with_suffix(".samples.json")
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    # Locust takes whole seconds only. Users spawn within a tenth of a second (their random
    # phases spread the load), so the measured part of a short step is not eaten by spawning.
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
            "-u", str(users), "-r", str(users * 10), "-t", f"{max(1, math.ceil(seconds))}s",
            "--csv", str(csv_prefix), "--only-summary", "--loglevel", "WARNING",
            "--exit-code-on-error", "0", "--stop-timeout", "2"]
    env = {"LAB_BENCH_USER_RPS": str(user_rps), "LAB_BENCH_SAMPLES": str(samples_path),
           "LAB_BENCH_RECORDS": str(csv_prefix.parents[1] / RECORDS_FILE), "LAB_BENCH_SEED": str(seed),
           **(extra_env or {})}
    process = loadgen.start(ProcessSpec(name, argv, env))
    while True:
        try:
            code = process.popen.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if stop:
                stop.check()
    loadgen.processes.remove(process)
    if code != 0 or not samples_path.exists():
        raise RuntimeError(f"Locust failed (exit code {code}):\n{process.log_tail()}")
    samples = json.loads(samples_path.read_text())
    samples_path.unlink()
    return samples


def locust_seed(repetition: int, step: int | None) -> int:
    """Distinct per Locust run of a repetition (None = the probe), the same for every architecture,
    so they all get the same request sequences."""
    return 1000 * repetition + (0 if step is None else step + 1)


def measurement_window(samples: dict, user_rps: float) -> list[tuple[float, float, int]]:
    """Requests started once every user had phased in, up to the last request started.

    Users start on random phases within their first period, so the first period runs below the
    target rate; requests still in flight at the end were never recorded. Both edges are cut.
    """
    requests = sorted(samples["requests"])
    if not requests:
        return []
    start = samples["started_at"] + (1.0 / user_rps if user_rps > 0 else 0.0)
    return [r for r in requests if r[0] >= start]


def summarise_step(samples: dict, target_rps: float, user_rps: float, sampler: CpuSeries,
                   config: BenchConfig, repetition: int, step: int, csv_prefix: str) -> tuple[dict, dict[str, int]]:
    window = measurement_window(samples, user_rps)
    window_start = window[0][0] if window else samples["started_at"]
    window_end = window[-1][0] if window else samples["stopped_at"]
    window_s = max(window_end - window_start, 1e-9)
    latencies = sorted(latency for _, latency, status in window if 200 <= status < 300)
    statuses: dict[str, int] = {}
    for _, _, status in window:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    total = len(window)
    failures = total - len(latencies)
    cpu_seconds = sampler.cpu_between(window_start, window_end)
    measured_s = max(samples["stopped_at"] - samples["started_at"], 1e-9)
    loadgen_percent = 100.0 * samples["cpu_seconds"] / measured_s
    # The last request started at window_end; `total - 1` intervals lie between first and last.
    achieved = (total - 1) / window_s if total > 1 else 0.0
    level = {
        "repetition": repetition,
        "step": step,
        "target_rps": round(target_rps, 1),
        "achieved_rps": round(achieved, 1),
        "requests": total,
        "failures": failures,
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else None,
        "error_rate": failures / total if total else 0.0,
        "cpu_seconds": round(cpu_seconds, 3),
        "cpu_seconds_per_1k": round(cpu_seconds / total * 1000, 4) if total else None,
        "sut_cpu_percent": round(100.0 * cpu_seconds / window_s / len(config.sut_cpus), 1),
        "loadgen_cpu_percent": round(loadgen_percent, 1),
        "loadgen_bound": analysis.is_loadgen_bound(loadgen_percent),
        "within_slo": False,
        "csv_prefix": csv_prefix,
    }
    for key in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms"):
        if level[key] is not None:
            level[key] = round(level[key], 3)
    level["within_slo"] = analysis.level_within_slo(level, config.slo_p99_ms)
    return level, statuses


def ladder_targets(probe_rps: float, fractions: tuple[float, ...]) -> list[float]:
    # Round to two significant figures: readable rates, and the same rates across repetitions
    # whenever the probes agree to within rounding.
    targets = []
    for fraction in fractions:
        raw = max(probe_rps * fraction, 1.0)
        magnitude = 10 ** max(math.floor(math.log10(raw)) - 1, 0)
        targets.append(float(round(raw / magnitude) * magnitude))
    return sorted(set(targets))


def server_timing_entries(header: str) -> list[tuple[str, dict[str, str]]]:
    """`pre;dur=0.1, cache;desc="hit"` -> [("pre", {"dur": "0.1"}), ("cache", {"desc": "hit"})]."""
    entries = []
    for part in header.split(","):
        name, *params = (piece.strip() for piece in part.split(";"))
        if not name:
            continue
        fields = {}
        for param in params:
            key, _, value = param.partition("=")
            fields[key.strip().lower()] = value.strip().strip('"')
        entries.append((name, fields))
    return entries


def server_timing_medians(headers: list[str]) -> dict[str, float]:
    """Median milliseconds per metric over `Server-Timing` header values ("pre;dur=0.1, ...")."""
    series: dict[str, list[float]] = {}
    for header in headers:
        for name, fields in server_timing_entries(header):
            try:
                series.setdefault(name, []).append(float(fields["dur"]))
            except (KeyError, ValueError):
                continue  # an entry without a duration (e.g. a cache outcome) is not a stage
    return {name: statistics.median(values) for name, values in series.items() if values}


CACHE_OUTCOMES = {"hit": "hits", "miss": "misses"}


def _cache_outcome(text: str) -> str | None:
    lowered = text.lower()
    for outcome, counter in CACHE_OUTCOMES.items():
        if outcome in lowered:
            return counter
    return None


def server_timing_cache_counts(headers: list[str]) -> dict[str, int]:
    """Hits and misses from `cache...` Server-Timing entries (outcome in the name or its desc)."""
    counts = {"hits": 0, "misses": 0}
    for header in headers:
        for name, fields in server_timing_entries(header):
            if name.lower().startswith("cache"):
                outcome = _cache_outcome(name + " " + fields.get("desc", ""))
                if outcome:
                    counts[outcome] += 1
                    break  # one outcome per request
    return counts


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def metrics_cache_counts(text: str) -> dict[str, float]:
    """Hits and misses summed over the Prometheus counters whose name mentions "cache".

    Which counter says hit or miss is read from its name or labels (`lab_cache_hits_total`,
    `lab_cache_lookups_total{result="miss"}`), so the runner does not depend on one naming.
    """
    counters = {line.split()[2] for line in text.splitlines()
                if line.startswith("# TYPE ") and len(line.split()) >= 4 and line.split()[3] == "counter"}
    counts = {"hits": 0.0, "misses": 0.0}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        if "cache" not in name.lower() or (name not in counters and name.removesuffix("_total") not in counters):
            continue
        outcome = _cache_outcome(name + (labels or ""))
        if outcome:
            try:
                counts[outcome] += float(value)
            except ValueError:
                continue
    return counts


def scrape_cache_counts(url: str) -> dict[str, float] | None:
    """The cache counters of a running architecture, or None when /metrics does not answer."""
    # Every server process publishes its counters once a second (servinglab/serving/metrics.py): wait
    # for one more publication so the last requests are in the numbers.
    time.sleep(METRICS_FLUSH_WAIT_S)
    try:
        response = requests.get(url + "/metrics", timeout=5)
    except requests.RequestException:
        return None
    return metrics_cache_counts(response.text) if response.ok else None


def cache_summary(hits: float, misses: float, source: str) -> dict | None:
    lookups = hits + misses
    if lookups <= 0:
        return None
    return {"hits": int(hits), "misses": int(misses), "hit_rate": round(hits / lookups, 4), "source": source}


def stage_breakdown(timings: list[str]) -> dict[str, float]:
    """Median milliseconds per Server-Timing metric, folded into the report's categories."""
    medians = server_timing_medians(timings)
    stages = {}
    for name in ("pre", "infer", "post"):
        if name in medians:
            stages[name] = round(medians[name], 4)
    for name, value in medians.items():
        if name.startswith("hop-"):
            stages["hop_" + name[4:]] = round(value, 4)
    accounted = sum(stages.values())
    # Parsing, validation, Flask and response encoding: the HTTP layer both architectures share.
    stages["http_other"] = round(max(medians.get("total", accounted) - accounted, 0.0), 4)
    return stages


def progress(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def run_architecture(architecture: str, repetition: int, config: BenchConfig, run_dir: Path,
                     loadgen: Supervisor, stop: StopSignals | None = None) -> dict:
    log_dir = run_dir / "logs" / f"{architecture}-r{repetition}"
    levels: list[dict] = []
    # Server-Timing headers by whether their step was within the SLO: the breakdown describes
    # the server working normally, not drowning in its own queue.
    timings: dict[bool, list[str]] = {True: [], False: []}
    errors: dict[str, int] = {}
    locust_env = knobs.locust_env(config.knobs)
    # Hit rates only mean something with a cache on; the scrape waits for the servers' counters.
    measure_cache = config.knobs["cache"] != "none"
    cache_timings: list[str] = []
    with targets.open_target(config, architecture, log_dir) as sut:
        sampler = sut.sampler
        csv_dir = run_dir / "locust" / architecture
        probe = run_locust(loadgen, sut.url, PROBE_USERS, 0.0, config.probe_seconds,
                           csv_dir / f"r{repetition}-probe", "locust-probe", stop, locust_env,
                           seed=locust_seed(repetition, None))
        # After the probe, so the hit rate is the load steps' own (each step has its own inputs).
        cache_before = scrape_cache_counts(sut.url) if measure_cache else None
        probe_rps = len(probe["requests"]) / max(probe["stopped_at"] - probe["started_at"], 1e-9)
        rates = ladder_targets(probe_rps, config.ladder)
        base_rates = list(rates)
        progress(f"{architecture} r{repetition}: probe {probe_rps:.0f} req/s closed-loop; "
                 f"ladder {', '.join(f'{t:g}' for t in rates)} req/s")
        step = lowered = 0
        while step < len(rates):
            target = rates[step]
            users = max(MIN_USERS, math.ceil(target / USER_RPS))
            prefix = f"{architecture}/r{repetition}-s{step}"
            samples = run_locust(loadgen, sut.url, users, target / users, config.step_seconds,
                                 run_dir / "locust" / prefix, f"locust-step{step}", stop, locust_env,
                                 seed=locust_seed(repetition, step))
            level, statuses = summarise_step(samples, target, target / users, sampler, config, repetition, step,
                                             prefix)
            levels.append(level)
            timings[level["within_slo"]].extend(samples["server_timings"])
            if measure_cache:
                cache_timings.extend(samples["server_timings"])
            for status, count in statuses.items():
                if not status.startswith("2"):
                    errors[status] = errors.get(status, 0) + count
            verdict = "within SLO" if level["within_slo"] else "beyond capacity"
            bound = ", LOADGEN-BOUND" if level["loadgen_bound"] else ""
            progress(f"{architecture} r{repetition} step {step + 1}/{len(rates)}: target {target:g} -> "
                     f"{level['achieved_rps']:g} req/s, p99 {level['p99_ms']} ms, errors {level['error_rate']:.2%}, "
                     f"SUT CPU {level['sut_cpu_percent']:.0f}%, Locust CPU {level['loadgen_cpu_percent']:.0f}%"
                     f" -> {verdict}{bound}")
            if not any(done["within_slo"] for done in levels) and lowered < MAX_LOWER_STEPS:
                # Even the lowest rate so far missed the SLO (a closed-loop probe can overrate a
                # server whose throughput comes with latency, e.g. with batching): halve it
                # instead of climbing, so capacity is found rather than reported as none.
                rates[step + 1:] = [ladder_targets(target / 2, (1.0,))[0]]
                base_rates = rates[:]
                lowered += 1
                step += 1
                continue
            if level["achieved_rps"] < 0.8 * target:
                break  # deep in saturation: further steps only add queueing, not information
            extra = len(rates) - len(base_rates)
            if step == len(rates) - 1 and level["within_slo"] and extra < MAX_EXTRA_STEPS:
                rates.append(ladder_targets(target * EXTEND_FACTOR, (1.0,))[0])
            step += 1
        cache_after = scrape_cache_counts(sut.url) if measure_cache else None
    cache = {"hits": 0.0, "misses": 0.0, "source": None}
    if cache_before is not None and cache_after is not None:
        delta = {key: cache_after[key] - cache_before[key] for key in ("hits", "misses")}
        if delta["hits"] + delta["misses"] > 0:
            cache = {**delta, "source": "metrics"}
    if cache["source"] is None and measure_cache:
        # No cache counters on /metrics: fall back to what the responses said about themselves.
        counted = server_timing_cache_counts(cache_timings)
        if counted["hits"] + counted["misses"] > 0:
            cache = {**counted, "source": "server-timing"}
    applied = {**knobs.applied_for(config.knobs, architecture), **sut.details}
    return {"levels": levels, "timings": timings[True] or timings[False], "processes": sampler.processes(),
            "errors": errors, "budget": sut.budget, "cache": cache, "applied": applied}


def assemble(config: BenchConfig, per_arch: dict[str, dict], prices: dict, started: datetime,
             finished: datetime) -> dict:
    budget = {"sut_cpus": config.sut_cpus, "loadgen_cpus": config.loadgen_cpus,
              "sut_vcpus": len(config.sut_cpus), "sut_memory_gib": config.sut_memory_gib}
    platform_budgets = [c["budget"] for c in per_arch.values() if c.get("budget")]
    if platform_budgets:
        # On kind the pods' requests are the budget: the scheduler reserves them whether used or not.
        budget = {"sut_cpus": None, "loadgen_cpus": config.loadgen_cpus, **platform_budgets[0]}
    architectures = {}
    for name, collected in per_arch.items():
        arch_budget = {**budget, **(collected.get("budget") or {})}
        levels = collected["levels"]
        by_rep = analysis.capacities_by_repetition(levels, config.slo_p99_ms)
        spread = analysis.summarise_repetitions([by_rep.get(r) for r in range(config.repetitions)])
        processes = collected["processes"]
        peak_rss_total = round(max(collected["peak_rss_totals"]) if collected["peak_rss_totals"] else 0.0, 1)
        cpu_per_1k = analysis.median_cpu_seconds_per_1k(levels, config.slo_p99_ms)
        architectures[name] = {
            "capacity_rps": spread["median"],
            "capacity_spread": spread,
            "p50_at_capacity_ms": analysis.median_at_capacity(levels, config.slo_p99_ms, "p50_ms"),
            "p99_at_capacity_ms": analysis.median_at_capacity(levels, config.slo_p99_ms, "p99_ms"),
            "cost_per_million_usd": analysis.cost_per_million(spread["median"], cpu_per_1k, peak_rss_total,
                                                              arch_budget, prices),
            "cpu_seconds_per_1k": cpu_per_1k,
            "levels": levels,
            "stages_ms": stage_breakdown(collected["timings"]),
            "processes": processes,
            "peak_rss_mb_total": peak_rss_total,
            "errors": collected["errors"],
            "applied": collected["applied"],
        }
        cache = collected["cache"]
        if cache["source"]:
            architectures[name]["cache"] = cache_summary(cache["hits"], cache["misses"], cache["source"])
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "label": config.label,
            "started_at": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "finished_at": finished.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "duration_s": round((finished - started).total_seconds(), 1),
            "git_sha": git_sha(),
            "quick": config.quick,
            "repetitions": config.repetitions,
            "slo_p99_ms": config.slo_p99_ms,
            "target": config.target,
            "cpu_budget": budget,
            "machine": machine_info(),
            "settings": {
                "architectures": config.archs, "model_profile": config.profile,
                "step_seconds": config.step_seconds, "probe_seconds": config.probe_seconds,
                "ladder_fractions": list(config.ladder), "user_rps": USER_RPS, "probe_users": PROBE_USERS,
                **{k.lower(): v for k, v in config.extra_settings.items()},
            },
            "knobs": knobs.record(config.knobs),
            "prices": prices,
        },
        "architectures": architectures,
    }


def _merge_processes(runs: list[list[dict]]) -> list[dict]:
    """Per process name: CPU summed over repetitions, peak RSS the highest seen."""
    merged: dict[str, dict] = {}
    for processes in runs:
        for process in processes:
            entry = merged.setdefault(process["name"], {"name": process["name"], "cpu_seconds": 0.0,
                                                        "peak_rss_mb": 0.0})
            entry["cpu_seconds"] = round(entry["cpu_seconds"] + process["cpu_seconds"], 3)
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], process["peak_rss_mb"])
    return sorted(merged.values(), key=lambda p: p["name"])


def run(config: BenchConfig, stop: StopSignals | None = None, link_latest: bool = True) -> Path:
    started = datetime.now(UTC)
    clock = time.monotonic()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = config.out / f"{stamp}-{config.label}"
    where = targets.check(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    prices = analysis.load_prices(config.prices)
    progress(f"target: {where}")
    progress(f"run {run_dir}: {', '.join(config.archs)} x {config.repetitions} repetition(s), "
             f"SUT on CPUs {config.sut_cpus}, Locust on CPUs {config.loadgen_cpus}, SLO p99 {config.slo_p99_ms:g} ms, "
             f"profile {config.profile}{', QUICK' if config.quick else ''}")
    changed = knobs.non_default(config.knobs)
    if changed:
        progress("knobs: " + ", ".join(f"{k.variable}={k.show(config.knobs[k.key])}" for k in changed))
    collected = {arch: {"levels": [], "timings": [], "processes": [], "peak_rss_totals": [], "errors": {},
                        "budget": None, "applied": None, "cache": {"hits": 0.0, "misses": 0.0, "source": None}}
                 for arch in config.archs}
    (run_dir / "locust").mkdir(exist_ok=True)
    (run_dir / "locust" / RECORDS_FILE).write_text(json.dumps(held_out_records()))
    loadgen = Supervisor(log_dir=run_dir / "logs" / "locust", cpus=config.loadgen_cpus)
    try:
        for repetition in range(config.repetitions):
            for architecture in config.archs:
                progress(f"{architecture} r{repetition}: starting")
                outcome = run_architecture(architecture, repetition, config, run_dir, loadgen, stop)
                entry = collected[architecture]
                entry["levels"].extend(outcome["levels"])
                entry["timings"].extend(outcome["timings"])
                entry["processes"].append(outcome["processes"])
                entry["peak_rss_totals"].append(sum(p["peak_rss_mb"] for p in outcome["processes"]))
                for status, count in outcome["errors"].items():
                    entry["errors"][status] = entry["errors"].get(status, 0) + count
                entry["budget"] = outcome["budget"] or entry["budget"]
                entry["applied"] = entry["applied"] or outcome["applied"]
                if outcome["cache"]["source"]:
                    entry["cache"] = {"hits": entry["cache"]["hits"] + outcome["cache"]["hits"],
                                      "misses": entry["cache"]["misses"] + outcome["cache"]["misses"],
                                      "source": entry["cache"]["source"] or outcome["cache"]["source"]}
    finally:
        loadgen.stop(grace_s=2)
    for entry in collected.values():
        entry["processes"] = _merge_processes(entry["processes"])
    results = assemble(config, collected, prices, started, datetime.now(UTC))
    analysis.validate_results(results)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from benchmarks.report import write_report

    written = write_report(run_dir)
    if link_latest:
        latest = config.out / "latest"
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(run_dir.name)
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
        print(f"\n[bench] {reason}: stopped every process; partial output left in {config.out}", flush=True)
        return 130
    except targets.TargetUnavailable as missing:
        print(f"[bench] {missing}", file=sys.stderr, flush=True)
        return 3
    results = json.loads((run_dir / "results.json").read_text())
    from benchmarks.report import headline

    print("\n" + headline(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
