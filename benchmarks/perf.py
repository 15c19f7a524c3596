"""`make perf`: the foundation's performance targets, as ratios to floors measured in the same run.

1. the three stages in process, one row, linear profile, against the sklearn reference (and
   `ServingPipeline.predict` of one record: the pipeline floor);
2. the floors (`benchmarks.measure.floors`): a bare grpcio echo on the stage CPUs (the transport
   floor) and `/healthz` on each architecture's gunicorn (the HTTP noop), with CPU per call;
3. monolith `/v1/predict` (one row) requests/s relative to its own `/healthz` (which goes through
   Flask, where the common prediction takes the API's WSGI fast path);
4. microservices: each hop's CPU per call (its stage server's CPU less the stage's own compute,
   plus the gateway's client-side share) and transport latency at p50, as multiples of the
   transport floor; microservices requests/s relative to the monolith is shown, with no target;
5. how the requests spread over the entry point's gunicorn workers (CPU and request counts).
The servers are pinned to SUT_CPUS and the load generator to LOADGEN_CPUS, as in `make bench`.
Targets are reported, not enforced: timings belong to benchmarks, never to pass/fail tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
from threadpoolctl import threadpool_limits

from benchmarks.measure import floors, httpload, metrics, runs, servertiming
from benchmarks.measure.machine import parse_cpus
from benchmarks.reporting.progress import Progress
from lab.launch import Deployment, launch
from servinglab.model import data
from servinglab.model.artifact import load_artifact
from servinglab.model.pipeline import ServingPipeline
from servinglab.schema import CATEGORICAL_NAMES, NUMERIC_NAMES
from servinglab.validation import validate_instances

progress = Progress("perf")

TARGETS = {
    "stages_us": ("<=", 50.0),
    "predict_vs_healthz": (">=", floors.PREDICT_VS_NOOP_TARGET),
    "hop_cpu_vs_transport_floor": ("<=", floors.HOP_CPU_TARGET),
}
# Server-Timing's hop names, the stage process behind each, and its in-process stage timing.
HOPS = {
    "hop-pre": ("preprocess", "pre_us"),
    "hop-infer": ("inference", "infer_us"),
    "hop-post": ("postprocess", "post_us"),
}
WORKER_REQUESTS = "lab_http_worker_requests_total"


def measure_stages(models_root: Path) -> dict:
    artifact = load_artifact(models_root, "linear")
    pipeline = ServingPipeline.from_artifact(artifact)
    record = data.held_out_records()[:1]
    batch = validate_instances(record)
    features = pipeline.preprocess(batch)
    probabilities = pipeline.classifier.predict_proba(features)
    frame = pd.DataFrame(record)[[*CATEGORICAL_NAMES, *NUMERIC_NAMES]].astype(
        {name: object for name in CATEGORICAL_NAMES}
    )
    classifier = artifact.estimator.named_steps["classifier"]
    per_call_us = floors.per_call_us
    result = {
        "validate_us": per_call_us(lambda: validate_instances(record), 2000),
        "pre_us": per_call_us(lambda: pipeline.preprocess(batch), 2000),
        "infer_us": per_call_us(lambda: pipeline.classifier.predict_proba(features), 2000),
        "post_us": per_call_us(lambda: pipeline.postprocess(probabilities), 2000),
        "stages_us": per_call_us(lambda: pipeline.predict(batch), 2000),
        "sklearn_pipeline_us": per_call_us(lambda: artifact.estimator.predict_proba(frame), 50),
        "sklearn_classifier_only_us": per_call_us(lambda: classifier.predict_proba(features), 500),
    }
    result["speedup_vs_sklearn_pipeline"] = result["sklearn_pipeline_us"] / result["stages_us"]
    return result


def _cpu_by_process(deployment: Deployment) -> dict[str, float]:
    """CPU-seconds so far of each supervised process, its children (gunicorn workers) included."""
    spent = {}
    for process in deployment.supervisor.processes:
        spent[process.name] = floors.cpu_seconds(
            [process.pid, *(child for child in _children(process.pid))]
        )
    return spent


def _children(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def worker_requests(deployment: Deployment) -> dict[str, float]:
    """Requests answered so far per gunicorn worker pid, from the entry point's /metrics."""
    text = metrics.scrape(deployment.url)
    return metrics.totals_by_label(text, WORKER_REQUESTS, "worker") if text else {}


def worker_spread(
    deployment: Deployment, cpu_before: dict[int, float], requests_before: dict[str, float]
) -> list[dict]:
    """Per gunicorn worker of the entry point: its CPU and requests since the `before` readings."""
    requests_after = worker_requests(deployment)
    spread = []
    for pid in deployment.entry_workers():
        served = requests_after.get(str(pid), 0.0) - requests_before.get(str(pid), 0.0)
        spread.append(
            {
                "pid": pid,
                "cpu_seconds": round(floors.cpu_seconds([pid]) - cpu_before.get(pid, 0.0), 3),
                "requests": int(served),
            }
        )
    return spread


