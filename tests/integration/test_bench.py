"""Real, very short benchmarks: every topology under Locust, results and reports on disk.

The finished runs are the session's (`bench_run`, `single_architecture_run` in conftest.py),
shared with the notebook's tests; a test that interrupts or sweeps starts its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import psutil
import pytest

from benchmarks.analysis import load_schema
from lab.architectures import ARCHITECTURES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ENTRY_PROCESS = {
    "monolith": "gunicorn-monolith",
    "microservices": "gunicorn-gateway",
    "split": "gunicorn-gateway",
    "chained": "gunicorn-gateway",
}
# The hops each topology's gateway times (hop_infer: every topology with a gRPC inference stage).
HOPS = {
    "monolith": set(),
    "microservices": {"hop_pre", "hop_infer", "hop_post"},
    "split": {"hop_infer"},
    "chained": {"hop_pre", "hop_infer", "hop_post"},
}


def test_short_benchmark_writes_valid_results_and_reports(bench_run):
    results = bench_run.results
    jsonschema.validate(results, load_schema())
    assert list(results["architectures"]) == list(ARCHITECTURES)
    assert results["run"]["quick"] is True and results["run"]["cpu_budget"]["sut_cpus"] == [0]
    assert results["run"]["label"] == "ci"
    for name, architecture in results["architectures"].items():
        assert len(architecture["levels"]) >= 2
        assert all(level["requests"] > 0 for level in architecture["levels"])
        assert {p["name"] for p in architecture["processes"]} >= {ENTRY_PROCESS[name]}
        assert architecture["stages_ms"]["infer"] > 0
        hops = {stage for stage in architecture["stages_ms"] if stage.startswith("hop_")}
        assert hops == HOPS[name], name
    report = (bench_run.run_dir / "report.md").read_text()
    assert all(name in report for name in ARCHITECTURES)
    assert (bench_run.run_dir / "report.html").stat().st_size > 10_000
    for name in ARCHITECTURES:
        assert list((bench_run.run_dir / "locust" / name).glob("r0-s0_stats.csv")), name
    assert "[bench" in bench_run.process.stdout and "done in" in bench_run.process.stdout


def test_a_single_architecture_run_has_nothing_to_compare(single_architecture_run):
    results = single_architecture_run.results
    jsonschema.validate(results, load_schema())
    assert list(results["architectures"]) == ["microservices"]
    assert results["architectures"]["microservices"]["levels"]
    report = (single_architecture_run.run_dir / "report.md").read_text()
    assert "Only one architecture was measured in this run" in report
    assert "microservices ÷ " not in report, "no ratio of an architecture to itself"


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_benchmark_leaves_no_process(
    stop_signal, tmp_path, bench_command, bench_env, watch_output
):
    process = subprocess.Popen(
        bench_command(tmp_path, "--archs", "microservices"),
        env=bench_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        watcher = watch_output(process)
        watcher.wait_for("ladder", timeout_s=120)  # a step is now running
        descendants = psutil.Process(process.pid).children(recursive=True)
        assert descendants, "expected servers and Locust to be running"
        process.send_signal(stop_signal)
        code = process.wait(timeout=60)
        rest = []
        while not watcher.lines.empty():
            rest.append(watcher.lines.get())
        assert code == 130, "".join(watcher.seen + rest)
        _, alive = psutil.wait_procs(descendants, timeout=10)
        assert alive == []
    finally:
        if process.poll() is None:
            process.kill()


def test_report_regenerates_from_results_alone(tmp_path):
    fixture = ROOT / "tests" / "fixtures" / "results_small.json"
    (tmp_path / "results.json").write_text(fixture.read_text())
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    "arguments, needle",
    [
        (["--target", "kind", "--archs", "monolith"], "--endpoint and --namespace for monolith"),
        (["--target", "docker"], "Docker engine"),
    ],
)
def test_unavailable_targets_fail_fast_with_a_reason(arguments, needle, tmp_path):
    """Here there is no engine and no cluster; elsewhere the same call would start benchmarking."""
    from lab import images

    if "docker" in arguments and images.engine_available()[0]:
        pytest.skip(
            "a Docker engine answers on this machine, so the docker target would really run"
        )
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", *arguments, "--out", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert needle in result.stderr
    assert not list(tmp_path.iterdir()), "nothing should be written when the target is unavailable"


def test_short_sweep_writes_valid_json_charts_and_a_conclusion(tmp_path, models_root, bench_env):
    """Two values of CACHE_RATE with a cache on: the knobs reach the servers and Locust, for real."""
    from benchmarks import sweep

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.sweep",
            "--knob",
            "cache_rate",
            "--values",
            "0.9 0",
            "--cache",
            "local",
            "--reps",
            "1",
            "--step-seconds",
            "1",
            "--probe-seconds",
            "1",
            "--out",
            str(tmp_path),
            "--models",
            str(models_root),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env=bench_env,  # only what this test sets
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    sweep_dir = (tmp_path / "latest-sweep").resolve()
    doc = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep.validation_errors(doc) == []
    assert (
        doc["knob"]["values"] == ["0", "0.9"] and doc["run"]["complete"] is True
    )  # numeric: sorted
    assert doc["run"]["quick"] is True and doc["run"]["knobs"]["cache"] == "local"
    assert [point["value"] for point in doc["points"]] == ["0", "0.9"]
    for point in doc["points"]:
        assert set(point["architectures"]) == {"monolith", "microservices"}
        results = json.loads((sweep_dir / point["run_dir"] / "results.json").read_text())
        jsonschema.validate(results, load_schema())
        assert results["run"]["knobs"]["cache_rate"] == float(point["value"])
        for name, architecture in results["architectures"].items():
            assert architecture["applied"]["settings"]["CACHE"] == "local"
            # With a cache on, the servers count their lookups, whatever they found.
            assert architecture["cache"]["source"] == "metrics", name
            assert point["architectures"][name]["hit_rate"] is not None
    for name in ("sweep_capacity_cost.png", "sweep_latency.png"):
        assert (sweep_dir / "charts" / name).stat().st_size > 10_000
    assert doc["conclusion"] in (sweep_dir / "sweep.md").read_text()
    assert "on this machine, for this workload" in doc["conclusion"]
    assert (sweep_dir / "sweep.html").stat().st_size > 10_000
    assert "[sweep" in result.stdout and "value 2/2: CACHE_RATE=0.9" in result.stdout
