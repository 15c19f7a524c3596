"""The `Server-Timing` header every response carries, read back (the one parser of the lab).

The servers write ``validate;dur=0.012, pre;dur=0.1, cache;desc="hit 1/1";dur=0.01, total;dur=1.2``
(servinglab/serving/api.py): one entry per stage or hop, milliseconds in ``dur``, and a cache
outcome in ``desc``. An entry without ``dur`` is not a duration.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

CACHE_OUTCOMES = {"hit": "hits", "miss": "misses"}
STAGES = ("pre", "infer", "post")
HOP_PREFIX = "hop-"


def parse(header: str) -> list[tuple[str, dict[str, str]]]:
    """`pre;dur=0.1, cache;desc="hit"` -> [("pre", {"dur": "0.1"}), ("cache", {"desc": "hit"})]."""
    entries = []
    for part in header.split(","):
        name, *params = (piece.strip() for piece in part.split(";"))
        if not name:
            continue
        fields = {}
        for param in params:
            key, _, value = param.partition("=")
            fields[key.strip().lower()] = value.strip().strip('"')
        entries.append((name, fields))
    return entries


def _duration(fields: dict[str, str]) -> float | None:
    try:
        return float(fields["dur"])
    except (KeyError, ValueError):
        return None  # an entry without a duration (e.g. a cache outcome) is not a stage


def durations(header: str) -> dict[str, float]:
    """Milliseconds per entry of one header, in its order; entries without ``dur`` left out."""
    found = {}
    for name, fields in parse(header):
        value = _duration(fields)
        if value is not None:
            found[name] = value
    return found


def medians(headers: Iterable[str]) -> dict[str, float]:
    """Median milliseconds per metric over `Server-Timing` header values ("pre;dur=0.1, ...")."""
    series: dict[str, list[float]] = {}
    for header in headers:
        for name, fields in parse(header):
            value = _duration(fields)
            if value is not None:
                series.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in series.items() if values}


def cache_outcome(text: str) -> str | None:
    """ "hits" or "misses" when the text (a name, labels, a desc) says hit or miss, else None."""
    lowered = text.lower()
    for outcome, counter in CACHE_OUTCOMES.items():
        if outcome in lowered:
            return counter
    return None


def cache_counts(headers: Iterable[str]) -> dict[str, int]:
    """Hits and misses from `cache...` entries (outcome in the name or desc), one per response."""
    counts = {"hits": 0, "misses": 0}
    for header in headers:
        for name, fields in parse(header):
            if name.lower().startswith("cache"):
                outcome = cache_outcome(name + " " + fields.get("desc", ""))
                if outcome:
                    counts[outcome] += 1
                    break  # one outcome per request
    return counts


def stage_breakdown(headers: Iterable[str]) -> dict[str, float]:
    """Median milliseconds per metric, folded into the report's categories (results `stages_ms`).

    ``pre``, ``infer``, ``post`` (compute), ``hop_<stage>`` (each hop's cost on top of the stage's
    compute) and ``http_other``: what `total` leaves, the HTTP layer both architectures share.
    """
    found = medians(headers)
    stages = {}
    for name in STAGES:
        if name in found:
            stages[name] = round(found[name], 4)
    for name, value in found.items():
        if name.startswith(HOP_PREFIX):
            stages["hop_" + name[len(HOP_PREFIX) :]] = round(value, 4)
    accounted = sum(stages.values())
    # Parsing, validation, Flask and response encoding: the HTTP layer both architectures share.
    stages["http_other"] = round(max(found.get("total", accounted) - accounted, 0.0), 4)
    return stages
