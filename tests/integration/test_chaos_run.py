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

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _chaos(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.chaos", "--out", str(out), "--rate", "20",
                             "--users", "4", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env={**os.environ, "LAB_MODEL_DIR": str(ROOT / "models")})


def test_chaos_run_reports_every_event_for_both_architectures(tmp_path):
    process = _chaos(tmp_path, "--phase-seconds", "2")
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output
    run_dir = next(tmp_path.glob("chaos-*"))
    document = json.loads((run_dir / "chaos.json").read_text())
    for architecture in ("monolith", "microservices"):
        result = document["architectures"][architecture]
        assert [e["event"] for e in result["events"]] == ["crash", "recover", "rolling restart", "model rollout"]
        assert result["requests"] > 0
        # Every answer names one of the two versions, and the rollout reached the new one.
        assert set(result["versions"]) <= {document["versions"]["from"], document["versions"]["to"]}
        assert document["versions"]["to"] in result["versions"]
        failed = {e["event"]: e for e in result["events"]}
        assert set().union(*(e["failed_by_status"] for e in result["events"])) <= {"0", "503", "504"}
        assert failed["rolling restart"]["failed"] == 0
    # The only postprocess process died: that is an outage until it is back.
    assert document["architectures"]["microservices"]["events"][0]["failed"] > 0
    for name in ("report.md", "report.html", "charts/timeline-monolith.png", "charts/timeline-microservices.png"):
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
