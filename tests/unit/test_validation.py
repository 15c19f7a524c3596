"""Unit tests for request parsing and validation (`servinglab.validation`).

Every rejection must come back as a `Problem` with the right status and slug, and per-instance
errors must say which instance and which field were wrong, so a client can fix its request.
"""

from __future__ import annotations

import json
import math
import random
import sys

import pytest

from servinglab import config
from servinglab.problems import MAX_LISTED_ERRORS, Problem
from servinglab.schema import CATEGORICAL_NAMES, FIELD_NAMES, NUMERIC_NAMES
from servinglab.validation import (
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_KEY_CHARS,
    DEFAULT_MAX_STRING_CHARS,
    MAX_ECHOED_CHARS,
    parse_json,
    validate_instances,
    validate_predict_request,
)

LIMIT = 10


def record(**changes) -> dict:
    """A valid Gentoo-like penguin, with any field replaced."""
    base = {
        "island": "Biscoe",
        "sex": "female",
        "bill_length_mm": 46.5,
        "bill_depth_mm": 14.8,
        "flipper_length_mm": 217.0,
        "body_mass_g": 5200.0,
        "year": 2008,
    }
    base.update(changes)
    return base


def rejected(instances: list) -> Problem:
    with pytest.raises(Problem) as caught:
        validate_predict_request({"instances": instances}, LIMIT)
    return caught.value


def only_error(problem: Problem) -> dict:
    assert problem.status == 422
    assert problem.slug == "invalid-instances"
    errors = problem.extensions["errors"]
    assert len(errors) == 1, errors
    return errors[0]


# --- The happy path -----------------------------------------------------------------------------


def test_valid_record_produces_columns():
    batch = validate_predict_request(
        {"instances": [record(), record(island="Dream", year=2009)]}, LIMIT
    )
    assert batch.size == 2
    assert set(batch.columns) == FIELD_NAMES
    assert batch.columns["island"] == ["Biscoe", "Dream"]
    assert batch.columns["sex"] == ["female", "female"]
    assert batch.columns["bill_length_mm"] == [46.5, 46.5]
    assert batch.columns["year"] == [2008.0, 2009.0]
    # Numeric columns are floats whatever the JSON number looked like.
    assert all(type(v) is float for name in NUMERIC_NAMES for v in batch.columns[name])


def test_validate_parsed_body_end_to_end():
    body = json.dumps({"instances": [record()]}).encode()
    batch = validate_predict_request(parse_json(body), LIMIT)
    assert batch.size == 1
    assert batch.columns["body_mass_g"] == [5200.0]


def test_missing_values_become_nan_and_none():
    batch = validate_instances([record(bill_depth_mm=None, sex=None)])
    assert math.isnan(batch.columns["bill_depth_mm"][0])
    assert batch.columns["sex"] == [None]
    assert batch.columns["bill_length_mm"] == [46.5]


@pytest.mark.parametrize("field", sorted(FIELD_NAMES))
def test_null_is_allowed_for_every_field(field):
    batch = validate_instances([record(**{field: None})])
    value = batch.columns[field][0]
    if field in NUMERIC_NAMES:
        assert math.isnan(value)
    else:
        assert value is None


def test_all_fields_null_is_valid():
    batch = validate_instances([{name: None for name in FIELD_NAMES}])
    assert batch.size == 1
    assert all(math.isnan(batch.columns[name][0]) for name in NUMERIC_NAMES)
    assert all(batch.columns[name] == [None] for name in CATEGORICAL_NAMES)


def test_schema_bounds_are_inclusive():
    batch = validate_instances(
        [
            record(bill_length_mm=0, body_mass_g=20000, year=1900),
            record(bill_length_mm=200.0, year=2100),
        ]
    )
    assert batch.columns["bill_length_mm"] == [0.0, 200.0]
    assert batch.columns["year"] == [1900.0, 2100.0]


def test_whole_float_year_is_accepted():
    assert validate_instances([record(year=2008.0)]).columns["year"] == [2008.0]


def test_exactly_the_limit_is_accepted():
    assert validate_predict_request({"instances": [record()] * LIMIT}, LIMIT).size == LIMIT


