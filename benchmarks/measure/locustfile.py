"""Locust user for the benchmark and the live demo: one penguin per request, real held-out birds.

Rate: with `LAB_BENCH_USER_RPS` set, each user sends one request per period from a random phase,
so users x rate is a constant target arrival rate spread evenly over time; unset, users send as
fast as answers come back (the probe and the demo). Locust's own `constant_throughput` was not
used: measured here, it keeps users in lockstep, so every second began with a burst of one
request per user that queued at the server (p50 ~20 ms at 30 req/s on an idle server).

Measurement (event hooks): when `LAB_BENCH_SAMPLES` names a file, every request completed after
spawning is recorded with its exact latency (Locust's own percentiles round to whole
milliseconds), status and `Server-Timing` header, together with this process's CPU time, and
written there when the test stops. Headers are parsed later by the bench, not here: this
process's CPU is the load generator's budget.

Length: with `LAB_BENCH_MEASURE_S` set, the measurement lasts that long from the moment every user
has spawned, and then the run quits. Locust's own `--run-time` counts from before spawning, so on a
busy load-generator CPU spawning ate a short step: a 1 s step recorded 0-5 requests and a made-up
rate. `--run-time` is then only a cap.
"""

from __future__ import annotations

import json
import os
import random
import time

import gevent
from locust import FastHttpUser, constant, events, task

USER_RPS = float(os.environ.get("LAB_BENCH_USER_RPS", "0"))
SAMPLES_PATH = os.environ.get("LAB_BENCH_SAMPLES")
RECORDS_PATH = os.environ.get("LAB_BENCH_RECORDS")
# make chaos: also keep which model version answered each request (costs a JSON parse per answer).
RECORD_VERSIONS = os.environ.get("LAB_BENCH_RECORD_VERSIONS", "") not in ("", "0")
# Set: the cache experiment's workload (benchmarks.measure.workload), this share of requests
# repeating earlier inputs; unset: uniformly random held-out birds, as before.
CACHE_RATE = os.environ.get("LAB_BENCH_CACHE_RATE")
SEED = int(os.environ.get("LAB_BENCH_SEED", "0"))
MEASURE_S = float(os.environ.get("LAB_BENCH_MEASURE_S") or 0)


def _records() -> list[dict]:
    # The benchmark hands over the records as a file: importing the data module pulls in
    # scikit-learn, which takes longer than a short step, and Locust's run-time clock is ticking.
    if RECORDS_PATH:
        with open(RECORDS_PATH) as handle:
            return json.load(handle)
    from servinglab.model.data import held_out_records

    return held_out_records()


# Bodies are serialised once: building JSON per request would cost the load generator CPU.
RECORDS = _records()
BODIES = [json.dumps({"instances": [record]}).encode() for record in RECORDS]
HEADERS = {"Content-Type": "application/json"}
# Same request mix in every run; which user sends which body still depends on scheduling.
random.seed(SEED)
if CACHE_RATE not in (None, ""):
    from benchmarks.measure.workload import DEFAULT_ZIPF_S, Workload

    # One sequence shared by every user of this process, so "earlier" means earlier in time.
    WORKLOAD = Workload(
        RECORDS, float(CACHE_RATE), SEED, float(os.environ.get("LAB_BENCH_ZIPF_S", DEFAULT_ZIPF_S))
    )
    next_body = WORKLOAD.__next__
else:

    def next_body() -> bytes:
        return random.choice(BODIES)


class Recorder:
    def __init__(self) -> None:
        self.active = False
        # One row per completed request: start time (epoch s), latency (ms), status (0 = no answer)
        self.requests: list[tuple[float, float, int]] = []
        self.server_timings: list[str] = []
        self.versions: list[str] = []  # parallel to `requests` when RECORD_VERSIONS
        self.started_at = self.stopped_at = 0.0
        self.cpu_started = self.cpu_stopped = 0.0

    def start(self) -> None:
        self.active = True
        self.started_at, self.cpu_started = time.time(), time.process_time()

    def stop(self) -> None:
        if self.active:
            self.active = False
            self.stopped_at, self.cpu_stopped = time.time(), time.process_time()

    def record(self, response_time, response, exception, start_time, **_kwargs) -> None:
        if not self.active:
            return
        status = (
            (getattr(response, "status_code", 0) or 0)
            if exception is None or response is not None
            else 0
        )
        self.requests.append(
            (start_time, response_time, status if exception is None else (status or 0))
        )
        if RECORD_VERSIONS:
            self.versions.append(_answering_version(response) if exception is None else "")
        if exception is None:
            timing = response.headers.get("Server-Timing")
            if timing:
                self.server_timings.append(timing)

    def write(self, path: str) -> None:
        self.stop()
        document = {
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "cpu_seconds": self.cpu_stopped - self.cpu_started,
            "requests": self.requests,
            "server_timings": self.server_timings,
        }
        if RECORD_VERSIONS:
            document["versions"] = self.versions
        with open(path, "w") as handle:
            json.dump(document, handle)


def _answering_version(response) -> str:
    try:
        return json.loads(response.content)["model"]["version"]
    except (ValueError, KeyError, TypeError):
        return ""


recorder = Recorder()


_environment = None


@events.init.add_listener
def _keep_environment(environment, **_kwargs):
    global _environment
    _environment = environment


def _end_measurement() -> None:
    recorder.stop()
    if _environment is not None and _environment.runner is not None:
        _environment.runner.quit()  # fires test_stop, where the samples are written


@events.spawning_complete.add_listener
def _measure_from_full_load(user_count, **_kwargs):
    if recorder.started_at:
        return  # spawning completes again if the user count changes: the window is already open
    recorder.start()
    if MEASURE_S > 0:
        gevent.spawn_later(MEASURE_S, _end_measurement)


@events.request.add_listener
def _record(**kwargs):
    recorder.record(**kwargs)


@events.test_stop.add_listener
def _write(**_kwargs):
    if SAMPLES_PATH:
        recorder.write(SAMPLES_PATH)


def paced(rate: float):
    """Wait so that a user starts one task every 1/rate seconds, on a fixed random phase.

    A user that falls behind (a slow answer) catches up with back-to-back requests, as arrivals
    from independent clients would keep coming; if the server cannot keep up at all, the step
    reports an achieved rate below its target.
    """
    period = 1.0 / rate

    def wait_time(user) -> float:
        user._next_due = getattr(user, "_next_due", time.monotonic()) + period
        return max(0.0, user._next_due - time.monotonic())

    return wait_time


class PenguinUser(FastHttpUser):
    wait_time = paced(USER_RPS) if USER_RPS > 0 else constant(0)

    def on_start(self) -> None:
        if USER_RPS > 0:
            # Users spawn together; a random first delay gives each its own phase.
            delay = random.uniform(0, 1.0 / USER_RPS)
            gevent.sleep(delay)
            self._next_due = time.monotonic()

    @task
    def predict(self) -> None:
        # Bytes go out as they are; locust annotates only str and dict.
        self.client.post("/v1/predict", data=next_body(), headers=HEADERS)  # type: ignore[arg-type]
