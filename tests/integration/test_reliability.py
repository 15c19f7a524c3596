"""Faults under load: a dead stage, rolling restarts, model rollouts and overload, on real processes.

Each test starts its own deployment, because it kills or restarts parts of it.
"""

from __future__ import annotations

import signal

import psutil
import pytest
import requests
from steady_load import SteadyLoad, eventually

from lab.launch import launch
from servinglab.model.artifact import load_artifact, set_current
from servinglab.model.pipeline import ServingPipeline
from servinglab.validation import validate_predict_request

pytestmark = pytest.mark.integration

BUDGET_MS = 1000
# No-hang bound for answers during a fault: the request budget plus HTTP and scheduling slack on
# a busy 2-core machine. It tests "never hangs", not speed.
NO_HANG_S = BUDGET_MS / 1e3 + 2.0


def _settings(models, **extra):
    return {"MODEL_DIR": models, "HTTP_WORKERS": 2, "REQUEST_BUDGET_MS": BUDGET_MS, **extra}


def _is_problem(answer) -> bool:
    body = answer.body or {}
    return (
        answer.content_type.startswith("application/problem+json")
        and body.get("status") == answer.status
        and {"type", "title", "detail"} <= set(body)
    )


def _readiness(url: str) -> tuple[int, str]:
    response = requests.get(url + "/readyz", timeout=5)
    return response.status_code, response.text[:300]


def test_killed_stage_gives_503s_in_time_and_the_gateway_recovers_without_restart(
    models_root, held_out, tmp_path
):
    with launch("microservices", settings=_settings(models_root), log_dir=tmp_path) as deployment:
        gateway_pids = [deployment.entry.pid, *deployment.entry_workers()]
        with SteadyLoad(deployment.url, held_out[:40]) as load:
            load.wait_for_more(20)
            deployment.kill("preprocess")
            load.wait_for(
                lambda answers: sum(a.status == 503 for a in answers) >= 10,
                what="503s after the kill",
            )
            assert requests.get(deployment.url + "/readyz", timeout=5).status_code == 503
            deployment.start_replica("preprocess")
            recovered_from = load.count()
            load.wait_for(
                lambda answers: sum(a.status == 200 for a in answers[recovered_from:]) >= 20,
                what="successful answers after the restart",
            )
        # Each gateway worker has its own channel, reconnecting on its own backoff: every one of
        # them must come back, without a restart, so poll until /readyz answers 200.
        eventually(
            lambda: _readiness(deployment.url),
            lambda observed: observed[0] == 200,
            what="/readyz 200 after the restart",
        )
        assert [deployment.entry.pid, *deployment.entry_workers()] == gateway_pids

    failures = [a for a in load.answers if a.status != 200]
    assert failures, "killing the only preprocess replica must be visible"
    assert {a.status for a in failures} <= {503, 504}
    assert all(_is_problem(a) for a in failures)
    assert max(a.latency_s for a in load.answers) < NO_HANG_S


@pytest.mark.parametrize("stage", ["inference", "preprocess"])
def test_rolling_restart_of_a_replicated_stage_loses_nothing(
    stage, models_root, held_out, tmp_path
):
    with launch(
        "microservices", settings=_settings(models_root), replicas={stage: 2}, log_dir=tmp_path
    ) as deployment:
        old_pids = [replica.process.pid for replica in deployment.replicas[stage]]
        with SteadyLoad(deployment.url, held_out[:40]) as load:
            load.wait_for_more(20)
            deployment.rolling_restart(stage)
            load.wait_for_more(20)
        assert not set(old_pids) & {replica.process.pid for replica in deployment.replicas[stage]}
    statuses = {a.status for a in load.answers}
    assert statuses == {200}, f"failed answers during the rolling restart: {sorted(statuses)}"


def _references(models_dir, versions, instances):
    """What each version answers for each instance, computed in process by the shared pipeline."""
    expected = {}
    for version in versions:
        pipeline = ServingPipeline.from_artifact(load_artifact(models_dir / "linear" / version))
        expected[version] = [
            pipeline.predict(validate_predict_request({"instances": [i]}, 1))[0] for i in instances
        ]
    return expected


def _assert_consistent(load, expected, versions):
    assert {a.status for a in load.answers} == {200}
    seen = {a.body["model"]["version"] for a in load.answers}
    assert seen == set(versions), f"versions seen: {seen}"
    for answer in load.answers:
        version = answer.body["model"]["version"]
        # Equal to the pure pipeline of the version it names: features and model of one version.
        assert answer.body["predictions"][0] == expected[version][answer.instance_index]


def test_model_rollout_never_mixes_versions_in_microservices(two_versions, held_out, tmp_path):
    root, v1, v2 = two_versions
    instances = held_out[:40]
    expected = _references(root, (v1, v2), instances)
    assert any(
        expected[v1][i]["probabilities"] != expected[v2][i]["probabilities"]
        for i in range(len(instances))
    )
    set_current(root / "linear", v1)
    with (
        launch(
            "microservices",
            settings=_settings(root),
            replicas={"inference": 2, "preprocess": 2},
            log_dir=tmp_path,
        ) as deployment,
        SteadyLoad(deployment.url, instances) as load,
    ):
        load.wait_for_more(20)
        set_current(root / "linear", v2)
        # Inference first: the preprocess replicas, still on v1, are asked for v2 features.
        deployment.rolling_restart("inference")
        load.wait_for_more(20)
        deployment.rolling_restart("preprocess")
        settled = load.count()
        load.wait_for_more(20)
    _assert_consistent(load, expected, (v1, v2))
    assert {a.body["model"]["version"] for a in load.answers[settled:]} == {v2}


