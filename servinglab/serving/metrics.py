"""Prometheus metrics for the monolith and the gateway, cheap enough for the hot path.

Why not prometheus_client's multiprocess mode: it writes every observation to a memory-mapped
file under a lock, ~12 writes per prediction here, which measured ~140 us per request on the
reference machine: more than the whole ML pipeline, and it would distort the very comparison
this lab makes. Instead each process aggregates in memory (a few dictionary updates per request)
and a background thread writes a snapshot once a second to `LAB_METRICS_DIR`; a scrape merges
the snapshots of every process (gunicorn workers included, dead ones too, so counters never go
backwards). Without `LAB_METRICS_DIR` a scrape shows the answering process only.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from bisect import bisect_left
from pathlib import Path

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_INTERVAL_S = 1.0
# Buckets from 100 us to 5 s: single-row predictions live in the first few, overload in the last.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
# Micro-batching: sizes are counts (powers of two up to a full request of MAX_INSTANCES rows), and
# a queue wait starts at tens of microseconds: the thread hand-off alone when nothing else queues.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
QUEUE_WAIT_BUCKETS = (0.00001, 0.000025, 0.00005, *LATENCY_BUCKETS)


class Counter:
    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...]):
        self.name, self.help, self.label_names = name, help_text, label_names
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def snapshot(self) -> dict:
        return {"|".join(k): v for k, v in self.values.items()}


class Histogram:
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: tuple[str, ...],
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ):
        self.name, self.help, self.label_names, self.buckets = name, help_text, label_names, buckets
        # Per label set: [count per bucket (last one is +Inf)..., sum]
        self.values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0.0] * (len(self.buckets) + 2)
        row[bisect_left(self.buckets, seconds)] += 1
        row[-1] += seconds

    def snapshot(self) -> dict:
        return {"|".join(k): list(v) for k, v in self.values.items()}


class Gauge:
    """A value that is set, not added: across processes the one set most recently wins."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...]):
        self.name, self.help, self.label_names = name, help_text, label_names
        self.values: dict[tuple[str, ...], list[float]] = {}  # labels -> [value, time set]

    def set(self, labels: tuple[str, ...], value: float) -> None:
        self.values[labels] = [float(value), time.time()]

    def snapshot(self) -> dict:
        return {"|".join(k): list(v) for k, v in self.values.items()}


REQUESTS = Counter(
    "lab_http_requests_total",
    "HTTP requests by route, method and status",
    ("route", "method", "status"),
)
REQUEST_SECONDS = Histogram(
    "lab_http_request_duration_seconds", "Time in the HTTP handler", ("route",)
)
STAGE_SECONDS = Histogram(
    "lab_stage_duration_seconds",
    "Per-stage compute, and per-hop transport time in microservices",
    ("stage",),
)
INSTANCES = Counter("lab_predicted_instances_total", "Instances predicted", ())
SHED = Counter(
    "lab_shed_requests_total", "Requests refused with 503 to shed load, by reason", ("reason",)
)
BATCH_REQUESTS = Histogram(
    "lab_batch_requests",
    "Requests answered by one micro-batched model call",
    (),
    BATCH_SIZE_BUCKETS,
)
BATCH_ROWS = Histogram(
    "lab_batch_rows", "Rows in one micro-batched model call", (), BATCH_SIZE_BUCKETS
)
BATCH_QUEUE_SECONDS = Histogram(
    "lab_batch_queue_wait_seconds",
    "Time from a request joining the micro-batch queue to its model call starting",
    (),
    QUEUE_WAIT_BUCKETS,
)
# Prediction cache (servinglab.serving.cache), counted per instance. placement: where the cache sits
# (monolith, gateway, inference). result: hit, miss, or skipped (the cache could not be used:
# Redis down or its breaker open, or the model version unknown).
CACHE_LOOKUPS = Counter(
    "lab_cache_lookups_total",
    "Prediction cache lookups per instance, by placement and result",
    ("placement", "result"),
)
CACHE_ERRORS = Counter(
    "lab_cache_errors_total",
    "Failed calls to the shared cache (Redis), by placement and operation",
    ("placement", "operation"),
)
# Gateway: what the last deep readiness check (/readyz) saw of each stage; the Kubernetes probes
# use /readyz/local, so this is where a stage outage shows without unreadying every gateway pod.
STAGE_UP = Gauge(
    "lab_stage_up", "1 if the stage answered SERVING at the last /readyz, else 0", ("stage",)
)
# Which gunicorn worker answered: keep-alive connections stay with the worker that accepted them,
# so "2 workers" can mean one in practice. Labelled by pid; each worker publishes only its own
# series, so the merge's sum over processes keeps one series per worker (dead ones included).
WORKER_REQUESTS = Counter(
    "lab_http_worker_requests_total", "HTTP requests answered, by gunicorn worker pid", ("worker",)
)
ALL = (
    REQUESTS,
    WORKER_REQUESTS,
    REQUEST_SECONDS,
    STAGE_SECONDS,
    INSTANCES,
    SHED,
    BATCH_REQUESTS,
    BATCH_ROWS,
    BATCH_QUEUE_SECONDS,
    CACHE_LOOKUPS,
    CACHE_ERRORS,
    STAGE_UP,
)

