"""Property tests of request parsing and validation under arbitrary, hostile input.

Whatever a client sends, `parse_json` followed by `validate_predict_request` must either return
a `RawBatch` or raise a `Problem` with a 4xx status whose body serialises as strict JSON: any
other exception would reach clients as a 500. The nesting-depth scan gets its own properties:
it never lets the parser nest deeper than the limit, and it is exact on well-formed JSON.
"""

from __future__ import annotations

import json
import math
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servinglab.problems import Problem
from servinglab.schema import CATEGORICAL_FIELDS, FIELD_NAMES, NUMERIC_FIELDS
from servinglab.validation import (
    RawBatch,
    nesting_exceeds,
    parse_json,
    validate_predict_request,
)

# Small limits, so the properties reach every bound without megabyte-sized examples.
MAX_INSTANCES = 5
MAX_DEPTH = 8
MAX_STRING_CHARS = 12
MAX_KEY_CHARS = 20

PROPERTY = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Anything json.loads can return, plus what it cannot (NaN) for callers that skip the parser.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**50), 10**50)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from([c for f in CATEGORICAL_FIELDS for c in f.categories])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=25), inner, max_size=4)
    ),
    max_leaves=12,
)


def _field_value(field) -> st.SearchStrategy:
    if field in NUMERIC_FIELDS:
        near = st.floats(field.minimum - 5, field.maximum + 5) | st.integers(
            int(field.minimum) - 5, int(field.maximum) + 5
        )
        return st.none() | near | VALUES
    return st.none() | st.sampled_from(field.categories) | st.text(max_size=20) | VALUES


# Records that are mostly right, so validation goes past the first check into every branch.
RECORDS = st.fixed_dictionaries(
    {f.name: _field_value(f) for f in (*NUMERIC_FIELDS, *CATEGORICAL_FIELDS)},
    optional={"extra": VALUES, "x" * 30: st.none()},
)
PAYLOADS = (
    st.fixed_dictionaries(
        {"instances": st.lists(RECORDS | VALUES, max_size=MAX_INSTANCES + 2)},
        optional={"debug": VALUES, "y" * 30: st.none()},
    )
    | st.dictionaries(st.text(max_size=25), VALUES, max_size=3)
    | VALUES
)


def outcome(body: bytes) -> RawBatch | Problem:
    """Parse and validate like the API does; only a RawBatch or a well-formed 4xx Problem may come out."""
    try:
        return validate_predict_request(
            parse_json(body, MAX_DEPTH),
            MAX_INSTANCES,
            max_string_chars=MAX_STRING_CHARS,
            max_key_chars=MAX_KEY_CHARS,
        )
    except Problem as problem:
        check_problem(problem)
        return problem


def check_problem(problem: Problem) -> None:
    assert 400 <= problem.status < 500, problem.to_dict()
    # The API sends this with json.dumps: it must be strict JSON, and short despite hostile input.
    body = json.dumps(problem.to_dict(), allow_nan=False)
    assert len(body) < 10_000


def check_batch(batch: RawBatch) -> None:
    assert 1 <= batch.size <= MAX_INSTANCES
    assert set(batch.columns) == FIELD_NAMES
    for field in NUMERIC_FIELDS:
        values = batch.columns[field.name]
        assert len(values) == batch.size
        assert all(
            type(v) is float and (math.isnan(v) or field.minimum <= v <= field.maximum)
            for v in values
        )
    for field in CATEGORICAL_FIELDS:
        assert all(v is None or v in field.categories for v in batch.columns[field.name])


def depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


@PROPERTY
@given(payload=PAYLOADS)
def test_any_payload_is_a_batch_or_a_4xx_problem(payload):
    try:
        result = validate_predict_request(
            payload, MAX_INSTANCES, max_string_chars=MAX_STRING_CHARS, max_key_chars=MAX_KEY_CHARS
        )
    except Problem as problem:
        check_problem(problem)
    else:
        check_batch(result)


@PROPERTY
@given(body=st.binary(max_size=2000))
def test_any_bytes_are_a_batch_or_a_4xx_problem(body):
    result = outcome(body)
    if isinstance(result, Problem):
        assert result.status in (400, 413, 422)


