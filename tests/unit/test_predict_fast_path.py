"""POST /v1/predict's fast path (`servinglab.serving.api.PredictFastPath`) answers exactly as the
Flask view does, and really is taken ahead of Flask.

The same requests go to the real monolith app twice: once as `application/json` (the fast path)
and once as `application/json; charset=utf-8`, which the fast path leaves to Flask. Status, body,
headers and the request metrics must agree; only the timings in Server-Timing differ. (An empty
body is checked on real gunicorn, in tests/integration/test_api.py: Werkzeug's test client sends
it with no Content-Length, which the fast path leaves to Flask.)
"""

from __future__ import annotations

import json

import pytest

from monolith.app import create_app
from servinglab.serving import metrics

FAST = "application/json"
FLASK = "application/json; charset=utf-8"


@pytest.fixture(scope="module")
def app(models_root):
    app = create_app({"MODEL_DIR": str(models_root), "MAX_INSTANCES": 4, "MAX_JSON_DEPTH": 8})
    # Counts the requests Flask itself dispatched: the fast path never reaches its hooks.
    app.dispatched = 0

    @app.before_request
    def count() -> None:
        app.dispatched += 1

    return app


CASES = [
    "one row",
    "three rows",
    "missing values",
    "not JSON",
    "too deep",
    "NaN",
    "no instances",
    "too many",
    "bad field",
    "unknown field",
]


def _bodies(held_out: list[dict]) -> dict[str, bytes]:
    record = held_out[0]
    return {
        "one row": json.dumps({"instances": [record]}).encode(),
        "three rows": json.dumps({"instances": held_out[1:4]}).encode(),
        "missing values": json.dumps(
            {"instances": [{**record, "sex": None, "year": None}]}
        ).encode(),
        "not JSON": b'{"instances": [',
        "too deep": b'{"instances": [[[[[[[[[[1]]]]]]]]]]}',
        "NaN": b'{"instances": [NaN]}',
        "no instances": b'{"rows": []}',
        "too many": json.dumps({"instances": held_out[:5]}).encode(),
        "bad field": json.dumps({"instances": [{**record, "island": "Atlantis"}]}).encode(),
        "unknown field": json.dumps({"instances": [{**record, "beak": 1}]}).encode(),
    }


def _requests_counted(status: int) -> float:
    return metrics.REQUESTS.values.get(("/v1/predict", "POST", str(status)), 0.0)


def _observations(stage: str) -> float:
    row = metrics.STAGE_SECONDS.values.get((stage,))
    return sum(row[:-1]) if row else 0.0  # a row is its bucket counts, then the sum


def _answer(app, body: bytes, content_type: str):
    before = app.dispatched
    response = app.test_client().post(
        "/v1/predict",
        data=body,
        content_type=content_type,
        headers={"Content-Length": str(len(body))},  # as HTTP clients send it, even when 0
    )
    return response, app.dispatched - before


@pytest.mark.parametrize("case", CASES)
def test_the_fast_path_answers_as_the_flask_view_does(app, held_out, case):
    bodies = _bodies(held_out)
    assert list(bodies) == CASES
    body = bodies[case]
    fast, fast_dispatched = _answer(app, body, FAST)
    counted_before = _requests_counted(fast.status_code)
    slow, slow_dispatched = _answer(app, body, FLASK)
    assert (fast_dispatched, slow_dispatched) == (0, 1)  # each went the way the test says
    assert _requests_counted(fast.status_code) == counted_before + 1  # the Flask view counts too
    assert (fast.status, fast.data) == (slow.status, slow.data)
    timed = "Server-Timing"
    assert {key: value for key, value in fast.headers if key != timed} == {
        key: value for key, value in slow.headers if key != timed
    }
    names = [entry.split(";")[0] for entry in fast.headers.get(timed, "").split(", ") if entry]
    assert names == [
        entry.split(";")[0] for entry in slow.headers.get(timed, "").split(", ") if entry
    ]
    if fast.status_code == 200:
        assert names == ["validate", "pre", "infer", "post", "total"]


def test_the_fast_path_counts_its_requests_in_the_metrics(app, held_out):
    body = _bodies(held_out)["one row"]
    ok, refused = _requests_counted(200), _requests_counted(400)
    stage = _observations("infer")
    _answer(app, body, FAST)
    _answer(app, b"{", FAST)
    assert (_requests_counted(200), _requests_counted(400)) == (ok + 1, refused + 1)
    assert _observations("infer") == stage + 1


@pytest.mark.parametrize(
    "method, content_type, over_limit, status",
    [
        ("PUT", FAST, False, 405),  # from Flask's router
        ("POST", "text/plain", False, 415),  # from the view
        ("POST", FAST, True, 413),  # over MAX_CONTENT_LENGTH: Werkzeug's
    ],
)
def test_what_the_fast_path_does_not_serve_goes_to_flask(
    app, method, content_type, over_limit, status
):
    body = b"{" * (app.config["MAX_CONTENT_LENGTH"] + 1 if over_limit else 1)
    before = app.dispatched
    response = app.test_client().open(
        "/v1/predict", method=method, data=body, content_type=content_type
    )
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    # A 413 for a declared length is Werkzeug's, raised as the view reads: hooks ran before it.
    assert app.dispatched == before + 1
