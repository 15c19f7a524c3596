"""Turn a request body into a validated, column-oriented batch, or a `Problem` saying why not.

Validation is hand-written rather than delegated to a JSON Schema library because it sits on the
hot path of every request: a generic validator costs more than the whole model on one row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from servinglab.problems import MAX_LISTED_ERRORS, Problem, invalid_instances
from servinglab.schema import CATEGORICAL_FIELDS, FIELD_NAMES, NUMERIC_FIELDS

# Echoing a hostile 1 MB string back in an error would amplify the attack; a prefix is enough.
MAX_ECHOED_CHARS = 40


@dataclass
class RawBatch:
    """Validated instances by column. Missing numeric values are NaN, missing categories None."""

    columns: dict[str, list]
    size: int


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not allowed in JSON")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise Problem(400, "malformed-json", "Malformed JSON", "The body is nested too deeply.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "malformed-json", "Malformed JSON", f"The body is not valid JSON: {exc}") from None


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_ECHOED_CHARS else text[:MAX_ECHOED_CHARS] + "..."


def _echo(value: Any) -> str:
    """A client's value, quoted as Python would, cut short."""
    return _truncate(repr(value))


def validate_predict_request(payload: Any, max_instances: int) -> RawBatch:
    """Check the `{"instances": [...]}` envelope, then every instance against the schema."""
    if not isinstance(payload, dict):
        raise Problem(422, "invalid-request", "Invalid request",
                      'The body must be a JSON object of the form {"instances": [...]}.')
    unknown_keys = sorted(set(payload) - {"instances"})
    if unknown_keys:
        shown = ", ".join(_truncate(key) for key in unknown_keys[:MAX_LISTED_ERRORS])
        more = f" and {len(unknown_keys) - MAX_LISTED_ERRORS} more" if len(unknown_keys) > MAX_LISTED_ERRORS else ""
        raise Problem(422, "invalid-request", "Invalid request", f"Unknown top-level field(s): {shown}{more}.")
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise Problem(422, "invalid-request", "Invalid request",
                      "'instances' is required and must be a list of objects.")
    if not instances:
        raise Problem(422, "invalid-request", "Invalid request", "'instances' must not be empty.")
    if len(instances) > max_instances:
        raise Problem(413, "too-many-instances", "Too many instances",
                      f"{len(instances)} instances sent; the limit is {max_instances} per request.",
                      limit=max_instances)
    return validate_instances(instances)


def validate_instances(instances: list) -> RawBatch:
    columns: dict[str, list] = {name: [] for name in FIELD_NAMES}
    errors: list[dict[str, Any]] = []
    error_count = 0

    def fail(index: int, field: str | None, message: str) -> None:
        nonlocal error_count
        error_count += 1
        # Keep counting past the listing limit so the detail says how bad the batch is.
        if len(errors) < 2 * MAX_LISTED_ERRORS:
            errors.append({"instance": index, "field": field, "message": message})

    for index, record in enumerate(instances):
        if type(record) is not dict:
            fail(index, None, "must be a JSON object")
            continue
        if record.keys() != FIELD_NAMES:
            for name in sorted(FIELD_NAMES - record.keys()):
                fail(index, name, "is required (use null for a missing measurement)")
            for name in sorted(record.keys() - FIELD_NAMES):
                fail(index, _truncate(name), "is not a known field")
            continue
        for field in NUMERIC_FIELDS:
            value = record[field.name]
            value_type = type(value)
            if value is None:
                value = math.nan
            elif value_type is not int and value_type is not float:
                fail(index, field.name, f"must be a number or null, got {_echo(value)}")
                continue
            elif value_type is float and not math.isfinite(value):
                fail(index, field.name, "must be a finite number")
                continue
            elif not field.minimum <= value <= field.maximum:
                # Python ints are unbounded: a 400-digit integer is legal JSON but not a float.
                shown = f"{value:g}" if value_type is float else _truncate(str(value))
                fail(index, field.name, f"must be between {field.minimum:g} and {field.maximum:g}, got {shown}")
                continue
            elif field.integer and value != int(value):
                fail(index, field.name, f"must be a whole number, got {value:g}")
                continue
            columns[field.name].append(float(value))
        for field in CATEGORICAL_FIELDS:
            value = record[field.name]
            if value is not None and value not in field.categories:
                fail(index, field.name, f"must be one of {', '.join(field.categories)} or null, got {_echo(value)}")
                continue
            columns[field.name].append(value)

    if error_count:
        raise invalid_instances(errors, error_count)
    return RawBatch(columns=columns, size=len(instances))
