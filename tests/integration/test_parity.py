"""Every architecture gives the monolith's answers and errors, bit for bit, for the same requests.

The monolith is the reference; each other topology (orchestrated microservices, split, chained)
is compared with it in turn.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from servinglab.schema import CATEGORICAL_FIELDS, NUMERIC_FIELDS
from servinglab.validation import validate_instances

pytestmark = pytest.mark.integration

# The topologies compared with the monolith: each runs the same pipeline code behind other hops.
DISTRIBUTED = ["microservices", "split", "chained"]


@pytest.fixture(params=DISTRIBUTED)
def distributed(request):
    """Run a test once against each topology other than the monolith."""
    return request.getfixturevalue(request.param)


def edge_cases(held_out: list[dict], count: int) -> list[dict]:
    """Held-out birds with every combination of fields nulled, plus extremes within the bounds."""
    rng = np.random.default_rng(7)
    names = [f.name for f in (*NUMERIC_FIELDS, *CATEGORICAL_FIELDS)]
    combos = [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]
    cases = []
    for i in range(count):
        record = dict(held_out[i % len(held_out)])
        for name in combos[int(rng.integers(len(combos)))]:
            record[name] = None
        if i % 5 == 0:
            field = NUMERIC_FIELDS[
                int(rng.integers(len(NUMERIC_FIELDS) - 1))
            ]  # not year: integers only
            record[field.name] = float(rng.choice([field.minimum, field.maximum]))
        cases.append(record)
    return cases


def test_parity_on_held_out_and_edge_cases(monolith, distributed, http, held_out, pipeline):
    instances = held_out + edge_cases(held_out, 300)
    assert len(instances) >= 300
    answers = {}
    for deployment in (monolith, distributed):
        response = http.post(deployment.url + "/v1/predict", json={"instances": instances})
        assert response.status_code == 200, response.text
        answers[deployment.architecture] = response.json()
    # Exact equality, floats included: both run the same code on the same doubles.
    assert answers["monolith"] == answers[distributed.architecture]
    in_process = pipeline.predict(validate_instances(instances))
    assert answers["monolith"]["predictions"] == json.loads(json.dumps(in_process))


def test_single_row_requests_match_bulk(monolith, distributed, http, held_out):
    bulk = http.post(monolith.url + "/v1/predict", json={"instances": held_out[:10]}).json()[
        "predictions"
    ]
    for index, instance in enumerate(held_out[:10]):
        singles = [
            http.post(d.url + "/v1/predict", json={"instances": [instance]}).json()["predictions"][
                0
            ]
            for d in (monolith, distributed)
        ]
        assert singles[0] == singles[1]
        # One row goes through BLAS gemv, a batch through gemm: the last bits may differ.
        assert singles[0]["species"] == bulk[index]["species"]
        for name, probability in bulk[index]["probabilities"].items():
            assert singles[0]["probabilities"][name] == pytest.approx(probability, abs=1e-12)


def _valid(held_out):
    return dict(held_out[0])


BAD_REQUESTS = [
    ("malformed json", b'{"instances": [', "application/json"),
    ("wrong content type", b'{"instances": []}', "text/plain"),
    ("no content type", b'{"instances": []}', None),
    ("nan literal", b'{"instances": [{"bill_length_mm": NaN}]}', "application/json"),
    ("infinity via overflow", "overflow", "application/json"),
    ("not an object", b"[1, 2, 3]", "application/json"),
    ("missing instances", b'{"rows": []}', "application/json"),
    ("instances not a list", b'{"instances": {"a": 1}}', "application/json"),
    ("empty instances", b'{"instances": []}', "application/json"),
    ("too many instances", "too-many", "application/json"),
    ("unknown field", "unknown-field", "application/json"),
    ("missing field", "missing-field", "application/json"),
    ("wrong type", "wrong-type", "application/json"),
    ("boolean as number", "bool", "application/json"),
    ("unknown category", "unknown-category", "application/json"),
    ("out of range", "out-of-range", "application/json"),
    ("fractional year", "fractional-year", "application/json"),
    ("deep nesting", b"[" * 50_000 + b"]" * 50_000, "application/json"),
    ("oversized body", b" " * (1 << 20) + b"{}", "application/json"),
    ("invalid utf-8", b'{"instances": ["\xff"]}', "application/json"),
    # Hostile-input bounds (MAX_JSON_DEPTH, MAX_INT_DIGITS, MAX_STRING_CHARS, MAX_KEY_CHARS).
    ("nesting one level over the limit", b"[" * 33 + b"]" * 33, "application/json"),
    ("deep value in a record", "deep-value", "application/json"),
    ("integer over the digit limit", "huge-int", "application/json"),
    ("integer under the digit limit", "long-int", "application/json"),
    ("over-long category", "long-category", "application/json"),
    ("over-long field name", "long-key", "application/json"),
    ("over-long top-level field name", "long-top-level-key", "application/json"),
    ("thousands of unknown fields", "many-keys", "application/json"),
]


def _body(kind, held_out) -> bytes:
    if isinstance(kind, bytes):
        return kind
    record = _valid(held_out)
    if kind == "overflow":
        return b'{"instances": [{"bill_length_mm": 1e999}]}'
    if kind == "too-many":
        return json.dumps({"instances": [record] * 1001}).encode()
    if kind in ("huge-int", "long-int"):
        digits = "9" * (5000 if kind == "huge-int" else 4000)
        return (
            json.dumps({"instances": [{**record, "body_mass_g": None}]})
            .replace('"body_mass_g": null', f'"body_mass_g": {digits}')
            .encode()
        )
    if kind == "long-top-level-key":
        return json.dumps({"instances": [record], "k" * 100_000: 1}).encode()
    deep: list = []
    for _ in range(40):
        deep = [deep]
    changes = {
        "deep-value": {"sex": deep},
        "long-category": {"island": "Biscoe" * 20},
        "long-key": {"k" * 100_000: 1},
        "many-keys": {f"extra_{i}": i for i in range(20_000)},
        "unknown-field": {"wingspan_mm": 3},
        "wrong-type": {"body_mass_g": "heavy"},
        "bool": {"body_mass_g": True},
        "unknown-category": {"island": "Atlantis"},
        "out-of-range": {"flipper_length_mm": -5},
        "fractional-year": {"year": 2008.5},
    }
    if kind == "missing-field":
        record.pop("sex")
    else:
        record.update(changes[kind])
    return json.dumps({"instances": [record]}).encode()


@pytest.mark.parametrize(
    "label, kind, content_type", BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS]
)
def test_error_parity(label, kind, content_type, monolith, distributed, http, held_out):
    body = _body(kind, held_out)
    headers = {"Content-Type": content_type} if content_type else {}
    answers = []
    for deployment in (monolith, distributed):
        response = http.post(deployment.url + "/v1/predict", data=body, headers=headers)
        assert response.headers["Content-Type"] == "application/problem+json"
        problem = response.json()
        assert {"type", "title", "status", "detail"} <= set(problem)
        assert problem["status"] == response.status_code
        assert 400 <= response.status_code < 500
        assert "Traceback" not in response.text
        answers.append((response.status_code, problem))
    assert answers[0] == answers[1]


def test_unknown_route_and_method_are_problems(deployment, http):
    missing = http.get(deployment.url + "/v2/nothing")
    assert missing.status_code == 404 and missing.json()["type"].endswith("not-found")
    wrong = http.get(deployment.url + "/v1/predict")
    assert wrong.status_code == 405 and "POST" in wrong.headers["Allow"]


@pytest.mark.parametrize("architecture", ["monolith", *DISTRIBUTED])
def test_servers_survive_bad_input(architecture, request, http, held_out):
    """Every bad request is answered, and by the same processes: gunicorn respawns a worker that
    died without the supervisor noticing, so the worker pids are compared too."""
    deployment = request.getfixturevalue(architecture)
    workers, processes = deployment.entry_workers(), sorted(deployment.supervisor.pids())
    assert len(workers) == 2
    for label, kind, content_type in BAD_REQUESTS:
        response = http.post(
            deployment.url + "/v1/predict",
            data=_body(kind, held_out),
            headers={"Content-Type": content_type or ""},
        )
        assert 400 <= response.status_code < 500, (label, response.status_code)
    assert deployment.entry_workers() == workers, "a gunicorn worker died and was replaced"
    assert sorted(deployment.supervisor.pids()) == processes, "a server process died"
    assert not deployment.supervisor.exited()
    assert (
        http.post(deployment.url + "/v1/predict", json={"instances": held_out[:1]}).status_code
        == 200
    )
