"""Floors: the cheapest version of each path on this machine, measured in the same run as the rest.

A cost only means something against what the same machine, loaded the same way, can do at best:

- `measure_transport`: the bare gRPC call, a grpcio unary echo (bytes in, bytes out through a
  generic handler, no protobuf) on a sync `grpc.server` with a small thread pool, and one sync
  client, both processes pinned to the stage CPUs; CPU per call of each side, calls/s, latency.
- `measure_http_noop`: the HTTP noop (`/healthz`) on a running gunicorn entry point, with the CPU
  its processes spent per request, so a route can be held against the server it runs on.
- `measure_pipeline`: `ServingPipeline.predict` of one record in process, the work itself.
- `hop_comparison` / `noop_comparison`: a hop's CPU per call and latency, and a route's
  throughput, as multiples of those floors, with the targets the lab sets (`TARGETS`).

    python -m benchmarks.measure.floors [--cpus 0] [--seconds 2]   # print the transport floor

The echo server and client are `serve` and `client` modes of this module, each a process of its
own started by a `Supervisor` (pinned, always stopped). Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.measure import httpload
from benchmarks.measure.stats import percentile
from lab.supervisor import ProcessSpec, Supervisor, file_ready, python_module
from servinglab.serving.shutdown import StopSignal

ECHO_METHOD = "/servinglab.floor.Echo/Echo"
CPU_METHOD = "/servinglab.floor.Echo/Cpu"  # the server's own process CPU-seconds, as text
PAYLOAD_BYTES = 128  # about a one-record stage message
SERVER_THREADS = 4  # as the stage servers' default LAB_GRPC_THREADS
CLIENT_TIMEOUT_MARGIN_S = 60.0
MODULE = "benchmarks.measure.floors"  # not __name__: that is "__main__" when run with -m

# What the lab asks of its paths, relative to the floors measured in the same run.
HOP_CPU_TARGET = 1.3  # a hop's CPU per call <= 1.3 x the bare transport call's
PREDICT_VS_NOOP_TARGET = 0.8  # monolith /v1/predict throughput >= 0.8 x its own /healthz
# One round of an in-process timing (`per_call_us`): long enough to average out a timer tick
# and a stray interrupt, short enough that five of the slowest model cost about a second.
ROUND_S = 0.2


@dataclass(frozen=True)
class TransportFloor:
    """A bare grpcio unary echo, client and server on the same CPUs."""

    calls: int
    seconds: float
    client_cpu_us: float  # per call
    server_cpu_us: float  # per call
    p50_us: float
    p99_us: float
    cpus: list[int]
    server_threads: int
    payload_bytes: int

    @property
    def cpu_us(self) -> float:
        return self.client_cpu_us + self.server_cpu_us

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "cpu_us": round(self.cpu_us, 1),
            "calls_per_s": round(self.calls_per_s, 1),
        }


@dataclass(frozen=True)
class HttpNoop:
    """`/healthz` on a gunicorn entry point, closed loop: throughput and its server CPU."""

    requests: int
    seconds: float
    rps: float
    cpu_us: float  # server CPU (every process of the deployment) per request
    p50_ms: float
    connections: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the echo server and its client, each run as `python -m benchmarks.measure.floors MODE` ------


def _serve(port_file: Path, threads: int) -> None:
    import grpc

    def echo(request: bytes, _context: Any) -> bytes:
        return request

    def cpu(_request: bytes, _context: Any) -> bytes:
        return repr(time.process_time()).encode()

    # No (de)serializers: the handlers see and return the raw bytes, so only transport is timed.
    handler = grpc.method_handlers_generic_handler(
        "servinglab.floor.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Cpu": grpc.unary_unary_rpc_method_handler(cpu),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    stop = StopSignal()
    server.start()
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(f"{port}\n")
    temporary.replace(port_file)  # atomic: the supervisor polls for the file
    stop.wait()
    server.stop(0)


def _client(port: int, seconds: float, out: Path) -> None:
    import grpc

    payload = b"x" * PAYLOAD_BYTES
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary(ECHO_METHOD)
        server_cpu = channel.unary_unary(CPU_METHOD)
        warm_until = time.perf_counter() + min(0.5, seconds / 4)
        while time.perf_counter() < warm_until:
            echo(payload, timeout=5)
        server_before = float(server_cpu(b"", timeout=5))
        client_before = time.process_time()
        latencies = []
        started = time.perf_counter()
        deadline = started + seconds
        while True:
            sent = time.perf_counter()
            if sent >= deadline:
                break
            echo(payload, timeout=5)
            latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_before
        server_cpu_s = float(server_cpu(b"", timeout=5)) - server_before
    latencies.sort()
    calls = len(latencies)
    result = {
        "calls": calls,
        "seconds": elapsed,
        "client_cpu_us": client_cpu / calls * 1e6,
        "server_cpu_us": server_cpu_s / calls * 1e6,
        "p50_us": (percentile(latencies, 0.5) or 0.0) * 1e6,
        "p99_us": (percentile(latencies, 0.99) or 0.0) * 1e6,
    }
    out.write_text(json.dumps(result))


def measure_transport(
    cpus: Iterable[int],
    seconds: float = 2.0,
    threads: int = SERVER_THREADS,
    log_dir: Path | None = None,
) -> TransportFloor:
    """The bare gRPC call's cost: echo server and client processes both pinned to `cpus`."""
    pinned = sorted(cpus)
    with tempfile.TemporaryDirectory(prefix="servinglab-floor-") as scratch:
        port_file, out = Path(scratch) / "echo.port", Path(scratch) / "client.json"
        with Supervisor(log_dir=log_dir, cpus=pinned) as supervisor:
            server = supervisor.start(
                ProcessSpec(
                    "floor-echo-server",
                    python_module(
                        MODULE, "serve", "--port-file", str(port_file), "--threads", str(threads)
                    ),
                    ready=file_ready(port_file),
                )
            )
            supervisor.wait_ready([server], timeout_s=60)
            client = supervisor.start(
                ProcessSpec(
                    "floor-echo-client",
                    python_module(
                        MODULE,
                        "client",
                        "--port",
                        port_file.read_text().strip(),
                        "--seconds",
                        str(seconds),
                        "--out",
                        str(out),
                    ),
                )
            )
            code = client.popen.wait(timeout=seconds + CLIENT_TIMEOUT_MARGIN_S)
            if code != 0 or not out.exists():
                raise RuntimeError(f"the echo client failed ({code}):\n{client.log_tail()}")
        measured = json.loads(out.read_text())
    return TransportFloor(
        calls=measured["calls"],
        seconds=round(measured["seconds"], 3),
        client_cpu_us=round(measured["client_cpu_us"], 1),
        server_cpu_us=round(measured["server_cpu_us"], 1),
        p50_us=round(measured["p50_us"], 1),
        p99_us=round(measured["p99_us"], 1),
        cpus=pinned,
        server_threads=threads,
        payload_bytes=PAYLOAD_BYTES,
    )