_GAUGES = frozenset(metric.name for metric in ALL if metric.kind == "gauge")
_flusher_pid: int | None = None


def _directory() -> Path | None:
    value = os.environ.get("LAB_METRICS_DIR")
    return Path(value) if value else None


def _snapshot() -> dict:
    return {metric.name: metric.snapshot() for metric in ALL}


def flush() -> None:
    directory = _directory()
    if directory is None:
        return
    target = directory / f"{os.getpid()}.json"
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(_snapshot()))
    temporary.replace(target)


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_INTERVAL_S)
        # A full disk must not take the server down; the next flush retries.
        with contextlib.suppress(OSError):
            flush()


def start_flusher() -> None:
    """Start (once per process, so after fork) the thread that publishes this process's metrics."""
    global _flusher_pid
    if _directory() is None or _flusher_pid == os.getpid():
        return
    _flusher_pid = os.getpid()
    for metric in ALL:
        metric.values.clear()  # numbers inherited from a parent belong to the parent's snapshot
    threading.Thread(target=_flush_forever, name="metrics-flush", daemon=True).start()


def _merged() -> dict[str, dict]:
    directory = _directory()
    if directory is None:
        return _snapshot()
    flush()
    merged: dict[str, dict] = {metric.name: {} for metric in ALL}
    for path in directory.glob("*.json"):
        try:
            snapshot = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced right now; its numbers arrive with the next scrape
        for name, series in snapshot.items():
            target = merged.setdefault(name, {})
            for key, value in series.items():
                if name in _GAUGES:
                    if key not in target or value[1] >= target[key][1]:
                        target[key] = list(value)
                elif isinstance(value, list):
                    current = target.setdefault(key, [0.0] * len(value))
                    target[key] = [a + b for a, b in zip(current, value)]
                else:
                    target[key] = target.get(key, 0.0) + value
    return merged


def _label_text(names: tuple[str, ...], key: str, extra: str = "") -> str:
    values = key.split("|") if names else []
    parts = [f'{name}="{value}"' for name, value in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def exposition() -> tuple[bytes, str]:
    """Prometheus text format 0.0.4 of every metric, summed over processes."""
    merged = _merged()
    lines: list[str] = []
    for metric in ALL:
        lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]
        for key, value in sorted(merged.get(metric.name, {}).items()):
            if metric.kind == "counter":
                lines.append(f"{metric.name}{_label_text(metric.label_names, key)} {value:g}")
                continue
            if metric.kind == "gauge":
                lines.append(f"{metric.name}{_label_text(metric.label_names, key)} {value[0]:g}")
                continue
            assert isinstance(metric, Histogram)
            cumulative = 0.0
            for bound, count in zip((*metric.buckets, float("inf")), value[:-1]):
                cumulative += count
                le = 'le="+Inf"' if bound == float("inf") else f'le="{bound:g}"'
                lines.append(
                    f"{metric.name}_bucket{_label_text(metric.label_names, key, le)} {cumulative:g}"
                )
            labels = _label_text(metric.label_names, key)
            lines.append(f"{metric.name}_sum{labels} {value[-1]:.9g}")
            lines.append(f"{metric.name}_count{labels} {cumulative:g}")
    return ("\n".join(lines) + "\n").encode(), CONTENT_TYPE
