"""The measuring kit on recorded inputs: windows, percentiles and how sure they are, Server-Timing,
/metrics, quantities."""

from __future__ import annotations

import random
from math import comb

import pytest

from benchmarks.measure import loadgen, metrics, servertiming
from benchmarks.measure.machine import parse_cpus
from benchmarks.measure.resources import parse_quantity
from benchmarks.measure.stats import (
    binomial_cdf,
    bootstrap_within_probability,
    percentile,
    samples_for_quantile,
)


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


def test_samples_for_a_p99_follow_from_the_rank_tolerance():
    # z^2 q (1 - q) / tolerance^2 with z = 1.96: half a percentile needs ~15 samples beyond it.
    assert samples_for_quantile(0.99, 0.005) == 1522
    assert samples_for_quantile(0.99, 0.01) == 381
    assert samples_for_quantile(0.5, 0.05) == 385
    with pytest.raises(ValueError):
        samples_for_quantile(1.0, 0.01)


def test_binomial_cdf_matches_the_sum_of_its_terms():
    for n, p, k in [(10, 0.3, 2), (50, 0.01, 0), (400, 0.02, 4), (7, 0.5, 7)]:
        exact = sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
        assert binomial_cdf(k, n, p) == pytest.approx(exact, rel=1e-9)
    assert binomial_cdf(-1, 5, 0.5) == 0.0 and binomial_cdf(3, 5, 0.0) == 1.0


def test_bootstrap_probability_is_what_resampling_finds():
    # 300 requests, 4 slower than a 50 ms SLO: the p99 (the 297th) is within it, but a resample
    # often draws a fifth slow one. Compare with drawing the resamples.
    latencies = sorted([5.0] * 296 + [80.0] * 4)
    exact = bootstrap_within_probability(latencies, 0, 0.99, 50.0, 0.001, prior_slow=0.0)
    draw = random.Random(7)
    hits = 0
    for _ in range(4000):
        resample = sorted(draw.choice(latencies) for _ in latencies)
        hits += percentile(resample, 0.99) <= 50.0
    assert exact == pytest.approx(hits / 4000, abs=0.03)
    assert 0.4 < exact < 0.9  # neither sure nor hopeless: a step worth measuring again
    # Half a pseudo-request of prior tail: slightly less sure than the plain bootstrap.
    assert bootstrap_within_probability(latencies, 0, 0.99, 50.0, 0.001) < exact
    assert bootstrap_within_probability([80.0] * 300, 0, 0.99, 50.0, 0.001) == 0.0
    assert bootstrap_within_probability([], 3, 0.99, 50.0, 0.001) == 0.0
    # Errors count against their own budget: 3 failures in 303 requests is over 0.1%.
    assert bootstrap_within_probability([5.0] * 300, 3, 0.99, 50.0, 0.001) < 0.5


def test_a_step_too_short_to_have_met_its_tail_is_not_sure_of_it():
    # 40 fast requests: the plain bootstrap is certain, but the p99 of 40 is their maximum.
    assert bootstrap_within_probability([5.0] * 40, 0, 0.99, 50.0, 0.001, prior_slow=0.0) == 1.0
    short = bootstrap_within_probability([5.0] * 40, 0, 0.99, 50.0, 0.001)
    long = bootstrap_within_probability([5.0] * 3000, 0, 0.99, 50.0, 0.001)
    assert 0.4 < short < 0.8 and long > 0.999