def test_model_rollout_in_the_monolith_by_rolling_reload(two_versions, held_out, tmp_path):
    root, v1, v2 = two_versions
    instances = held_out[:40]
    expected = _references(root, (v1, v2), instances)
    set_current(root / "linear", v1)
    with launch("monolith", settings=_settings(root), log_dir=tmp_path) as deployment:
        old_workers = deployment.entry_workers()
        with SteadyLoad(deployment.url, instances) as load:
            load.wait_for_more(20)
            set_current(root / "linear", v2)
            deployment.reload_workers()
            load.wait_for(
                lambda answers: (
                    sum(
                        a.body is not None and a.body.get("model", {}).get("version") == v2
                        for a in answers
                    )
                    >= 20
                ),
                what="answers from v2 workers",
            )
        assert not set(old_workers) & set(deployment.entry_workers())
    _assert_consistent(load, expected, (v1, v2))


def test_grpc_stage_sheds_with_503_beyond_its_concurrency_limit(models_root, held_out, tmp_path):
    settings = _settings(models_root, GRPC_MAX_CONCURRENT_RPCS=1, GRPC_THREADS=1, HTTP_THREADS=8)
    with launch("microservices", settings=settings, log_dir=tmp_path) as deployment:
        with SteadyLoad(deployment.url, held_out[:40], threads=16) as load:
            load.wait_for(
                lambda answers: (
                    sum(a.status == 503 for a in answers) >= 10
                    and sum(a.status == 200 for a in answers) >= 10
                ),
                what="both shed and served requests",
            )
        metrics_text = requests.get(deployment.url + "/metrics", timeout=5).text
    assert {a.status for a in load.answers} <= {200, 503}
    shed = [a for a in load.answers if a.status == 503]
    assert all(_is_problem(a) and a.body["type"].endswith(":stage-overloaded") for a in shed)
    assert 'lab_shed_requests_total{reason="' in metrics_text


def test_http_worker_sheds_requests_that_queued_too_long(models_root, held_out, tmp_path):
    # One worker thread and a 1 ms queue limit: concurrent clients must queue, and the ones that
    # waited are refused with 503 + Retry-After instead of being computed late.
    settings = _settings(models_root, HTTP_WORKERS=1, HTTP_THREADS=1, HTTP_MAX_QUEUE_MS=1)
    with launch("monolith", settings=settings, log_dir=tmp_path) as deployment:
        workers = deployment.entry_workers()
        with SteadyLoad(deployment.url, held_out[:40], threads=12) as load:
            load.wait_for(
                lambda answers: (
                    sum(a.status == 503 for a in answers) >= 10
                    and sum(a.status == 200 for a in answers) >= 10
                ),
                what="both shed and served requests",
            )
        response = requests.post(
            deployment.url + "/v1/predict", json={"instances": held_out[:1]}, timeout=5
        )
        assert response.status_code == 200
        assert deployment.entry_workers() == workers
    shed = [a for a in load.answers if a.status == 503]
    assert {a.status for a in load.answers} <= {200, 503}
    assert all(_is_problem(a) and a.body["type"].endswith(":overloaded") for a in shed)


def test_a_forged_queue_header_is_ignored(monolith, held_out, http):
    response = http.post(
        monolith.url + "/v1/predict",
        json={"instances": held_out[:1]},
        headers={"X-Lab-Queue-Ms": "999999"},
        timeout=5,
    )
    assert response.status_code == 200


def test_monolith_rolling_reload_under_load_loses_nothing(models_root, held_out, tmp_path):
    with launch("monolith", settings=_settings(models_root), log_dir=tmp_path) as deployment:
        old_workers = deployment.entry_workers()
        with SteadyLoad(deployment.url, held_out[:40]) as load:
            load.wait_for_more(20)
            deployment.reload_workers()
            load.wait_for(
                lambda _: (
                    not set(old_workers) & set(deployment.entry_workers())
                    and len(deployment.entry_workers()) == 2
                ),
                what="old workers replaced",
            )
            load.wait_for_more(20)
    assert {a.status for a in load.answers} == {200}


def test_killed_gunicorn_worker_is_replaced(models_root, held_out, tmp_path):
    with launch("monolith", settings=_settings(models_root), log_dir=tmp_path) as deployment:
        victim = deployment.entry_workers()[0]
        with SteadyLoad(deployment.url, held_out[:40]) as load:
            load.wait_for_more(10)
            psutil.Process(victim).send_signal(signal.SIGKILL)
            load.wait_for(
                lambda _: (
                    len(deployment.entry_workers()) == 2
                    and victim not in deployment.entry_workers()
                ),
                what="a replacement worker",
            )
            after = load.count()
            load.wait_for(
                lambda answers: sum(a.status == 200 for a in answers[after:]) >= 20, what="service"
            )
    # A worker killed mid-request drops at most what it held; nothing else fails.
    assert {a.status for a in load.answers} <= {200, 0}
