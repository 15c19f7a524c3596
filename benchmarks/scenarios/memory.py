"""Scenario 2, "a model that is big in memory": copies per gunicorn worker against one inference
service holding the model once.

The `knn` profile is a nearest-neighbour model whose reference set (about a million synthetic
birds, `servinglab.model.estimators.AugmentedNeighborsClassifier`) is the model: ~140 MiB that
every process serving it holds. A monolith worker serves the whole pipeline, so each gunicorn
worker loads its own copy, unless gunicorn loads the app once in its master before forking
(`--preload`), and the workers share its pages copy-on-write. In the microservices only the
inference service holds the model; the gateway's workers and the other stages do not.

For each worker count (QUICK: 1 and 3; else 1, 2, 4 and 8; the gateway gets the same count as the
monolith, being the same HTTP front) it starts the monolith without and with preloading, and the
microservices, waits until every worker has loaded the app, serves a few requests, and samples the
PSS of every process (`benchmarks.measure.memory`: pages shared between processes are divided
among them, not counted once per process as RSS sums do). Memory is priced at the prices file's
GiB-hour rate. Each side's memory is fitted as fixed + per-worker x workers, and the break-even
worker count is where the monolith's line passes the microservices'.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks import analysis
from benchmarks.measure import memory
from benchmarks.scenarios import base
from benchmarks.scenarios.planner import HOURS_PER_MONTH

PROFILE = "knn"
QUICK_WORKERS = (1, 3)
WORKERS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Variant:
    """One way of deploying: an architecture, with or without gunicorn preloading."""

    key: str  # series name in charts and raw data
    architecture: str
    preload: bool
    description: str


VARIANTS = (
    Variant(
        "monolith",
        "monolith",
        False,
        "gunicorn gthread workers x 1 thread, each loading the app and the model after fork "
        "(preload_app = False, the lab's setting)",
    ),
    Variant(
        "monolith --preload",
        "monolith",
        True,
        "the same workers forked from a master that loaded the app and the model once "
        "(gunicorn --preload): pages shared copy-on-write",
    ),
    Variant(
        "microservices",
        "microservices",
        False,
        "a gateway with the same number of workers (no model), one process per stage; only "
        "the inference service loads the model",
    ),
)
# The process groups of the breakdown chart, by role (benchmarks.measure.memory.role_of).
BREAKDOWN = ("HTTP master", "HTTP workers", "preprocess", "inference", "postprocess")


def check(context: base.ScenarioContext) -> None:
    base.require_profile(context.models, PROFILE)
    analysis.load_prices(context.prices)


def measure(context: base.ScenarioContext, variant: Variant, workers: int) -> dict[str, Any]:
    """One deployment of `variant` with `workers` HTTP workers: its memory, as a JSON dict."""
    snapshot = memory.measure_deployment(
        variant.architecture,
        settings={
            "MODEL_DIR": context.models.resolve(),
            "MODEL_PROFILE": PROFILE,
            "HTTP_WORKERS": workers,
        },
        cpus=context.sut_cpus,
        log_dir=context.run_dir / "logs" / f"{variant.key.replace(' --', '-')}-{workers}",
        preload=variant.preload,
        check_stop=context.check_stop,
    )
    entry = next(
        p for p in snapshot.processes if p.name == p.group and p.name.startswith("gunicorn")
    )
    workers_memory = [
        p.memory for p in snapshot.processes if p.group == entry.group and p is not entry
    ]
    breakdown = {name: 0.0 for name in BREAKDOWN}
    breakdown["HTTP master"] = entry.memory.pss_mib
    breakdown["HTTP workers"] = sum(m.pss_mib for m in workers_memory)
    for role, role_memory in memory.per_replica(snapshot).items():
        if role in breakdown:
            breakdown[role] = role_memory.pss_mib
    return {
        "variant": variant.key,
        "workers": workers,
        **snapshot.as_dict(),
        "pss_per_worker_mib": round(
            sum(m.pss_mib for m in workers_memory) / max(len(workers_memory), 1), 2
        ),
        "breakdown_pss_mib": {name: round(value, 2) for name, value in breakdown.items()},
    }


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """(fixed, per worker) of the least-squares line through the points; None below 2 points."""
    if len(set(xs)) < 2:
        return None
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(intercept), float(slope)


def break_even(
    monolith: tuple[float, float] | None, microservices: tuple[float, float] | None
) -> float | None:
    """Workers at which the monolith's fitted memory reaches the microservices', or None when
    its per-worker growth is no steeper (then it never does)."""
    if monolith is None or microservices is None or monolith[1] <= microservices[1]:
        return None
    return (microservices[0] - monolith[0]) / (monolith[1] - microservices[1])


def _describe_break_even(workers: float | None, counts: Sequence[int]) -> str:
    if workers is None:
        return f"none: the monolith's memory grows no faster per worker ({min(counts)}-{max(counts)} measured)"
    if workers <= 1:
        return "microservices hold less from 1 worker"
    return f"microservices hold less from {math.ceil(workers)} workers (fitted break-even {workers:.1f})"


def monthly_usd(pss_mib: float | None, gib_hour_usd: float) -> float | None:
    return None if pss_mib is None else pss_mib / 1024 * gib_hour_usd * HOURS_PER_MONTH


def build_result(
    context: base.ScenarioContext,
    counts: Sequence[int],
    measured: Mapping[str, Mapping[int, dict[str, Any]]],
    prices: Mapping[str, Any],
) -> base.ScenarioResult:
    """The scenario's rows, charts and notes from what is measured so far."""
    gib_hour = float(prices["gib_hour_usd"])

    def total(key: str, workers: int) -> float | None:
        point = measured.get(key, {}).get(workers)
        return point["total"]["pss_mib"] if point else None

    def line(key: str) -> tuple[float, float] | None:
        points = sorted(measured.get(key, {}).items())
        return fit_line([w for w, _ in points], [p["total"]["pss_mib"] for _, p in points])

    lines = {variant.key: line(variant.key) for variant in VARIANTS}
    per_worker_copies = break_even(lines["monolith"], lines["microservices"])
    preloaded = break_even(lines["monolith --preload"], lines["microservices"])
    done = [w for w in counts if all(w in measured.get(v.key, {}) for v in VARIANTS)]
    top = max(done) if done else max(counts)
    result = base.ScenarioResult(
        name="memory",
        configurations={variant.key: variant.description for variant in VARIANTS},
        budget=(
            f"memory as measured (not limited), priced at {gib_hour:g} USD per GiB-hour; "
            f"start-up on {context.vcpus} vCPU (CPU {','.join(map(str, context.sut_cpus))})"
        ),
        raw={
            "profile": PROFILE,
            "worker_counts": list(counts),
            "gib_hour_usd": gib_hour,
            "fitted_mib": {
                key: None
                if fit is None
                else {"fixed": round(fit[0], 1), "per_worker": round(fit[1], 1)}
                for key, fit in lines.items()
            },
            "break_even_workers": {
                "monolith": None if per_worker_copies is None else round(per_worker_copies, 2),
                "monolith --preload": None if preloaded is None else round(preloaded, 2),
            },
            "measurements": [point for key in measured for point in measured[key].values()],
        },
    )
    result.rows = [
        base.row(
            f"memory (PSS) at {top} workers, a model copy per worker",
            "MiB",
            "lower",
            total("monolith", top),
            total("microservices", top),
            "Without preloading every gunicorn worker loads its own copy of the model, while the "
            "microservices hold it once, in the inference service, and their gateway workers "
            "carry none.",
            _describe_break_even(per_worker_copies, counts),
        ),
        base.row(
            f"memory (PSS) at {top} workers, gunicorn --preload",
            "MiB",
            "lower",
            total("monolith --preload", top),
            total("microservices", top),
            "Loaded before the fork, the model's pages are shared copy-on-write by every worker, "
            "so the monolith holds it once too and saves the other services' interpreters.",
            _describe_break_even(preloaded, counts),
        ),
        base.row(
            f"memory cost at {top} workers, a model copy per worker",
            "USD/month",
            "lower",
            monthly_usd(total("monolith", top), gib_hour),
            monthly_usd(total("microservices", top), gib_hour),
            "What the PSS above costs at the GiB-hour rate, all day: memory is cheap next to CPU, "
            "so this decides a bill only when the copies are many or the model large.",
            _describe_break_even(per_worker_copies, counts),
        ),
    ]
    xs = [float(w) for w in counts]
    marks = [
        (value, f"break-even ({label})")
        for value, label in ((per_worker_copies, "copy per worker"), (preloaded, "preload"))
        if value is not None and min(counts) <= value <= max(counts) * 1.5
    ]
    result.charts = [
        base.ChartData(
            "pss-by-workers",
            f"Memory (PSS) of the whole deployment against HTTP workers, {PROFILE} model",
            "HTTP workers (monolith workers; gateway workers)",
            "PSS, MiB",
            "Each point is one deployment, sampled after every worker loaded the app and served "
            "requests. A steeper line pays for a model copy per worker; where it passes the "
            "microservices' line, one inference service holding the model once is cheaper.",
            [base.Series(v.key, xs, [total(v.key, w) for w in counts]) for v in VARIANTS],
            marks=marks,
        ),
        base.ChartData(
            "pss-breakdown",
            f"Where the memory is, at {top} workers (PSS, MiB)",
            "process group",
            "PSS, MiB",
            "The HTTP workers' bar is all workers together. Without preloading it holds the "
            "model once per worker; with it, the master holds the model and the workers share it.",
            [
                base.Series(
                    v.key,
                    [float(i) for i in range(len(BREAKDOWN))],
                    [
                        (measured.get(v.key, {}).get(top) or {})
                        .get("breakdown_pss_mib", {})
                        .get(name)
                        for name in BREAKDOWN
                    ],
                )
                for v in VARIANTS
            ],
            kind="bar",
            categories=list(BREAKDOWN),
        ),
    ]
    result.notes = _notes(measured, top)
    first = result.rows[0]
    result.summary = (
        f"At {top} workers with a model copy per worker: {first.winner} "
        f"({first.by_how_much}); {first.crossover}. With gunicorn --preload: "
        f"{result.rows[1].winner} ({result.rows[1].by_how_much})."
    )
    return result


