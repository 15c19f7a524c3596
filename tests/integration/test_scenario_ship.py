"""Scenario 4 (`benchmarks.scenarios.ship`) on a very short real run, and its delivery arithmetic.

The real run ships a new confidence threshold to each architecture under Locust load, with the knn
model: the microservices roll postprocess alone, the monolith replaces its workers. What must hold
whatever the machine's load: before the change every probe answer shows the old rule, the new
rule reaches every answer before the run ends, and no old answer comes after delivery.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.reporting.progress import Progress
from benchmarks.scenarios import base, ship
from benchmarks.scenarios.ship import ProbeAnswer


def answer(sent, uncertain, status=200, took=0.05):
    return ProbeAnswer(sent, sent + took, status, uncertain if status == 200 else None)


def test_delivery_is_the_first_new_answer_after_the_last_old_one():
    answers = [
        answer(9.0, False),
        answer(10.5, True),  # a new worker answers first...
        answer(11.0, False),  # ...while an old one still does
        answer(12.0, False, took=0.6),  # received at 12.6
        answer(12.5, True),  # sent before the last old answer arrived: not yet delivered
        answer(13.0, True),
        answer(13.5, True),
    ]
    result = ship.delivery(answers, change_started=10.0)
    assert result["delivered_s"] == 3.0
    assert result["first_new_s"] == 0.5
    assert result["last_old_s"] == 2.6
    assert result["old_answers_after_change"] == 2
    assert (result["old_before"], result["new_before"]) == (1, 0)


def test_not_delivered_and_failed_probes_are_reported():
    answers = [answer(10.0, False), answer(11.0, None, status=0), answer(12.0, False)]
    result = ship.delivery(answers, change_started=9.0)
    assert result["delivered_s"] is None and result["first_new_s"] is None
    assert result["probe_failed"] == 1


def test_delivered_at_once_when_no_old_answer_follows_the_change():
    result = ship.delivery([answer(9.0, False), answer(10.2, True)], change_started=10.0)
    assert result["delivered_s"] == 0.2 and result["last_old_s"] is None


@pytest.fixture(scope="module")
def outcome(models_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("scenario-ship")
    context = base.ScenarioContext(
        quick=True,
        slo_ms=50,
        sut_cpus=[0],
        loadgen_cpus=[1],
        sut_memory_gib=2,
        run_dir=run_dir,
        models=models_root,
        prices=None,
        trace=run_dir / "unused.csv",
        progress=Progress("test"),
    )
    ship.check(context)
    return ship.run(context)


@pytest.mark.integration
@pytest.mark.parametrize("architecture", base.ARCHITECTURES)
def test_the_new_rule_reaches_every_answer_and_only_after_the_change(outcome, architecture):
    point = outcome.raw["architectures"][architecture]
    delivered = point["delivery"]
    assert delivered["old_before"] > 0 and delivered["new_before"] == 0
    assert delivered["delivered_s"] is not None and delivered["delivered_s"] >= 0
    delivered_at = point["event_started"] + delivered["delivered_s"]
    later = [a for a in point["probe"] if a["sent"] >= delivered_at and a["status"] == 200]
    assert later and all(a["uncertain"] for a in later)
    # The load ran through the change and was answered, and the steady load before it is known.
    assert point["baseline_p99_ms"] is not None
    assert point["event"]["failed"] <= point["requests"] and point["requests"] > 0
    assert not point["event"]["failed_by_status"].get("0"), "requests found nobody listening"


@pytest.mark.integration
def test_rows_and_charts_come_from_both_runs(outcome):
    assert outcome.complete
    assert [row.unit for row in outcome.rows] == ["s", "requests", "ms", "ms", "s"]
    delivered = {
        a: outcome.raw["architectures"][a]["delivery"]["delivered_s"] for a in base.ARCHITECTURES
    }
    assert (outcome.rows[0].monolith, outcome.rows[0].microservices) == (
        delivered["monolith"],
        delivered["microservices"],
    )
    assert {chart.key for chart in outcome.charts} == {"rule-in-answers", "p99-during-change"}
    assert all(series.x for chart in outcome.charts for series in chart.series)
    json.dumps(outcome.as_dict())
