"""Run notebooks/compare.ipynb top to bottom, as a student would, on three kinds of run.

The recorded fixture (two architectures, two repetitions, a loadgen-bound step), a real short run
of all four topologies and a real run of one architecture alone (the notebook's second exercise),
both shared with test_bench.py (conftest.py). `NotebookClient.execute()` raises on any cell error,
so running is not the check: each test reads what known cells computed and compares it with what
the lab's own code says about the same results.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import report

NOTEBOOKS = REPO_ROOT / "notebooks"
NOTEBOOK = NOTEBOOKS / "compare.ipynb"
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "results_small.json"
# The chart each of these calls draws, one per cell.
CHART_CALLS = (
    "plots.latency_vs_throughput(",
    "plots.spread_chart(",
    "plots.cost_chart(",
    "plots.time_breakdown(",
)


def code_cell(notebook, needle: str):
    """The one code cell whose source contains `needle`."""
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and needle in c.source]
    return cell


def stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def markdown_outputs(cell) -> list[str]:
    return [
        o["data"]["text/markdown"] for o in cell.outputs if "text/markdown" in o.get("data", {})
    ]


def image_count(cell) -> int:
    return sum(any(mime.startswith("image/") for mime in o.get("data", {})) for o in cell.outputs)


@pytest.fixture(
    scope="module", params=["recorded fixture", "four topologies", "single architecture"]
)
def results_file(request) -> Path:
    if request.param == "recorded fixture":
        return FIXTURE
    run = "bench_run" if request.param == "four topologies" else "single_architecture_run"
    return request.getfixturevalue(run).results_file


@pytest.fixture(scope="module")
def results(results_file) -> dict:
    return json.loads(results_file.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def executed(results_file):
    """The notebook after one full run, executed with cwd = notebooks/ like Jupyter would."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    with pytest.MonkeyPatch.context() as patch:
        # The kernel inherits this environment: this is how the notebook finds the results.
        patch.setenv("LAB_RESULTS", str(results_file))
        client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    return notebook


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells and all(not cell.outputs for cell in code_cells)
    assert "RESULTS = None" in code_cells[0].source


def test_notebook_reads_the_run_it_was_pointed_at(executed, results):
    run = results["run"]
    assert stream_text(code_cell(executed, "RESULTS = None")) == (
        f"Run {run['label']!r} from {run['started_at']}: {', '.join(results['architectures'])}\n"
        f"SLO: p99 <= {run['slo_p99_ms']:g} ms, {run['repetitions']} repetition(s), "
        f"quick mode: {run['quick']}\n"
    )


def test_notebook_shows_the_reports_verdict_and_time_breakdown(executed, results):
    (summary,) = markdown_outputs(code_cell(executed, "summary_markdown"))
    assert summary == report.summary_markdown(results)
    assert report.headline(results) in summary
    names = list(results["architectures"])
    if len(names) == 1:
        assert "Only one architecture was measured" in summary and f"{names[0]} ÷ " not in summary
    else:
        pairs = [f"{a} ÷ {b}" for i, a in enumerate(names) for b in names[i + 1 :]]
        assert all(pair in summary for pair in pairs), pairs
    (breakdown,) = markdown_outputs(code_cell(executed, "where_the_time_goes"))
    assert breakdown == report.where_the_time_goes(results)


def test_notebook_draws_each_chart_once(executed):
    for call in CHART_CALLS:
        assert image_count(code_cell(executed, call)) == 1, call


def test_notebook_lists_every_step_with_the_verdict_the_results_recorded(executed, results):
    lines = stream_text(code_cell(executed, "beyond_capacity_reasons")).splitlines()
    steps = [line for line in lines if line.lstrip().startswith("rep ")]
    levels = [level for arch in results["architectures"].values() for level in arch["levels"]]
    assert len(steps) == len(levels)
    assert [line for line in lines if line and not line.startswith(" ")] == list(
        results["architectures"]
    )
    # The notebook re-derives each verdict with analysis.beyond_capacity_reasons: it must agree
    # with what the bench recorded, step by step.
    for line, level in zip(steps, levels, strict=True):
        assert line.lstrip().startswith(f"rep {level['repetition']} step {level['step']}:")
        verdict = line.split(": ", 1)[1]
        assert verdict.startswith("target ") and ("within SLO" in verdict) == level["within_slo"]
        assert ("beyond capacity: " in verdict) != level["within_slo"], line
        assert line.endswith("<- LOADGEN-BOUND") == level["loadgen_bound"], line
