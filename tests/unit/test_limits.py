"""Every hostile-input bound is a setting, and a changed setting reaches what enforces it.

The bounds live in `servinglab.config.Settings`; these tests change each one and check the effect
where it is enforced: the Flask app (depth, string and key lengths, integer digits) and the
gunicorn configuration (request line and header limits).
"""

from __future__ import annotations

import importlib
import json
import sys

import pytest
from helpers import NullBackend

from servinglab import config
from servinglab.serving.api import build_app

RECORD = {
    "island": "Biscoe",
    "sex": "female",
    "bill_length_mm": 46.5,
    "bill_depth_mm": 14.8,
    "flipper_length_mm": 217.0,
    "body_mass_g": 5200.0,
    "year": 2008,
}

BOUNDS = [
    "MAX_CONTENT_LENGTH",
    "MAX_INSTANCES",
    "MAX_JSON_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_STRING_CHARS",
    "MAX_KEY_CHARS",
    "HTTP_LIMIT_REQUEST_LINE",
    "HTTP_LIMIT_REQUEST_FIELDS",
    "HTTP_LIMIT_REQUEST_FIELD_SIZE",
]


@pytest.fixture
def restore_int_digits():
    previous = sys.get_int_max_str_digits()
    yield
    sys.set_int_max_str_digits(previous)


def post(app, body: bytes):
    return app.test_client().post("/v1/predict", data=body, content_type="application/json")


def test_every_bound_has_a_positive_integer_default():
    for name in BOUNDS:
        assert type(config.DEFAULTS[name]) is int and config.DEFAULTS[name] > 0, name


def test_configured_depth_is_enforced(restore_int_digits):
    app = build_app(NullBackend, "limits-test", config.load(overrides={"MAX_JSON_DEPTH": 2}))
    response = post(app, json.dumps({"instances": [RECORD]}).encode())
    assert response.status_code == 400
    assert response.get_json()["detail"].endswith("may nest at most 2 levels.")


def test_configured_string_and_key_lengths_are_enforced(restore_int_digits):
    app = build_app(
        NullBackend,
        "limits-test",
        config.load(overrides={"MAX_STRING_CHARS": 3, "MAX_KEY_CHARS": 5}),
    )
    [error] = post(
        app, json.dumps({"instances": [{**RECORD, "sex": "male!"}]}).encode()
    ).get_json()["errors"]
    assert error["message"].startswith("must be at most 3 characters")
    [error] = post(app, json.dumps({"instances": [{**RECORD, "wingspan": 1}]}).encode()).get_json()[
        "errors"
    ]
    assert error["message"] == "is not a known field (names are at most 5 characters)"


def test_configured_digit_limit_is_applied_to_the_process(restore_int_digits):
    app = build_app(NullBackend, "limits-test", config.load(overrides={"MAX_INT_DIGITS": 1000}))
    assert sys.get_int_max_str_digits() == 1000
    body = json.dumps({"instances": [RECORD]}).replace("5200.0", "9" * 1001).encode()
    response = post(app, body)
    assert response.status_code == 400
    assert (
        response.get_json()["type"].endswith(":number-too-large")
        and response.get_json()["limit"] == 1000
    )


def test_impossible_digit_limit_fails_at_start_up(restore_int_digits):
    # CPython refuses limits between 1 and 639: better at start-up than as a surprise later.
    with pytest.raises(ValueError):
        build_app(NullBackend, "limits-test", config.load(overrides={"MAX_INT_DIGITS": 100}))


def test_gunicorn_takes_its_head_limits_from_the_settings(monkeypatch):
    from servinglab.serving import gunicorn_conf

    monkeypatch.setenv("LAB_HTTP_LIMIT_REQUEST_LINE", "1000")
    monkeypatch.setenv("LAB_HTTP_LIMIT_REQUEST_FIELDS", "20")
    monkeypatch.setenv("LAB_HTTP_LIMIT_REQUEST_FIELD_SIZE", "2000")
    try:
        importlib.reload(gunicorn_conf)
        assert (
            gunicorn_conf.limit_request_line,
            gunicorn_conf.limit_request_fields,
            gunicorn_conf.limit_request_field_size,
        ) == (1000, 20, 2000)
    finally:
        monkeypatch.undo()
        importlib.reload(gunicorn_conf)
    assert gunicorn_conf.limit_request_line == config.DEFAULTS["HTTP_LIMIT_REQUEST_LINE"]