def _notes(measured: Mapping[str, Mapping[int, dict[str, Any]]], top: int) -> list[str]:
    notes = [
        "PSS divides every shared page among the processes that map it, so summing it over a "
        "deployment counts shared pages once; library pages are also shared with processes "
        "outside the deployment (other Python processes of this virtualenv), which makes the "
        "figures, if anything, slightly low.",
        "Preloading has a price the memory does not show: new workers are forked from the "
        "master's already-loaded app, so a worker-by-worker reload cannot bring a new model or "
        "setting (scenario 4); only restarting the whole master does.",
    ]
    preloaded = measured.get("monolith --preload", {}).get(top)
    if preloaded:
        notes.append(
            f"With preloading at {top} workers the processes' RSS adds up to "
            f"{preloaded['total']['rss_mib']:.0f} MiB, their PSS to "
            f"{preloaded['total']['pss_mib']:.0f} MiB: an RSS sum counts every shared page once "
            "per worker."
        )
    micro = measured.get("microservices", {}).get(top)
    if micro:
        notes.append(
            f"A gateway worker holds {micro['pss_per_worker_mib']:.0f} MiB (PSS) without any "
            "model: it imports the servinglab package, scikit-learn and pandas included. A gateway "
            "that imported only its HTTP and gRPC code would move the break-even lower."
        )
    return notes