def measure_http(
    seconds: float, connections: int, sut_cpus: set[int], loadgen_cpus: set[int]
) -> dict:
    body = json.dumps({"instances": data.held_out_records()[:1]}).encode()
    os.sched_setaffinity(0, loadgen_cpus)
    results: dict[str, dict] = {}
    for architecture in ("monolith", "microservices"):
        progress(f"{architecture}: starting on CPUs {sorted(sut_cpus)}")
        with launch(architecture, cpus=sut_cpus) as deployment:
            predict_url = deployment.url + "/v1/predict"
            # Warm-up: imports, caches, connections to the stages.
            httpload.run(predict_url, 1.0, connections, "POST", body)
            noop = floors.measure_http_noop(
                deployment.url,
                lambda: floors.cpu_seconds(deployment.supervisor.pids()),
                seconds,
                connections,
            )
            requests_before = worker_requests(deployment)
            workers_before = {pid: floors.cpu_seconds([pid]) for pid in deployment.entry_workers()}
            cpu_before = _cpu_by_process(deployment)
            loaded = httpload.run(predict_url, seconds, connections, "POST", body)
            cpu_after = _cpu_by_process(deployment)
            served = max(loaded.requests, 1)
            entry: dict[str, Any] = {
                "healthz_rps": noop.rps,
                "noop": noop.as_dict(),
                "predict_rps": loaded.rps,
                "predict_p50_ms_loaded": loaded.percentile_ms(0.5),
                "errors": loaded.errors,
                "cpu_us_per_request": {
                    name: round((cpu_after[name] - cpu_before.get(name, 0.0)) / served * 1e6, 1)
                    for name in cpu_after
                },
                "workers": worker_spread(deployment, workers_before, requests_before),
            }
            sequential = httpload.run(
                predict_url, seconds, 1, "POST", body, collect_server_timing=True
            )
            entry.update(
                sequential_p50_ms=sequential.percentile_ms(0.5),
                sequential_p99_ms=sequential.percentile_ms(0.99),
                server_timing_p50_ms=servertiming.medians(sequential.server_timings),
            )
            results[architecture] = entry
            progress(
                f"{architecture}: {loaded.rps:.0f} req/s loaded, "
                f"p50 {entry['sequential_p50_ms']:.2f} ms one at a time"
            )
    return results


def hop_costs(stages: dict, http: dict) -> dict[str, dict[str, float | None]]:
    """Per hop: client + server CPU of one call without the stage's compute, and its p50 (us).

    The gateway's client share of a hop = (gateway CPU per request - what the monolith spends per
    request outside its three stages) / 3: the gateway does the monolith's HTTP and validation
    work, plus the three calls.
    """
    mono, micro = http["monolith"], http["microservices"]
    gateway_us = micro["cpu_us_per_request"].get("gunicorn-gateway")
    mono_us = mono["cpu_us_per_request"].get("gunicorn-monolith")
    client_us = None
    if gateway_us is not None and mono_us is not None:
        client_us = (gateway_us - (mono_us - stages["stages_us"])) / len(HOPS)
    timings = micro["server_timing_p50_ms"]
    hops = {}
    for hop, (process, stage_key) in HOPS.items():
        server_us = micro["cpu_us_per_request"].get(process)
        cost = None
        if server_us is not None and client_us is not None:
            cost = round(server_us - stages[stage_key] + client_us, 1)
        hops[hop] = {
            "server_cpu_us": server_us,
            "client_cpu_us": None if client_us is None else round(client_us, 1),
            "cpu_us": cost,
            "p50_us": round(timings[hop] * 1e3, 1) if hop in timings else None,
        }
    return hops


