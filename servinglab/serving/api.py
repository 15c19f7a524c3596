"""The public HTTP API, written once and served by both the monolith and the gateway.

`build_app(backend_factory, name, settings)` wires routes, limits, error handling, metrics and the
`Server-Timing` header around a *backend*: the monolith's runs the stages in process, the gateway's
calls them over gRPC. Everything a client can observe, except speed, is decided here.

`PredictFastPath` serves the common prediction (POST /v1/predict, a JSON body of a declared
length) as plain WSGI, ahead of Flask: Flask's request and response objects, URL matching and
hooks cost about what the pipeline itself does on one row. It runs the same functions as the
Flask view (`predict_answer`, `shed_problem`, `record_request`, `problem_response`), so its answers,
errors and headers are the view's; every other request goes to Flask.
"""

from __future__ import annotations

import io
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
from servinglab.contract import STAGES, Backend, Timing
from servinglab.problems import PROBLEM_CONTENT_TYPE, Problem
from servinglab.schema import input_schema
from servinglab.serving import metrics
from servinglab.serving.openapi import openapi_document
from servinglab.validation import parse_json, validate_predict_request

log = logging.getLogger(__name__)
# Where an app keeps its `Settings`: the one object every route reads its limits from.
SETTINGS = "LAB_SETTINGS"


def _encode(body: Any) -> bytes:
    # Compact and unsorted: the predict response is on the hot path and clients don't need pretty.
    return json.dumps(body, separators=(",", ":")).encode()


def _json(body: Any, status: int = 200, content_type: str = "application/json") -> Response:
    return Response(_encode(body), status=status, content_type=content_type)


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


PREDICT_PATH = "/v1/predict"
api = Blueprint("api", __name__)
# Probes must see the truth about the process, not be shed: a shed liveness probe gets a busy
# but healthy pod restarted, which removes capacity exactly when it is short.
UNSHED_PATHS = frozenset({"/healthz", "/readyz", "/readyz/local", "/metrics"})


def predict_answer(
    body: bytes, settings: Settings, backend: Backend, started: float
) -> tuple[dict[str, Any], list[Timing]]:
    """The answer to a prediction request's body, and its Server-Timing entries."""
    payload = parse_json(body, settings.max_json_depth)
    batch = validate_predict_request(
        payload,
        settings.max_instances,
        max_string_chars=settings.max_string_chars,
        max_key_chars=settings.max_key_chars,
    )
    validated = time.perf_counter()
    outcome = backend.predict(batch)
    metrics.INSTANCES.inc((), batch.size)
    timings = [("validate", (validated - started) * 1000.0), *outcome.timings]
    return {"predictions": outcome.predictions, "model": outcome.model}, timings


@api.post(PREDICT_PATH)
def predict() -> Response:
    started = time.perf_counter()
    if request.mimetype != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"Send the body as application/json, not {request.mimetype or 'nothing'}.",
        )
    answer, g.timings = predict_answer(
        _request_body(), current_app.config[SETTINGS], _backend(), started
    )
    return _json(answer)


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


def shed_problem(settings: Settings, path: str, queued: str | None) -> Problem | None:
    """The 503 for a request that already queued longer than HTTP_MAX_QUEUE_MS (see
    gunicorn_worker), given its `X-Lab-Queue-Ms` header; None if it is to be served."""
    limit_ms = settings.http_max_queue_ms
    if not limit_ms or queued is None or path in UNSHED_PATHS:
        return None
    try:
        waited_ms = float(queued)
    except ValueError:
        return None  # not our worker's stamp (another worker class passes client headers through)
    if not waited_ms > limit_ms:
        return None
    metrics.SHED.inc(("queue-time",))
    return Problem(
        503,
        "overloaded",
        "Server overloaded",
        f"The request waited {waited_ms:.0f} ms for a worker, more than the {limit_ms:g} ms limit; "
        "retry after the indicated delay.",
        headers={"Retry-After": "1"},
    )


def _shed_late_requests() -> None:
    """Refuse, cheaply, a request that queued too long: before its body is even read."""
    problem = shed_problem(
        current_app.config[SETTINGS], request.path, request.headers.get("X-Lab-Queue-Ms")
    )
    if problem is not None:
        raise problem


