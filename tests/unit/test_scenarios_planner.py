"""Scenario 1's planner on recorded inputs: profiles, cost arithmetic, replica choice, the trace."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.scenarios import base, planner
from benchmarks.scenarios.run import DEFAULT_TRACE

PRICES = {"vcpu_hour_usd": 0.02, "gib_hour_usd": 0.004}

# A bench results.json cut down to what the planner reads (figures chosen to compute by hand):
# the monolith at 2 ms of CPU per request met the SLO up to 200 req/s on 1 vCPU (40% busy);
# microservices at 6 ms up to 50 req/s (30% busy), their CPU split 4:6:1:1 between roles.
RESULTS = {
    "run": {"cpu_budget": {"sut_vcpus": 1}},
    "architectures": {
        "monolith": {
            "capacity_rps": 200.0,
            "cpu_seconds_per_1k": 2.0,
            "processes": [
                {"name": "gunicorn-monolith", "cpu_seconds": 0.0, "peak_rss_mb": 30.0},
                {"name": "gunicorn-monolith/worker-1", "cpu_seconds": 5.0, "peak_rss_mb": 200.0},
                {"name": "gunicorn-monolith/worker-2", "cpu_seconds": 5.0, "peak_rss_mb": 200.0},
            ],
        },
        "microservices": {
            "capacity_rps": 50.0,
            "cpu_seconds_per_1k": 6.0,
            "processes": [
                {"name": "gunicorn-gateway", "cpu_seconds": 0.0, "peak_rss_mb": 30.0},
                {"name": "gunicorn-gateway/worker-1", "cpu_seconds": 2.0, "peak_rss_mb": 200.0},
                {"name": "gunicorn-gateway/worker-2", "cpu_seconds": 2.0, "peak_rss_mb": 200.0},
                {"name": "inference-0", "cpu_seconds": 3.0, "peak_rss_mb": 190.0},
                {"name": "inference-1", "cpu_seconds": 3.0, "peak_rss_mb": 190.0},
                {"name": "preprocess", "cpu_seconds": 1.0, "peak_rss_mb": 180.0},
                {"name": "postprocess", "cpu_seconds": 1.0, "peak_rss_mb": 180.0},
            ],
        },
    },
}


@pytest.fixture
def profiles() -> dict[str, planner.ArchitectureProfile]:
    return planner.profiles_from_results(RESULTS)


def test_profiles_split_cpu_by_role_and_memory_per_replica(profiles):
    mono, micro = profiles["monolith"], profiles["microservices"]
    assert mono.utilisation == pytest.approx(0.4)
    assert micro.utilisation == pytest.approx(0.3)
    (whole,) = mono.roles
    assert (whole.name, whole.cpu_seconds_per_request, whole.memory_mib) == pytest.approx(
        ("monolith", 0.002, 430.0)
    )
    roles = {role.name: role for role in micro.roles}
    assert set(roles) == {"gateway", "inference", "preprocess", "postprocess"}
    assert roles["gateway"].cpu_seconds_per_request == pytest.approx(0.002)
    assert roles["inference"].cpu_seconds_per_request == pytest.approx(0.003)
    assert roles["preprocess"].cpu_seconds_per_request == pytest.approx(0.0005)
    # Two inference replicas were running: memory is per replica, not their sum.
    assert roles["inference"].memory_mib == pytest.approx(190.0)
    assert mono.memory_source == "rss"


def test_measured_pss_replaces_rss(profiles):
    measured = planner.profiles_from_results(RESULTS, {"monolith": {"monolith": 250.0}})
    assert measured["monolith"].roles[0].memory_mib == 250.0
    assert measured["monolith"].memory_source == "pss"
    assert measured["microservices"].memory_source == "rss"


def test_memory_request_adds_headroom_and_rounds_up_to_64_mib():
    assert planner.memory_request_mib(430.0) == 576  # 430 x 1.25 = 537.5 -> 9 x 64
    assert planner.memory_request_mib(1.0) == 64
    assert planner.memory_request_mib(512.0) == 640


def test_plan_picks_the_cheapest_replica_size(profiles):
    # Per replica: 200 req/s per vCPU at 40%. For 300 req/s: 6 x 0.25 costs 0.0435 USD/h,
    # 3 x 0.5 0.03675, 2 x 1 0.0445, 1 x 2 0.04225 (each replica also 576 MiB at 0.004/GiB-h).
    chosen = planner.plan(profiles["monolith"], 300.0, PRICES)
    (role,) = chosen.roles
    assert (role.replicas, role.cpu_request, role.memory_request_mib) == (3, 0.5, 576)
    assert chosen.cost_per_hour == pytest.approx(3 * (0.5 * 0.02 + 576 / 1024 * 0.004))
    assert role.capacity_rps == pytest.approx(300.0)
    assert chosen.cpu_requested == pytest.approx(1.5)


def test_microservices_scale_only_the_hot_stage(profiles):
    chosen = planner.plan(profiles["microservices"], 150.0, PRICES)
    by_role = {role.role: role for role in chosen.roles}
    inference_capacity = by_role["inference"].capacity_rps
    assert inference_capacity >= 150.0 - 1e-9
    # The cold stages stay at one small replica; the hot one needs more CPU than any of them.
    for cold in ("preprocess", "postprocess"):
        assert by_role[cold].replicas == 1 and by_role[cold].cpu_request == 0.25
    hot = by_role["inference"]
    assert hot.replicas * hot.cpu_request > by_role["preprocess"].cpu_request
    assert chosen.cost_per_hour == pytest.approx(sum(r.cost_per_hour for r in chosen.roles))


def test_every_role_keeps_one_replica_at_zero_load(profiles):
    idle = planner.plan(profiles["microservices"], 0.0, PRICES)
    assert [role.replicas for role in idle.roles] == [1, 1, 1, 1]
    assert all(role.cpu_request == min(planner.REPLICA_SIZES) for role in idle.roles)


def test_costs_rise_with_the_rate(profiles):
    rates = [10.0, 100.0, 400.0, 1000.0]
    curve = planner.cost_curve(profiles["monolith"], rates, PRICES)
    assert curve == sorted(curve) and curve[0] < curve[-1]


def test_day_costs_sum_the_hours_and_peak_sizing_costs_more(profiles):
    trace = planner.load_trace(DEFAULT_TRACE)
    day = planner.day_costs(profiles["monolith"], trace, PRICES)
    assert len(day["hourly_usd"]) == 24
    assert day["autoscaled_day_usd"] == pytest.approx(sum(day["hourly_usd"]))
    peak = max(rps for _, rps in trace)
    assert day["peak_sized_day_usd"] == pytest.approx(
        24 * planner.plan(profiles["monolith"], peak, PRICES).cost_per_hour
    )
    assert day["autoscaled_day_usd"] < day["peak_sized_day_usd"]


def test_machine_plan_is_the_highest_rate_that_fits_the_budget(profiles):
    # 200 req/s: one 1-vCPU replica (0.02225 USD/h) is cheapest; at 201 the cheapest is five
    # 0.25-vCPU replicas, 1.25 vCPU: over this machine's one vCPU.
    chosen = planner.machine_plan(profiles["monolith"], PRICES, 1.0)
    assert chosen.target_rps == 200.0
    assert chosen.cpu_requested <= 1.0
    assert planner.plan(profiles["monolith"], 201.0, PRICES).cpu_requested > 1.0


def test_launch_knobs_turn_a_plan_into_replicas_and_workers(profiles):
    chosen = planner.plan(profiles["microservices"], 150.0, PRICES)
    knobs, settings = planner.launch_knobs(chosen)
    by_role = {role.role: role for role in chosen.roles}
    assert settings == {"HTTP_WORKERS": 2 * by_role["gateway"].replicas}
    expected = {
        name: role.replicas
        for name, role in by_role.items()
        if name != "gateway" and role.replicas > 1
    }
    assert knobs["REPLICAS"] == ",".join(f"{name}={count}" for name, count in expected.items())


def test_planned_capacity_on_a_shared_cpuset(profiles):
    assert planner.planned_capacity(profiles["monolith"], 1.0) == pytest.approx(200.0)
    assert planner.planned_capacity(profiles["microservices"], 1.0) == pytest.approx(50.0)


def test_an_architecture_that_never_met_the_slo_cannot_be_planned():
    broken = {
        "run": RESULTS["run"],
        "architectures": {
            "monolith": {**RESULTS["architectures"]["monolith"], "capacity_rps": None}
        },
    }
    with pytest.raises(base.ScenarioError, match="met the SLO at no measured rate"):
        planner.profiles_from_results(broken)


def test_the_shipped_trace_is_a_two_peak_day():
    trace = planner.load_trace(DEFAULT_TRACE)
    assert [hour for hour, _ in trace] == list(range(24))
    rates = [rps for _, rps in trace]
    local_peaks = [
        hour
        for hour in range(1, 23)
        if rates[hour] > rates[hour - 1] and rates[hour] >= rates[hour + 1]
    ]
    assert len(local_peaks) == 2
    assert min(rates) < max(rates) / 10


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hours,rate\n0,1\n", "header must be 'hour,rps'"),
        ("hour,rps\n" + "".join(f"{h},10\n" for h in range(23)), "each hour 0-23 exactly once"),
        ("hour,rps\n0,ten\n", "line 2: expected 'hour,rps'"),
        ("hour,rps\n0,1,2\n", "line 2: expected 'hour,rps'"),
        ("hour,rps\n25,1\n", "hour must be 0-23"),
        ("hour,rps\n0,-1\n", "rps a number >= 0"),
        ("hour,rps\n0,nan\n", "rps a number >= 0"),
        ("", "header must be 'hour,rps'"),
    ],
)
def test_malformed_traces_are_refused_with_the_reason(tmp_path: Path, content, message):
    trace = tmp_path / "trace.csv"
    trace.write_text(content)
    with pytest.raises(base.ScenarioError, match=message) as refused:
        planner.load_trace(trace)
    assert "\n" not in str(refused.value)


def test_a_missing_trace_is_refused(tmp_path: Path):
    with pytest.raises(base.ScenarioError, match="does not exist"):
        planner.load_trace(tmp_path / "nope.csv")


def test_role_names_from_process_names():
    assert planner.role_of("gunicorn-gateway/worker-3") == "gateway"
    assert planner.role_of("inference-1") == "inference"
    assert planner.role_of("gunicorn-monolith") == "monolith"
    assert math.isclose(planner.memory_request_mib(64 / 1.25), 64)