@st.composite
def mangled_json(draw) -> bytes:
    """A serialised payload (NaN and Infinity included), then cut, spliced and overwritten."""
    text = bytearray(json.dumps(draw(PAYLOADS)).encode())
    for _ in range(draw(st.integers(0, 4))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        junk = draw(
            st.sampled_from(
                [
                    b"[",
                    b"]",
                    b"{",
                    b"}",
                    b'"',
                    b"\\",
                    b",",
                    b":",
                    b"\xff",
                    b"1" * 30,
                    b"[" * 40,
                    b"-",
                    b"e999",
                    b"\x00",
                ]
            )
        )
        match draw(st.sampled_from(["cut", "insert", "overwrite", "truncate"])):
            case "cut":
                del text[at : at + draw(st.integers(1, 5))]
            case "insert":
                text[at:at] = junk
            case "overwrite":
                text[at : at + len(junk)] = junk
            case "truncate":
                del text[at:]
    return bytes(text)


@PROPERTY
@given(body=mangled_json())
def test_mangled_json_is_a_batch_or_a_4xx_problem(body):
    result = outcome(body)
    if isinstance(result, RawBatch):
        check_batch(result)


@PROPERTY
@given(payload=PAYLOADS)
def test_well_formed_bodies_are_a_batch_or_a_4xx_problem(payload):
    result = outcome(json.dumps(payload).encode())
    if isinstance(result, RawBatch):
        check_batch(result)


# --- Nesting depth ------------------------------------------------------------------------------


@PROPERTY
@given(value=VALUES, limit=st.integers(0, 12))
def test_depth_scan_never_lets_the_parser_nest_deeper_than_the_limit(value, limit):
    body = json.dumps(value, allow_nan=True).encode()
    if not nesting_exceeds(body, limit):
        assert depth(json.loads(body)) <= limit


# No brackets inside strings: then the scan must be exact, neither stricter nor looser.
BRACKETLESS = st.recursive(
    st.none() | st.integers() | st.text(st.characters(blacklist_characters="[]{}"), max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("abc", max_size=3), inner, max_size=3)
    ),
    max_leaves=40,
)


@PROPERTY
@given(value=BRACKETLESS, limit=st.integers(0, 12))
def test_depth_scan_is_exact_on_well_formed_json(value, limit):
    assert nesting_exceeds(json.dumps(value).encode(), limit) == (depth(value) > limit)


@PROPERTY
@given(
    levels=st.integers(0, 3000),
    openers=st.sampled_from([b"[", b'{"a":', b'[{"a":']),
    closed=st.booleans(),
)
def test_deep_nesting_is_refused_before_parsing(levels, openers, closed):
    closers = {b"[": b"]", b'{"a":': b"}", b'[{"a":': b"}]"}[openers]
    body = openers * levels + b"1" + (closers * levels if closed else b"")
    result = outcome(body)
    per_level = 2 if openers == b'[{"a":' else 1
    if levels * per_level > MAX_DEPTH:
        assert (
            isinstance(result, Problem)
            and result.status == 400
            and "nested too deeply" in result.detail
        )
        assert result.extensions == {"limit": MAX_DEPTH}
    else:
        assert isinstance(result, Problem) and result.status in (400, 422)
        assert "nested too deeply" not in result.detail


# --- Long numbers and strings -------------------------------------------------------------------


@PROPERTY
@given(
    digits=st.integers(1, 6000),
    field=st.sampled_from(NUMERIC_FIELDS),
    sign=st.sampled_from(["", "-"]),
)
def test_integers_of_any_length_are_a_4xx(digits, field, sign):
    record = {name: None for name in FIELD_NAMES}
    body = (
        json.dumps({"instances": [record]})
        .replace(f'"{field.name}": null', f'"{field.name}": {sign}{"9" * digits}')
        .encode()
    )
    result = outcome(body)
    if digits > sys.get_int_max_str_digits():
        assert isinstance(result, Problem) and (result.status, result.slug) == (
            400,
            "number-too-large",
        )
    elif digits > 5:
        assert isinstance(result, Problem) and result.status == 422


@PROPERTY
@given(
    text=st.text(min_size=MAX_STRING_CHARS + 1, max_size=500),
    field=st.sampled_from(CATEGORICAL_FIELDS),
)
def test_over_long_category_values_name_the_limit(text, field):
    record = {name: None for name in FIELD_NAMES} | {field.name: text}
    result = outcome(json.dumps({"instances": [record]}).encode())
    assert isinstance(result, Problem) and result.status == 422
    [error] = result.extensions["errors"]
    assert error["field"] == field.name
    assert error["message"].startswith(f"must be at most {MAX_STRING_CHARS} characters")


@PROPERTY
@given(key=st.text(min_size=MAX_KEY_CHARS + 1, max_size=500))
def test_over_long_field_names_name_the_limit(key):
    record = {name: None for name in FIELD_NAMES} | {key: 1}
    result = outcome(json.dumps({"instances": [record]}).encode())
    assert isinstance(result, Problem) and result.status == 422
    [error] = result.extensions["errors"]
    assert (
        error["message"] == f"is not a known field (names are at most {MAX_KEY_CHARS} characters)"
    )
