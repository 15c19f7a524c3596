"""Unit tests for the OpenAPI document (`servinglab.serving.openapi`) and the route that serves it.

The document is checked three ways: as an OpenAPI 3.1 document (against the specification's own
JSON Schema, and by Schemathesis loading it), as a description of the real API (its paths are the
app's routes, its limits the configured ones), and as a contract the validator keeps (records
that the published schema accepts are exactly the records `validate_instances` accepts).
"""

from __future__ import annotations

import functools
import json

import jsonschema
import pytest
import schemathesis
from helpers import NullBackend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from schemathesis.specs.openapi.definitions import OPENAPI_31

from servinglab import config
from servinglab.contract import model_summary
from servinglab.problems import PROBLEM_CONTENT_TYPE, Problem, invalid_instances
from servinglab.schema import (
    CATEGORICAL_FIELDS,
    FIELD_NAMES,
    NUMERIC_FIELDS,
    input_schema,
)
from servinglab.serving.api import SETTINGS, build_app
from servinglab.serving.openapi import openapi_document
from servinglab.validation import validate_instances, validate_predict_request

DOCUMENT = openapi_document(config.Settings())
DOCUMENT_URI = "urn:servinglab:openapi"
# Lets a validator follow the document's own "#/components/schemas/..." references.
REGISTRY = Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(DOCUMENT))


@functools.cache
def validator(component: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#/components/schemas/{component}"}, registry=REGISTRY
    )


def refs(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


# --- A valid OpenAPI 3.1 document ---------------------------------------------------------------


def test_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"].startswith("3.1.")
    errors = [
        error.message for error in jsonschema.Draft202012Validator(OPENAPI_31).iter_errors(DOCUMENT)
    ]
    assert errors == []


def test_every_component_is_a_valid_json_schema_and_every_ref_resolves():
    for schema in DOCUMENT["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    resolver = REGISTRY.resolver(DOCUMENT_URI)
    for ref in refs(DOCUMENT):
        assert resolver.lookup(ref).contents, ref


def test_schemathesis_loads_every_operation():
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(DOCUMENT)))
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert labels == {
        "POST /v1/predict",
        "GET /v1/model",
        "GET /healthz",
        "GET /readyz",
        "GET /readyz/local",
        "GET /metrics",
        "GET /openapi.json",
    }


# --- A description of the real API --------------------------------------------------------------


def test_paths_are_exactly_the_apps_routes():
    app = build_app(NullBackend, "openapi-test")
    routes = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert documented == routes


def test_route_serves_the_document_built_from_the_apps_own_limits():
    app = build_app(
        NullBackend,
        "openapi-test",
        config.load(overrides={"MAX_INSTANCES": 7, "MAX_CONTENT_LENGTH": 4096}),
    )
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    served = response.get_json()
    assert served == json.loads(json.dumps(openapi_document(app.config[SETTINGS])))
    assert (
        served["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["maxItems"]
        == 7
    )
    assert served["info"]["x-limits"]["max_body_bytes"] == 4096


def test_predict_request_schema_states_the_configured_limits():
    limits = config.load(
        environ={},
        overrides={
            "MAX_INSTANCES": 12,
            "MAX_STRING_CHARS": 20,
            "MAX_KEY_CHARS": 30,
            "MAX_JSON_DEPTH": 9,
            "MAX_INT_DIGITS": 700,
            "MAX_CONTENT_LENGTH": 5000,
        },
    )
    document = openapi_document(limits)
    request = document["components"]["schemas"]["PredictRequest"]
    assert request["additionalProperties"] is False and request["required"] == ["instances"]
    instances = request["properties"]["instances"]
    assert (instances["minItems"], instances["maxItems"]) == (1, 12)
    assert instances["items"] == {"$ref": "#/components/schemas/Instance"}
    instance = document["components"]["schemas"]["Instance"]
    assert instance["propertyNames"] == {"maxLength": 30}
    assert all(instance["properties"][f.name]["maxLength"] == 20 for f in CATEGORICAL_FIELDS)
    assert document["info"]["x-limits"] == {
        "max_body_bytes": 5000,
        "max_instances": 12,
        "max_json_depth": 9,
        "max_int_digits": 700,
        "max_string_chars": 20,
        "max_key_chars": 30,
    }
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]
    assert (
        body["required"] is True
        and "5000 bytes" in body["description"]
        and " 9 deep" in body["description"]
    )


def test_record_schema_is_the_input_schema_with_bounds_added():
    # One source of truth: nothing about a field is restated, only the string bounds are added.
    instance = DOCUMENT["components"]["schemas"]["Instance"]
    original = input_schema()
    assert instance["required"] == original["required"] == sorted(FIELD_NAMES)
    assert instance["additionalProperties"] is False
    for name, spec in original["properties"].items():
        assert {k: v for k, v in instance["properties"][name].items() if k != "maxLength"} == spec
    # Publishing the document must not alter what /v1/model publishes.
    assert "propertyNames" not in input_schema()


