"""The events of a chaos timeline, per architecture: what each one does to the deployment.

An action gets its `Event` and may move `started`/`finished` (the overload starts with its first
request, not with its client's start-up); it returns requests of its own load to merge into the
timeline, or None.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import slo_damage
from benchmarks.chaos.config import ChaosConfig
from benchmarks.measure import loadgen
from lab.launch import Deployment
from lab.supervisor import Supervisor
from lab.watchdog import StopSignals
from servinglab.model.artifact import set_current


@dataclass
class Event:
    name: str
    description: str
    started: float = 0.0  # epoch seconds
    finished: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


Action = Callable[[Event], "list | None"]
Timeline = list[tuple[Event, Action]]


def wait_for(condition: Callable[[], bool], timeout_s: float, stop: StopSignals) -> None:
    """Poll `condition` until it holds; Ctrl-C still stops, and a deadline gives up."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        stop.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting after {timeout_s:.0f}s")
        time.sleep(0.05)


def microservices_events(
    deployment: Deployment, profile_dir: Path, v2: str, stop: StopSignals, overload: Action
) -> Timeline:
    def crash(_event):
        deployment.kill("postprocess")

    def recover(_event):
        deployment.start_replica("postprocess")

    def replica_crash(_event):
        deployment.kill("inference", 0)

    def replica_recover(_event):
        deployment.start_replica("inference", 0)

    def rolling(_event):
        deployment.rolling_restart("inference")

    def rollout(_event):
        set_current(profile_dir, v2)
        deployment.rolling_restart("inference")
        deployment.rolling_restart("preprocess")

    return [
        (Event("crash", "SIGKILL the only postprocess process"), crash),
        (Event("recover", "start postprocess again; the gateway reconnects by itself"), recover),
        (
            Event(
                "replica crash",
                "SIGKILL one of the 2 inference replicas; the gateway balances over both",
            ),
            replica_crash,
        ),
        (
            Event("replica recover", "start that inference replica again, on its port"),
            replica_recover,
        ),
        (
            Event(
                "rolling restart",
                "restart the 2 inference replicas one at a time (new one up, then old drained)",
            ),
            rolling,
        ),
        (
            Event("model rollout", f"serve {v2}: inference replicas one by one, then preprocess"),
            rollout,
        ),
        (Event("overload", "an open-loop burst of several times capacity"), overload),
    ]


def monolith_events(
    deployment: Deployment, profile_dir: Path, v2: str, stop: StopSignals, overload: Action
) -> Timeline:
    state: dict[str, Any] = {}

    def crash(_event):
        workers = deployment.entry_workers()
        state["victim"], state["count"] = workers[0], len(workers)
        os.kill(workers[0], signal.SIGKILL)

    def recover(_event):
        # Nothing to do: gunicorn's master replaces the worker. The event lasts until it has.
        wait_for(
            lambda: (
                state["victim"] not in deployment.entry_workers()
                and len(deployment.entry_workers()) == state["count"]
            ),
            60,
            stop,
        )

    def reload_and_wait(_event=None):
        old = set(deployment.entry_workers())
        deployment.reload_workers()
        wait_for(
            lambda: (
                not old & set(deployment.entry_workers())
                and len(deployment.entry_workers()) == len(old)
            ),
            60,
            stop,
        )

    def rollout(_event):
        set_current(profile_dir, v2)
        reload_and_wait()

    return [
        (Event("crash", "SIGKILL one of the 2 gunicorn workers"), crash),
        (Event("recover", "gunicorn's master starts a replacement worker by itself"), recover),
        (
            Event(
                "rolling restart",
                "TTIN then TTOU, worker by worker: a new worker has loaded the "
                "app before an old one drains and exits",
            ),
            reload_and_wait,
        ),
        (
            Event(
                "model rollout", f"serve {v2}: point CURRENT at it, then the same TTIN/TTOU roll"
            ),
            rollout,
        ),
        (Event("overload", "an open-loop burst of several times capacity"), overload),
    ]


def restart_redis(deployment: Deployment) -> None:
    """Start the deployment's redis-server again after it died, on the same unix socket, empty."""
    old = deployment.redis
    if old is None:
        raise RuntimeError("this deployment runs no redis-server")
    old.popen.wait(timeout=10)
    deployment.supervisor.processes[:] = [
        p for p in deployment.supervisor.processes if p is not old
    ]
    deployment.redis = deployment.supervisor.start(old.spec)
    deployment.supervisor.wait_ready([deployment.redis], deployment.ready_timeout_s)


def cache_events(deployment: Deployment) -> Timeline:
    def lose(_event):
        if deployment.redis is None:
            raise RuntimeError("this deployment runs no redis-server")
        os.kill(deployment.redis.pid, signal.SIGKILL)

    def back(_event):
        restart_redis(deployment)

    return [
        (
            Event(
                "cache loss",
                "SIGKILL redis-server: every lookup fails at once and the request computes",
            ),
            lose,
        ),
        (Event("cache back", "start redis-server again: the same address, an empty cache"), back),
    ]


def overload_action(
    supervisor: Supervisor,
    url: str,
    run_dir: Path,
    architecture: str,
    config: ChaosConfig,
    capacity_rps: float,
    stop: StopSignals,
) -> Action:
    """The overload event: an open-loop burst of BURST_FACTOR x the probed capacity."""

    def burst(event: Event) -> list:
        offered = config.burst_factor * capacity_rps
        samples = loadgen.run_burst(
            supervisor,
            "burst",
            url,
            offered,
            config.burst_seconds,
            run_dir / f"{architecture}.burst.json",
            run_dir / loadgen.RECORDS_FILE,
            stop,
        )
        sent = samples.requests
        # The event is the burst itself: from its first request (after the client's start-up).
        event.started = samples.started_at
        event.finished = event.started + config.burst_seconds
        event.description = (
            f"open-loop burst of {offered:.0f} req/s ({config.burst_factor:g} x "
            f"the {capacity_rps:.0f} req/s probed capacity) for "
            f"{config.burst_seconds:g} s"
        )
        event.details = {
            "capacity_rps": round(capacity_rps, 1),
            "offered_rps": round(offered, 1),
            "seconds": config.burst_seconds,
            "sent_rps": round(len(sent) / config.burst_seconds, 1),
            "unsent": samples.unsent,
            "burst_requests": len(sent),
            "burst_ok": sum(1 for r in sent if slo_damage.is_success(r[2])),
            "burst_shed": sum(1 for r in sent if r[2] == 503),
        }
        return sent

    return burst
