"""The chaos report's arithmetic on recorded timelines: failures, time above the SLO, recovery."""

from __future__ import annotations

from benchmarks import slo_damage
from benchmarks.chaos import (
    ChaosConfig,
    Event,
    build_blocks,
    cache_lookups,
    cache_phases,
    damage_table,
    summarise,
    timeline_chart,
)
from benchmarks.measure.loadgen import Samples
from benchmarks.slo_damage import EventSpan, damages, rolling_window_s, timeline

SLO = 50.0
ORIGIN = 1000.0
RATE = 40


def steady(
    start_s: float, end_s: float, latency_ms: float = 5.0, status: int = 200, rate: int = RATE
):
    """`rate` requests a second, evenly spaced, from `start_s` to `end_s` after ORIGIN."""
    count = round((end_s - start_s) * rate)
    return [(ORIGIN + start_s + i / rate, latency_ms, status) for i in range(count)]


def test_the_rolling_window_holds_enough_requests_for_a_p99():
    assert rolling_window_s(40) == 3  # 120 requests
    assert rolling_window_s(20) == 5  # 100 requests
    assert rolling_window_s(1000) == slo_damage.MIN_WINDOW_S


def test_an_event_with_no_failures_but_20_s_above_the_slo_is_reported_as_such():
    # A rollout at t=10: every answer takes 120 ms for 20 s, nothing fails, then back to 5 ms.
    requests = steady(0, 10) + steady(10, 30, latency_ms=120.0) + steady(30, 45)
    rows, [before, rollout] = damages(
        requests,
        [
            EventSpan("warm", ORIGIN, ORIGIN + 10),
            EventSpan("model rollout", ORIGIN + 10, ORIGIN + 45),
        ],
        ORIGIN,
        ORIGIN + 45,
        SLO,
        rolling_window_s(RATE),
    )
    assert rollout["failed"] == 0 and rollout["last_failure_s"] == 0.0
    assert rollout["seconds_above_slo"] == 20
    assert rollout["slow_requests"] == 20 * RATE
    assert rollout["peak_p99_ms"] == 120.0
    assert rollout["back_within_slo_s"] == 20.0
    assert before["seconds_above_slo"] == 0 and before["back_within_slo_s"] == 0.0
    # The window's memory of the slowdown (p99 still high for 2 s) is not counted again.
    assert rows[30]["p99_ms"] == 120.0 and not rows[30]["above_slo"] and rows[30]["good"]


def test_a_brief_spike_under_the_window_is_not_reported_as_time_above_the_slo():
    # One slow request (a GC pause, say) among 40 a second: a per-second "p99" of 40 samples is
    # their maximum and would flag the second; the rolling window's p99 does not.
    requests = steady(0, 20)
    requests[400] = (requests[400][0], 400.0, 200)
    rows, [event] = damages(
        requests,
        [EventSpan("rolling restart", ORIGIN + 5, ORIGIN + 20)],
        ORIGIN,
        ORIGIN + 20,
        SLO,
        rolling_window_s(RATE),
    )
    assert rows[10]["p99_1s_ms"] == 400.0  # the naive per-second figure
    assert rows[10]["p99_ms"] == 5.0
    assert event["seconds_above_slo"] == 0
    assert event["back_within_slo_s"] == 0.0
    assert event["slow_requests"] == 1  # still counted as a slow request, not as SLO time
    assert event["peak_p99_ms"] == 5.0


def test_a_crash_is_not_back_within_the_slo_before_its_recovery_event():
    # Crash at t=5: 503s until the recovery event at t=10, which takes 1 s of slow answers.
    requests = (
        steady(0, 5)
        + steady(5, 10, latency_ms=1.0, status=503)
        + steady(10, 11, latency_ms=90.0)
        + steady(11, 20)
    )
    _, [crash, recover] = damages(
        requests,
        slo_damage.spans([("crash", ORIGIN + 5), ("recover", ORIGIN + 10)], ORIGIN + 20),
        ORIGIN,
        ORIGIN + 20,
        SLO,
        rolling_window_s(RATE),
    )
    assert crash["failed"] == 5 * RATE and crash["failed_by_status"] == {"503": 5 * RATE}
    assert crash["back_within_slo_s"] is None  # still failing when the next event began
    assert 4.9 < crash["last_failure_s"] < 5.0  # its last 503 started just before the recovery
    assert recover["failed"] == 0
    assert recover["seconds_above_slo"] == 1 and recover["back_within_slo_s"] == 1.0


def test_damage_that_lasts_to_the_end_of_the_window_is_not_recovered():
    requests = steady(0, 10) + steady(10, 19, latency_ms=80.0) + steady(19, 20)
    _, [event] = damages(
        requests, [EventSpan("overload", ORIGIN + 10, ORIGIN + 20)], ORIGIN, ORIGIN + 20, SLO, 3
    )
    assert event["seconds_above_slo"] == 9
    assert (
        event["back_within_slo_s"] is None
    )  # one good second is not the 3 the definition asks for


