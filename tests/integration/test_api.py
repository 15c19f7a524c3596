"""The public HTTP contract, checked against both running architectures."""

from __future__ import annotations

import json
import socket
import time

import pytest

from benchmarks.measure import servertiming
from servinglab import config
from servinglab.serving.openapi import openapi_document
from servinglab.validation import validate_instances

pytestmark = pytest.mark.integration

STAGES = {
    "monolith": ["validate", "pre", "infer", "post", "total"],
    "microservices": [
        "validate",
        "pre",
        "hop-pre",
        "infer",
        "hop-infer",
        "post",
        "hop-post",
        "total",
    ],
}


def test_predict_returns_one_prediction_per_instance_in_order(deployment, http, held_out, pipeline):
    instances = held_out[:25]
    response = http.post(deployment.url + "/v1/predict", json={"instances": instances})
    assert response.status_code == 200
    body = response.json()
    assert [p["species"] for p in body["predictions"]] == [
        p["species"] for p in pipeline.predict(validate_instances(instances))
    ]
    first = body["predictions"][0]
    assert set(first) == {"species", "probabilities", "confidence", "uncertain"}
    assert set(first["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert first["confidence"] == max(first["probabilities"].values())
    assert body["model"] == {
        "name": "penguins-species",
        "version": pipeline.metadata["version"],
        "profile": "linear",
    }


def test_server_timing_names_every_stage(deployment, http, held_out):
    response = http.post(deployment.url + "/v1/predict", json={"instances": held_out[:1]})
    entries = servertiming.parse(response.headers["Server-Timing"])
    assert [name for name, _ in entries] == STAGES[deployment.architecture]
    durations = {name: float(fields["dur"]) for name, fields in entries}
    assert all(value >= 0 for value in durations.values())
    assert durations["total"] >= durations["pre"] + durations["infer"] + durations["post"]


def test_model_endpoint_publishes_metadata_schema_and_limits(deployment, http, artifact):
    body = http.get(deployment.url + "/v1/model").json()
    assert body["version"] == artifact.metadata["version"]
    assert (
        body["metrics"]["held_out"]["accuracy"]
        == artifact.metadata["metrics"]["held_out"]["accuracy"]
    )
    assert body["data"]["sha256"] == artifact.metadata["data"]["sha256"]
    assert set(body["input_schema"]["required"]) == {
        "island",
        "sex",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "year",
    }
    assert body["limits"] == {"max_instances": 1000, "max_body_bytes": 1 << 20}


def test_health_and_readiness(deployment, http):
    assert http.get(deployment.url + "/healthz").json() == {"status": "ok"}
    ready = http.get(deployment.url + "/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    if deployment.architecture == "microservices":
        assert checks == {"preprocess": "SERVING", "inference": "SERVING", "postprocess": "SERVING"}
    else:
        assert checks["model"].startswith("loaded ")


def test_metrics_count_requests_across_workers(deployment, http, held_out):
    for _ in range(20):
        http.post(deployment.url + "/v1/predict", json={"instances": held_out[:2]})
    text = http.get(deployment.url + "/metrics").text
    counted = [
        line
        for line in text.splitlines()
        if line.startswith(
            'lab_http_requests_total{route="/v1/predict",method="POST",status="200"}'
        )
    ]
    assert len(counted) == 1 and float(counted[0].split()[-1]) >= 20
    assert 'lab_stage_duration_seconds_bucket{stage="infer",le="+Inf"}' in text
    if deployment.architecture == "microservices":
        assert 'lab_stage_duration_seconds_count{stage="hop-pre"}' in text


def test_openapi_document_is_served(deployment, http):
    response = http.get(deployment.url + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    # Both architectures serve the document built from the same schema and the same limits.
    assert response.json() == json.loads(json.dumps(openapi_document(config.Settings())))


# --- Hostile input at the HTTP layer ------------------------------------------------------------

DEADLINE_S = 5.0


def exchange(deployment, request: bytes) -> tuple[int, dict[str, str], bytes, float]:
    """Send raw bytes, read until the server closes, all under a socket deadline (no sleeps)."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", deployment.port), timeout=DEADLINE_S) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # closed with our unread body still queued: what it sent before that has arrived
    elapsed = time.monotonic() - started
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)
    }
    return int(status_line.split()[1]), headers, body, elapsed


def test_oversized_body_is_refused_before_it_is_read(deployment):
    # Announce 100 MB, send 16 KB: a server that tried to read the whole body would wait for the
    # rest and the socket deadline would expire; the 413 must come from the headers alone.
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 104857600\r\n\r\n"
    )
    status, headers, body, elapsed = exchange(deployment, head + b'{"instances": [' + b" " * 16_384)
    assert status == 413 and elapsed < DEADLINE_S
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"  # the unread rest must not be parsed as a next request
    problem = json.loads(body)
    assert problem["type"].endswith(":payload-too-large") and problem["status"] == 413


def send_chunked(deployment, body: bytes) -> tuple[int, dict[str, str], bytes, float]:
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    pieces = [body[at : at + 65_536] for at in range(0, len(body), 65_536)]
    return exchange(
        deployment, head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    )


@pytest.mark.parametrize(
    "extra, status",
    [(0, 200), (1, 413), (100_000, 413)],
    ids=["exactly-the-limit", "one-byte-over", "far-over"],
)
def test_chunked_body_is_held_to_the_same_limit(deployment, held_out, extra, status):
    # A valid request padded with whitespace: cut at the limit it would still parse, so a server
    # that truncated instead of refusing would answer 200 to a body it should not have accepted.
    request = json.dumps({"instances": held_out[:3]}).encode()
    body = request.ljust(config.DEFAULTS["MAX_CONTENT_LENGTH"] + extra)
    answer, headers, payload, _ = send_chunked(deployment, body)
    assert answer == status, payload[:300]
    if status == 413:
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(payload)["type"].endswith(":payload-too-large")


@pytest.mark.parametrize(
    "body, status, slug",
    [
        # 400,001 instances in under a megabyte: refused on the count, before any is looked at.
        (b'{"instances":[' + b"0," * 400_000 + b"0]}", 413, "too-many-instances"),
        # As many as allowed, all wrong: every one is checked, but the error stays small.
        (b'{"instances":[' + b"{}," * 999 + b"{}]}", 422, "invalid-instances"),
    ],
    ids=["too-many", "all-invalid"],
)
def test_huge_instance_lists_are_refused_quickly(deployment, http, body, status, slug):
    assert len(body) < config.DEFAULTS["MAX_CONTENT_LENGTH"]
    started = time.monotonic()
    response = http.post(
        deployment.url + "/v1/predict",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=DEADLINE_S,
    )
    assert time.monotonic() - started < DEADLINE_S
    assert response.status_code == status
    assert response.json()["type"].endswith(":" + slug)
    assert len(response.content) < 10_000


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (
            b"GET /healthz?"
            + b"q" * config.DEFAULTS["HTTP_LIMIT_REQUEST_LINE"]
            + b" HTTP/1.1\r\nHost: t\r\n\r\n",
            414,
        ),
        (
            b"GET /healthz HTTP/1.1\r\n"
            + b"".join(
                b"X-%d: 1\r\n" % i for i in range(config.DEFAULTS["HTTP_LIMIT_REQUEST_FIELDS"] + 1)
            )
            + b"\r\n",
            431,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: "
            + b"b" * config.DEFAULTS["HTTP_LIMIT_REQUEST_FIELD_SIZE"]
            + b"\r\n\r\n",
            431,
        ),
    ],
    ids=["request-line", "header-count", "header-size"],
)
def test_request_head_limits_are_enforced_by_gunicorn(deployment, http, request_bytes, status):
    # Refused by gunicorn before the app runs, so in gunicorn's own format rather than a problem.
    assert exchange(deployment, request_bytes)[0] == status
    assert http.get(deployment.url + "/healthz").status_code == 200
