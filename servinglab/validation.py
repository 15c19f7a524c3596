"""Turn a request body into a validated, column-oriented batch, or a `Problem` saying why not.

Validation is hand-written rather than delegated to a JSON Schema library because it sits on the
hot path of every request: a generic validator costs more than the whole model on one row.

Hostile input is bounded in layers, each limit a setting in `servinglab.config`: body size (the
HTTP layer), nesting depth (a byte scan here, before the parser can recurse), integer length
(CPython's int parser, configured per process by the API), instance count, and the length of
category values and field names (checked only on the error path, so valid requests pay nothing).
"""

from __future__ import annotations

import heapq
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from servinglab.config import DEFAULTS
from servinglab.problems import MAX_LISTED_ERRORS, Problem, invalid_instances
from servinglab.schema import CATEGORICAL_FIELDS, FIELD_NAMES, NUMERIC_FIELDS

# Echoing a hostile 1 MB string back in an error would amplify the attack; a prefix is enough.
MAX_ECHOED_CHARS = 40

DEFAULT_MAX_JSON_DEPTH: int = DEFAULTS["MAX_JSON_DEPTH"]
DEFAULT_MAX_STRING_CHARS: int = DEFAULTS["MAX_STRING_CHARS"]
DEFAULT_MAX_KEY_CHARS: int = DEFAULTS["MAX_KEY_CHARS"]

# For the depth scan: every bracket becomes "(" or ")", everything else is deleted.
_BRACKETS_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


@dataclass
class RawBatch:
    """Validated instances by column. Missing numeric values are NaN, missing categories None."""

    columns: dict[str, list]
    size: int


class _NonFiniteLiteral(ValueError):
    """Raised for NaN/Infinity, so `parse_json` can tell it from the int-length ValueError."""


def _reject_constant(name: str) -> float:
    raise _NonFiniteLiteral(f"non-finite number {name} is not allowed in JSON")


def nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether arrays/objects in `body` may nest deeper than `limit`, judged without parsing.

    Exact for well-formed JSON with no bracket inside a string. Otherwise it can only
    over-estimate (brackets in strings count; an unclosed bracket counts as a level), and no
    valid request has either: its only strings are field names and categories. Cost: one C-speed
    pass over the body, then a few over its brackets alone.
    """
    brackets = body.translate(_BRACKETS_AS_PARENS, _NOT_BRACKETS)
    if brackets.count(b"(") <= limit:
        return False  # too few openers to nest that deep: every small request stops here
    if b"(" * (limit + 1) in brackets:
        return True  # a run of openers is that many levels at once: the usual bomb, refused in one pass
    # Each pass deletes every innermost "()" pair, i.e. one level of the matched nesting.
    levels = 0
    while True:
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):
            break
        levels += 1
        if levels > limit:
            return True
        brackets = shorter
    # What is left is ")))(((": unmatched openers, each a level the parser would enter.
    return levels + brackets.count(b"(") > limit


def parse_json(body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    if nesting_exceeds(body, max_depth):
        raise Problem(
            400,
            "malformed-json",
            "Malformed JSON",
            f"The body is nested too deeply: arrays and objects may nest at most {max_depth} levels.",
            limit=max_depth,
        )
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        # Unreachable behind the scan above; kept so a bug there is still a 400, never a 500.
        raise Problem(
            400, "malformed-json", "Malformed JSON", "The body is nested too deeply."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, _NonFiniteLiteral) as exc:
        raise Problem(
            400, "malformed-json", "Malformed JSON", f"The body is not valid JSON: {exc}"
        ) from None
    except ValueError:
        # The only other ValueError the decoder raises: CPython refusing an integer literal with
        # more digits than sys.get_int_max_str_digits() (see MAX_INT_DIGITS). Its own message
        # gives interpreter advice, so say it in the API's terms.
        digits = sys.get_int_max_str_digits()
        raise Problem(
            400,
            "number-too-large",
            "Number too large",
            f"An integer in the body has more than {digits} digits.",
            limit=digits,
        ) from None


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_ECHOED_CHARS else text[:MAX_ECHOED_CHARS] + "..."


def _echo(value: Any) -> str:
    """A client's value, quoted as Python would, cut short."""
    return _truncate(repr(value))