def run_with(context: base.ScenarioContext, counts: Sequence[int]) -> base.ScenarioResult:
    """The scenario over the worker counts `counts` (the tests use a short list)."""
    prices = analysis.load_prices(context.prices)
    measured: dict[str, dict[int, dict[str, Any]]] = {variant.key: {} for variant in VARIANTS}
    for workers in counts:
        for variant in VARIANTS:
            context.check_stop()
            context.progress(f"memory: {variant.key}, {workers} worker(s): starting")
            point = measure(context, variant, workers)
            measured[variant.key][workers] = point
            context.progress(
                f"memory: {variant.key}, {workers} worker(s): PSS {point['total']['pss_mib']:.0f} "
                f"MiB (RSS sum {point['total']['rss_mib']:.0f} MiB)"
            )
            context.checkpoint(build_result(context, counts, measured, prices))
    return build_result(context, counts, measured, prices)


def run(context: base.ScenarioContext) -> base.ScenarioResult:
    return run_with(context, QUICK_WORKERS if context.quick else WORKERS)


SCENARIO = base.Scenario(
    name="memory",
    number=2,
    title="A model that is big in memory",
    question="A nearest-neighbour model holds ~140 MiB of reference rows. As the monolith's "
    "gunicorn workers grow, when do their copies cost more than one inference service holding "
    "the model once? And what changes if gunicorn loads the model before forking (--preload)?",
    run=run,
    estimate_s=(30.0, 100.0),
    check=check,
)
