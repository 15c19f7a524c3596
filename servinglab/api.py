"""The public HTTP API, written once and served by both the monolith and the gateway.

`build_app(backend_factory, config)` wires routes, limits, error handling, metrics and the
`Server-Timing` header around a *backend*: the monolith's runs the stages in process, the gateway's
calls them over gRPC. Everything a client can observe, except speed, is decided here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from servinglab import config as lab_config
from servinglab import metrics
from servinglab.problems import PROBLEM_CONTENT_TYPE, Problem
from servinglab.schema import input_schema
from servinglab.validation import RawBatch, parse_json, validate_predict_request

log = logging.getLogger(__name__)


@dataclass
class PredictOutcome:
    predictions: list[dict]
    model: dict
    # (metric name, milliseconds) in pipeline order; becomes Server-Timing and stage metrics.
    timings: list[tuple[str, float]] = field(default_factory=list)


class Backend(Protocol):
    def predict(self, batch: RawBatch) -> PredictOutcome: ...

    def describe(self) -> dict: ...

    def readiness(self) -> tuple[bool, dict[str, str]]: ...


def _json(body: Any, status: int = 200, content_type: str = "application/json") -> Response:
    # Compact and unsorted: the predict response is on the hot path and clients don't need pretty.
    return Response(json.dumps(body, separators=(",", ":")), status=status, content_type=content_type)


def problem_response(problem: Problem) -> Response:
    return _json(problem.to_dict(), problem.status, PROBLEM_CONTENT_TYPE)


def _backend() -> Backend:
    return current_app.extensions["servinglab.backend"]()


api = Blueprint("api", __name__)


@api.post("/v1/predict")
def predict() -> Response:
    started = time.perf_counter()
    if request.mimetype != "application/json":
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"Send the body as application/json, not {request.mimetype or 'nothing'}.")
    payload = parse_json(request.get_data(cache=False))
    batch = validate_predict_request(payload, current_app.config["MAX_INSTANCES"])
    validated = time.perf_counter()
    outcome = _backend().predict(batch)
    g.timings = [("validate", (validated - started) * 1000.0), *outcome.timings]
    metrics.INSTANCES.inc((), batch.size)
    return _json({"predictions": outcome.predictions, "model": outcome.model})


@api.get("/v1/model")
def model() -> Response:
    description = dict(_backend().describe())
    description["input_schema"] = input_schema()
    description["limits"] = {
        "max_instances": current_app.config["MAX_INSTANCES"],
        "max_body_bytes": current_app.config["MAX_CONTENT_LENGTH"],
    }
    return _json(description)


@api.get("/healthz")
def healthz() -> Response:
    return _json({"status": "ok"})


@api.get("/readyz")
def readyz() -> Response:
    ready, checks = _backend().readiness()
    if not ready:
        raise Problem(503, "not-ready", "Not ready", "A dependency is not ready; see 'checks'.", checks=checks)
    return _json({"status": "ready", "checks": checks})


@api.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


def _start_timer() -> None:
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule else "unmatched"
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    timings = g.get("timings")
    if timings:
        for name, ms in timings:
            metrics.STAGE_SECONDS.observe((name,), ms / 1000.0)
        parts = [f"{name};dur={ms:.3f}" for name, ms in timings]
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
        slug, detail = "payload-too-large", (
            f"The body is larger than the limit of {current_app.config['MAX_CONTENT_LENGTH']} bytes.")
    response = problem_response(Problem(error.code or 500, slug, error.name, detail))
    if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _unexpected_handler(error: Exception) -> Response:
    # Log the traceback for operators; never send it to clients.
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem_response(Problem(500, "internal-error", "Internal server error",
                                    "The server failed to handle this request; the error was logged."))


def build_app(backend_factory: Callable[[], Backend], name: str,
              config: Mapping[str, Any] | None = None) -> Flask:
    """One Flask app around a backend. The factory runs lazily, once per process, after fork."""
    app = Flask(name)
    app.config.update(lab_config.DEFAULTS)
    app.config.from_prefixed_env(lab_config.ENV_PREFIX)
    app.config.update(config or {})
    app.json.sort_keys = False

    instance: list[Backend] = []

    def get_backend() -> Backend:
        if not instance:
            instance.append(backend_factory())
        return instance[0]

    app.extensions["servinglab.backend"] = get_backend
    metrics.start_flusher()
    app.register_blueprint(api)
    app.before_request(_start_timer)
    app.after_request(_finish)
    app.register_error_handler(Problem, _problem_handler)
    app.register_error_handler(HTTPException, _http_error_handler)
    app.register_error_handler(Exception, _unexpected_handler)
    return app