def _first_sorted(names: Iterable[str], count: int, total: int) -> list[str]:
    # A hostile object can carry ~100k keys; sorting all of them to list a few costs more than
    # parsing them did. The smallest `count` in order is the same answer, in O(n log count).
    return sorted(names) if total <= count else heapq.nsmallest(count, names)


def _field_label(name: str, max_key_chars: int) -> tuple[str, str]:
    """An unknown field's name as echoed back, and why it is wrong."""
    if len(name) > max_key_chars:
        return _truncate(
            name
        ), f"is not a known field (names are at most {max_key_chars} characters)"
    return _truncate(name), "is not a known field"


def validate_predict_request(
    payload: Any,
    max_instances: int,
    *,
    max_string_chars: int = DEFAULT_MAX_STRING_CHARS,
    max_key_chars: int = DEFAULT_MAX_KEY_CHARS,
) -> RawBatch:
    """Check the `{"instances": [...]}` envelope, then every instance against the schema."""
    if not isinstance(payload, dict):
        raise Problem(
            422,
            "invalid-request",
            "Invalid request",
            'The body must be a JSON object of the form {"instances": [...]}.',
        )
    if len(payload) != 1 or "instances" not in payload:
        unknown = payload.keys() - {"instances"}
        if unknown:
            listed = _first_sorted(unknown, MAX_LISTED_ERRORS, len(unknown))
            shown = ", ".join(_truncate(key) for key in listed)
            more = (
                f" and {len(unknown) - MAX_LISTED_ERRORS} more"
                if len(unknown) > MAX_LISTED_ERRORS
                else ""
            )
            too_long = (
                f" Field names are at most {max_key_chars} characters."
                if any(len(key) > max_key_chars for key in unknown)
                else ""
            )
            raise Problem(
                422,
                "invalid-request",
                "Invalid request",
                f"Unknown top-level field(s): {shown}{more}.{too_long}",
            )
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise Problem(
            422,
            "invalid-request",
            "Invalid request",
            "'instances' is required and must be a list of objects.",
        )
    if not instances:
        raise Problem(422, "invalid-request", "Invalid request", "'instances' must not be empty.")
    if len(instances) > max_instances:
        raise Problem(
            413,
            "too-many-instances",
            "Too many instances",
            f"{len(instances)} instances sent; the limit is {max_instances} per request.",
            limit=max_instances,
        )
    return validate_instances(
        instances, max_string_chars=max_string_chars, max_key_chars=max_key_chars
    )


def validate_instances(
    instances: list,
    *,
    max_string_chars: int = DEFAULT_MAX_STRING_CHARS,
    max_key_chars: int = DEFAULT_MAX_KEY_CHARS,
) -> RawBatch:
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
            unknown = record.keys() - FIELD_NAMES
            room = max(2 * MAX_LISTED_ERRORS - len(errors), 0)
            for name in _first_sorted(unknown, room, len(unknown)):
                fail(index, *_field_label(name, max_key_chars))
            # The rest are counted, not listed: the error list is already full.
            error_count += max(len(unknown) - room, 0)
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
                fail(
                    index,
                    field.name,
                    f"must be between {field.minimum:g} and {field.maximum:g}, got {shown}",
                )
                continue
            elif field.integer and value != int(value):
                fail(index, field.name, f"must be a whole number, got {value:g}")
                continue
            columns[field.name].append(float(value))
        for category in CATEGORICAL_FIELDS:
            value = record[category.name]
            if value is not None and value not in category.categories:
                if type(value) is str and len(value) > max_string_chars:
                    fail(
                        index,
                        category.name,
                        f"must be at most {max_string_chars} characters, got {_echo(value)}",
                    )
                else:
                    fail(
                        index,
                        category.name,
                        f"must be one of {', '.join(category.categories)} or null, got {_echo(value)}",
                    )
                continue
            columns[category.name].append(value)

    if error_count:
        raise invalid_instances(errors, error_count)
    return RawBatch(columns=columns, size=len(instances))