def record_request(
    route: str, method: str, status: int, elapsed_s: float, timings: list[Timing] | None
) -> str | None:
    """Count a finished request in the metrics; its Server-Timing header if it has timings."""
    metrics.REQUESTS.inc((route, method, str(status)))
    metrics.REQUEST_SECONDS.observe((route,), elapsed_s)
    if not timings:
        return None
    for name, ms, *_ in timings:
        metrics.STAGE_SECONDS.observe((name,), ms / 1000.0)
    # desc before dur, so a reader splitting on ";dur=" still finds the number last.
    parts = [
        f'{name};desc="{desc[0]}";dur={ms:.3f}' if desc else f"{name};dur={ms:.3f}"
        for name, ms, *desc in timings
    ]
    parts.append(f"total;dur={elapsed_s * 1000.0:.3f}")
    return ", ".join(parts)


def _finish(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule else "unmatched"
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    server_timing = record_request(
        route, request.method, response.status_code, elapsed, g.get("timings")
    )
    if server_timing is not None:
        response.headers["Server-Timing"] = server_timing
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


def internal_error(method: str, path: str) -> Problem:
    """Log the exception being handled, with its traceback, for operators; the 500 clients get
    (never the traceback)."""
    log.exception("unhandled error on %s %s", method, path)
    return Problem(
        500,
        "internal-error",
        "Internal server error",
        "The server failed to handle this request; the error was logged.",
    )


def _unexpected_handler(error: Exception) -> Response:
    return problem_response(internal_error(request.method, request.path))


class PredictFastPath:
    """WSGI middleware: POST /v1/predict with a JSON body of a declared length, without Flask.

    Anything else (another route or method, a content type with parameters, a chunked or
    over-limit body, a client that sent less than it declared) goes on to Flask, whose view and
    handlers give the same answers the long way. Measured in process on one row: /healthz
    through Flask ~170 us, the same response as bare WSGI ~2 us; the pipeline itself ~125 us.
    """

    def __init__(
        self, flask_app: Callable, settings: Settings, backend: Callable[[], Backend]
    ) -> None:
        self.flask_app = flask_app
        self.settings = settings
        self.backend = backend

    def _declared_length(self, environ: dict[str, Any]) -> int | None:
        """The body length of a request this path serves; None to leave it to Flask."""
        if (
            environ.get("PATH_INFO") != PREDICT_PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or environ.get("CONTENT_TYPE") != "application/json"
        ):
            return None
        declared = environ.get("CONTENT_LENGTH", "")
        if not (declared.isascii() and declared.isdigit()):
            return None
        length = int(declared)
        return length if length <= self.settings.max_content_length else None

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Any:
        length = self._declared_length(environ)
        if length is None:
            return self.flask_app(environ, start_response)
        started = time.perf_counter()
        timings = None
        try:
            problem = shed_problem(self.settings, PREDICT_PATH, environ.get("HTTP_X_LAB_QUEUE_MS"))
            if problem is not None:
                raise problem
            body = environ["wsgi.input"].read(length)
            if len(body) < length:  # the client went away: Werkzeug's answer, from Flask
                environ["wsgi.input"] = io.BytesIO(body)
                return self.flask_app(environ, start_response)
            answer, timings = predict_answer(body, self.settings, self.backend(), started)
        except Problem as problem:
            response = problem_response(problem)
        except Exception:
            response = problem_response(internal_error("POST", PREDICT_PATH))
        else:
            data = _encode(answer)
            server_timing = record_request(
                PREDICT_PATH, "POST", 200, time.perf_counter() - started, timings
            )
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
            if server_timing is not None:
                headers.append(("Server-Timing", server_timing))
            start_response("200 OK", headers)
            return [data]
        record_request(
            PREDICT_PATH, "POST", response.status_code, time.perf_counter() - started, None
        )
        return response(environ, start_response)


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
    app.wsgi_app = PredictFastPath(app.wsgi_app, settings, get_backend)  # type: ignore[method-assign]
    return app
