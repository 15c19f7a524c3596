"""How much an event hurt: failures *and* latency against the SLO, from recorded requests.

Pure functions over `(start epoch s, latency ms, status)` rows, as the Locust recorder writes them
(status 0 = no answer). Used by `make chaos` (benchmarks/chaos/) and tested on made-up timelines.

Definitions (the report prints `definitions()`):
- **per-second p99**: second *s* holds the requests that *started* in it; its p99 is taken over the
  answered (2xx) requests of a trailing window of `window_s` seconds ending with *s*
  (`rolling_window_s`: at least `MIN_WINDOW_S` seconds and at least `MIN_WINDOW_SAMPLES` requests
  at the load's rate: 3 s = 120 requests at 40 req/s). One second at 40 req/s holds 40 samples,
  whose "p99" is just their maximum: one slow request would flag the whole second.
- **a second above the SLO**: its rolling p99 exceeds the SLO *and* it had slow requests of its own
  (answered slower than the SLO). The second condition keeps a slowdown from being counted again
  for the window's length after it ended; a spike of fewer slow requests than 1% of the window
  never counts.
- **a bad second**: above the SLO, or with any failed request.
- **back within the SLO**: seconds from the event to the end of its last bad second, provided at
  least `SUSTAINED_S` consecutive good seconds follow before the next event (else `None`: not
  back within the SLO before the next event); 0 when the event had no bad second.
- **last failure**: seconds from the event to its last failed request (0 when none failed): the
  time back to *answering*, which says nothing about latency.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.measure.stats import percentile  # the bench's definition, nearest rank

MIN_WINDOW_S = 3
MIN_WINDOW_SAMPLES = 100
SUSTAINED_S = 3
P99 = 0.99

Request = tuple[float, float, int]  # (start epoch s, latency ms, status; 0 = no answer)


@dataclass(frozen=True)
class EventSpan:
    """One event's share of a run: from its start to the next event's start (epoch seconds)."""

    name: str
    start: float
    end: float


def is_success(status: int) -> bool:
    return 200 <= status < 300


def rolling_window_s(rate: float) -> int:
    """Seconds of trailing window the per-second p99 is taken over, at `rate` requests per second."""
    if rate <= 0:
        return MIN_WINDOW_S
    return max(MIN_WINDOW_S, math.ceil(MIN_WINDOW_SAMPLES / rate))


def timeline(
    requests: Sequence[Request], origin: float, end: float, slo_ms: float, window_s: int
) -> list[dict]:
    """Per whole second since `origin`: successes, failures by status, slow requests, p99s, verdicts.

    `p99_ms` is the rolling p99 (trailing `window_s` seconds), `p99_1s_ms` that second's alone.
    """
    # Whole seconds only: a last, partial second would look like a drop in throughput.
    seconds = max(1, math.floor(end - origin))
    latencies: list[list[float]] = [[] for _ in range(seconds)]
    errors: list[Counter] = [Counter() for _ in range(seconds)]
    for started, latency_ms, status in requests:
        index = math.floor(started - origin)
        if not 0 <= index < seconds:
            continue
        if is_success(status):
            latencies[index].append(latency_ms)
        else:
            errors[index][str(status)] += 1
    rows = []

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    for index in range(seconds):
        window = sorted(
            x for bucket in latencies[max(0, index - window_s + 1) : index + 1] for x in bucket
        )
        p99 = percentile(window, P99)
        slow = sum(1 for latency in latencies[index] if latency > slo_ms)
        above = p99 is not None and p99 > slo_ms and slow > 0
        rows.append(
            {
                "second": index,
                "ok": len(latencies[index]),
                "errors": dict(errors[index]),
                "slow": slow,
                "p99_ms": rounded(p99),
                "p99_1s_ms": rounded(percentile(sorted(latencies[index]), P99)),
                "above_slo": above,
                "good": not above and not errors[index],
            }
        )
    return rows


def event_damage(
    requests: Sequence[Request],
    rows: Sequence[dict],
    span: EventSpan,
    origin: float,
    slo_ms: float,
    sustained_s: int = SUSTAINED_S,
) -> dict:
    """The damage of one event: failures, time above the SLO, peak p99, slow requests, recovery."""
    mine = [r for r in requests if span.start <= r[0] < span.end]
    failed = sorted(r[0] for r in mine if not is_success(r[2]))
    by_status = Counter(str(r[2]) for r in mine if not is_success(r[2]))
    first = max(0, math.floor(span.start - origin))
    last = min(len(rows), math.floor(span.end - origin))  # exclusive
    seconds = rows[first:last]
    bad = [row["second"] for row in seconds if not row["good"]]
    if failed and not seconds:
        back: float | None = None  # failures outside the recorded seconds: recovery unknown
    elif not bad:
        back = 0.0
    elif last - (bad[-1] + 1) >= sustained_s:
        back = round(max(0.0, origin + bad[-1] + 1 - span.start), 2)
    else:
        back = None
    p99s = [row["p99_ms"] for row in seconds if row["p99_ms"] is not None]
    return {
        "event": span.name,
        "failed": len(failed),
        "failed_by_status": dict(by_status),
        "last_failure_s": round(failed[-1] - span.start, 2) if failed else 0.0,
        "seconds_above_slo": sum(1 for row in seconds if row["above_slo"]),
        "peak_p99_ms": max(p99s) if p99s else None,
        "slow_requests": sum(1 for r in mine if is_success(r[2]) and r[1] > slo_ms),
        "back_within_slo_s": back,
    }


def damages(
    requests: Sequence[Request],
    spans: Sequence[EventSpan],
    origin: float,
    end: float,
    slo_ms: float,
    window_s: int,
    sustained_s: int = SUSTAINED_S,
) -> tuple[list[dict], list[dict]]:
    """The per-second timeline and every event's damage, in one call."""
    ordered = sorted(requests)
    rows = timeline(ordered, origin, end, slo_ms, window_s)
    return rows, [event_damage(ordered, rows, span, origin, slo_ms, sustained_s) for span in spans]


def spans(events: Sequence[tuple[str, float]], end: float) -> list[EventSpan]:
    """(name, start) pairs in time order -> spans that each end where the next begins."""
    return [
        EventSpan(name, start, events[i + 1][1] if i + 1 < len(events) else end)
        for i, (name, start) in enumerate(events)
    ]


def definitions(slo_ms: float, window_s: int, sustained_s: int = SUSTAINED_S) -> str:
    """The definitions above, in one paragraph, with this run's numbers."""
    return (
        f"SLO: p99 within {slo_ms:g} ms. Per-second p99 = the p99 of answered requests started in a "
        f"trailing {window_s} s window ending with that second (one second at the chaos rate holds too few "
        f"requests for a p99). A second is *above the SLO* when that p99 exceeds the SLO and the second "
        f"had requests slower than it of its own. *Back within the SLO* = from the event to the end of its "
        f"last second that was above the SLO or had a failed request, once {sustained_s} consecutive good "
        f'seconds follow before the next event ("not yet" otherwise; 0 when no second was bad). *Last '
        f"failure* = from the event to its last failed request: back to answering, not to answering in time. "
        f"Requests count for the event after which they started."
    )
