"""The sweep's analysis on synthetic points: winners, ties, crossovers, the conclusion, the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks import knobs, sweep

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "results_small.json"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def figures(capacity, provisioned=None, consumed=0.01, hit_rate=None) -> dict:
    if provisioned is None and capacity:
        provisioned = 10.0 / capacity  # same budget for all: provisioned cost follows capacity
    return {
        "capacity_rps": capacity,
        "p50_at_capacity_ms": 2.0,
        "p99_at_capacity_ms": 20.0,
        "cost_per_million_usd": {"provisioned": provisioned, "consumed": consumed},
        "cpu_seconds_per_1k": 1.0,
        "peak_rss_mb_total": 300.0,
        "hit_rate": hit_rate,
        "hop_delay_method": None,
    }


def points(values, monolith, microservices, numeric=True, **extra) -> list[dict]:
    return [
        {
            "value": value,
            "x": float(value) if numeric else float(index),
            "run_dir": f"runs/{index}",
            "architectures": {
                "monolith": figures(m, **extra),
                "microservices": figures(s, **extra),
            },
        }
        for index, (value, m, s) in enumerate(zip(values, monolith, microservices, strict=True))
    ]


def document(knob_key, values, monolith, microservices, numeric=True, quick=False, **extra) -> dict:
    run = json.loads(FIXTURE.read_text())["run"]
    run["quick"] = quick
    run["knobs"] = knobs.record(knobs.defaults())
    return sweep.assemble(
        knobs.BY_KEY[knob_key],
        values,
        numeric,
        points(values, monolith, microservices, numeric, **extra),
        run,
        NOW,
        NOW,
        True,
    )


def test_leader_picks_the_best_and_calls_near_equals_a_tie():
    assert sweep.leader({"a": 100.0, "b": 80.0}, higher_is_better=True) == {
        "winner": "a",
        "tied": [],
    }
    assert sweep.leader({"a": 1.0, "b": 0.5}, higher_is_better=False) == {"winner": "b", "tied": []}
    assert sweep.leader({"a": 100.0, "b": 97.0}, higher_is_better=True) == {
        "winner": None,
        "tied": ["a", "b"],
    }
    # Missing the SLO everywhere loses to any figure; nobody with a figure is no winner at all.
    assert sweep.leader({"a": None, "b": 5.0}, higher_is_better=True) == {"winner": "b", "tied": []}
    assert sweep.leader({"a": None, "b": None}, higher_is_better=True) == {
        "winner": None,
        "tied": [],
    }


def test_one_winner_everywhere_has_no_crossover():
    doc = document(
        "hop_delay_ms", ["0", "0.5", "2", "5"], [800, 800, 790, 800], [300, 250, 150, 60]
    )
    for key in ("capacity", "provisioned_cost"):
        assert doc["analysis"][key]["crossovers"] == []
        assert [entry["winner"] for entry in doc["analysis"][key]["leaders"]] == ["monolith"] * 4
    assert (
        "By capacity, provisioned cost and consumed cost" not in doc["conclusion"]
    )  # consumed is a tie here
    assert doc["conclusion"].startswith(
        "By capacity and provisioned cost, the monolith wins at every value tested."
    )
    assert "on this machine, for this workload" in doc["conclusion"]
    sweep.validate(doc)


def test_crossover_is_found_and_interpolated_on_a_numeric_knob():
    # Microservices gain from the cache (placed at the gateway) faster than the monolith does.
    doc = document("cache_rate", ["0", "0.5", "0.9"], [700, 720, 750], [300, 500, 900])
    [crossing] = doc["analysis"]["capacity"]["crossovers"]
    assert crossing["from"] == "monolith" and crossing["to"] == "microservices"
    assert crossing["between"] == ["0.5", "0.9"] and crossing["between_indexes"] == [1, 2]
    # Margins +220 at 0.5 and -150 at 0.9: the lines cross at 0.5 + 0.4 * 220 / 370.
    assert crossing["at"] == pytest.approx(0.5 + 0.4 * 220 / 370, rel=1e-4)
    conclusion = doc["conclusion"]
    assert (
        "the monolith wins when CACHE_RATE is 0.5 or less, microservices win when it is 0.9 or more"
        in conclusion
    )
    assert "cross near CACHE_RATE = 0.738" in conclusion
    # Provisioned cost has the same winners, so it shares the sentence (with capacity's crossing).
    assert conclusion.startswith("By capacity and provisioned cost,")


def test_values_are_sorted_for_a_numeric_knob_and_kept_in_order_otherwise():
    knob, labels, parsed, numeric = sweep.plan("hop_delay_ms", "5 0 2")
    assert (knob.key, labels, parsed, numeric) == (
        "hop_delay_ms",
        ["0", "2", "5"],
        [0.0, 2.0, 5.0],
        True,
    )
    _, labels, parsed, numeric = sweep.plan("profile", None)
    assert labels == ["linear", "boosting", "forest"] and numeric is False
    _, labels, parsed, numeric = sweep.plan("batching", None)
    assert parsed == [False, True] and numeric is False


@pytest.mark.parametrize(
    "knob, values_text, needle",
    [
        (None, None, "set SWEEP"),
        ("archs", None, "not a knob to sweep"),
        ("colour", None, "not a knob to sweep"),
        ("hop_delay_ms", "2", "at least two values"),
        ("hop_delay_ms", "2 2.0", "repeats a value"),
        ("cache_rate", "0 7", "outside 0..1"),
    ],
)
def test_plan_refuses_what_cannot_be_swept(knob, values_text, needle):
    with pytest.raises(knobs.KnobError, match=needle):
        sweep.plan(knob, values_text)


def test_categorical_crossovers_have_no_interpolated_point():
    doc = document(
        "profile", ["linear", "boosting", "forest"], [900, 300, 100], [300, 250, 120], numeric=False
    )
    [crossing] = doc["analysis"]["capacity"]["crossovers"]
    assert crossing["at"] is None and crossing["between"] == ["boosting", "forest"]
    assert (
        "the monolith wins at PROFILE = linear and boosting; microservices win at PROFILE = forest"
        in doc["conclusion"]
    )
    assert (
        "the winner changes between boosting and forest (the monolith to microservices)"
        in doc["conclusion"]
    )


def test_several_crossovers_are_listed():
    doc = document("hop_delay_ms", ["0", "1", "2", "3"], [500, 200, 500, 200], [300, 300, 300, 300])
    assert [c["between"] for c in doc["analysis"]["capacity"]["crossovers"]] == [
        ["0", "1"],
        ["1", "2"],
        ["2", "3"],
    ]
    assert "the winner changes between 0 and 1" in doc["conclusion"]


def test_ties_are_reported_and_skipped_by_crossovers():
    doc = document("hop_delay_ms", ["0", "1", "2"], [500, 400, 500], [300, 395, 300])
    assert doc["analysis"]["capacity"]["leaders"][1] == {
        "winner": None,
        "tied": ["monolith", "microservices"],
    }
    assert doc["analysis"]["capacity"]["crossovers"] == []
    assert "the monolith wins or ties at every value tested" in doc["conclusion"]
    assert "a tie, at HOP_DELAY_MS = 1" in doc["conclusion"]


def test_an_architecture_that_never_meets_the_slo_loses_and_nobody_wins_without_data():
    doc = document("hop_delay_ms", ["0", "5"], [500, None], [None, None])
    assert [e["winner"] for e in doc["analysis"]["capacity"]["leaders"]] == ["monolith", None]
    assert "the monolith wins at every value tested" in doc["conclusion"]
    nobody = document("hop_delay_ms", ["0", "5"], [None, None], [None, None], consumed=None)
    assert "no architecture met the SLO at any value tested" in nobody["conclusion"]


def test_quick_sweeps_say_so():
    doc = document("hop_delay_ms", ["0", "5"], [500, 500], [300, 100], quick=True)
    assert "QUICK" in doc["conclusion"]


def test_schema_rejects_a_broken_document():
    doc = document("hop_delay_ms", ["0", "5"], [500, 500], [300, 100])
    del doc["analysis"]["capacity"]
    assert any("capacity" in error for error in sweep.validation_errors(doc))


def test_report_and_charts_are_written_from_sweep_json(tmp_path):
    doc = document(
        "cache_rate", ["0", "0.5", "0.9"], [700, 720, 750], [300, 500, 900], hit_rate=0.4
    )
    (tmp_path / sweep.SWEEP_FILE).write_text(json.dumps(doc))
    written = sweep.write_sweep_report(tmp_path)
    names = {path.name for path in written}
    assert {"sweep.md", "sweep.html", "sweep_capacity_cost.png", "sweep_latency.png"} <= names
    markdown = (tmp_path / "sweep.md").read_text()
    assert doc["conclusion"] in markdown
    assert knobs.BY_KEY["cache_rate"].about in markdown
    assert "| 0.9 | microservices |" in markdown and "40.0%" in markdown
    assert "monolith → microservices between CACHE_RATE = 0.5 and 0.9" in markdown
    page = (tmp_path / "sweep.html").read_text()
    assert page.count("data:image/svg+xml;base64,") == len(sweep.CHARTS)
    assert "://" not in page  # self-contained: no external link or resource


def test_command_line_refuses_a_bad_sweep_before_running_anything(capsys, tmp_path):
    assert sweep.main(["--knob", "colour", "--out", str(tmp_path)]) == 2
    assert "not a knob to sweep" in capsys.readouterr().err
    assert sweep.main(["--knob", "hop_delay_ms", "--values", "0 fast", "--out", str(tmp_path)]) == 2
    assert "HOP_DELAY_MS='fast'" in capsys.readouterr().err
    assert sweep.main(["--knob", "cache", "--cache", "local", "--out", str(tmp_path)]) == 2
    assert "swept knob" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
