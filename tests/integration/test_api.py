"""The public HTTP contract, checked against both running architectures."""

from __future__ import annotations

import json
import socket
import time
from http.client import HTTPConnection

import psutil
import pytest

from benchmarks.measure import servertiming
from servinglab import config
from servinglab.serving import metrics
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


@pytest.mark.parametrize(
    "body, status",
    [
        (b"", 400),
        (b"{", 400),
        (b'{"instances": []}', 422),
        (b'{"instances": [{"island": "Atlantis"}]}', 422),
        (None, 200),  # one held-out row
    ],
    ids=["empty", "not-json", "no-instances", "invalid-instance", "one-row"],
)
def test_the_predict_fast_path_answers_as_flask_does(deployment, http, held_out, body, status):
    """`application/json` takes the API's fast path, a charset parameter Flask's view."""
    body = json.dumps({"instances": held_out[:1]}).encode() if body is None else body
    answers = []
    for content_type in ("application/json", "application/json; charset=utf-8"):
        response = http.post(
            deployment.url + "/v1/predict", data=body, headers={"Content-Type": content_type}
        )
        timings = servertiming.parse(response.headers.get("Server-Timing", ""))
        answers.append(
            (
                response.status_code,
                response.content,
                response.headers["Content-Type"],
                [name for name, _ in timings],
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][0] == status


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


PREDICT_200 = 'lab_http_requests_total{route="/v1/predict",method="POST",status="200"}'
REQUESTS_PER_WORKER = 10
MAX_CONNECTIONS = 400


def counter(text: str, series: str) -> float:
    """The value of one series in a Prometheus exposition (0 before its first increment)."""
    values = [
        float(line.split()[-1]) for line in text.splitlines() if line.startswith(series + " ")
    ]
    assert len(values) <= 1, f"{series} appears {len(values)} times"
    return values[0] if values else 0.0


def settled_counter(http, url: str, series: str) -> float:
    """The series once every worker's snapshot holds it: unchanged over two flush intervals.

    Each worker publishes its counts once per FLUSH_INTERVAL_S, so a scrape right after earlier
    tests' requests may still be missing some of them; nothing else sends requests meanwhile.
    """
    deadline = time.monotonic() + 60
    value = counter(http.get(url).text, series)
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < 2 * metrics.FLUSH_INTERVAL_S:
        assert time.monotonic() < deadline, f"{series} never settled"
        time.sleep(0.2)
        now = counter(http.get(url).text, series)
        if now != value:
            value, stable_since = now, time.monotonic()
    return value


def worker_holding(deployment, client_port: int) -> int:
    """The gunicorn worker holding the server end of our (still open) connection."""
    for pid in deployment.entry_workers():
        connections = psutil.Process(pid).net_connections(kind="tcp")
        if any(
            c.laddr.port == deployment.port and c.raddr and c.raddr.port == client_port
            for c in connections
        ):
            return pid
    raise AssertionError(f"no worker of {deployment.entry_workers()} holds port {client_port}")


def test_metrics_count_requests_across_workers(deployment, http, held_out):
    """Requests answered by different workers are all counted, by whichever worker is scraped."""
    workers = set(deployment.entry_workers())
    assert len(workers) == 2, "the session deployments run two gunicorn workers"
    url = deployment.url + "/metrics"
    before = settled_counter(http, url, PREDICT_200)
    body = json.dumps({"instances": held_out[:2]})
    answered: dict[int, int] = dict.fromkeys(workers, 0)
    sent = 0
    # A new connection per request: the kernel hands each to whichever worker accepts first, so
    # both get some; a keep-alive session would stay on one.
    while min(answered.values()) < REQUESTS_PER_WORKER:
        assert sent < MAX_CONNECTIONS, (
            f"{MAX_CONNECTIONS} connections never reached both workers: {answered}"
        )
        connection = HTTPConnection("127.0.0.1", deployment.port, timeout=60)
        try:
            connection.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200, response.read()[:300]
            response.read()
            answered[worker_holding(deployment, connection.sock.getsockname()[1])] += 1
        finally:
            connection.close()
        sent += 1
    assert set(answered) == workers, "a worker was replaced while the test ran"
    # The scrapes all go to one worker (the session keeps its connection): it can only count
    # the other worker's requests by merging that worker's snapshot, once its next flush lands.
    deadline = time.monotonic() + 60
    while (counted := counter(http.get(url).text, PREDICT_200) - before) < sent:
        assert time.monotonic() < deadline, f"counted {counted} of {sent} requests ({answered})"
        time.sleep(0.2)
    assert counted == sent, f"counted {counted} requests, sent {sent}"
    text = http.get(url).text
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

# Only a guard against a hang (a server waiting for bytes that never come): never a speed to meet.
HANG_GUARD_S = 60.0


def exchange(deployment, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes and read until the server closes (no sleeps)."""
    received = b""
    with socket.create_connection(("127.0.0.1", deployment.port), timeout=HANG_GUARD_S) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # closed with our unread body still queued: what it sent before that has arrived
        except TimeoutError:
            pytest.fail(f"no answer and no close in {HANG_GUARD_S} s; received {received[:200]!r}")
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)
    }
    return int(status_line.split()[1]), headers, body


def test_oversized_body_is_refused_before_it_is_read(deployment):
    # Announce 100 MB, send 16 KB and never the rest: a server that tried to read the whole body
    # would wait for it forever; the 413 (and the close) must come from the headers alone.
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 104857600\r\n\r\n"
    )
    status, headers, body = exchange(deployment, head + b'{"instances": [' + b" " * 16_384)
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"  # the unread rest must not be parsed as a next request
    problem = json.loads(body)
    assert problem["type"].endswith(":payload-too-large") and problem["status"] == 413


def send_chunked(deployment, body: bytes) -> tuple[int, dict[str, str], bytes]:
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
    answer, headers, payload = send_chunked(deployment, body)
    assert answer == status, payload[:300]
    if status == 413:
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(payload)["type"].endswith(":payload-too-large")


@pytest.mark.parametrize(
    "body, status, slug, detail",
    [
        # 400,001 instances in under a megabyte: refused on the count, before any is looked at
        # (each `0` would otherwise be a problem of its own, and the answer a 422).
        (
            b'{"instances":[' + b"0," * 400_000 + b"0]}",
            413,
            "too-many-instances",
            "400001 instances sent; the limit is 1000 per request.",
        ),
        # As many as allowed, all wrong: every one is checked, but the error stays small.
        (
            b'{"instances":[' + b"{}," * 999 + b"{}]}",
            422,
            "invalid-instances",
            "7000 problem(s) found in the instances (6980 more not listed); see 'errors'.",
        ),
    ],
    ids=["too-many", "all-invalid"],
)
def test_huge_instance_lists_are_refused_with_a_small_answer(
    deployment, http, body, status, slug, detail
):
    assert len(body) < config.DEFAULTS["MAX_CONTENT_LENGTH"]
    response = http.post(
        deployment.url + "/v1/predict",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=HANG_GUARD_S,
    )
    assert response.status_code == status
    problem = response.json()
    assert problem["type"].endswith(":" + slug)
    assert problem["detail"] == detail
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
