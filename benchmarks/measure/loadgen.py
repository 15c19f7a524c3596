"""The load generators' driver: runs in their own processes that return every request they made.

A load generator runs as its own process, pinned by the caller's `Supervisor` to the load
generator's CPUs, and writes what it measured to a JSON file when it stops; `Samples` reads it.

- Locust with `locustfile.py`, whose recorder keeps each request's start time, exact latency and
  status, the `Server-Timing` headers and Locust's own CPU time. Locust's CSVs (``--csv``) are
  written beside them for whoever wants Locust's own view. `run_locust`: one run that measures
  a fixed length from the moment every user has spawned, waited for (a benchmark step);
  `start_locust` + `LoadRun.stop`: a run the caller ends (load under a timeline of events).
- `burst.py`, an open-loop client that sends at a fixed rate whatever the answers: `run_burst`.
- `measurement_window`: the requests of a paced run once every user has phased in.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.measure.burst import DRAIN_S
from lab.supervisor import ManagedProcess, ProcessSpec, Supervisor, describe_exit, python_module
from lab.watchdog import StopSignals
from servinglab.model.data import held_out_records

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RECORDS_FILE = "records.json"  # the held-out birds Locust sends
PROBE_USERS = 32  # users of a closed-loop probe: enough to keep every server thread busy

Request = tuple[float, float, int]  # (start epoch s, latency ms, status; 0 = no answer)


def write_records(directory: Path) -> Path:
    """Write the held-out records Locust sends into ``directory/records.json``.

    A file, because importing the data module in Locust pulls in scikit-learn, which takes longer
    than a short step, while Locust's run-time clock is ticking.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RECORDS_FILE
    path.write_text(json.dumps(held_out_records()))
    return path


@dataclass
class Samples:
    """What one load generator recorded (locustfile.py's `Recorder`, or burst.py)."""

    started_at: float  # epoch seconds: every user spawned, or the first request was due
    stopped_at: float
    requests: list[Request]
    cpu_seconds: float = 0.0  # Locust's own CPU over the run
    server_timings: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)  # answering model version, if recorded
    unsent: int = 0  # burst: requests that never got a connection before the drain time ran out

    @classmethod
    def read(cls, path: Path) -> Samples:
        doc = json.loads(path.read_text())
        requests = [
            (float(start), float(latency), int(status))
            for start, latency, status in doc["requests"]
        ]
        return cls(
            doc["started_at"],
            doc["stopped_at"],
            requests,
            doc.get("cpu_seconds", 0.0),
            doc.get("server_timings", []),
            doc.get("versions", []),
            doc.get("unsent", 0),
        )

    @property
    def seconds(self) -> float:
        return max(self.stopped_at - self.started_at, 1e-9)

    @property
    def closed_loop_rps(self) -> float:
        """Requests per second over the whole run (a closed-loop probe's throughput)."""
        return len(self.requests) / self.seconds


# How long a fixed-length run may take to spawn its users before Locust's own --run-time ends it
# (then with no measurement, which the step reports as no requests): spawning takes ~0.1 s on a
# quiet CPU and seconds on a loaded one.
SPAWN_ALLOWANCE_S = 30.0


def locust_argv(url: str, users: int, seconds: float, csv_prefix: Path | None = None) -> list[str]:
    """A headless Locust of `users` users for at most `seconds` (rounded up to whole seconds, all
    Locust takes) from the start of spawning; CSVs at `csv_prefix` if given."""
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "-u",
        str(users),
        "-r",
        str(users * 10),
        "-t",
        f"{max(1, math.ceil(seconds))}s",
    ]
    if csv_prefix is not None:
        argv += ["--csv", str(csv_prefix)]
    argv += [
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
        "--stop-timeout",
        "2",
    ]
    return argv


def locust_env(
    samples_path: Path,
    records: Path,
    user_rps: float,
    seed: int = 0,
    record_versions: bool = False,
    extra: dict[str, str] | None = None,
    measure_seconds: float | None = None,
) -> dict[str, str]:
    """The locustfile's settings: pacing (0 = closed loop), where to write, what to send, and how
    long to measure once every user has spawned (None: until Locust stops)."""
    env = {
        "LAB_BENCH_USER_RPS": str(user_rps),
        "LAB_BENCH_SAMPLES": str(samples_path),
        "LAB_BENCH_RECORDS": str(records),
        "LAB_BENCH_SEED": str(seed),
    }
    if record_versions:
        env["LAB_BENCH_RECORD_VERSIONS"] = "1"
    if measure_seconds is not None:
        env["LAB_BENCH_MEASURE_S"] = repr(measure_seconds)
    return {**env, **(extra or {})}


