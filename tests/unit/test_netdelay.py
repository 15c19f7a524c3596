"""Unit tests for the pure parts of simulated hop delay: settings, tc arguments, the choice of
method (`lab.netdelay`) and the in-process fallback interceptor (`microservices.channels`).

Nothing here creates a namespace or starts a process: the probe is replaced where a test needs a
given outcome. The real mechanics are in tests/integration/test_hop_delay.py.
"""

from __future__ import annotations

import time

import pytest

from lab import netdelay
from lab.supervisor import Supervisor
from microservices import channels
from servinglab import config


def settings(**overrides):
    return config.load(environ={}, overrides=overrides)


def test_defaults_are_off_and_auto():
    assert netdelay.parse_settings(settings()) == (0.0, "auto")
    assert netdelay.parse_settings(settings(HOP_DELAY_MS="2", HOP_DELAY_METHOD="NETEM")) == (
        2.0,
        "netem",
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"HOP_DELAY_MS": -1},
        {"HOP_DELAY_MS": float("nan")},
        {"HOP_DELAY_MS": float("inf")},
        {"HOP_DELAY_METHOD": "pigeon"},
    ],
)
def test_invalid_settings_are_refused_with_the_variable_name(overrides):
    with pytest.raises(netdelay.HopDelayError, match="LAB_HOP_DELAY_"):
        netdelay.parse_settings(settings(**overrides))


def test_a_delay_that_is_no_number_is_refused_with_the_variable_name():
    # Refused where every setting is parsed, before netdelay sees it.
    with pytest.raises(config.SettingsError, match="LAB_HOP_DELAY_MS"):
        netdelay.parse_settings(settings(HOP_DELAY_MS="far"))


@pytest.mark.parametrize("delay_ms,one_way", [(0.5, "250us"), (2, "1000us"), (5, "2500us")])
def test_netem_delays_each_direction_by_half_the_round_trip(delay_ms, one_way):
    args = netdelay.netem_args(delay_ms)
    assert args[:6] == ["qdisc", "add", "dev", "lo", "root", "netem"]
    assert args[args.index("delay") + 1] == one_way
    assert int(args[args.index("limit") + 1]) >= 10_000


def test_presets_match_the_documented_distances():
    assert netdelay.PRESETS_MS == {"same-node": 0.0, "same-zone": 0.5, "cross-zone": 2.0}


@pytest.fixture
def supervisor():
    with Supervisor() as sup:
        yield sup


@pytest.fixture
def no_probe(monkeypatch):
    def fail():
        raise AssertionError("netem must not be probed here")

    monkeypatch.setattr(netdelay, "probe_netem", fail)


def test_zero_delay_changes_nothing(supervisor, no_probe):
    chosen = netdelay.start_hop_delay(supervisor, settings(HOP_DELAY_METHOD="netem"), has_hops=True)
    assert chosen == netdelay.HopDelay()
    assert chosen.method == "none"
    assert supervisor.processes == [] and supervisor.argv_prefix == ()


def test_an_architecture_without_hops_is_not_delayed(supervisor, no_probe):
    chosen = netdelay.start_hop_delay(supervisor, settings(HOP_DELAY_MS=5), has_hops=False)
    assert (chosen.ms, chosen.method) == (5.0, "none")
    assert chosen.env() == {"LAB_HOP_DELAY_METHOD": "none"}
    assert supervisor.processes == []


def test_sleep_can_be_forced_and_says_it_is_a_fallback(supervisor, no_probe):
    chosen = netdelay.start_hop_delay(
        supervisor, settings(HOP_DELAY_MS=2, HOP_DELAY_METHOD="sleep"), True
    )
    assert chosen.method == "sleep"
    assert "in-process fallback" in chosen.detail and "forced" in chosen.detail
    assert chosen.as_dict() == {"ms": 2.0, "method": "sleep", "detail": chosen.detail}
    assert supervisor.processes == [] and supervisor.argv_prefix == ()


def test_auto_falls_back_to_sleep_and_records_why(supervisor, monkeypatch):
    monkeypatch.setattr(netdelay, "probe_netem", lambda: "netem unavailable: no sch_netem")
    chosen = netdelay.start_hop_delay(supervisor, settings(HOP_DELAY_MS=2), True)
    assert chosen.method == "sleep"
    assert "no sch_netem" in chosen.detail
    assert chosen.env() == {"LAB_HOP_DELAY_METHOD": "sleep"}


def test_netem_on_demand_fails_loudly_when_unavailable(supervisor, monkeypatch):
    monkeypatch.setattr(netdelay, "probe_netem", lambda: "netem unavailable: no sch_netem")
    with pytest.raises(netdelay.HopDelayError, match="no sch_netem"):
        netdelay.start_hop_delay(
            supervisor, settings(HOP_DELAY_MS=2, HOP_DELAY_METHOD="netem"), True
        )


def test_probe_names_missing_tools(monkeypatch):
    monkeypatch.setattr(
        netdelay.shutil, "which", lambda tool: None if tool == "tc" else f"/usr/bin/{tool}"
    )
    assert netdelay.probe_netem() == "tc not found (install util-linux and iproute2)"


@pytest.mark.parametrize(
    "method,expected_s", [("auto", 0.002), ("sleep", 0.002), ("netem", 0.0), ("none", 0.0)]
)
def test_the_client_sleeps_only_when_nothing_else_delays_the_hops(method, expected_s):
    assert channels.client_delay_s(settings(HOP_DELAY_MS=2, HOP_DELAY_METHOD=method)) == expected_s
    assert channels.client_delay_s(settings(HOP_DELAY_METHOD=method)) == 0.0


class Details:
    method = "/servinglab.v1.Inference/Predict"
    metadata = credentials = wait_for_ready = compression = None

    def __init__(self, timeout):
        self.timeout = timeout


@pytest.mark.parametrize("timeout", [1.0, 0.001, None])
def test_the_interceptor_sleeps_inside_the_calls_deadline(timeout):
    seen = []
    interceptor = channels.SleepBeforeCall(0.005)
    started = time.perf_counter()
    result = interceptor.intercept_unary_unary(
        lambda details, request: seen.append((details, request)) or "ok",
        Details(timeout),
        "request",
    )
    assert time.perf_counter() - started >= 0.005
    assert result == "ok"
    details, request = seen[0]
    assert request == "request" and details.method == Details.method
    assert details.timeout == (None if timeout is None else max(timeout - 0.005, 0.0))
