"""Faults under load: a dead stage, rolling restarts, model rollouts and overload, on real processes.

Each test starts its own deployment, because it kills or restarts parts of it (or, for shedding,
needs settings of its own). Rolling restarts of replicated stages and of gunicorn workers are
checked by the rollout tests, which restart under load and also check every answer's version.
"""

from __future__ import annotations

import signal

import psutil
import pytest
import requests
from helpers import wait_until
from steady_load import (
    WITHOUT_SHEDDING,
    SteadyLoad,
    assert_each_answer_is_one_version,
    version_references,
)

from lab.launch import launch
from servinglab.model.artifact import set_current

pytestmark = pytest.mark.integration

BUDGET_MS = 1000
# How long the load's clients wait for an answer during a fault: the request budget plus a wide
# margin for HTTP and scheduling on a busy 2-core machine. Not a speed check: a request the
# gateway never answers (waiting on a dead stage without a deadline) ends at this timeout with
# no answer (status 0), which the tests refuse.
CLIENT_TIMEOUT_S = BUDGET_MS / 1e3 + 10.0


def _settings(models, **extra):
    return {"MODEL_DIR": models, "HTTP_WORKERS": 2, "REQUEST_BUDGET_MS": BUDGET_MS, **extra}


def _is_problem(answer) -> bool:
    body = answer.body or {}
    return (
        answer.content_type.startswith("application/problem+json")
        and body.get("status") == answer.status
        and {"type", "title", "detail"} <= set(body)
    )


def _ready(url: str) -> bool:
    return requests.get(url + "/readyz", timeout=5).status_code == 200


def test_killed_stage_gives_503s_not_hangs_and_the_gateway_recovers_without_restart(
    models_root, held_out, tmp_path
):
    with launch("microservices", settings=_settings(models_root), log_dir=tmp_path) as deployment:
        gateway_pids = [deployment.entry.pid, *deployment.entry_workers()]
        with SteadyLoad(deployment.url, held_out[:40], timeout_s=CLIENT_TIMEOUT_S) as load:
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
        wait_until(lambda: _ready(deployment.url), "/readyz 200 after the restart")
        assert [deployment.entry.pid, *deployment.entry_workers()] == gateway_pids

    failures = [a for a in load.answers if a.status != 200]
    assert failures, "killing the only preprocess replica must be visible"
    # Every request was answered (none is left at 0, the client's timeout) and every failure is
    # the problem the contract promises for a missing stage.
    assert {a.status for a in failures} <= {503, 504}
    assert all(_is_problem(a) for a in failures)


def test_model_rollout_never_mixes_versions_in_microservices(two_versions, held_out, tmp_path):
    root, v1, v2 = two_versions
    instances = held_out[:40]
    expected = version_references(root, (v1, v2), instances)
    assert any(
        expected[v1][i]["probabilities"] != expected[v2][i]["probabilities"]
        for i in range(len(instances))
    )
    set_current(root / "linear", v1)
    with (
        launch(
            "microservices",
            settings=_settings(root, **WITHOUT_SHEDDING),
            replicas={"inference": 2, "preprocess": 2},
            log_dir=tmp_path,
        ) as deployment,
        SteadyLoad(deployment.url, instances) as load,
    ):
        old_pids = {
            stage: {replica.process.pid for replica in deployment.replicas[stage]}
            for stage in ("inference", "preprocess")
        }
        load.wait_for_more(20)
        set_current(root / "linear", v2)
        # Inference first: the preprocess replicas, still on v1, are asked for v2 features.
        deployment.rolling_restart("inference")
        load.wait_for_more(20)
        deployment.rolling_restart("preprocess")
        settled = load.count()
        load.wait_for_more(20)
        for stage, pids in old_pids.items():
            assert not pids & {replica.process.pid for replica in deployment.replicas[stage]}
    # Nothing lost during either rolling restart (every answer a 200), and no version mixed.
    assert_each_answer_is_one_version(load, expected, (v1, v2))
    assert {a.body["model"]["version"] for a in load.answers[settled:]} == {v2}


def test_model_rollout_in_the_monolith_by_rolling_reload(two_versions, held_out, tmp_path):
    root, v1, v2 = two_versions
    instances = held_out[:40]
    expected = version_references(root, (v1, v2), instances)
    set_current(root / "linear", v1)
    with launch(
        "monolith", settings=_settings(root, **WITHOUT_SHEDDING), log_dir=tmp_path
    ) as deployment:
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
            load.wait_for(
                lambda _: (
                    not set(old_workers) & set(deployment.entry_workers())
                    and len(deployment.entry_workers()) == len(old_workers)
                ),
                what="every old worker replaced",
            )
            load.wait_for_more(20)
    # Nothing lost while the workers were replaced (every answer a 200), and no version mixed.
    assert_each_answer_is_one_version(load, expected, (v1, v2))


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
        # Each process publishes its counters once a second: poll until the shedding shows.
        wait_until(
            lambda: (
                'lab_shed_requests_total{reason="'
                in requests.get(deployment.url + "/metrics", timeout=5).text
            ),
            "the shed requests in /metrics",
            timeout_s=30,
        )
    assert {a.status for a in load.answers} <= {200, 503}
    shed = [a for a in load.answers if a.status == 503]
    assert all(_is_problem(a) and a.body["type"].endswith(":stage-overloaded") for a in shed)


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
        # The load is gone and the same worker serves again. Polled: with a 1 ms limit even a
        # lone request can wait that long for a thread on a busy machine, and be shed too.
        wait_until(
            lambda: (
                requests.post(
                    deployment.url + "/v1/predict", json={"instances": held_out[:1]}, timeout=5
                ).status_code
                == 200
            ),
            "a lone request served after the load",
        )
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