# --- Malformed JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [',
        b"",
        b'{"instances": []} trailing',
        b"\xff\xfe\x00",
        b"{'instances': []}",
    ],
    ids=["truncated", "empty", "trailing-data", "bad-encoding", "single-quotes"],
)
def test_malformed_json_is_400(body):
    with pytest.raises(Problem) as caught:
        parse_json(body)
    assert caught.value.status == 400
    assert caught.value.slug == "malformed-json"
    assert caught.value.detail.startswith("The body is not valid JSON")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literals_are_400(literal):
    body = b'{"instances": [{"bill_length_mm": ' + literal.encode() + b"}]}"
    with pytest.raises(Problem) as caught:
        parse_json(body)
    assert caught.value.status == 400
    assert caught.value.slug == "malformed-json"
    assert literal in caught.value.detail


@pytest.mark.parametrize("opener", [b"[", b'{"a":'], ids=["arrays", "objects"])
def test_deeply_nested_json_is_400_not_a_crash(opener):
    with pytest.raises(Problem) as caught:
        parse_json(opener * 100_000)
    assert caught.value.status == 400
    assert caught.value.slug == "malformed-json"
    assert "nested too deeply" in caught.value.detail
    # The interpreter is still usable afterwards.
    assert parse_json(b'{"instances": []}') == {"instances": []}


def test_overflowing_float_literal_is_a_finite_check_422():
    payload = parse_json(
        b'{"instances": [' + json.dumps(record()).replace("5200.0", "1e999").encode() + b"]}"
    )
    assert payload["instances"][0]["body_mass_g"] == math.inf
    with pytest.raises(Problem) as caught:
        validate_predict_request(payload, LIMIT)
    error = only_error(caught.value)
    assert error == {"instance": 0, "field": "body_mass_g", "message": "must be a finite number"}


def test_negative_overflowing_float_literal_is_422():
    error = only_error(rejected([record(), record(flipper_length_mm=-math.inf)]))
    assert error["instance"] == 1
    assert error["field"] == "flipper_length_mm"
    assert "finite" in error["message"]


def test_huge_integer_literal_is_422_not_a_crash():
    payload = parse_json(
        b'{"instances": ['
        + json.dumps(record()).replace("5200.0", "1" + "0" * 400).encode()
        + b"]}"
    )
    assert isinstance(payload["instances"][0]["body_mass_g"], int)
    with pytest.raises(Problem) as caught:
        validate_predict_request(payload, LIMIT)
    error = only_error(caught.value)
    assert error["field"] == "body_mass_g"


# --- The envelope -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [[record()], "instances", 42, None, True],
    ids=["list", "string", "number", "null", "bool"],
)
def test_non_object_body_is_422_invalid_request(payload):
    with pytest.raises(Problem) as caught:
        validate_predict_request(payload, LIMIT)
    assert caught.value.status == 422
    assert caught.value.slug == "invalid-request"
    assert "JSON object" in caught.value.detail


@pytest.mark.parametrize(
    "payload",
    [{}, {"instances": None}, {"instances": {"0": record()}}, {"instances": "x"}],
    ids=["absent", "null", "object", "string"],
)
def test_missing_or_non_list_instances_is_422(payload):
    with pytest.raises(Problem) as caught:
        validate_predict_request(payload, LIMIT)
    assert caught.value.status == 422
    assert caught.value.slug == "invalid-request"
    assert "'instances' is required" in caught.value.detail


def test_unknown_top_level_key_is_422_and_named():
    with pytest.raises(Problem) as caught:
        validate_predict_request({"instances": [record()], "parameters": {}, "debug": True}, LIMIT)
    assert caught.value.status == 422
    assert caught.value.slug == "invalid-request"
    assert caught.value.detail == "Unknown top-level field(s): debug, parameters."


def test_empty_instances_is_422():
    with pytest.raises(Problem) as caught:
        validate_predict_request({"instances": []}, LIMIT)
    assert caught.value.status == 422
    assert caught.value.slug == "invalid-request"
    assert "must not be empty" in caught.value.detail


def test_too_many_instances_is_413_with_limit():
    with pytest.raises(Problem) as caught:
        validate_predict_request({"instances": [record()] * (LIMIT + 1)}, LIMIT)
    problem = caught.value
    assert problem.status == 413
    assert problem.slug == "too-many-instances"
    assert problem.extensions == {"limit": LIMIT}
    assert problem.to_dict()["limit"] == LIMIT
    assert f"{LIMIT + 1} instances" in problem.detail


def test_instance_count_is_checked_before_instance_contents():
    # A huge batch of garbage must be refused on its size without walking every element.
    with pytest.raises(Problem) as caught:
        validate_predict_request({"instances": [None] * (LIMIT + 1)}, LIMIT)
    assert caught.value.status == 413


