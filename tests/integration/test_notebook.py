"""Run notebooks/compare.ipynb top to bottom against the fixture, as a student would."""

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


def image_outputs(notebook) -> list[dict]:
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if any(mime.startswith("image/") for mime in output.get("data", {}))
    ]


def stream_text(notebook) -> str:
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


@pytest.fixture(scope="module")
def executed():
    """The notebook after one full run, executed with cwd = notebooks/ like Jupyter would."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    with pytest.MonkeyPatch.context() as patch:
        # The kernel inherits this environment: this is how the notebook finds the fixture.
        patch.setenv("LAB_RESULTS", str(FIXTURE))
        client.execute()
    return notebook


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells and all(not cell.outputs for cell in code_cells)
    assert "RESULTS = None" in code_cells[0].source


def test_notebook_runs_against_the_fixture(executed):
    errors = [
        output
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []
    assert len(image_outputs(executed)) >= 3
    text = stream_text(executed)
    assert "monolith, microservices" in text
    assert "LOADGEN-BOUND" in text


def test_notebook_shows_the_fixture_headline(executed):
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    markdown_outputs = [
        output["data"]["text/markdown"]
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "text/markdown" in output.get("data", {})
    ]
    assert any(report.headline(fixture) in text for text in markdown_outputs)
