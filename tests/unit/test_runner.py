"""The benchmark runner's own arithmetic: ladders, measurement windows, step summaries, cache counts."""

from __future__ import annotations

import pytest

from benchmarks.resources import CpuSeries, parse_quantity
from benchmarks.runner import (
    BenchConfig,
    cache_summary,
    ladder_targets,
    locust_seed,
    measurement_window,
    metrics_cache_counts,
    parse_config,
    percentile,
    server_timing_cache_counts,
    server_timing_medians,
    stage_breakdown,
    summarise_step,
)


class FixedCpuSampler(CpuSeries):
    """A sampler with a pre-recorded CPU series: 0.5 CPU-seconds per wall second."""

    def __init__(self):
        super().__init__()
        self.times = [100.0 + i for i in range(20)]
        self.totals = [0.5 * i for i in range(20)]


def config(**overrides) -> BenchConfig:
    base = parse_config(["--archs", "monolith", "--slo-ms", "50"])
    for key, value in overrides.items():
        setattr(base, key, value)
    return base


def samples(rate: float, seconds: float, latency_ms: float, status: int = 200, cpu_seconds: float = 1.0) -> dict:
    start = 100.0
    count = int(rate * seconds)
    return {
        "started_at": start, "stopped_at": start + seconds + 0.2, "cpu_seconds": cpu_seconds,
        "requests": [(start + i / rate, latency_ms, status) for i in range(count)], "server_timings": [],
    }


def test_ladder_is_sorted_rounded_and_scaled_to_the_probe():
    assert ladder_targets(1000, (0.3, 0.45, 0.6)) == [300.0, 450.0, 600.0]
    assert ladder_targets(187, (0.5, 0.9)) == [94.0, 170.0]
    assert ladder_targets(0.1, (0.5,)) == [1.0]


def test_window_drops_the_first_period_of_phase_in():
    document = samples(rate=10, seconds=5, latency_ms=2)
    window = measurement_window(document, user_rps=2.0)
    assert window[0][0] >= 100.5
    assert len(window) == len(document["requests"]) - 5


def test_summary_of_a_healthy_step():
    level, statuses = summarise_step(samples(200, 5, 3.0, cpu_seconds=1.0), 200, 10, FixedCpuSampler(), config(),
                                     repetition=1, step=2, csv_prefix="monolith/r1-s2")
    assert level["achieved_rps"] == pytest.approx(200, rel=0.01)
    assert level["p50_ms"] == level["p99_ms"] == 3.0
    assert level["within_slo"] is True and level["failures"] == 0 and statuses == {"200": level["requests"]}
    # 0.5 CPU-seconds per second of window, spread over ~200 requests a second.
    assert level["cpu_seconds_per_1k"] == pytest.approx(2.5, rel=0.05)
    assert level["sut_cpu_percent"] == pytest.approx(50, abs=2)
    assert level["loadgen_cpu_percent"] == pytest.approx(100 * 1.0 / 5.2, abs=0.5)
    assert level["loadgen_bound"] is False


def test_summary_flags_a_hot_load_generator():
    level, _ = summarise_step(samples(200, 5, 3.0, cpu_seconds=4.9), 200, 10, FixedCpuSampler(), config(), 0, 0, "x")
    assert level["loadgen_cpu_percent"] > 85
    assert level["loadgen_bound"] is True


def test_summary_marks_errors_and_slow_steps_beyond_capacity():
    errors, statuses = summarise_step(samples(100, 5, 3.0, status=503), 100, 10, FixedCpuSampler(), config(), 0, 0, "x")
    assert errors["error_rate"] == 1.0 and errors["within_slo"] is False and "503" in statuses
    assert errors["p99_ms"] is None
    slow, _ = summarise_step(samples(100, 5, 80.0), 100, 10, FixedCpuSampler(), config(), 0, 0, "x")
    assert slow["p99_ms"] == 80.0 and slow["within_slo"] is False
    short, _ = summarise_step(samples(50, 5, 3.0), 100, 10, FixedCpuSampler(), config(), 0, 0, "x")
    assert short["achieved_rps"] < 95 and short["within_slo"] is False


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_stage_breakdown_separates_compute_hops_and_http():
    headers = [("validate;dur=0.1, pre;dur=0.2, hop-pre;dur=0.5, infer;dur=0.3, hop-infer;dur=0.4, post;dur=0.1, "
                "hop-post;dur=0.6, total;dur=2.5")] * 3
    stages = stage_breakdown(headers)
    assert stages == {"pre": 0.2, "infer": 0.3, "post": 0.1, "hop_pre": 0.5, "hop_infer": 0.4, "hop_post": 0.6,
                      "http_other": pytest.approx(0.4)}


def test_config_rejects_unknown_architectures_and_reads_cpu_ranges(monkeypatch):
    with pytest.raises(SystemExit):
        parse_config(["--archs", "monolith mainframe"])
    monkeypatch.setenv("SUT_CPUS", "0-1")
    assert parse_config([]).sut_cpus == [0, 1]


@pytest.mark.parametrize("text, value", [("250m", 0.25), ("1", 1.0), ("123456789n", 0.123456789), ("1500u", 0.0015),
                                         ("512Mi", 512 * 2**20), ("1Gi", 2**30), ("2k", 2000.0), ("1e3", 1000.0),
                                         ("128974848", 128974848.0), ("100M", 1e8)])
def test_kubernetes_quantities(text, value):
    assert parse_quantity(text) == pytest.approx(value)


def test_kind_endpoints_and_namespaces_are_pairs():
    parsed = parse_config(["--target", "kind", "--endpoint", "monolith=http://127.0.0.1:30080",
                           "--namespace", "monolith=servinglab-monolith"])
    assert parsed.target == "kind"
    assert parsed.endpoints == {"monolith": "http://127.0.0.1:30080"}
    assert parsed.namespaces == {"monolith": "servinglab-monolith"}
    with pytest.raises(SystemExit):
        parse_config(["--endpoint", "monolith"])


def test_server_timing_entries_without_a_duration_are_not_stages():
    headers = ['cache;desc="miss 0/1";dur=0.02, pre;dur=0.2, infer;dur=0.3, post;dur=0.1, total;dur=1.0',
               'cache;desc="hit 1/1";dur=0.01, total;dur=0.3', "cache;desc=hit, total;dur=0.2"]
    medians = server_timing_medians(headers)
    assert medians["cache"] == pytest.approx(0.015) and medians["pre"] == 0.2
    assert server_timing_cache_counts(headers) == {"hits": 2, "misses": 1}
    assert server_timing_cache_counts(["pre;dur=0.2, total;dur=1.0"]) == {"hits": 0, "misses": 0}


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
    assert metrics_cache_counts("\n".join(lines)) == {"hits": 30.0, "misses": 10.0}
    assert cache_summary(30, 10, "metrics") == {"hits": 30, "misses": 10, "hit_rate": 0.75, "source": "metrics"}
    assert cache_summary(0, 0, "metrics") is None


def test_every_locust_run_of_a_repetition_gets_its_own_seed():
    seeds = [locust_seed(repetition, step) for repetition in range(3) for step in (None, *range(20))]
    assert len(set(seeds)) == len(seeds)
