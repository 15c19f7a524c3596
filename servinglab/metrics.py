"""Prometheus metrics shared by the monolith and the gateway.

Under gunicorn every worker is a process, so counters would be per worker and `/metrics` would
answer for whichever worker took the scrape. With `PROMETHEUS_MULTIPROC_DIR` set (the supervisor
and the gunicorn config do it) the workers share files and the scrape sums them.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

# Buckets from 100 us to 5 s: single-row predictions live in the first few, overload in the last.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("lab_http_requests", "HTTP requests by route and status", ["route", "method", "status"])
REQUEST_SECONDS = Histogram("lab_http_request_duration_seconds", "Time in the HTTP handler", ["route"],
                            buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram("lab_stage_duration_seconds",
                          "Per-stage compute, and per-hop transport time in microservices", ["stage"],
                          buckets=LATENCY_BUCKETS)
INSTANCES = Counter("lab_predicted_instances", "Instances predicted")


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