# --- Per-instance errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instance",
    [None, [], "penguin", 3, [record()]],
    ids=["null", "list", "string", "number", "nested-list"],
)
def test_non_object_instance(instance):
    problem = rejected([record(), instance])
    assert problem.to_dict()["type"] == "urn:servinglab:problem:invalid-instances"
    assert only_error(problem) == {"instance": 1, "field": None, "message": "must be a JSON object"}


def test_missing_field():
    instance = record()
    del instance["flipper_length_mm"]
    error = only_error(rejected([instance]))
    assert error["instance"] == 0
    assert error["field"] == "flipper_length_mm"
    assert "is required" in error["message"] and "null" in error["message"]


def test_every_missing_field_is_listed():
    problem = rejected([record(), {}])
    errors = problem.extensions["errors"]
    assert [(e["instance"], e["field"]) for e in errors] == [
        (1, name) for name in sorted(FIELD_NAMES)
    ]
    assert problem.detail.startswith(f"{len(FIELD_NAMES)} problem(s)")


def test_unknown_field():
    error = only_error(rejected([record(wingspan_mm=80.0)]))
    assert error["instance"] == 0
    assert "wingspan_mm" in error["field"]
    assert error["message"] == "is not a known field"


def test_misspelt_field_reports_both_missing_and_unknown():
    instance = record()
    instance["bill_lenght_mm"] = instance.pop("bill_length_mm")
    errors = rejected([instance]).extensions["errors"]
    assert len(errors) == 2
    assert errors[0] == {
        "instance": 0,
        "field": "bill_length_mm",
        "message": "is required (use null for a missing measurement)",
    }
    assert "bill_lenght_mm" in errors[1]["field"]
    assert errors[1]["message"] == "is not a known field"


@pytest.mark.parametrize(
    "value",
    ["46.5", True, False, [46.5], {"mm": 46.5}],
    ids=["string", "true", "false", "list", "object"],
)
def test_wrong_type_for_a_number(value):
    error = only_error(rejected([record(bill_length_mm=value)]))
    assert error["instance"] == 0
    assert error["field"] == "bill_length_mm"
    assert error["message"] == f"must be a number or null, got {value!r}"


def test_bool_year_is_rejected_not_read_as_one():
    # bool is a subclass of int in Python; True must not slip through as the year 1.
    error = only_error(rejected([record(year=True)]))
    assert error["field"] == "year"
    assert "must be a number" in error["message"]


@pytest.mark.parametrize(
    "field,value",
    [
        ("bill_length_mm", -0.1),
        ("bill_length_mm", 200.5),
        ("bill_depth_mm", 100.01),
        ("flipper_length_mm", 401),
        ("body_mass_g", 20001.0),
        ("body_mass_g", -5200.0),
        ("year", 1899),
        ("year", 2101),
    ],
)
def test_out_of_range_number(field, value):
    error = only_error(rejected([record(**{field: value})]))
    assert error["instance"] == 0
    assert error["field"] == field
    assert error["message"].startswith("must be between")
    assert f"got {value:g}" in error["message"]


def test_body_mass_in_kilograms_digits_is_out_of_range_message():
    error = only_error(rejected([record(body_mass_g=52000)]))
    assert error["message"] == "must be between 0 and 20000, got 52000"


@pytest.mark.parametrize("value", [2008.5, 2007.000001])
def test_non_integer_year(value):
    error = only_error(rejected([record(year=value)]))
    assert error["field"] == "year"
    assert error["message"] == f"must be a whole number, got {value:g}"


@pytest.mark.parametrize(
    "field,value",
    [
        ("island", "Anvers"),
        ("island", "biscoe"),
        ("island", ""),
        ("sex", "Male"),
        ("sex", 1),
        ("sex", True),
        ("island", ["Biscoe"]),
    ],
)
def test_unknown_category(field, value):
    error = only_error(rejected([record(**{field: value})]))
    assert error["instance"] == 0
    assert error["field"] == field
    assert error["message"].startswith("must be one of")
    assert error["message"].endswith(f"or null, got {value!r}")


def test_unknown_category_message_lists_the_allowed_values():
    error = only_error(rejected([record(sex="unknown")]))
    assert error["message"] == "must be one of female, male or null, got 'unknown'"