def verdicts(stages: dict, http: dict, hops: list[dict]) -> dict[str, dict]:
    mono = http["monolith"]
    worst = [row["cpu_x_floor"] for row in hops if row["cpu_x_floor"] is not None]
    measured = {
        "stages_us": stages["stages_us"],
        "predict_vs_healthz": mono["predict_rps"] / mono["healthz_rps"],
        "hop_cpu_vs_transport_floor": max(worst) if worst else float("nan"),
    }
    out = {}
    for name, (direction, target) in TARGETS.items():
        value = measured[name]
        met = value <= target if direction == "<=" else value >= target
        out[name] = {"measured": value, "target": f"{direction} {target:g}", "met": met}
    return out


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_floors(result: dict) -> None:
    transport, stages, http = result["floors"]["transport"], result["stages"], result["http"]
    print(
        f"\nFloors, measured in this run (SUT CPUs {transport['cpus']}):\n"
        f"  gRPC echo, bare transport   {transport['cpu_us']:7.1f} us CPU per call "
        f"(client {transport['client_cpu_us']:.1f} + server {transport['server_cpu_us']:.1f}), "
        f"p50 {transport['p50_us']:.0f} us, {transport['calls_per_s']:.0f} calls/s"
    )
    for name in ("monolith", "microservices"):
        noop = http[name]["noop"]
        print(
            f"  HTTP noop /healthz, {name:13s} {noop['cpu_us']:7.1f} us CPU per request, "
            f"{noop['rps']:.0f} req/s"
        )
    print(f"  pipeline in process         {stages['stages_us']:7.1f} us per one-record predict")
    print("\nHop          CPU/call us  (server + client)   x floor   p50 us  x floor   target")
    for row in result["floors"]["hops"]:
        met = {True: "met", False: "MISSED", None: "n/a"}[row["met"]]
        print(
            f"  {row['hop']:10s} {_number(row['cpu_us']):>10s}  "
            f"({_number(row['server_cpu_us'])} + {_number(row['client_cpu_us'])})"
            f"{'':4s}{_number(row['cpu_x_floor'], 2):>6s}x {_number(row['p50_us'], 0):>7s} "
            f"{_number(row['latency_x_floor'], 2):>6s}x   {row['target']} {met}"
        )
    noop = result["floors"]["monolith_vs_noop"]
    print(
        f"  monolith /v1/predict {noop['predict_rps']:.0f} req/s vs /healthz "
        f"{noop['noop_rps']:.0f}: {_number(noop['x_noop'], 2)}x (target {noop['target']})"
    )
    for name in ("monolith", "microservices"):
        workers = http[name]["workers"]
        split = ", ".join(
            f"pid {w['pid']}: {w['requests']} requests, {w['cpu_seconds']:.2f} CPU-s"
            for w in workers
        )
        print(f"  {name} workers under keep-alive load: {split}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("PERF_SECONDS") or 5))
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--sut-cpus", default=os.environ.get("SUT_CPUS") or "0")
    parser.add_argument("--loadgen-cpus", default=os.environ.get("LOADGEN_CPUS") or "1")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("reports/perf"))
    args = parser.parse_args(argv)
    try:
        sut, loadgen = set(parse_cpus(args.sut_cpus)), set(parse_cpus(args.loadgen_cpus))
    except ValueError as problem:
        parser.error(f"bad CPU list: {problem}")

    progress("in-process stages (one row, linear)")
    # The servers run one BLAS thread per process (lab.launch); measure stages the same way.
    with threadpool_limits(1):
        stages = measure_stages(args.models)
    progress(f"transport floor: bare grpcio echo on CPUs {sorted(sut)}")
    transport = floors.measure_transport(sut, min(args.seconds, 3.0)).as_dict()
    http = measure_http(args.seconds, args.connections, sut, loadgen)
    hops = floors.hop_comparison(transport, hop_costs(stages, http))
    mono, micro = http["monolith"], http["microservices"]
    result: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "settings": {
            "seconds": args.seconds,
            "connections": args.connections,
            "sut_cpus": sorted(sut),
            "loadgen_cpus": sorted(loadgen),
        },
        "stages": stages,
        "floors": {
            "transport": transport,
            "pipeline_us": stages["stages_us"],
            "hops": hops,
            "monolith_vs_noop": floors.noop_comparison(mono["predict_rps"], mono["healthz_rps"]),
        },
        "http": http,
        "microservices_vs_monolith": micro["predict_rps"] / mono["predict_rps"],
        "targets": verdicts(stages, http, hops),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = runs.write_json(args.out / f"perf-{runs.stamp()}.json", result)

    print(
        f"\nIn process, one row: validate {stages['validate_us']:.1f} us, "
        f"pre {stages['pre_us']:.1f} us, infer {stages['infer_us']:.1f} us, "
        f"post {stages['post_us']:.1f} us; three stages {stages['stages_us']:.1f} us "
        f"vs sklearn pipeline {stages['sklearn_pipeline_us']:.0f} us "
        f"({stages['speedup_vs_sklearn_pipeline']:.0f}x)"
    )
    for name in ("monolith", "microservices"):
        h = http[name]
        timings = ", ".join(f"{k} {v:.3f}" for k, v in h["server_timing_p50_ms"].items())
        print(
            f"{name:14s} {h['predict_rps']:7.0f} req/s loaded; one at a time "
            f"p50 {h['sequential_p50_ms']:.2f} ms p99 {h['sequential_p99_ms']:.2f} ms; "
            f"Server-Timing p50 (ms): {timings}"
        )
    print(f"microservices / monolith: {result['microservices_vs_monolith']:.2f}x (no target)")
    print_floors(result)
    print("\nTarget                        measured   target     ")
    for name, verdict in result["targets"].items():
        status = "met" if verdict["met"] else "MISSED"
        print(f"{name:28s} {verdict['measured']:9.3f}   {verdict['target']:9s}  {status}")
    print(
        f"\nload average {result['machine']['load_average'][0]:.1f} on "
        f"{os.cpu_count()} CPUs: on a busy machine every figure here is pessimistic"
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