def test_timeline_bins_requests_by_the_second_they_started_in():
    requests = [*steady(0, 2), (ORIGIN + 2.5, 2.0, 0), (ORIGIN + 2.6, 3.0, 504)]
    rows = timeline(requests, ORIGIN, ORIGIN + 3.9, SLO, 3)
    assert len(rows) == 3  # whole seconds only
    assert [row["ok"] for row in rows] == [40, 40, 0]
    assert rows[2]["errors"] == {"0": 1, "504": 1} and not rows[2]["good"]
    assert rows[2]["p99_ms"] == 5.0  # the window still holds the answers of seconds 0 and 1


def test_cache_lookups_are_read_from_prometheus_text():
    text = "\n".join(
        [
            "# TYPE lab_cache_lookups_total counter",
            'lab_cache_lookups_total{placement="gateway",result="hit"} 30.0',
            'lab_cache_lookups_total{placement="gateway",result="miss"} 9.0',
            'lab_cache_lookups_total{placement="gateway",result="skipped"} 1.0',
            'lab_requests_total{route="/v1/predict",status="200"} 40.0',
        ]
    )
    assert cache_lookups(text) == {"hit": 30.0, "miss": 9.0, "skipped": 1.0}


def _config() -> ChaosConfig:
    return ChaosConfig(["monolith"], RATE, 8, 10, "linear", [0], [1], None, None, slo_ms=SLO)


def test_summary_report_and_chart_from_recorded_samples():
    requests = steady(0, 10) + steady(10, 30, latency_ms=120.0) + steady(30, 45)
    samples = Samples(
        started_at=ORIGIN,
        stopped_at=ORIGIN + 45,
        requests=requests,
        versions=["v1"] * len(requests),
    )
    burst = steady(20, 22, latency_ms=1.0, status=503, rate=200)
    events = [
        Event("model rollout", "roll", ORIGIN + 10, ORIGIN + 12),
        Event(
            "overload",
            "burst",
            ORIGIN + 20,
            ORIGIN + 22,
            {
                "capacity_rps": 100.0,
                "offered_rps": 300.0,
                "seconds": 2.0,
                "sent_rps": 200.0,
                "unsent": 0,
                "burst_requests": 400,
                "burst_ok": 0,
                "burst_shed": 400,
            },
        ),
    ]
    result = summarise(samples, events, ORIGIN, _config(), burst)
    rollout, overload = result["events"]
    assert (
        rollout["failed"] == 0
        and rollout["seconds_above_slo"] == 10
        and rollout["back_within_slo_s"] is None
    )
    assert overload["failed_by_status"] == {"503": 400} and overload["back_within_slo_s"] == 10.0
    assert overload["offered_rps"] == 300.0
    state_rows = [
        dict(
            row,
            cache_hit_rate=0.8 if row["second"] < 10 or row["second"] >= 20 else 0.0,
            cpu_percent=20.0,
        )
        for row in result["timeline"]
    ]
    state = {
        "requests": 1,
        "failed": 0,
        "cache_rate": 0.9,
        "timeline": state_rows,
        "events": [
            {**rollout, "event": "cache loss", "at_s": 10.0},
            {**overload, "event": "cache back", "at_s": 20.0},
        ],
    }
    phases = cache_phases(state)
    assert phases["before"]["hit_rate"] == 0.8 and phases["gone"]["hit_rate"] == 0.0
    document = {
        "settings": {
            "rate": RATE,
            "users": 8,
            "phase_seconds": 10,
            "profile": "linear",
            "sut_cpus": [0],
            "loadgen_cpus": [1],
            "slo_ms": SLO,
            "window_s": 3,
            "sustained_s": 3,
        },
        "versions": {"from": "v1", "to": "v2"},
        "machine": {"cpu_model": "x", "logical_cores": 2},
        "started_at": "2026-11-30T00:00:00+00:00",
        "architectures": {"monolith": {**result, "capacity_rps": 100.0, "state": state}},
    }
    table = damage_table(document)
    assert [row[1] for row in table.rows] == [
        "model rollout",
        "overload",
        "cache loss",
        "cache back",
    ]
    assert table.rows[0][4] == "10" and table.rows[0][8] == "not yet"
    text = "\n".join(str(block) for block in build_blocks(document))
    assert "trailing 3 s window" in text and "3 consecutive good seconds" in text
    assert "What this says about state" in text and "Overload" in text
    assert (
        len(timeline_chart({**result, "slo_ms": SLO}).axes) == 3
    )  # throughput, errors, p99 (no CPU sampled)
    assert len(timeline_chart({**state, "slo_ms": SLO}).axes) == 5  # and CPU, and the hit rate
