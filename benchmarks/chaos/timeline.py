"""One chaos timeline: steady load, a quiet phase, then each event and a phase after it; and the
summary of what it did, second by second and event by event (`benchmarks.slo_damage`)."""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import slo_damage
from benchmarks.chaos.config import ChaosConfig
from benchmarks.chaos.events import Event, Timeline
from benchmarks.measure import loadgen, metrics
from benchmarks.measure.resources import ProcessSampler
from benchmarks.reporting.progress import Progress
from lab.launch import Deployment
from lab.supervisor import Supervisor
from lab.watchdog import StopSignals

progress = Progress("chaos")
CACHE_LOOKUPS = "lab_cache_lookups_total"


def cache_lookups(metrics_text: str) -> dict[str, float]:
    """Cache lookups by result (hit, miss, skipped) summed over placements, from /metrics text."""
    counts = {"hit": 0.0, "miss": 0.0, "skipped": 0.0}
    for result, value in metrics.totals_by_label(metrics_text, CACHE_LOOKUPS, "result").items():
        if result in counts:
            counts[result] += value
    return counts


def hit_rate_per_second(
    scrapes: list[tuple[float, dict[str, float]]], origin: float, seconds: int
) -> list[float | None]:
    """Hit rate (hits / all lookups, skipped ones included) per second, from counter deltas."""
    hits, lookups = [0.0] * seconds, [0.0] * seconds
    for (_, before), (when, after) in itertools.pairwise(scrapes):
        index = math.floor(when - origin)
        if 0 <= index < seconds:
            delta = {k: max(after[k] - before[k], 0.0) for k in after}
            hits[index] += delta["hit"]
            lookups[index] += sum(delta.values())
    return [round(h / n, 4) if n else None for h, n in zip(hits, lookups, strict=True)]


def pause(seconds: float, stop: StopSignals) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stop.check()
        time.sleep(0.1)


# Locust's start-up (imports, spawning users) can take seconds on a busy machine: the quiet phase,
# and with it every event's time, is counted from the first answers the servers report.
FIRST_ANSWERS_TIMEOUT_S = 120.0


def wait_for_first_answers(url: str, before: float, stop: StopSignals) -> None:
    """Until the deployment reports more answered predictions than `before` (Locust is sending)."""
    deadline = time.monotonic() + FIRST_ANSWERS_TIMEOUT_S
    while (metrics.predictions_answered(url) or 0.0) <= before:
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"the load generator sent no answered request within {FIRST_ANSWERS_TIMEOUT_S:g} s"
            )
        pause(0.25, stop)


def run_timeline(
    label: str,
    deployment: Deployment,
    supervisor: Supervisor,
    config: ChaosConfig,
    run_dir: Path,
    timeline: Timeline,
    stop: StopSignals,
    locust_env: dict[str, str] | None = None,
    scrape_cache: bool = False,
    final_phases: float = 1.0,
) -> dict:
    """Steady load, a phase of quiet, then each event followed by a phase; the summary of it all."""
    scraper = metrics.Scraper(deployment.url, cache_lookups) if scrape_cache else None
    extra: list = []
    events: list[Event] = []
    with ProcessSampler(deployment.supervisor) as sampler:
        if scraper:
            scraper.__enter__()
        try:
            answered_before = metrics.predictions_answered(deployment.url) or 0.0
            locust = loadgen.start_locust(
                supervisor,
                "locust",
                deployment.url,
                config.users,
                config.rate / config.users,
                3600,
                run_dir / f"{label}.samples.json",
                run_dir / loadgen.RECORDS_FILE,
                record_versions=True,
                extra_env=locust_env,
            )
            wait_for_first_answers(deployment.url, answered_before, stop)
            load_started = time.time()
            pause(config.phase_seconds, stop)
            for position, (event, action) in enumerate(timeline):
                progress(f"{label}: {event.name}: {event.description}")
                event.started = time.time()
                extra.extend(action(event) or [])
                event.finished = event.finished or time.time()
                events.append(event)
                last = position == len(timeline) - 1
                pause(config.phase_seconds * (final_phases if last else 1.0), stop)
            # SIGTERM makes Locust stop its users and fire test_stop, where the recorder writes.
            samples = locust.stop(grace_s=30)
        finally:
            if scraper:
                scraper.__exit__(None, None, None)
    return summarise(
        samples, events, load_started, config, extra, sampler, scraper.samples if scraper else None
    )


def summarise(
    samples: loadgen.Samples,
    events: list[Event],
    load_started: float,
    config: ChaosConfig,
    extra: list | None = None,
    sampler: ProcessSampler | None = None,
    cache_scrapes: list[tuple[float, Any]] | None = None,
) -> dict:
    """Timeline and per-event damage of one run, from Locust's samples plus any burst's requests."""
    steady = [tuple(r) for r in samples.requests]
    requests = sorted(steady + [tuple(r) for r in extra or []])
    origin = samples.started_at or load_started
    end = samples.stopped_at or (requests[-1][0] if requests else origin)
    spans = slo_damage.spans([(e.name, e.started) for e in events], end)
    rows, damage = slo_damage.damages(requests, spans, origin, end, config.slo_ms, config.window_s)
    if sampler is not None:
        cores = max(len(config.sut_cpus), 1)
        for row in rows:
            start = origin + row["second"]
            row["cpu_percent"] = round(100.0 * sampler.cpu_between(start, start + 1) / cores, 1)
    if cache_scrapes is not None:
        rates = hit_rate_per_second(cache_scrapes, origin, len(rows))
        for row, rate in zip(rows, rates, strict=True):
            row["cache_hit_rate"] = rate
    outcomes = []
    for event, outcome in zip(events, damage, strict=True):
        outcomes.append(
            {
                "event": event.name,
                "description": event.description,
                "at_s": round(event.started - origin, 2),
                "action_s": round(event.finished - event.started, 2),
                **{k: v for k, v in outcome.items() if k != "event"},
                **event.details,
            }
        )
    versions = Counter(v for v in samples.versions if v)
    return {
        "requests": len(requests),
        "failed": sum(1 for r in requests if not slo_damage.is_success(r[2])),
        "events": outcomes,
        "timeline": rows,
        "versions": dict(versions),
    }
