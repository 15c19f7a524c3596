"""Micro-batching end to end: both architectures with `LAB_BATCHING` on, under concurrent load.

Each architecture is started for real with batching on and 8 HTTP threads per worker (a monolith
worker only batches among its own concurrent requests; see BATCHING in config.py), then sent
single-row requests in bursts: CLIENT_THREADS requests at a time, held at a barrier and released
together, so every burst has more requests in flight than the server has threads, not only when
the scheduler happens to overlap them. Every answer must equal, floats included, what the
unbatched in-process pipeline gives for that row alone, and `/metrics` must show that model calls
really served several requests at once (in microservices the inference service publishes its
metrics through the shared metrics directory, which the gateway's `/metrics` merges).

The forest profile is served: requests can only pile up behind a model call that lets other
threads run, and the forest's trees release the GIL while they walk. The linear model answers in
~10 us without releasing it, so nobody can arrive during its call and every batch holds one request.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from benchmarks.measure import servertiming
from lab.launch import launch
from servinglab.model.artifact import load_artifact
from servinglab.model.pipeline import ServingPipeline
from servinglab.validation import validate_instances

pytestmark = pytest.mark.integration

PROFILE = "forest"
# Twice the server's threads (HTTP_THREADS below; the inference service has GRPC_THREADS, 4):
# every burst fills them all, with more requests queued behind.
CLIENT_THREADS = 16
ROUNDS = 3
# Only reached when something is broken (a client thread that never reaches the barrier).
BARRIER_TIMEOUT_S = 30.0
# Processes publish their metrics once a second (metrics.FLUSH_INTERVAL_S); this is the most a
# scrape may lag behind the inference service, with room for a loaded machine.
METRICS_DEADLINE_S = 15.0
BATCHING_SETTINGS = {
    "BATCHING": True,
    "HTTP_THREADS": 8,
    "HTTP_WORKERS": 1,
    "BATCH_MAX_SIZE": 32,
    # Once requests pile up, a batch is held open for company until every server thread has
    # queued (or this long): long enough that a burst's stragglers join instead of going alone.
    "BATCH_MAX_WAIT_MS": 50,
}


@pytest.fixture(scope="module")
def unbatched(models_root) -> ServingPipeline:
    return ServingPipeline.from_artifact(load_artifact(models_root, PROFILE))


@pytest.fixture(scope="module", params=["monolith", "microservices"])
def batching_deployment(request, models_root, tmp_path_factory):
    with launch(
        request.param,
        settings={"MODEL_DIR": models_root, "MODEL_PROFILE": PROFILE, **BATCHING_SETTINGS},
        log_dir=tmp_path_factory.mktemp(f"{request.param}-batching-logs"),
    ) as deployment:
        yield deployment


def rows_with_gaps(held_out: list[dict]) -> list[dict]:
    """Held-out birds as they are, and with measurements and categories missing."""
    return [
        *held_out,
        *({**record, "sex": None, "body_mass_g": None} for record in held_out[:40]),
        *({**record, "island": None, "flipper_length_mm": None} for record in held_out[40:80]),
    ]


def predict_in_bursts(url: str, rows: list[dict]) -> list[tuple[dict, str]]:
    """One single-row request per row, CLIENT_THREADS at a time released together by a barrier:
    (prediction, Server-Timing) per row, in order."""
    local = threading.local()
    sessions: list[requests.Session] = []

    def one(barrier: threading.Barrier, row: dict) -> tuple[dict, str]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            sessions.append(local.session)
        barrier.wait(BARRIER_TIMEOUT_S)
        response = local.session.post(url + "/v1/predict", json={"instances": [row]}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0], response.headers["Server-Timing"]

    answers: list[tuple[dict, str]] = []
    try:
        # As many threads as a burst has requests, so every request of a burst reaches the barrier.
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            for start in range(0, len(rows), CLIENT_THREADS):
                burst = rows[start : start + CLIENT_THREADS]
                barrier = threading.Barrier(len(burst))
                answers += pool.map(functools.partial(one, barrier), burst)
    finally:
        for session in sessions:
            session.close()
    return answers


def batch_histogram(text: str) -> dict[str, float]:
    """`lab_batch_requests` buckets (cumulative, by upper bound) plus _sum and _count."""
    values = {}
    for match in re.finditer(
        r'^lab_batch_requests_bucket\{le="([^"]+)"\} (\S+)$', text, re.MULTILINE
    ):
        values[match.group(1)] = float(match.group(2))
    for part in ("sum", "count"):
        match = re.search(rf"^lab_batch_requests_{part} (\S+)$", text, re.MULTILINE)
        values[part] = float(match.group(1)) if match else 0.0
    return values


def settled_histogram(url: str, requests_sent: int) -> dict[str, float]:
    """The histogram once every request sent is accounted for (each answered one model call)."""
    deadline = time.monotonic() + METRICS_DEADLINE_S
    while True:
        histogram = batch_histogram(requests.get(url + "/metrics", timeout=10).text)
        if histogram["sum"] >= requests_sent or time.monotonic() > deadline:
            return histogram
        time.sleep(0.2)  # polling for the next once-a-second flush, not waiting for an event


def test_concurrent_single_row_requests_are_batched_and_answer_as_unbatched(
    batching_deployment, unbatched, held_out
):
    distinct = rows_with_gaps(held_out)
    rows = distinct * ROUNDS
    answers = predict_in_bursts(batching_deployment.url, rows)

    # Each row alone through the in-process pipeline, as JSON would carry it: floats compare exactly.
    alone = [
        json.loads(json.dumps(unbatched.predict(validate_instances([row]))[0])) for row in distinct
    ]
    expected = alone * ROUNDS
    mismatches = [
        index for index, ((answer, _), want) in enumerate(zip(answers, expected)) if answer != want
    ]
    assert not mismatches, (
        f"{len(mismatches)} rows differ from the unbatched pipeline, first {rows[mismatches[0]]}"
    )
    # Batching adds no timing names: the wait for the batch is inside `infer`.
    assert all(
        [name for name, fields in servertiming.parse(timing) if "dur" in fields].count("infer") == 1
        for _, timing in answers
    )

    histogram = settled_histogram(batching_deployment.url, len(rows))
    # Every request answered by exactly one model call: nothing lost, nothing computed twice.
    assert histogram["sum"] == len(rows), histogram
    multi_request_calls = histogram["count"] - histogram["1"]
    print(
        f"\n{batching_deployment.architecture}: {len(rows)} requests in {histogram['count']:g} model calls, "
        f"{multi_request_calls:g} of them serving several; cumulative buckets {histogram}"
    )
    assert multi_request_calls > 0, f"no model call served more than one request: {histogram}"