def test_errors_from_several_instances_and_fields_are_all_reported():
    problem = rejected([record(year=2008.5), record(), record(island="Mars", body_mass_g="heavy")])
    errors = problem.extensions["errors"]
    assert [(e["instance"], e["field"]) for e in errors] == [
        (0, "year"),
        (2, "body_mass_g"),
        (2, "island"),
    ]
    assert problem.detail == "3 problem(s) found in the instances; see 'errors'."


# --- Limits on what an error echoes -------------------------------------------------------------


def test_error_list_is_capped_but_detail_counts_everything():
    bad = 3 * MAX_LISTED_ERRORS + 7
    with pytest.raises(Problem) as caught:
        validate_instances([record(year=-1) for _ in range(bad)])
    problem = caught.value
    errors = problem.extensions["errors"]
    assert len(errors) == MAX_LISTED_ERRORS
    assert [e["instance"] for e in errors] == list(range(MAX_LISTED_ERRORS))
    assert problem.detail == (
        f"{bad} problem(s) found in the instances "
        f"({bad - MAX_LISTED_ERRORS} more not listed); see 'errors'."
    )


def test_detail_counts_every_unknown_field_of_one_instance():
    extra = {f"extra_{i:03d}": 1 for i in range(MAX_LISTED_ERRORS + 10)}
    problem = rejected([record(**extra)])
    assert len(problem.extensions["errors"]) == MAX_LISTED_ERRORS
    assert problem.detail.startswith(f"{MAX_LISTED_ERRORS + 10} problem(s)")


def test_hostile_long_string_value_is_truncated_in_the_message():
    hostile = "A" * 1_000_000
    error = only_error(rejected([record(island=hostile)]))
    assert error["field"] == "island"
    assert error["message"].endswith("got " + repr(hostile)[:MAX_ECHOED_CHARS] + "...")
    assert len(error["message"]) < 200


def test_hostile_long_string_for_a_number_is_truncated():
    error = only_error(rejected([record(body_mass_g="9" * 100_000)]))
    assert (
        error["message"]
        == "must be a number or null, got " + ("'" + "9" * (MAX_ECHOED_CHARS - 1)) + "..."
    )


def test_hostile_long_field_name_is_truncated():
    hostile = "k" * 1_000_000
    error = only_error(rejected([record(**{hostile: 1})]))
    assert len(error["field"]) == MAX_ECHOED_CHARS + 3
    assert error["field"].startswith("kkk") and error["field"].endswith("...")


def test_short_values_are_echoed_whole():
    error = only_error(rejected([record(sex="x" * 10)]))
    assert error["message"].endswith("got " + repr("x" * 10))


def test_hostile_long_top_level_key_is_truncated():
    with pytest.raises(Problem) as caught:
        validate_predict_request({"instances": [record()], "x" * 1_000_000: 1}, LIMIT)
    assert caught.value.status == 422
    assert len(caught.value.detail) < 200


# --- Hostile-input bounds -----------------------------------------------------------------------


def test_validation_limits_default_to_the_configured_ones():
    assert (
        config.DEFAULTS["MAX_JSON_DEPTH"],
        config.DEFAULTS["MAX_STRING_CHARS"],
        config.DEFAULTS["MAX_KEY_CHARS"],
    ) == (DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_STRING_CHARS, DEFAULT_MAX_KEY_CHARS)


@pytest.mark.parametrize(
    "opener,closer",
    [(b"[", b"]"), (b'{"a":', b"}"), (b'[{"a":', b"}]")],
    ids=["arrays", "objects", "mixed"],
)
def test_nesting_up_to_the_limit_parses_and_one_level_more_is_400(opener, closer):
    per_level = 2 if opener == b'[{"a":' else 1
    levels = 12 // per_level
    parse_json(opener * levels + b"0" + closer * levels, max_depth=12)
    with pytest.raises(Problem) as caught:
        parse_json(opener * (levels + 1) + b"0" + closer * (levels + 1), max_depth=12)
    assert caught.value.status == 400
    assert caught.value.slug == "malformed-json"
    assert (
        caught.value.detail
        == "The body is nested too deeply: arrays and objects may nest at most 12 levels."
    )
    assert caught.value.extensions == {"limit": 12}


def test_a_valid_request_nests_three_deep():
    body = json.dumps({"instances": [record(), record()]}).encode()
    assert parse_json(body, max_depth=3)["instances"][1] == record()
    with pytest.raises(Problem):
        parse_json(body, max_depth=2)


def test_nesting_is_measured_not_bracket_count():
    # 10,000 sibling objects are many brackets but only three levels.
    body = json.dumps({"instances": [record()] * 10_000}).encode()
    assert len(parse_json(body)["instances"]) == 10_000


