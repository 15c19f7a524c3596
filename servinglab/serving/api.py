"""The public HTTP API, written once and served by both the monolith and the gateway.

`build_app(backend_factory, name, settings)` wires routes, limits, error handling, metrics and the
`Server-Timing` header around a *backend*: the monolith's runs the stages in process, the gateway's
calls them over gRPC. Everything a client can observe, except speed, is decided here.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from servinglab import config as lab_config
from servinglab.config import Settings
from servinglab.contract import STAGES, Backend
from servinglab.problems import PROBLEM_CONTENT_TYPE, Problem
from servinglab.schema import input_schema
from servinglab.serving import metrics
from servinglab.serving.openapi import openapi_document
from servinglab.validation import parse_json, validate_predict_request

log = logging.getLogger(__name__)
# Where an app keeps its `Settings`: the one object every route reads its limits from.
SETTINGS = "LAB_SETTINGS"


def _json(body: Any, status: int = 200, content_type: str = "application/json") -> Response:
    # Compact and unsorted: the predict response is on the hot path and clients don't need pretty.
    return Response(
        json.dumps(body, separators=(",", ":")), status=status, content_type=content_type
    )


def problem_response(problem: Problem) -> Response:
    response = _json(problem.to_dict(), problem.status, PROBLEM_CONTENT_TYPE)
    response.headers.update(problem.headers)
    return response


def _backend() -> Backend:
    return current_app.extensions["servinglab.backend"]()


def _request_body() -> bytes:
    """The body, or 413 if it is over MAX_CONTENT_LENGTH however it was sent."""
    # A declared Content-Length over the limit is refused by Werkzeug before anything is read.
    body = request.get_data(cache=False)
    # A chunked body has no declared length: Werkzeug stops reading it at the limit and returns
    # what it has, silently truncated. If the body reached the limit, one more byte from the
    # server's stream tells a body of exactly the limit from a longer one, which would otherwise
    # be parsed cut short (and could even parse as a valid, different request).
    if (
        request.content_length is None
        and len(body) >= current_app.config[SETTINGS].max_content_length
        and request.environ["wsgi.input"].read(1)
    ):
        raise RequestEntityTooLarge()
    return body


api = Blueprint("api", __name__)
# Probes must see the truth about the process, not be shed: a shed liveness probe gets a busy
# but healthy pod restarted, which removes capacity exactly when it is short.
UNSHED_PATHS = frozenset({"/healthz", "/readyz", "/readyz/local", "/metrics"})


@api.post("/v1/predict")
def predict() -> Response:
    started = time.perf_counter()
    if request.mimetype != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"Send the body as application/json, not {request.mimetype or 'nothing'}.",
        )
    settings = current_app.config[SETTINGS]
    payload = parse_json(_request_body(), settings.max_json_depth)
    batch = validate_predict_request(
        payload,
        settings.max_instances,
        max_string_chars=settings.max_string_chars,
        max_key_chars=settings.max_key_chars,
    )
    validated = time.perf_counter()
    outcome = _backend().predict(batch)
    g.timings = [("validate", (validated - started) * 1000.0), *outcome.timings]
    metrics.INSTANCES.inc((), batch.size)
    return _json({"predictions": outcome.predictions, "model": outcome.model})


@api.get("/v1/model")
def model() -> Response:
    description = dict(_backend().describe())
    description["input_schema"] = input_schema()
    settings = current_app.config[SETTINGS]
    description["limits"] = {
        "max_instances": settings.max_instances,
        "max_body_bytes": settings.max_content_length,
    }
    return _json(description)


@api.get("/healthz")
def healthz() -> Response:
    return _json({"status": "ok"})


@api.get("/readyz")
def readyz() -> Response:
    """Deep readiness: the model is loaded and (gateway) every stage it calls answers SERVING."""
    ready, checks = _backend().readiness()
    for stage, status in checks.items():
        if stage in STAGES:
            metrics.STAGE_UP.set((stage,), 1.0 if status == "SERVING" else 0.0)
    if not ready:
        raise Problem(
            503, "not-ready", "Not ready", "A dependency is not ready; see 'checks'.", checks=checks
        )
    return _json({"status": "ready", "checks": checks})


@api.get("/readyz/local")
def readyz_local() -> Response:
    """Readiness of this process alone, for Kubernetes probes: it can serve; no stage is asked.

    A probe of the deep /readyz would take every gateway pod out of its Service at once when one
    stage blips, and clients would get refused connections instead of a fast 503 problem.
    """
    _backend()  # built on first use in each worker: the model loaded, or the stage channels made
    return _json({"status": "ready"})


@api.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


@api.get("/openapi.json")
def openapi() -> Response:
    return _json(current_app.extensions["servinglab.serving.openapi"])


def _start_timer() -> None:
    g.started = time.perf_counter()


def _shed_late_requests() -> None:
    """Refuse, cheaply, a request that already queued longer than HTTP_MAX_QUEUE_MS (see gunicorn_worker)."""
    limit_ms = current_app.config[SETTINGS].http_max_queue_ms
    queued = request.headers.get("X-Lab-Queue-Ms")
    if not limit_ms or queued is None or request.path in UNSHED_PATHS:
        return
    try:
        waited_ms = float(queued)
    except ValueError:
        return  # not our worker's stamp (another worker class passes client headers through)
    if waited_ms > limit_ms:
        metrics.SHED.inc(("queue-time",))
        raise Problem(
            503,
            "overloaded",
            "Server overloaded",
            f"The request waited {waited_ms:.0f} ms for a worker, more than the {limit_ms:g} ms limit; "
            "retry after the indicated delay.",
            headers={"Retry-After": "1"},
        )


def _finish(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule else "unmatched"
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    timings = g.get("timings")
    if timings:
        for name, ms, *_ in timings:
            metrics.STAGE_SECONDS.observe((name,), ms / 1000.0)
        # desc before dur, so a reader splitting on ";dur=" still finds the number last.
        parts = [
            f'{name};desc="{desc[0]}";dur={ms:.3f}' if desc else f"{name};dur={ms:.3f}"
            for name, ms, *desc in timings
        ]
        parts.append(f"total;dur={elapsed * 1000.0:.3f}")
        response.headers["Server-Timing"] = ", ".join(parts)
    metrics.REQUESTS.inc((route, request.method, str(response.status_code)))
    metrics.REQUEST_SECONDS.observe((route,), elapsed)
    return response


def _problem_handler(problem: Problem) -> Response:
    return problem_response(problem)


def _http_error_handler(error: HTTPException) -> Response:
    # Werkzeug's own errors (404, 405, 413 from MAX_CONTENT_LENGTH...) in the same shape as ours.
    slug = (error.name or "error").lower().replace(" ", "-")
    detail = error.description or error.name
    if error.code == 413:
        limit = current_app.config[SETTINGS].max_content_length
        slug, detail = "payload-too-large", f"The body is larger than the limit of {limit} bytes."
    response = problem_response(Problem(error.code or 500, slug, error.name, detail))
    if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _unexpected_handler(error: Exception) -> Response:
    # Log the traceback for operators; never send it to clients.
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem_response(
        Problem(
            500,
            "internal-error",
            "Internal server error",
            "The server failed to handle this request; the error was logged.",
        )
    )


def build_app(
    backend_factory: Callable[[], Backend], name: str, settings: Settings | None = None
) -> Flask:
    """One Flask app around a backend. The factory runs lazily, once per process, after fork.

    `settings` default to the environment's (`servinglab.config.load`).
    """
    settings = lab_config.load() if settings is None else settings
    app = Flask(name)
    # Other LAB_* variables may be Flask's own options (LAB_PROPAGATE_EXCEPTIONS...).
    app.config.update(settings.extra)
    app.config[SETTINGS] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length  # Werkzeug refuses larger bodies
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the default provider has it
    # CPython's int parser enforces this at C speed inside json.loads, for the whole process;
    # an invalid value (1..639) raises here, at start-up.
    sys.set_int_max_str_digits(settings.max_int_digits)
    # Built once: it depends only on the schema and this app's limits.
    app.extensions["servinglab.serving.openapi"] = openapi_document(settings)

    instance: list[Backend] = []

    def get_backend() -> Backend:
        if not instance:
            instance.append(backend_factory())
        return instance[0]

    app.extensions["servinglab.backend"] = get_backend
    metrics.start_flusher()
    app.register_blueprint(api)
    app.before_request(_start_timer)
    app.before_request(_shed_late_requests)
    app.after_request(_finish)
    app.register_error_handler(Problem, _problem_handler)
    app.register_error_handler(HTTPException, _http_error_handler)
    app.register_error_handler(Exception, _unexpected_handler)
    return app
