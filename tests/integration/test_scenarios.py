"""`make scenarios` for real, very briefly: each of scenarios 1 and 3 on real servers and Locust,
scenarios.json valid, the report written, Ctrl-C keeping what was measured with no process left
behind; and the notebook's scenarios section on a recorded run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from benchmarks.scenarios.document import table_rows, validate

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# A real QUICK `make scenarios` run on this lab's machine (quiet, 2026-12-02), for the notebook.
SCENARIOS_FIXTURE = ROOT / "tests" / "fixtures" / "scenarios_small.json"


def _scenarios(out: Path, marker: str, *argv: str) -> subprocess.Popen:
    # The marker is inherited by every process the run starts: how the test finds stragglers.
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.scenarios", "--quick", "--out", str(out), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "SCENARIOS_TEST_MARKER": marker},
    )


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("SCENARIOS_TEST_MARKER") == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _run(tmp_path: Path, name: str) -> dict:
    marker = uuid.uuid4().hex
    process = _scenarios(tmp_path, marker, "--scenarios", name, "--step-seconds", "1")
    output, _ = process.communicate(timeout=1200)
    assert process.returncode == 0, output
    assert _marked(marker) == []
    run_dir = next(tmp_path.glob("scenarios-*"))
    doc = json.loads((run_dir / "scenarios.json").read_text())
    validate(doc)
    assert doc["run"]["complete"] and doc["run"]["requested"] == [name]
    (scenario,) = doc["scenarios"]
    assert scenario["name"] == name and scenario["complete"]
    assert scenario["summary"] and scenario["rows"]
    report = (run_dir / "scenarios.md").read_text()
    assert "| scenario | metric | monolith | microservices | winner |" in report
    assert (run_dir / "scenarios.html").stat().st_size > 0
    assert "[scenario " in output  # progress while it ran
    return scenario


def test_planner_measures_plans_and_checks_its_plans(tmp_path):
    scenario = _run(tmp_path, "planner")
    raw = scenario["raw"]
    inputs = raw["inputs_run"]
    assert list(tmp_path.glob(f"scenarios-*/planner/{inputs}/results.json"))
    if raw.get("profiles"):  # both architectures met the SLO at some rate: a plan was made
        roles = {role["name"] for role in raw["profiles"]["microservices"]["roles"]}
        assert roles == {"gateway", "preprocess", "inference", "postprocess"}
        assert set(raw["checks"]) == {"monolith", "microservices"}
        for check in raw["checks"].values():
            assert check["planned_rps"] >= 1 and check["planned_capacity_rps"] > 0
        assert len(raw["day"]["monolith"]["hourly_usd"]) == 24
        assert {chart["key"] for chart in scenario["charts"]} == {
            "cost-vs-rate",
            "day",
            "plan-check",
        }
    else:  # a machine too busy to meet the SLO at all: said so, not a crash
        assert scenario["summary"].startswith("No plan:")


def test_batching_sweeps_both_sides_and_reads_the_batch_histograms(tmp_path):
    scenario = _run(tmp_path, "batching")
    steps = scenario["raw"]["steps"]
    for name in ("monolith", "microservices"):
        assert steps[name], name
        # /metrics was scraped around every step: model calls were counted on both sides.
        assert all(step["batch_histogram"] for step in steps[name])
        assert sum(sum(step["batch_histogram"].values()) for step in steps[name]) > 0
    assert set(scenario["configurations"]) == {"monolith", "microservices"}
    assert "BATCHING=on" in scenario["configurations"]["microservices"]
    assert [row["metric"].split(" ")[0] for row in scenario["rows"]][:2] == [
        "capacity",
        "provisioned",
    ]


def test_ctrl_c_keeps_what_was_measured_and_leaves_no_process(tmp_path, watch_output):
    marker = uuid.uuid4().hex
    process = _scenarios(tmp_path, marker, "--scenarios", "batching", "--step-seconds", "1")
    try:
        watch_output(process).wait_for("monolith step 1/", timeout_s=600)
        started = _marked(marker)
        assert started  # the deployment and Locust exist
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
        _, alive = psutil.wait_procs(started, timeout=15)
        assert alive == [] and _marked(marker) == []
    finally:
        if process.poll() is None:
            process.kill()
    run_dir = next(tmp_path.glob("scenarios-*"))
    doc = json.loads((run_dir / "scenarios.json").read_text())
    validate(doc)
    assert not doc["run"]["complete"]
    (scenario,) = doc["scenarios"]
    assert not scenario["complete"]
    assert scenario["raw"]["steps"]["monolith"]  # the step measured before Ctrl-C is kept
    assert "(incomplete)" in (run_dir / "scenarios.md").read_text()


def test_the_notebook_section_reads_a_recorded_run(tmp_path):
    """notebooks/compare.ipynb, top to bottom, on recorded results: the scenarios section shows
    the recorded table and every chart with data, and runs nothing."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "notebooks" / "compare.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_RESULTS", str(ROOT / "tests" / "fixtures" / "results_small.json"))
        patch.setenv("LAB_SCENARIOS", str(SCENARIOS_FIXTURE))
        client.execute()  # raises, naming the cell, if any cell fails
    recorded = json.loads(SCENARIOS_FIXTURE.read_text())
    (table_cell,) = [c for c in notebook.cells if "scenarios_report.summary_table" in c.source]
    shown = "".join(
        output["data"]["text/markdown"]
        for output in table_cell.outputs
        if "text/markdown" in output.get("data", {})
    )
    for row in table_rows(recorded):
        assert "| " + " | ".join(row) + " |" in shown
    (charts_cell,) = [c for c in notebook.cells if "scenarios_report.draw_chart" in c.source]
    images = sum(
        any(mime.startswith("image/") for mime in output.get("data", {}))
        for output in charts_cell.outputs
    )
    with_data = sum(
        any(y is not None for series in chart["series"] for y in series["y"])
        for scenario in recorded["scenarios"]
        for chart in scenario["charts"]
    )
    assert images == with_data > 0
