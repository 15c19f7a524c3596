"""The OpenAPI 3.1 document of the public HTTP API, served by both architectures at `/openapi.json`.

It is derived, never hand-written: the record schema is `servinglab.schema.input_schema()` (the
contract the validator enforces) and every bound comes from the app's configured limits, so a
field added to the schema or a limit changed in the settings shows up here without an edit.
OpenAPI 3.1 schemas are JSON Schema 2020-12, so the record schema is used as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from servinglab.config import Settings
from servinglab.problems import PROBLEM_CONTENT_TYPE, TYPE_PREFIX
from servinglab.schema import CATEGORICAL_FIELDS, CLASSES, input_schema
from servinglab.serving import metrics

OPENAPI_VERSION = "3.1.0"

# Every status the API itself answers with for a request it refuses, and when (per operation).
PREDICT_PROBLEMS = {
    400: "Malformed JSON, nested deeper than the depth limit, or an integer longer than the digit limit.",
    413: "Body larger than the byte limit, or more instances than the instance limit.",
    415: "The body is not sent as application/json.",
    422: "Well-formed JSON that breaks the request or record schema; `errors` says where.",
    503: "The server is shedding load, or a pipeline stage is unavailable or shedding load; retry later.",
    504: "A pipeline stage did not answer within the request's deadline (microservices).",
}
BACKEND_PROBLEMS = {
    503: "The server is shedding load, or the model's stage is unavailable (microservices); retry later.",
    504: "The model's stage did not answer within the deadline (microservices).",
}
# Every route but the probes may be refused when a request queued too long (HTTP_MAX_QUEUE_MS).
SHED_PROBLEM = {503: "The server is shedding load; retry after the Retry-After delay."}


def _version() -> str:
    try:
        return metadata.version("servinglab")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problems(statuses: Mapping[int, str]) -> dict[str, Any]:
    return {
        str(status): {
            "description": description,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": _ref("Problem")}},
        }
        for status, description in statuses.items()
    }


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def instance_schema(limits: Settings) -> dict[str, Any]:
    """The record schema the validator enforces, with the configured string bounds added."""
    # Deep-copied: input_schema() is also published by /v1/model and must stay as it is.
    schema = copy.deepcopy(input_schema())
    # Redundant with the enums and additionalProperties, but they state the bounds the
    # validator applies when it names the error, and give fuzzers a boundary to probe.
    schema["propertyNames"] = {"maxLength": limits.max_key_chars}
    for field in CATEGORICAL_FIELDS:
        schema["properties"][field.name]["maxLength"] = limits.max_string_chars
    return schema


def _schemas(limits: Settings) -> dict[str, Any]:
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    return {
        "Instance": instance_schema(limits),
        "PredictRequest": {
            "type": "object",
            "properties": {
                "instances": {
                    "type": "array",
                    "items": _ref("Instance"),
                    "minItems": 1,
                    "maxItems": limits.max_instances,
                },
            },
            "required": ["instances"],
            "additionalProperties": False,
            "propertyNames": {"maxLength": limits.max_key_chars},
        },
        "Prediction": {
            "type": "object",
            "properties": {
                "species": {"enum": list(CLASSES)},
                "probabilities": {
                    "type": "object",
                    "properties": {name: probability for name in CLASSES},
                    "required": list(CLASSES),
                    "additionalProperties": False,
                },
                "confidence": probability,
                "uncertain": {
                    "type": "boolean",
                    "description": "True when the confidence is below the configured threshold.",
                },
            },
            "required": ["species", "probabilities", "confidence", "uncertain"],
            "additionalProperties": False,
        },
        "ModelSummary": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "profile": {"type": "string"},
            },
            "required": ["name", "version", "profile"],
            "additionalProperties": False,
        },
        "PredictResponse": {
            "type": "object",
            "properties": {
                "predictions": {
                    "type": "array",
                    "items": _ref("Prediction"),
                    "description": "One per instance, in the order sent.",
                },
                "model": _ref("ModelSummary"),
            },
            "required": ["predictions", "model"],
            "additionalProperties": False,
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "properties": {
                "type": {
                    "type": "string",
                    "format": "uri",
                    "pattern": f"^{TYPE_PREFIX}[a-z0-9-]+$",
                },
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "description": "Per-instance errors of a 422, the first few only.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "instance": {"type": "integer", "minimum": 0},
                            "field": {"type": ["string", "null"]},
                            "message": {"type": "string"},
                        },
                        "required": ["instance", "field", "message"],
                    },
                },
                "limit": {
                    "type": "integer",
                    "description": "The limit that was exceeded, where one was.",
                },
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["type", "title", "status", "detail"],
        },
    }


def openapi_document(limits: Settings) -> dict[str, Any]:
    """The whole document for an app whose settings (limits included) are `limits`."""
    bounds = {
        "max_body_bytes": limits.max_content_length,
        "max_instances": limits.max_instances,
        "max_json_depth": limits.max_json_depth,
        "max_int_digits": limits.max_int_digits,
        "max_string_chars": limits.max_string_chars,
        "max_key_chars": limits.max_key_chars,
    }
    metrics_media_type = metrics.CONTENT_TYPE.split(";")[0]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "servinglab penguin species API",
            "version": _version(),
            "description": (
                "Predicts penguin species from measurements. The monolith and the microservices "
                "gateway serve this same API. Every error is an RFC 9457 problem."
            ),
            # Bounds with no JSON Schema keyword (body bytes, depth, digits) are stated here.
            "x-limits": bounds,
        },
        "paths": {
            "/v1/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Predict the species of each instance",
                    "requestBody": {
                        "required": True,
                        "description": (
                            f"At most {bounds['max_body_bytes']} bytes, arrays and objects nested "
                            f"at most {bounds['max_json_depth']} deep, integers of at most "
                            f"{bounds['max_int_digits']} digits."
                        ),
                        "content": {"application/json": {"schema": _ref("PredictRequest")}},
                    },
                    "responses": {
                        "200": _json_response(
                            "One prediction per instance.", _ref("PredictResponse")
                        ),
                        **_problems(PREDICT_PROBLEMS),
                    },
                },
            },
            "/v1/model": {
                "get": {
                    "operationId": "describeModel",
                    "summary": "The served model's metadata, input schema and request limits",
                    "responses": {
                        "200": _json_response(
                            "Model metadata.",
                            {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "version": {"type": "string"},
                                    "input_schema": {"type": "object"},
                                    "limits": {
                                        "type": "object",
                                        "properties": {
                                            "max_instances": {"type": "integer"},
                                            "max_body_bytes": {"type": "integer"},
                                        },
                                        "required": ["max_instances", "max_body_bytes"],
                                    },
                                },
                                "required": ["name", "version", "input_schema", "limits"],
                            },
                        ),
                        **_problems(BACKEND_PROBLEMS),
                    },
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process answers",
                    "responses": {
                        "200": _json_response(
                            "Alive.",
                            {
                                "type": "object",
                                "properties": {"status": {"const": "ok"}},
                                "required": ["status"],
                            },
                        )
                    },
                },
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: the model (or every stage) can serve",
                    "responses": {
                        "200": _json_response(
                            "Ready.",
                            {
                                "type": "object",
                                "properties": {
                                    "status": {"const": "ready"},
                                    "checks": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                                "required": ["status", "checks"],
                            },
                        ),
                        **_problems({503: "A dependency is not ready; see `checks`."}),
                    },
                },
            },
            "/readyz/local": {
                "get": {
                    "operationId": "readyzLocal",
                    "summary": "Readiness of this process alone (the Kubernetes probe): "
                    "it can serve; no stage is asked",
                    "responses": {
                        "200": _json_response(
                            "This process can serve.",
                            {
                                "type": "object",
                                "properties": {"status": {"const": "ready"}},
                                "required": ["status"],
                            },
                        )
                    },
                },
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics, summed over worker processes",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format 0.0.4.",
                            "content": {metrics_media_type: {"schema": {"type": "string"}}},
                        }
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": _json_response(
                            "The OpenAPI document.",
                            {"type": "object", "required": ["openapi", "info", "paths"]},
                        ),
                        **_problems(SHED_PROBLEM),
                    },
                },
            },
        },
        "components": {"schemas": _schemas(limits)},
    }
