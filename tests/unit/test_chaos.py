"""The chaos runner's arithmetic: per-second bins and each event's blast radius."""

from __future__ import annotations

from benchmarks.chaos import (
    Event,
    build_blocks,
    event_outcomes,
    per_second,
    timeline_chart,
)


def _requests():
    # (start epoch s, latency ms, status): steady success, a burst of 503s after the crash at
    # t=2, one connection failure at t=4.5, then success again.
    rows = [(100.0 + i * 0.1, 5.0, 200) for i in range(20)]
    rows += [(102.0 + i * 0.1, 1.0, 503) for i in range(15)]
    rows += [(104.5, 2.0, 0), (105.0, 4.0, 200), (106.0, 6.0, 200)]
    return rows


def test_per_second_bins_successes_failures_and_p99():
    rows = per_second(_requests(), 100.0, 107.0)
    assert len(rows) == 7  # whole seconds from 100 to 107
    assert rows[0]["ok"] == 10 and rows[0]["errors"] == {}
    assert rows[2]["errors"] == {"503": 10}
    assert rows[4]["errors"] == {"0": 1}
    assert rows[0]["p99_ms"] == 5.0
    assert sum(row["ok"] for row in rows) == 22


def test_failures_belong_to_the_event_they_follow():
    events = [Event("crash", "kill", 102.0, 102.0), Event("recover", "start", 104.0, 104.6),
              Event("rolling restart", "roll", 105.5, 106.0)]
    outcomes = event_outcomes(_requests(), events, 107.0)
    assert [o["failed"] for o in outcomes] == [15, 1, 0]
    assert outcomes[0]["failed_by_status"] == {"503": 15}
    assert round(outcomes[0]["recovery_s"], 2) == 1.4
    assert outcomes[1]["failed_by_status"] == {"0": 1}
    assert round(outcomes[1]["recovery_s"], 2) == 0.5
    assert outcomes[2]["recovery_s"] == 0.0


def test_report_blocks_and_chart_render_from_a_summary():
    events = [Event("crash", "kill", 102.0, 102.0)]
    result = {"requests": 38, "failed": 16, "events": event_outcomes(_requests(), events, 107.0),
              "timeline": per_second(_requests(), 100.0, 107.0), "versions": {"linear-a": 22}}
    document = {"settings": {"rate": 10, "users": 2, "phase_seconds": 2, "profile": "linear", "sut_cpus": [0],
                             "loadgen_cpus": [1]},
                "versions": {"from": "linear-a", "to": "linear-b"}, "machine": {"cpu_model": "x", "logical_cores": 2},
                "started_at": "2026-11-30T00:00:00+00:00", "architectures": {"microservices": result}}
    text = "\n".join(str(block) for block in build_blocks(document))
    assert "Blast radius" in text and "crash" in text
    figure = timeline_chart(result)
    assert len(figure.axes) == 3
