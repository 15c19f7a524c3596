"""The scenario interface: winners and ties, crossovers, the registry, how runs are configured."""

from __future__ import annotations

import pytest

from benchmarks import knobs
from benchmarks.reporting.progress import Progress
from benchmarks.scenarios import base


def test_a_clear_difference_has_a_winner_and_a_factor():
    assert base.judge("higher", 100.0, 250.0) == ("microservices", "2.50x")
    assert base.judge("lower", 1.0, 3.0) == ("monolith", "3.00x")
    assert base.judge("higher", 1000.0, 10.0) == ("monolith", "100x")


def test_differences_inside_the_noise_are_ties():
    assert base.judge("higher", 100.0, 104.0)[0] == "tie"  # within 5%
    assert base.judge("higher", 100.0, 120.0)[0] == "microservices"
    assert base.judge("higher", 100.0, 120.0, noise=base.SINGLE_RUN_NOISE)[0] == "tie"
    overlapping = base.judge(
        "lower", 10.0, 14.0, base.Interval(8.0, 13.0), base.Interval(12.0, 16.0)
    )
    assert overlapping == ("tie", "within the noise (intervals overlap)")
    apart = base.judge("lower", 10.0, 14.0, base.Interval(9.0, 11.0), base.Interval(13.0, 15.0))
    assert apart[0] == "monolith"


def test_a_side_not_measured_is_no_win():
    assert base.judge("higher", None, 3.0)[0] == "n/a"
    assert base.judge("higher", 0.0, 3.0) == ("microservices", "only one side is above zero")


def test_row_takes_its_verdict_from_judge():
    made = base.row("capacity", "req/s", "higher", 50.0, 200.0, "why", "none")
    assert (made.winner, made.by_how_much) == ("microservices", "4.00x")


def test_interval_of_values():
    assert base.Interval.of([3.0, 1.0, 2.0]) == base.Interval(1.0, 3.0)
    assert base.Interval.of([]) is None


def test_crossovers_ignore_points_inside_the_noise():
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    mono = [1.0, 1.0, 1.0, 1.0, 1.0]
    # Microservices dearer, then within 5% (a tie, no change), then cheaper from x = 4.
    micro = [2.0, 1.5, 1.02, 0.5, 0.4]
    changes = base.crossovers(xs, mono, micro, "lower")
    assert changes == [{"at": 4.0, "to": "microservices"}]
    assert base.describe_crossovers(changes, xs, "req/s") == "microservices lead from 4 req/s"
    wobble = [1.0, 1.03, 0.98, 1.04, 1.0]
    assert base.crossovers(xs, mono, wobble, "lower") == []
    assert base.describe_crossovers([], xs, "req/s") == "none in 1-5 req/s"
    assert base.crossovers([1.0, 2.0], [1.0, None], [2.0, 0.1], "lower") == []


def test_select_keeps_the_report_order_and_refuses_unknown_names():
    assert base.select("") == list(base.REGISTRY)
    assert base.select("batching, planner") == ["planner", "batching"]
    with pytest.raises(base.ScenarioError, match="unknown scenario 'foo'"):
        base.select("planner foo")


def test_load_gives_a_scenario_or_one_clear_error(monkeypatch):
    assert base.load("planner").number == 1
    assert base.load("batching").name == "batching"
    with pytest.raises(base.ScenarioError, match="unknown scenario"):
        base.load("nope")
    monkeypatch.setitem(base.REGISTRY, "ghost", "benchmarks.scenarios.no_such_module")
    with pytest.raises(
        base.ScenarioError, match=r"its module benchmarks\.scenarios\.no_such_module"
    ):
        base.load("ghost")
    monkeypatch.setitem(base.REGISTRY, "plain", "benchmarks.scenarios.base")
    with pytest.raises(base.ScenarioError, match="does not define SCENARIO"):
        base.load("plain")


def test_require_profile(tmp_path):
    with pytest.raises(base.ScenarioError, match="'forest' is not trained"):
        base.require_profile(tmp_path, "forest")
    (tmp_path / "forest").mkdir()
    (tmp_path / "forest" / "CURRENT").write_text("v1\n")
    base.require_profile(tmp_path, "forest")


def _context(tmp_path, quick=True):
    return base.ScenarioContext(
        quick=quick,
        slo_ms=40,
        sut_cpus=[0],
        loadgen_cpus=[1],
        sut_memory_gib=2,
        run_dir=tmp_path,
        models=tmp_path / "models",
        prices=None,
        trace=tmp_path / "trace.csv",
        progress=Progress("test"),
    )


def test_bench_config_carries_the_scenario_settings_and_ignores_the_callers_knobs(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("REPLICAS", "preprocess=3")  # left over in the caller's shell
    monkeypatch.setenv("CACHE", "local")
    config = _context(tmp_path).bench_config(
        "probe",
        ["microservices"],
        profile="forest",
        knobs={"REPLICAS": "inference=2", "BATCHING": "on"},
        settings={"HTTP_WORKERS": 1},
    )
    assert config.quick and config.slo_p99_ms == 40
    assert config.archs == ["microservices"] and config.profile == "forest"
    assert config.knobs["replicas"] == {"inference": 2}
    assert config.knobs["batching"] is True
    assert config.knobs["cache"] == knobs.BY_KEY["cache"].default
    assert config.extra_settings == {"HTTP_WORKERS": 1}
    assert config.out == tmp_path / "runs"


def test_bench_config_refuses_what_is_not_a_knob(tmp_path):
    with pytest.raises(base.ScenarioError, match="not a bench knob: WORKERS"):
        _context(tmp_path).bench_config("x", ["monolith"], knobs={"WORKERS": "3"})


def test_checkpoint_marks_the_result_incomplete(tmp_path):
    seen = []
    context = _context(tmp_path)
    context.on_checkpoint = seen.append
    result = base.ScenarioResult("planner")
    context.checkpoint(result)
    assert seen == [result] and not result.complete


def test_disturbed_steps_are_counted_from_either_flag():
    steps = [
        {"disturbed": True},
        {"interference": {"disturbed": True}},
        {"interference": None},
        {"disturbed": False, "interference": {"disturbed": False}},
    ]
    note = base.disturbed_note(steps)
    assert note.startswith(base.DISTURBED_PREFIX) and "in 2 of 4 load steps" in note
    assert base.disturbed_note(steps[2:]) is None
    results = {"architectures": {"a": {"levels": [1, 2]}, "b": {"levels": [3]}}}
    assert base.bench_steps(results) == [1, 2, 3]
