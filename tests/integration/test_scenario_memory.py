"""Scenario 2 (`benchmarks.scenarios.memory`) on a very short real run: the knn model, 1 and 2
workers, every deployment started for real and its processes' PSS sampled.

What must hold whatever the machine's load: without preloading each monolith worker holds a copy
of the model, so the monolith's memory grows by about a model per worker; with `--preload` the
master holds it and the workers share it; in the microservices only the inference service does.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.reporting.progress import Progress
from benchmarks.scenarios import base
from benchmarks.scenarios import memory as scenario

pytestmark = pytest.mark.integration

# A knn copy is ~140 MiB (a million reference rows); half of it is a floor no interpreter,
# library or heap noise reaches, so "holds a copy" below means what it says.
MODEL_COPY_MIB = 70


@pytest.fixture(scope="module")
def result(models_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("scenario-memory")
    checkpoints: list[base.ScenarioResult] = []
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
        on_checkpoint=checkpoints.append,
    )
    scenario.check(context)
    outcome = scenario.run_with(context, (1, 2))
    return outcome, checkpoints


def points(outcome, variant):
    return {
        point["workers"]: point
        for point in outcome.raw["measurements"]
        if point["variant"] == variant
    }


def test_every_deployment_was_measured_and_checkpointed(result):
    outcome, checkpoints = result
    assert outcome.complete and len(checkpoints) == 6
    assert not any(checkpoint.complete for checkpoint in checkpoints)
    for variant in scenario.VARIANTS:
        measured = points(outcome, variant.key)
        assert sorted(measured) == [1, 2]
        for point in measured.values():
            assert 0 < point["total"]["pss_mib"] < point["total"]["rss_mib"]
    json.dumps(outcome.as_dict())  # what the runner writes


def test_without_preload_each_worker_holds_a_copy(result):
    outcome, _ = result
    monolith = points(outcome, "monolith")
    growth = monolith[2]["total"]["pss_mib"] - monolith[1]["total"]["pss_mib"]
    assert growth > MODEL_COPY_MIB
    assert monolith[2]["pss_per_worker_mib"] > MODEL_COPY_MIB


def test_with_preload_the_master_holds_the_model_and_the_workers_share_it(result):
    outcome, _ = result
    preloaded = points(outcome, "monolith --preload")[2]
    copies = points(outcome, "monolith")[2]
    assert preloaded["breakdown_pss_mib"]["HTTP master"] > MODEL_COPY_MIB / 2
    assert copies["breakdown_pss_mib"]["HTTP master"] < MODEL_COPY_MIB / 2
    assert preloaded["total"]["pss_mib"] < copies["total"]["pss_mib"] - MODEL_COPY_MIB / 2
    # Shared pages: the workers' RSS includes the model, their PSS only a share of it.
    assert preloaded["total"]["rss_mib"] - preloaded["total"]["pss_mib"] > MODEL_COPY_MIB


def test_in_the_microservices_only_inference_holds_the_model(result):
    outcome, _ = result
    breakdown = points(outcome, "microservices")[2]["breakdown_pss_mib"]
    assert breakdown["inference"] > breakdown["preprocess"] + MODEL_COPY_MIB
    assert breakdown["inference"] > breakdown["postprocess"] + MODEL_COPY_MIB


def test_rows_charts_and_break_even_come_from_the_measurements(result):
    outcome, _ = result
    assert [row.unit for row in outcome.rows] == ["MiB", "MiB", "USD/month"]
    copies = points(outcome, "monolith")[2]["total"]["pss_mib"]
    assert outcome.rows[0].monolith == copies
    assert outcome.rows[2].monolith == pytest.approx(
        copies / 1024 * outcome.raw["gib_hour_usd"] * scenario.HOURS_PER_MONTH
    )
    fitted = outcome.raw["fitted_mib"]["monolith"]
    assert fitted["per_worker"] > MODEL_COPY_MIB
    assert {chart.key for chart in outcome.charts} == {"pss-by-workers", "pss-breakdown"}
    assert all(len(series.y) == 2 for series in outcome.charts[0].series)


def test_break_even_arithmetic():
    # Monolith 100 + 300 w, microservices 600 + 100 w: equal at w = 2.5.
    assert scenario.break_even((100, 300), (600, 100)) == pytest.approx(2.5)
    assert scenario.break_even((100, 100), (600, 100)) is None
    assert scenario.fit_line([1, 2, 4], [400, 700, 1300]) == pytest.approx((100, 300))
    assert scenario.fit_line([2, 2], [1, 1]) is None