def test_brackets_inside_strings_count_as_nesting():
    # The scan does not track strings; no valid request has a bracket in one, so this only ever
    # turns a request that is wrong anyway into a 400 instead of a 422.
    body = json.dumps({"instances": [record(island="[" * 40)]}).encode()
    with pytest.raises(Problem) as caught:
        parse_json(body)
    assert caught.value.status == 400 and "nested too deeply" in caught.value.detail


def test_truncated_large_body_is_malformed_not_too_deep():
    body = json.dumps({"instances": [record()] * 100}).encode()[:-5]
    with pytest.raises(Problem) as caught:
        parse_json(body)
    assert caught.value.detail.startswith("The body is not valid JSON")


def test_integer_longer_than_the_digit_limit_is_400():
    body = json.dumps({"instances": [record()]}).replace("5200.0", "9" * 5000).encode()
    with pytest.raises(Problem) as caught:
        parse_json(body)
    problem = caught.value
    assert (problem.status, problem.slug, problem.title) == (
        400,
        "number-too-large",
        "Number too large",
    )
    assert (
        problem.detail
        == f"An integer in the body has more than {sys.get_int_max_str_digits()} digits."
    )
    assert problem.extensions == {"limit": sys.get_int_max_str_digits()}


def test_digit_limit_is_the_interpreters_configurable_one():
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        body = json.dumps({"instances": [record()]}).replace("5200.0", "9" * 641).encode()
        with pytest.raises(Problem) as caught:
            parse_json(body)
        assert caught.value.extensions == {"limit": 640}
    finally:
        sys.set_int_max_str_digits(previous)


def test_over_long_category_value_names_the_limit():
    error = only_error(rejected([record(sex="f" * (DEFAULT_MAX_STRING_CHARS + 1))]))
    assert error["message"].startswith(
        f"must be at most {DEFAULT_MAX_STRING_CHARS} characters, got 'fff"
    )
    with pytest.raises(Problem) as caught:
        validate_predict_request(
            {"instances": [record(sex="female-ish")]}, LIMIT, max_string_chars=5
        )
    assert caught.value.extensions["errors"][0]["message"].startswith(
        "must be at most 5 characters"
    )


def test_category_value_within_the_limit_gets_the_usual_message():
    error = only_error(rejected([record(sex="f" * DEFAULT_MAX_STRING_CHARS)]))
    assert error["message"].startswith("must be one of female, male or null")


def test_over_long_field_name_names_the_limit():
    hostile = "k" * (DEFAULT_MAX_KEY_CHARS + 1)
    error = only_error(rejected([record(**{hostile: 1})]))
    assert (
        error["message"]
        == f"is not a known field (names are at most {DEFAULT_MAX_KEY_CHARS} characters)"
    )
    with pytest.raises(Problem) as caught:
        validate_predict_request({"instances": [record()], hostile: 1}, LIMIT)
    assert caught.value.detail.endswith(
        f"Field names are at most {DEFAULT_MAX_KEY_CHARS} characters."
    )


def test_many_unknown_fields_list_the_first_in_order_and_count_the_rest():
    names = [f"extra_{i:04d}" for i in range(5000)]
    random.Random(3).shuffle(names)
    problem = rejected([record(**dict.fromkeys(names, 1))])
    assert [e["field"] for e in problem.extensions["errors"]] == sorted(names)[:MAX_LISTED_ERRORS]
    assert problem.detail.startswith("5000 problem(s)")
    with pytest.raises(Problem) as caught:
        validate_predict_request({"instances": [record()], **dict.fromkeys(names, 1)}, LIMIT)
    assert caught.value.detail.startswith(
        "Unknown top-level field(s): " + ", ".join(sorted(names)[:MAX_LISTED_ERRORS])
    )
    assert caught.value.detail.endswith(f" and {5000 - MAX_LISTED_ERRORS} more.")


def test_listing_continues_across_instances_until_the_list_is_full():
    first = record(**{f"a{i}": 1 for i in range(15)})
    second = record(**{f"b{i:02d}": 1 for i in range(30)})
    problem = rejected([first, second])
    fields = [(e["instance"], e["field"]) for e in problem.extensions["errors"]]
    assert fields == [(0, name) for name in sorted(f"a{i}" for i in range(15))] + [
        (1, f"b{i:02d}") for i in range(MAX_LISTED_ERRORS - 15)
    ]
    assert problem.detail.startswith("45 problem(s)")
