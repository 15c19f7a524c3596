"""`make chaos` for real, briefly: a report with every event, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmarks.chaos import CACHE_EVENTS, MAIN_EVENTS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DAMAGE_KEYS = {
    "failed",
    "failed_by_status",
    "last_failure_s",
    "seconds_above_slo",
    "peak_p99_ms",
    "slow_requests",
    "back_within_slo_s",
}


def _chaos(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.chaos",
            "--out",
            str(out),
            "--rate",
            "20",
            "--users",
            "4",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "LAB_MODEL_DIR": str(ROOT / "models")},
    )


def test_chaos_run_reports_every_event_for_both_architectures(tmp_path):
    process = _chaos(tmp_path, "--phase-seconds", "2")
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output
    run_dir = next(tmp_path.glob("chaos-*"))
    document = json.loads((run_dir / "chaos.json").read_text())
    assert document["settings"]["window_s"] >= 3 and document["settings"]["slo_ms"] > 0
    for architecture in ("monolith", "microservices"):
        result = document["architectures"][architecture]
        assert [e["event"] for e in result["events"]] == MAIN_EVENTS[architecture]
        assert result["requests"] > 0
        # Every answer names one of the two versions, and the rollout reached the new one.
        assert set(result["versions"]) <= {document["versions"]["from"], document["versions"]["to"]}
        assert document["versions"]["to"] in result["versions"]
        events = {e["event"]: e for e in result["events"]}
        for event in result["events"]:
            assert set(event) >= DAMAGE_KEYS, event
        assert set().union(*(e["failed_by_status"] for e in result["events"])) <= {
            "0",
            "503",
            "504",
        }
        assert events["rolling restart"]["failed"] == 0
        # The burst really offered several times the probed capacity, and its requests are counted.
        overload = events["overload"]
        assert overload["offered_rps"] > 2 * overload["capacity_rps"] > 0
        assert overload["burst_requests"] > 0 and overload["burst_requests"] <= result["requests"]
        # State: Redis killed under load and started again; cache-aside, so nothing fails because
        # of it (a 503 would be load shedding on a machine busy with something else), and the
        # per-second hit rate was measured.
        state = result["state"]
        assert [e["event"] for e in state["events"]] == CACHE_EVENTS
        assert state["requests"] > 0
        assert set().union(*(e["failed_by_status"] for e in state["events"])) <= {"503"}, state[
            "events"
        ]
        assert any(row.get("cache_hit_rate") for row in state["timeline"])
        assert all("cpu_percent" in row for row in state["timeline"])
    # The only postprocess process died: that is an outage until it is back.
    assert document["architectures"]["microservices"]["events"][0]["failed"] > 0
    report = (run_dir / "report.md").read_text()
    assert "back within SLO" in report and "What this says about state" in report
    for name in (
        "report.md",
        "report.html",
        "charts/timeline-monolith.png",
        "charts/timeline-microservices.png",
        "charts/timeline-monolith-cache.png",
        "charts/timeline-microservices-cache.png",
    ):
        assert (run_dir / name).stat().st_size > 0


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_stopping_chaos_leaves_no_process(stop_signal, tmp_path, watch_output):
    process = _chaos(tmp_path, "--archs", "microservices", "--phase-seconds", "30")
    try:
        watch_output(process).wait_for("microservices: starting", timeout_s=300)
        # Interrupt in the middle of the run: once the deployment and Locust all exist
        # (4 services with 2 inference replicas, gunicorn master and 2 workers, Locust).
        expected = 8
        parent = psutil.Process(process.pid)
        deadline = time.monotonic() + 300
        while len(parent.children(recursive=True)) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        children = parent.children(recursive=True)
        assert len(children) >= expected
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
    finally:
        if process.poll() is None:
            process.kill()