@dataclass
class LoadRun:
    """A load generator's process, started under a supervisor, and the file it writes."""

    supervisor: Supervisor
    process: ManagedProcess
    samples_path: Path

    def wait(self, stop: StopSignals | None = None, timeout_s: float | None = None) -> Samples:
        """Wait for the run to end by itself (Ctrl-C still stops it), then read its samples."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                code = self.process.popen.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stop:
                    stop.check()
                if deadline is not None and time.monotonic() > deadline:
                    raise RuntimeError(
                        f"gave up waiting for {self.process.name} after {timeout_s:.0f}s"
                    ) from None
        self.supervisor.processes.remove(self.process)
        if code != 0 or not self.samples_path.exists():
            raise RuntimeError(
                f"{self.process.name} failed ({describe_exit(code)}):\n{self.process.log_tail()}"
            )
        return self._read()

    def stop(self, grace_s: float = 30.0) -> Samples:
        """End the run now; SIGTERM makes Locust stop its users and its recorder write."""
        self.supervisor.stop_one(self.process, grace_s=grace_s)
        if not self.samples_path.exists():
            raise RuntimeError(f"{self.process.name} wrote no samples:\n{self.process.log_tail()}")
        return self._read()

    def _read(self) -> Samples:
        samples = Samples.read(self.samples_path)
        self.samples_path.unlink()
        return samples


def start_locust(
    supervisor: Supervisor,
    name: str,
    url: str,
    users: int,
    user_rps: float,
    seconds: float,
    samples_path: Path,
    records: Path,
    *,
    csv_prefix: Path | None = None,
    seed: int = 0,
    record_versions: bool = False,
    extra_env: dict[str, str] | None = None,
    measure_seconds: float | None = None,
) -> LoadRun:
    """Start a headless Locust under `supervisor` (which pins it to the load-generator CPUs): it
    runs at most `seconds`, and with `measure_seconds` ends once it has measured that long."""
    argv = locust_argv(url, users, seconds, csv_prefix)
    env = locust_env(
        samples_path, records, user_rps, seed, record_versions, extra_env, measure_seconds
    )
    return LoadRun(supervisor, supervisor.start(ProcessSpec(name, argv, env)), samples_path)


def run_locust(
    supervisor: Supervisor,
    name: str,
    url: str,
    users: int,
    user_rps: float,
    seconds: float,
    csv_prefix: Path,
    records: Path,
    stop: StopSignals | None = None,
    extra_env: dict[str, str] | None = None,
    seed: int = 0,
) -> Samples:
    """One headless Locust run measuring `seconds` from the moment every user has spawned;
    returns what the locustfile's recorder measured.

    `seed` fixes the request sequence. Give every run of one deployment its own: with CACHE_RATE
    the workload's new inputs derive from it, and a cache outliving a step must not find the next
    step's new inputs already cached.
    """
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    run = start_locust(
        supervisor,
        name,
        url,
        users,
        user_rps,
        seconds + SPAWN_ALLOWANCE_S,
        csv_prefix.with_suffix(".samples.json"),
        records,
        csv_prefix=csv_prefix,
        seed=seed,
        extra_env=extra_env,
        measure_seconds=seconds,
    )
    return run.wait(stop)


def probe(
    supervisor: Supervisor,
    url: str,
    seconds: float,
    csv_prefix: Path,
    records: Path,
    stop: StopSignals | None = None,
    extra_env: dict[str, str] | None = None,
    seed: int = 0,
) -> Samples:
    """A closed-loop run of `PROBE_USERS` users (each sends as soon as its answer is back): its
    `closed_loop_rps` estimates the throughput; it also warms the servers up."""
    return run_locust(
        supervisor,
        "locust-probe",
        url,
        PROBE_USERS,
        0.0,
        seconds,
        csv_prefix,
        records,
        stop,
        extra_env,
        seed,
    )


def run_burst(
    supervisor: Supervisor,
    name: str,
    url: str,
    rate: float,
    seconds: float,
    samples_path: Path,
    records: Path,
    stop: StopSignals | None = None,
    slack_s: float = 60.0,
) -> Samples:
    """An open-loop burst (burst.py) of `rate` requests a second for `seconds`, waited for."""
    argv = python_module(
        "benchmarks.measure.burst",
        "--url",
        url,
        "--rate",
        f"{rate:.1f}",
        "--seconds",
        f"{seconds:g}",
        "--records",
        str(records),
        "--out",
        str(samples_path),
    )
    run = LoadRun(supervisor, supervisor.start(ProcessSpec(name, argv)), samples_path)
    return run.wait(stop, timeout_s=seconds + DRAIN_S + slack_s)


def measurement_window(samples: Samples, user_rps: float) -> list[Request]:
    """Requests started once every user had phased in, up to the last request started.

    Users start on random phases within their first period, so the first period runs below the
    target rate; requests still in flight at the end were never recorded. Both edges are cut.
    """
    requests = sorted(samples.requests)
    if not requests:
        return []
    start = samples.started_at + (1.0 / user_rps if user_rps > 0 else 0.0)
    return [r for r in requests if r[0] >= start]
