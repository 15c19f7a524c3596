"""Real benchmark runs that several integration tests read: each costs tens of seconds, so one each.

`bench_run` is one short `python -m benchmarks.bench` of all four topologies (monolith,
microservices, split, chained): test_bench.py checks its results and reports, test_notebook.py runs
the notebook on them. `single_architecture_run` measures microservices alone (the notebook's
second exercise): nothing to compare, which the report and the notebook must say. Both are
session-scoped and only read: a test that needs to interrupt or vary a run starts its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks import knobs
from lab.architectures import ARCHITECTURES

ROOT = Path(__file__).resolve().parents[2]
# As short as a real run gets: one repetition of the QUICK ladder, 1 s steps and a 1 s probe.
SHORT = ["--quick", "--reps", "1", "--step-seconds", "1", "--probe-seconds", "1"]


@dataclass(frozen=True)
class BenchRun:
    """What one finished `benchmarks.bench` left: its output, its run directory, its results."""

    process: subprocess.CompletedProcess
    run_dir: Path  # <out>/latest, resolved
    results: dict

    @property
    def results_file(self) -> Path:
        return self.run_dir / "results.json"


@pytest.fixture(scope="session")
def bench_env() -> dict[str, str]:
    """This environment without the bench's own variables: `make` exports every knob (possibly set
    by whoever runs the suite), and a test's run must depend only on the options it passes."""
    names = {knob.variable for knob in knobs.KNOBS} | {
        "SWEEP",
        "SWEEP_VALUES",
        "QUICK",
        "REPS",
        "LABEL",
        "STEP_SECONDS",
        "PROBE_SECONDS",
        "REPORTS",
        "PRICES",
        "TARGET",
    }
    return {key: value for key, value in os.environ.items() if key not in names}


@pytest.fixture(scope="session")
def bench_command(models_root):
    """`bench_command(out, *options)`: the argv of a short real benchmark writing into `out`."""

    def command(out: Path, *options: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "benchmarks.bench",
            *SHORT,
            "--out",
            str(out),
            "--models",
            str(models_root),
            *options,
        ]

    return command


def run_bench(command: list[str], out: Path, env: dict[str, str]) -> BenchRun:
    """Run `command` (a `bench_command`) to the end; fails the calling fixture if it fails."""
    process = subprocess.run(
        command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env
    )
    assert process.returncode == 0, process.stdout[-5000:] + process.stderr[-5000:]
    run_dir = (out / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    return BenchRun(process, run_dir, results)


@pytest.fixture(scope="session")
def bench_run(bench_command, tmp_path_factory, bench_env) -> BenchRun:
    out = tmp_path_factory.mktemp("bench-run")
    command = bench_command(out, "--label", "ci", "--archs", " ".join(ARCHITECTURES))
    return run_bench(command, out, bench_env)


@pytest.fixture(scope="session")
def single_architecture_run(bench_command, tmp_path_factory, bench_env) -> BenchRun:
    out = tmp_path_factory.mktemp("bench-one")
    command = bench_command(out, "--label", "one", "--archs", "microservices")
    return run_bench(command, out, bench_env)
