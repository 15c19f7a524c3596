"""The measuring kit on recorded inputs: windows, percentiles, Server-Timing, /metrics, quantities."""

from __future__ import annotations

import pytest

from benchmarks.measure import loadgen, metrics, servertiming
from benchmarks.measure.machine import parse_cpus
from benchmarks.measure.resources import parse_quantity
from benchmarks.measure.stats import percentile


def samples(
    rate: float, seconds: float, latency_ms: float, status: int = 200, cpu_seconds: float = 1.0
) -> loadgen.Samples:
    start = 100.0
    count = int(rate * seconds)
    return loadgen.Samples(
        started_at=start,
        stopped_at=start + seconds + 0.2,
        cpu_seconds=cpu_seconds,
        requests=[(start + i / rate, latency_ms, status) for i in range(count)],
        server_timings=[],
    )


def test_window_drops_the_first_period_of_phase_in():
    document = samples(rate=10, seconds=5, latency_ms=2)
    window = loadgen.measurement_window(document, user_rps=2.0)
    assert window[0][0] >= 100.5
    assert len(window) == len(document.requests) - 5


def test_samples_are_read_back_from_the_recorders_file(tmp_path):
    path = tmp_path / "step.samples.json"
    path.write_text(
        '{"started_at": 100.0, "stopped_at": 102.0, "cpu_seconds": 0.5,'
        ' "requests": [[100.5, 2.5, 200], [101.0, 3.0, 503]], "server_timings": ["total;dur=1"]}'
    )
    read = loadgen.Samples.read(path)
    assert read.requests == [(100.5, 2.5, 200), (101.0, 3.0, 503)] and read.versions == []
    assert read.closed_loop_rps == 1.0 and read.server_timings == ["total;dur=1"]


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_cpu_lists_read_like_taskset():
    assert (
        parse_cpus("0") == [0] and parse_cpus("0,2") == [0, 2] and parse_cpus("0-3") == [0, 1, 2, 3]
    )


def test_stage_breakdown_separates_compute_hops_and_http():
    headers = [
        (
            "validate;dur=0.1, pre;dur=0.2, hop-pre;dur=0.5, infer;dur=0.3, hop-infer;dur=0.4, post;dur=0.1, "
            "hop-post;dur=0.6, total;dur=2.5"
        )
    ] * 3
    stages = servertiming.stage_breakdown(headers)
    assert stages == {
        "pre": 0.2,
        "infer": 0.3,
        "post": 0.1,
        "hop_pre": 0.5,
        "hop_infer": 0.4,
        "hop_post": 0.6,
        "http_other": pytest.approx(0.4),
    }


@pytest.mark.parametrize(
    "text, value",
    [
        ("250m", 0.25),
        ("1", 1.0),
        ("123456789n", 0.123456789),
        ("1500u", 0.0015),
        ("512Mi", 512 * 2**20),
        ("1Gi", 2**30),
        ("2k", 2000.0),
        ("1e3", 1000.0),
        ("128974848", 128974848.0),
        ("100M", 1e8),
    ],
)
def test_kubernetes_quantities(text, value):
    assert parse_quantity(text) == pytest.approx(value)


def test_server_timing_entries_without_a_duration_are_not_stages():
    headers = [
        'cache;desc="miss 0/1";dur=0.02, pre;dur=0.2, infer;dur=0.3, post;dur=0.1, total;dur=1.0',
        'cache;desc="hit 1/1";dur=0.01, total;dur=0.3',
        "cache;desc=hit, total;dur=0.2",
    ]
    medians = servertiming.medians(headers)
    assert medians["cache"] == pytest.approx(0.015) and medians["pre"] == 0.2
    assert servertiming.cache_counts(headers) == {"hits": 2, "misses": 1}
    assert servertiming.cache_counts(["pre;dur=0.2, total;dur=1.0"]) == {"hits": 0, "misses": 0}


def test_server_timing_keeps_the_order_and_the_descriptions_of_one_header():
    header = (
        'validate;dur=0.012, cache;desc="hit 1/1";dur=0.01, pre;dur=0.1, note;desc=x, total;dur=1.2'
    )
    assert [name for name, _ in servertiming.parse(header)] == [
        "validate",
        "cache",
        "pre",
        "note",
        "total",
    ]
    assert servertiming.parse(header)[1] == ("cache", {"desc": "hit 1/1", "dur": "0.01"})
    assert servertiming.durations(header) == {
        "validate": 0.012,
        "cache": 0.01,
        "pre": 0.1,
        "total": 1.2,
    }
    assert list(servertiming.durations(header)) == ["validate", "cache", "pre", "total"]


def test_cache_counters_are_read_from_prometheus_text_whatever_their_labels():
    lines = [
        "# HELP lab_cache_lookups_total Prediction cache lookups",
        "# TYPE lab_cache_lookups_total counter",
        'lab_cache_lookups_total{placement="gateway",result="hit"} 30',
        'lab_cache_lookups_total{placement="gateway",result="miss"} 10',
        'lab_cache_lookups_total{placement="gateway",result="skipped"} 5',
        "# TYPE lab_cache_errors_total counter",
        'lab_cache_errors_total{placement="gateway",operation="get"} 2',
        "# TYPE lab_cache_hit_seconds histogram",  # not a counter: ignored
        'lab_cache_hit_seconds_count{result="hit"} 99',
        "# TYPE lab_http_requests_total counter",
        'lab_http_requests_total{route="/v1/predict",method="POST",status="200"} 45',
    ]
    assert metrics.cache_counts("\n".join(lines)) == {"hits": 30.0, "misses": 10.0}


def test_cache_counters_named_by_outcome_and_untyped_samples():
    lines = [
        "# TYPE lab_cache_hits_total counter",
        "lab_cache_hits_total 7",
        "# TYPE lab_cache_misses counter",
        "lab_cache_misses 3",
        "lab_cache_hits_untyped 100",
    ]  # no TYPE line: not a counter, ignored
    assert metrics.cache_counts("\n".join(lines) + "\n") == {"hits": 7.0, "misses": 3.0}


def test_text_that_is_not_prometheus_is_refused():
    with pytest.raises(ValueError):
        metrics.cache_counts(
            "# TYPE lab_cache_hits_total counter\nlab_cache_hits_total{result=hit 7\n"
        )