def test_predict_documents_every_refusal_as_a_problem():
    responses = DOCUMENT["paths"]["/v1/predict"]["post"]["responses"]
    assert set(responses) == {"200", "400", "413", "415", "422", "503", "504"}
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictResponse"
    }
    for status in ("400", "413", "415", "422", "503", "504"):
        assert responses[status]["content"] == {
            PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail"]


def test_other_operations_document_their_responses():
    paths = DOCUMENT["paths"]
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}
    assert set(paths["/readyz/local"]["get"]["responses"]) == {"200"}
    assert set(paths["/v1/model"]["get"]["responses"]) == {"200", "503", "504"}
    assert set(paths["/healthz"]["get"]["responses"]) == {"200"}
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(paths["/openapi.json"]["get"]["responses"]) == {"200", "503"}


# --- What the API really sends fits the document ------------------------------------------------


def test_held_out_records_are_valid_requests(held_out):
    errors = list(validator("PredictRequest").iter_errors({"instances": held_out}))
    assert errors == []


def test_real_predict_response_fits_the_response_schema(pipeline, held_out):
    body = {
        "predictions": pipeline.predict(validate_instances(held_out[:20])),
        "model": model_summary(pipeline.metadata),
    }
    assert list(validator("PredictResponse").iter_errors(json.loads(json.dumps(body)))) == []


@pytest.mark.parametrize(
    "problem",
    [
        invalid_instances(
            [
                {"instance": 0, "field": "year", "message": "must be a whole number"},
                {"instance": 1, "field": None, "message": "must be a JSON object"},
            ],
            2,
        ),
        Problem(413, "too-many-instances", "Too many instances", "1001 instances sent", limit=1000),
        Problem(
            503,
            "not-ready",
            "Not ready",
            "A dependency is not ready.",
            checks={"inference": "NOT_SERVING"},
        ),
    ],
    ids=["invalid-instances", "too-many", "not-ready"],
)
def test_problems_fit_the_problem_schema(problem):
    assert list(validator("Problem").iter_errors(problem.to_dict())) == []


def test_too_many_instances_breaks_the_schema_too():
    record = {name: None for name in FIELD_NAMES}
    limit = config.DEFAULTS["MAX_INSTANCES"]
    assert validator("PredictRequest").is_valid({"instances": [record] * limit})
    assert not validator("PredictRequest").is_valid({"instances": [record] * (limit + 1)})
    assert not validator("PredictRequest").is_valid({"instances": []})


# --- The published schema and the hand-written validator agree ----------------------------------


def _value_for(field) -> st.SearchStrategy:
    """Values a client might send for one field: valid ones, boundary ones, and wrong ones."""
    if field in NUMERIC_FIELDS:
        around = st.floats(field.minimum - 10, field.maximum + 10, allow_nan=False)
        edges = st.sampled_from(
            [field.minimum, field.maximum, field.minimum - 1, field.maximum + 1]
        )
        whole = st.integers(int(field.minimum) - 5, int(field.maximum) + 5)
        valid = whole | around | edges
    else:
        valid = st.sampled_from([*field.categories, field.categories[0].lower()]) | st.text(
            max_size=80
        )
    wrong = (
        st.booleans()
        | st.text(max_size=5)
        | st.lists(st.integers(), max_size=2)
        | st.integers(-(10**30), 10**30)
    )
    return st.none() | valid | wrong


RECORDS = st.fixed_dictionaries(
    {field.name: _value_for(field) for field in (*NUMERIC_FIELDS, *CATEGORICAL_FIELDS)},
    optional={"wingspan_mm": st.floats(0, 100), "k" * 70: st.none()},
)


def _validator_accepts(record) -> bool:
    try:
        validate_predict_request({"instances": [record]}, 10)
    except Problem:
        return False
    return True


@settings(
    max_examples=400, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(record=RECORDS | st.dictionaries(st.text(max_size=70), st.none(), max_size=8))
def test_schema_and_validator_agree_on_every_record(record):
    published = validator("PredictRequest").is_valid({"instances": [record]})
    assert published == _validator_accepts(record), record


@settings(max_examples=200, derandomize=True, database=None)
@given(value=st.floats(allow_nan=False), field=st.sampled_from(NUMERIC_FIELDS))
def test_schema_and_validator_agree_on_any_finite_number(value, field):
    record = {name: None for name in FIELD_NAMES} | {field.name: value}
    assert validator("PredictRequest").is_valid({"instances": [record]}) == _validator_accepts(
        record
    )
