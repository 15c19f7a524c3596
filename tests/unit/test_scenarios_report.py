"""The scenarios report: scenarios.json validated by its schema, rendered to md, html and PNGs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from benchmarks.scenarios import base, document, run
from benchmarks.scenarios.document import SCENARIOS_FILE, ScenariosValidationError


def _result(complete: bool = True) -> base.ScenarioResult:
    result = base.ScenarioResult(
        "planner",
        rows=[
            base.row(
                "cost at the peak, per month",
                "USD",
                "lower",
                40.0,
                95.0,
                "every request pays three hops",
                "none in 5-320 req/s",
                base.Interval(38.0, 44.0),
                base.Interval(90.0, 99.0),
            ),
            base.row("capacity", "req/s", "higher", 100.0, 110.0, "close", "n/a"),
        ],
        configurations={"monolith": "3 x (0.5 vCPU, 576 MiB)", "microservices": "four roles"},
        budget="1 vCPU",
        summary="The monolith is cheaper at every rate.",
        charts=[
            base.ChartData(
                "cost",
                "Cost against rate",
                "req/s",
                "USD/h",
                "lower is cheaper",
                [base.Series("monolith", [1, 2, 3], [1.0, 2.0, None])],
                kind="step",
                marks=[(2.0, "crossover")],
                hlines=[(1.5, "SLO")],
            ),
            base.ChartData(
                "bars",
                "Bars",
                "",
                "req/s",
                "taller is more",
                [base.Series("measured", [0.0, 1.0], [3.0, 4.0])],
                kind="bar",
                categories=["monolith", "microservices"],
            ),
            base.ChartData("empty", "Nothing yet", "x", "y", "-", [base.Series("a", [], [])]),
        ],
        notes=["Measured on a loaded machine."],
        raw={"anything": [1, 2]},
        complete=complete,
        seconds=12.5,
    )
    return result


def _written(tmp_path, complete=True):
    args = run.parse_args(["--quick", "--out", str(tmp_path)])
    scenario = base.load("planner")
    started = datetime(2026, 12, 2, tzinfo=UTC)
    doc = run.document(args, ["planner"], started, [(scenario, _result(complete))], complete)
    run.write_run(tmp_path, doc)
    return doc


def test_the_report_has_the_table_every_chart_and_the_notes(tmp_path):
    _written(tmp_path)
    markdown = (tmp_path / "scenarios.md").read_text()
    assert "| scenario | metric | monolith | microservices | winner | by how much |" in markdown
    assert (
        "| 1. Scale only what is hot | cost at the peak, per month | 40 USD (38-44) |" in markdown
    )
    assert "| monolith | 2.38x |" in markdown
    assert "| capacity | 100 req/s | 110 req/s | microservices | 1.10x |" in markdown
    assert "Best configuration, monolith: 3 x (0.5 vCPU, 576 MiB)" in markdown
    assert "Measured on a loaded machine." in markdown
    charts = sorted(path.name for path in (tmp_path / "charts").glob("*.png"))
    assert charts == ["planner-bars.png", "planner-cost.png"]  # the empty chart is left out
    page = (tmp_path / "scenarios.html").read_text()
    assert page.count("data:image/svg+xml") == 2 and "every request pays three hops" in page
    stored = json.loads((tmp_path / SCENARIOS_FILE).read_text())
    assert stored["scenarios"][0]["rows"][0]["winner"] == "monolith"
    assert stored["scenarios"][0]["charts"][0]["marks"] == [[2.0, "crossover"]]


def test_an_interrupted_scenario_is_marked(tmp_path):
    _written(tmp_path, complete=False)
    markdown = (tmp_path / "scenarios.md").read_text()
    assert "1. Scale only what is hot (incomplete)" in markdown
    assert "INCOMPLETE" in markdown
    assert "Stopped before it finished" in markdown


def test_the_report_can_be_rebuilt_from_the_json_alone(tmp_path, capsys):
    _written(tmp_path)
    (tmp_path / "scenarios.md").unlink()
    assert run.main(["--report", str(tmp_path)]) == 0
    assert (tmp_path / "scenarios.md").is_file()
    assert run.main(["--report", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("path", "value"),
    [(("rows", 0, "winner"), "maybe"), (("charts", 0, "kind"), "pie"), (("name",), "Bad Name")],
)
def test_the_schema_refuses_a_malformed_document(tmp_path, path, value):
    doc = _written(tmp_path)
    target = json.loads(json.dumps(doc))
    node = target["scenarios"][0]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ScenariosValidationError, match="does not match its schema"):
        document.validate(target)


def test_conclusion_tallies_the_rows():
    doc = {"scenarios": [{**_result().as_dict(), "number": 1, "title": "Hot"}]}
    assert document.conclusion(doc) == (
        "Scenario 1 (Hot): The monolith is cheaper at every rate. "
        "[rows won: microservices 1, monolith 1]"
    )
    assert document.conclusion({"scenarios": []}) == "No scenario finished."