# --- the HTTP noop and the in-process pipeline -------------------------------------------------


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU-seconds of the live processes `pids` (threads included)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def measure_http_noop(
    url: str, sut_cpu_seconds: Callable[[], float], seconds: float = 1.0, connections: int = 8
) -> HttpNoop:
    """`url/healthz` closed loop over `connections`; `sut_cpu_seconds()` reads the server's total."""
    before = sut_cpu_seconds()
    loaded = httpload.run(url + "/healthz", seconds, connections)
    spent = sut_cpu_seconds() - before
    requests = max(loaded.requests, 1)
    return HttpNoop(
        requests=loaded.requests,
        seconds=round(loaded.seconds, 3),
        rps=round(loaded.rps, 1),
        cpu_us=round(spent / requests * 1e6, 1),
        p50_ms=round(loaded.percentile_ms(0.5), 3),
        connections=connections,
    )


@contextmanager
def pinned(cpus: Iterable[int]) -> Iterator[None]:
    """Run this process on `cpus` for a while (the load generator's), then as before."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def per_call_us(function: Callable[[], object], repeat: int, round_s: float = ROUND_S) -> float:
    """Microseconds per call of `function`: best of five rounds, the least disturbed estimate.

    A round is `repeat` calls, or fewer if they would take longer than `round_s`: the forest's
    4-6 ms predict gets 30-50 calls a round instead of 300, a fast call all of `repeat`.
    """
    warm_up = max(1, min(repeat // 10, 200))
    started = time.perf_counter()
    for _ in range(warm_up):
        function()
    warm_up_s = (time.perf_counter() - started) / warm_up
    if warm_up_s > 0:
        repeat = max(1, min(repeat, int(round_s / warm_up_s)))
    best = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        best.append((time.perf_counter() - started) / repeat * 1e6)
    return min(best)


def measure_pipeline(models_root: Path, profile: str = "linear", repeat: int = 2000) -> dict:
    """`ServingPipeline.predict` of one validated held-out record, in this process."""
    from threadpoolctl import threadpool_limits

    from servinglab.model import data
    from servinglab.model.artifact import load_artifact
    from servinglab.model.pipeline import ServingPipeline
    from servinglab.validation import validate_instances

    pipeline = ServingPipeline.from_artifact(load_artifact(models_root, profile))
    batch = validate_instances(data.held_out_records()[:1])
    # The servers run one BLAS thread per process (lab.launch); measure the same way.
    with threadpool_limits(1):
        predict_us = per_call_us(lambda: pipeline.predict(batch), repeat)
    return {"profile": profile, "predict_us": round(predict_us, 1)}


# --- paths against their floors ------------------------------------------------------------------


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or not floor or math.isnan(value):
        return None
    return value / floor


def hop_comparison(
    transport: Mapping[str, Any],
    hops: Mapping[str, Mapping[str, float | None]],
) -> list[dict[str, Any]]:
    """Each hop's CPU per call and latency as multiples of the transport floor.

    `hops`: per hop name, ``cpu_us`` (client + server CPU of one call, the stage's own compute
    left out) and ``p50_us`` (the call's transport time on top of that compute).
    """
    rows = []
    for name, hop in hops.items():
        cpu_times = ratio(hop.get("cpu_us"), transport["cpu_us"])
        rows.append(
            {
                "hop": name,
                **hop,
                "cpu_x_floor": None if cpu_times is None else round(cpu_times, 2),
                "latency_x_floor": _rounded(ratio(hop.get("p50_us"), transport["p50_us"])),
                "target": f"<= {HOP_CPU_TARGET:g}x",
                "met": None if cpu_times is None else cpu_times <= HOP_CPU_TARGET,
            }
        )
    return rows


def noop_comparison(predict_rps: float | None, noop_rps: float | None) -> dict[str, Any]:
    """A route's throughput as a multiple of the HTTP noop's on the same server."""
    times = ratio(predict_rps, noop_rps)
    return {
        "predict_rps": predict_rps,
        "noop_rps": noop_rps,
        "x_noop": _rounded(times),
        "target": f">= {PREDICT_VS_NOOP_TARGET:g}x",
        "met": None if times is None else times >= PREDICT_VS_NOOP_TARGET,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    serve = sub.add_parser("serve", help="(internal) the echo server")
    serve.add_argument("--port-file", type=Path, required=True)
    serve.add_argument("--threads", type=int, default=SERVER_THREADS)
    client = sub.add_parser("client", help="(internal) the echo client")
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--seconds", type=float, required=True)
    client.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpus", default=os.environ.get("SUT_CPUS") or "0")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        _serve(args.port_file, args.threads)
    elif args.mode == "client":
        _client(args.port, args.seconds, args.out)
    else:
        from benchmarks.measure.machine import parse_cpus

        try:
            cpus = parse_cpus(args.cpus)
        except ValueError as problem:
            parser.error(str(problem))
        floor = measure_transport(cpus, args.seconds)
        print(json.dumps(floor.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
