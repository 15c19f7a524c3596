"""Floors and the per-worker counter: the comparisons `make perf` and the bench report print,
and how worker counts from several processes' snapshots merge into one /metrics page."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from benchmarks import analysis
from benchmarks.measure import floors, metrics
from benchmarks.report import floors as report_floors
from benchmarks.reporting import document as doc
from benchmarks.reporting import markdown
from servinglab.serving import metrics as server_metrics

TRANSPORT = {"cpu_us": 600.0, "p50_us": 500.0}


def test_a_hop_is_held_against_the_transport_floor_in_cpu_and_latency():
    rows = floors.hop_comparison(
        TRANSPORT,
        {
            "hop-pre": {"cpu_us": 720.0, "p50_us": 1000.0},
            "hop-infer": {"cpu_us": 900.0, "p50_us": 500.0},
        },
    )
    by_hop = {row["hop"]: row for row in rows}
    assert by_hop["hop-pre"]["cpu_x_floor"] == 1.2
    assert by_hop["hop-pre"]["latency_x_floor"] == 2.0
    assert by_hop["hop-pre"]["met"] is True
    assert by_hop["hop-infer"]["cpu_x_floor"] == 1.5
    assert by_hop["hop-infer"]["met"] is False
    assert by_hop["hop-infer"]["target"] == f"<= {floors.HOP_CPU_TARGET:g}x"


def test_a_hop_with_nothing_measured_has_no_verdict():
    (row,) = floors.hop_comparison(TRANSPORT, {"hop-post": {"cpu_us": None, "p50_us": None}})
    assert row["cpu_x_floor"] is None and row["latency_x_floor"] is None and row["met"] is None


def test_the_monolith_is_held_against_its_own_noop():
    assert floors.noop_comparison(800.0, 1000.0)["met"] is True
    slow = floors.noop_comparison(640.0, 1000.0)
    assert slow["x_noop"] == 0.64 and slow["met"] is False
    assert floors.noop_comparison(None, 1000.0)["met"] is None


def test_a_fast_call_is_timed_repeat_times_in_each_of_five_rounds():
    calls = []
    floors.per_call_us(lambda: calls.append(1), repeat=400, round_s=60.0)
    assert len(calls) == 40 + 5 * 400  # a tenth of repeat to warm up, then five full rounds


def test_a_slow_call_gets_rounds_of_about_round_s_not_repeat_calls():
    calls = []

    def at_least_5_ms():
        calls.append(1)
        deadline = time.perf_counter() + 0.005
        while time.perf_counter() < deadline:
            pass

    per_call = floors.per_call_us(at_least_5_ms, repeat=1000, round_s=0.02)
    # Each call takes >= 5 ms, so a 20 ms round holds at most 4 of them after 100 to warm up.
    assert 100 + 5 <= len(calls) <= 100 + 5 * 4
    assert per_call >= 5000


def test_per_worker_counts_from_every_worker_snapshot_appear_as_their_own_series(
    tmp_path, monkeypatch
):
    # Two gunicorn workers published snapshots; this process (answering the scrape) is a third.
    monkeypatch.setenv("LAB_METRICS_DIR", str(tmp_path))
    for pid, count in (("101", 40.0), ("102", 2.0)):
        (tmp_path / f"{pid}.json").write_text(
            json.dumps({server_metrics.WORKER_REQUESTS.name: {pid: count}})
        )
    monkeypatch.setattr(server_metrics.WORKER_REQUESTS, "values", {("103",): 5.0})
    text = server_metrics.exposition()[0].decode()
    counts = metrics.totals_by_label(text, server_metrics.WORKER_REQUESTS.name, "worker")
    assert counts == {"101": 40.0, "102": 2.0, "103": 5.0}


def test_a_restarted_worker_snapshot_adds_up_with_its_own_earlier_file(tmp_path, monkeypatch):
    """Counters never go backwards: two files naming one worker (never the case for a pid in
    practice, but the merge must sum, not overwrite) give the sum."""
    monkeypatch.setenv("LAB_METRICS_DIR", str(tmp_path))
    monkeypatch.setattr(server_metrics.WORKER_REQUESTS, "values", {})
    for name, count in (("a", 3.0), ("b", 4.0)):
        (tmp_path / f"{name}.json").write_text(
            json.dumps({server_metrics.WORKER_REQUESTS.name: {"7": count}})
        )
    text = server_metrics.exposition()[0].decode()
    assert metrics.totals_by_label(text, server_metrics.WORKER_REQUESTS.name, "worker") == {
        "7": 7.0
    }


@pytest.mark.parametrize("value", [float("nan"), None])
def test_a_ratio_of_nothing_is_none(value):
    assert floors.ratio(value, 10.0) is None
    assert floors.ratio(1.0, 0.0) is None


FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "results_knobs.json"


def with_floors() -> dict:
    """The knobs fixture as a run that measured floors: echo 600 µs, every request 1 call/stage."""
    results = json.loads(FIXTURE.read_text(encoding="utf-8"))
    results["floors"] = {
        "transport": {
            "cpu_us": 600.0,
            "client_cpu_us": 250.0,
            "server_cpu_us": 350.0,
            "p50_us": 500.0,
            "p99_us": 900.0,
            "calls": 2000,
            "seconds": 1.0,
            "calls_per_s": 2000.0,
            "cpus": [0],
            "server_threads": 4,
            "payload_bytes": 128,
        },
        "pipeline": {"profile": "linear", "predict_us": 20.0},
    }
    noop = {
        "requests": 1000,
        "seconds": 1.0,
        "rps": 1000.0,
        "cpu_us": 500.0,
        "p50_ms": 4.0,
        "connections": 8,
    }
    for arch in results["architectures"].values():
        arch["entry"] = [
            {"noop": noop, "workers": {"11": 600.0, "12": 400.0}, "predict_requests": 10_000.0}
        ]
    mono, micro = results["architectures"]["monolith"], results["architectures"]["microservices"]
    # Monolith: 0.5 s of noop + 6 s over 10,000 requests = 600 µs per request.
    mono["processes"] = [{"name": "gunicorn-monolith", "cpu_seconds": 6.5, "peak_rss_mb": 50}]
    # Gateway 2,400 µs per request: (2400 - (600 - 20)) / 3 = 606.7 µs of client work per hop.
    micro["processes"] = [
        {"name": "gunicorn-gateway", "cpu_seconds": 24.5, "peak_rss_mb": 50},
        {"name": "preprocess", "cpu_seconds": 7.0, "peak_rss_mb": 50},
        {"name": "inference", "cpu_seconds": 7.0, "peak_rss_mb": 50},
        {"name": "postprocess", "cpu_seconds": 7.0, "peak_rss_mb": 50},
    ]
    micro["stages_ms"] = {
        "pre": 0.0,
        "infer": 0.0,
        "post": 0.0,
        "hop_pre": 1.0,
        "hop_infer": 1.0,
        "hop_post": 1.0,
        "http_other": 0.4,
    }
    return results


def test_the_report_holds_each_hop_and_the_monolith_against_the_floors():
    results = with_floors()
    analysis.validate_results(results)
    rows = {row["hop"]: row for row in report_floors.hop_rows(results)}
    pre = rows["microservices: hop-pre"]
    assert pre["server_cpu_us"] == 700.0
    assert pre["client_cpu_us"] == pytest.approx(606.7, abs=0.1)
    assert pre["cpu_x_floor"] == pytest.approx((700 + 606.7) / 600, abs=0.01)
    assert pre["latency_x_floor"] == 2.0 and pre["met"] is False
    text = markdown.render(doc.Document("t", report_floors.floor_blocks(results)))
    assert "| monolith: `/v1/predict` vs its `/healthz` | 600 vs 500 per request |" in text
    assert "0.83x the noop's rate | n/a | >= 0.8x: met |" in text
    assert "| monolith | 0 | 2 | 1,000 | 600 (60%), 400 (40%) |" in text


def test_results_without_floors_get_no_floor_section():
    results = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert report_floors.floor_blocks(results) == []
