"""`make perf`: measure the foundation's performance targets as ratios within one run.

1. the three stages in process, one row, linear profile, against the sklearn reference;
2. monolith `/v1/predict` (one row) requests/s relative to `/healthz` on the same gunicorn;
3. microservices requests/s relative to the monolith, with the same CPU budget;
4. per-hop transport cost at p50 (from the gateway's Server-Timing), one request at a time.
The servers are pinned to SUT_CPUS and the load generator to LOADGEN_CPUS, as in `make bench`.
Targets are reported, not enforced: timings belong to benchmarks, never to pass/fail tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from benchmarks.measure import httpload, runs, servertiming
from benchmarks.measure.machine import parse_cpus
from benchmarks.reporting.progress import Progress
from lab.launch import launch
from servinglab.model import data
from servinglab.model.artifact import load_artifact
from servinglab.model.pipeline import ServingPipeline
from servinglab.schema import CATEGORICAL_NAMES, NUMERIC_NAMES
from servinglab.validation import validate_instances

progress = Progress("perf")

TARGETS = {
    "stages_us": ("<=", 50.0),
    "predict_vs_healthz": (">=", 0.8),
    "microservices_vs_monolith": (">=", 0.45),
    "hop_p50_ms": ("<=", 0.4),
}


def _per_call_us(function, repeat: int) -> float:
    for _ in range(min(repeat // 10, 200)):
        function()
    best = []
    for _ in range(5):  # best of five: the least disturbed estimate on a shared machine
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        best.append((time.perf_counter() - started) / repeat * 1e6)
    return min(best)


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
    result = {
        "validate_us": _per_call_us(lambda: validate_instances(record), 2000),
        "pre_us": _per_call_us(lambda: pipeline.preprocess(batch), 2000),
        "infer_us": _per_call_us(lambda: pipeline.classifier.predict_proba(features), 2000),
        "post_us": _per_call_us(lambda: pipeline.postprocess(probabilities), 2000),
        "stages_us": _per_call_us(lambda: pipeline.predict(batch), 2000),
        "sklearn_pipeline_us": _per_call_us(lambda: artifact.estimator.predict_proba(frame), 50),
        "sklearn_classifier_only_us": _per_call_us(lambda: classifier.predict_proba(features), 500),
    }
    result["speedup_vs_sklearn_pipeline"] = result["sklearn_pipeline_us"] / result["stages_us"]
    return result


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
            # Warm-up: imports, caches, JIT-less paths.
            httpload.run(predict_url, 1.0, connections, "POST", body)
            entry: dict[str, Any] = {}
            if architecture == "monolith":
                healthz = httpload.run(deployment.url + "/healthz", seconds, connections)
                entry["healthz_rps"] = healthz.rps
            loaded = httpload.run(predict_url, seconds, connections, "POST", body)
            entry.update(
                predict_rps=loaded.rps,
                predict_p50_ms_loaded=loaded.percentile_ms(0.5),
                errors=loaded.errors,
            )
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


def verdicts(stages: dict, http: dict) -> dict[str, dict]:
    mono, micro = http["monolith"], http["microservices"]
    hops = {k: v for k, v in micro["server_timing_p50_ms"].items() if k.startswith("hop-")}
    measured = {
        "stages_us": stages["stages_us"],
        "predict_vs_healthz": mono["predict_rps"] / mono["healthz_rps"],
        "microservices_vs_monolith": micro["predict_rps"] / mono["predict_rps"],
        "hop_p50_ms": max(hops.values()) if hops else float("nan"),
    }
    out = {}
    for name, (direction, target) in TARGETS.items():
        value = measured[name]
        met = value <= target if direction == "<=" else value >= target
        out[name] = {"measured": value, "target": f"{direction} {target:g}", "met": met}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("PERF_SECONDS") or 5))
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--sut-cpus", default=os.environ.get("SUT_CPUS") or "0")
    parser.add_argument("--loadgen-cpus", default=os.environ.get("LOADGEN_CPUS") or "1")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("reports/perf"))
    args = parser.parse_args(argv)
    sut, loadgen = set(parse_cpus(args.sut_cpus)), set(parse_cpus(args.loadgen_cpus))

    progress("in-process stages (one row, linear)")
    # The servers run one BLAS thread per process (lab.launch); measure stages the same way.
    with threadpool_limits(1):
        stages = measure_stages(args.models)
    http = measure_http(args.seconds, args.connections, sut, loadgen)
    result: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "seconds": args.seconds,
            "connections": args.connections,
            "sut_cpus": sorted(sut),
            "loadgen_cpus": sorted(loadgen),
        },
        "stages": stages,
        "http": http,
        "targets": verdicts(stages, http),
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
        hops = ", ".join(f"{k} {v:.3f}" for k, v in h["server_timing_p50_ms"].items())
        print(
            f"{name:14s} {h['predict_rps']:7.0f} req/s loaded; one at a time "
            f"p50 {h['sequential_p50_ms']:.2f} ms p99 {h['sequential_p99_ms']:.2f} ms; "
            f"Server-Timing p50 (ms): {hops}"
        )
    print("\nTarget                        measured   target     ")
    for name, verdict in result["targets"].items():
        status = "met" if verdict["met"] else "MISSED"
        print(f"{name:28s} {verdict['measured']:9.3f}   {verdict['target']:9s}  {status}")
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
