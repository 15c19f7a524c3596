"""The experiment knobs: parsing and validation, how each reaches the servers, and their documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import knobs
from benchmarks.bench import parse_config

ROOT = Path(__file__).resolve().parents[2]


def values(**changes) -> dict:
    return {**knobs.defaults(), **changes}


@pytest.mark.parametrize(
    "knob, raw, expected",
    [
        ("cache", "LOCAL", "local"),
        ("cache_placement", "inference", "inference"),
        ("cache_rate", "0.9", 0.9),
        ("cache_rate", "0", 0.0),
        ("batching", "on", True),
        ("batching", "off", False),
        ("batch_max_size", "16", 16),
        ("batch_max_wait_ms", "0.5", 0.5),
        ("replicas", "inference=2", {"inference": 2}),
        ("replicas", "inference=2,preprocess=3", {"inference": 2, "preprocess": 3}),
        ("hop_delay_ms", "2", 2.0),
        ("archs", "monolith, microservices", ("monolith", "microservices")),
        ("profile", "forest", "forest"),
    ],
)
def test_values_parse(knob, raw, expected):
    assert knobs.BY_KEY[knob].value_from(raw) == expected


@pytest.mark.parametrize("knob", [knob.key for knob in knobs.KNOBS])
def test_unset_or_empty_is_the_default(knob):
    # make exports a variable nobody set as an empty string.
    assert knobs.BY_KEY[knob].value_from(None) == knobs.BY_KEY[knob].default
    assert knobs.BY_KEY[knob].value_from("  ") == knobs.BY_KEY[knob].default


@pytest.mark.parametrize(
    "knob, raw, needle",
    [
        ("cache", "memcached", "CACHE='memcached': unknown value"),
        ("cache_rate", "1.5", "outside 0..1"),
        ("cache_rate", "lots", "is not a number"),
        ("batching", "maybe", "expected on|off"),
        ("batch_max_size", "0", "outside 1..4096"),
        ("replicas", "inference", "is not SERVICE=COUNT"),
        ("replicas", "gateway=2", "no service 'gateway'"),
        ("replicas", "inference=0", "outside 1.."),
        ("hop_delay_ms", "-1", "outside 0.."),
        ("archs", "monolith mainframe", "unknown architecture(s) mainframe"),
        ("profile", "transformer", "unknown model profile"),
    ],
)
def test_bad_values_say_which_variable_and_why(knob, raw, needle):
    with pytest.raises(knobs.KnobError) as raised:
        knobs.BY_KEY[knob].value_from(raw)
    assert needle in str(raised.value)
    assert str(raised.value).startswith(knobs.BY_KEY[knob].variable + "=")


@pytest.mark.parametrize(
    "changes, needle",
    [
        (
            {"cache_placement": "inference"},
            "CACHE_PLACEMENT=inference has no effect with CACHE=none",
        ),
        ({"batch_max_size": 8}, "BATCH_MAX_SIZE=8 needs BATCHING=on"),
        ({"batch_max_wait_ms": 1.0}, "BATCH_MAX_WAIT_MS=1 needs BATCHING=on"),
        ({"archs": ("monolith",), "replicas": {"inference": 2}}, "no architecture in ARCHS"),
        ({"archs": ("split",), "replicas": {"preprocess": 2}}, "REPLICAS names preprocess"),
    ],
)
def test_contradictions_between_knobs_are_errors(changes, needle):
    with pytest.raises(knobs.KnobError, match=re.escape(needle)):
        knobs.validate(values(**changes))


def test_harmless_oddities_are_warnings():
    warnings = knobs.validate(values(cache_rate=0.5, archs=("monolith",), hop_delay_ms=2.0))
    assert any("CACHE=none" in w for w in warnings)
    assert any("no architecture in ARCHS has hops" in w for w in warnings)
    assert knobs.validate(values()) == []


def test_defaults_apply_nothing_anywhere():
    for architecture in ("monolith", "microservices", "split", "chained"):
        assert knobs.settings_for(values(), architecture) == {}
        assert knobs.launch_kwargs_for(values(), architecture) == {}
    assert knobs.locust_env(values()) == {}


def test_cache_applies_everywhere_and_placement_only_where_inference_is_separate():
    chosen = values(cache="redis", cache_placement="inference")
    assert knobs.settings_for(chosen, "monolith") == {"CACHE": "redis"}
    assert knobs.settings_for(chosen, "microservices") == {
        "CACHE": "redis",
        "CACHE_PLACEMENT": "inference",
    }
    assert knobs.cache_location(chosen, "monolith") == "in process"
    assert knobs.cache_location(chosen, "microservices") == "inference service"
    # Pinned even at its default, so the results never depend on the servers' own default.
    assert (
        knobs.settings_for(values(cache="local"), "microservices")["CACHE_PLACEMENT"] == "gateway"
    )
    assert knobs.cache_location(values(), "microservices") is None


def test_cache_rate_goes_to_locust_only():
    chosen = values(cache_rate=0.5)
    assert knobs.locust_env(chosen) == {"LAB_BENCH_CACHE_RATE": "0.5"}
    assert knobs.settings_for(chosen, "monolith") == {}


def test_a_cache_with_rate_zero_sends_only_new_inputs():
    # Not the default workload, which cycles through the held-out birds and would hit every time.
    assert knobs.locust_env(values(cache="local", cache_rate=0.0)) == {"LAB_BENCH_CACHE_RATE": "0"}
    assert knobs.locust_env(values()) == {}


def test_batching_adds_threads_and_pins_the_batch_limits():
    from servinglab import config

    monolith = knobs.settings_for(values(batching=True), "monolith")
    assert monolith["BATCHING"] is True and monolith["HTTP_THREADS"] == knobs.BATCHING_THREADS
    assert "GRPC_THREADS" not in monolith  # no gRPC server to give threads to
    assert monolith.get("BATCH_MAX_SIZE") == config.DEFAULTS.get("BATCH_MAX_SIZE")
    services = knobs.settings_for(
        values(batching=True, batch_max_size=8, batch_max_wait_ms=1.0), "microservices"
    )
    assert services["GRPC_THREADS"] == knobs.BATCHING_THREADS
    assert services["BATCH_MAX_SIZE"] == 8 and services["BATCH_MAX_WAIT_MS"] == 1.0


def test_replicas_reach_launch_for_the_services_each_topology_has():
    chosen = values(replicas={"inference": 2, "preprocess": 2})
    assert knobs.launch_kwargs_for(chosen, "monolith") == {}
    assert knobs.launch_kwargs_for(chosen, "microservices") == {
        "replicas": {"inference": 2, "preprocess": 2}
    }
    assert knobs.launch_kwargs_for(chosen, "split") == {"replicas": {"inference": 2}}


def test_hop_delay_only_where_there_are_hops():
    chosen = values(hop_delay_ms=2.0)
    assert knobs.settings_for(chosen, "monolith") == {}
    assert knobs.settings_for(chosen, "chained") == {"HOP_DELAY_MS": 2.0}


def test_a_knob_the_checkout_cannot_apply_fails_naming_what_is_missing(monkeypatch):
    from servinglab import config

    monkeypatch.delitem(config.DEFAULTS, "HOP_DELAY_MS")
    with pytest.raises(
        knobs.KnobError, match=r"needs the server setting LAB_HOP_DELAY_MS.*has not landed"
    ):
        knobs.check_available(values(hop_delay_ms=2.0))
    knobs.check_available(values())  # at its default the knob asks nothing of the servers


def test_a_missing_launch_argument_or_locust_variable_is_named(monkeypatch, tmp_path):
    import lab.launch

    def old_launch(architecture, port=0, settings=None):  # a launcher from before replicas
        raise AssertionError("never called")

    monkeypatch.setattr(lab.launch, "launch", old_launch)
    with pytest.raises(knobs.KnobError, match=r"needs launch\(\.\.\., replicas=\.\.\.\)"):
        knobs.check_available(values(replicas={"inference": 2}))
    monkeypatch.setattr(knobs, "LOCUST_SOURCES", (tmp_path / "locustfile.py",))
    with pytest.raises(knobs.KnobError, match="LAB_BENCH_CACHE_RATE"):
        knobs.check_available(values(cache_rate=0.5))


@pytest.mark.parametrize(
    "target, chosen, needle",
    [
        ("kind", {"cache": "local"}, "TARGET=kind"),
        ("kind", {"replicas": {"inference": 2}}, "REPLICAS"),
        ("docker", {"replicas": {"inference": 2}}, "TARGET=docker"),
    ],
)
def test_targets_refuse_knobs_they_cannot_apply(target, chosen, needle):
    with pytest.raises(knobs.KnobError, match=needle):
        knobs.check_target(values(**chosen), target)


def test_targets_accept_what_they_can_apply():
    knobs.check_target(values(cache_rate=0.9), "kind")  # only the load generator changes
    knobs.check_target(
        values(cache="local", hop_delay_ms=1.0), "docker"
    )  # settings become LAB_ variables


def test_bench_reads_knobs_from_options_and_environment(monkeypatch):
    monkeypatch.setenv("CACHE", "local")
    monkeypatch.setenv("HOP_DELAY_MS", "")
    config = parse_config(
        ["--archs", "monolith microservices", "--cache-rate", "0.5", "--replicas", "inference=2"]
    )
    assert config.knobs["cache"] == "local" and config.knobs["cache_rate"] == 0.5
    assert config.knobs["replicas"] == {"inference": 2} and config.knobs["hop_delay_ms"] == 0.0
    assert config.archs == ["monolith", "microservices"] and config.profile == "linear"
    recorded = knobs.record(config.knobs)
    assert recorded["archs"] == ["monolith", "microservices"] and recorded["cache"] == "local"


def test_config_rejects_unknown_architectures_and_reads_cpu_ranges(monkeypatch):
    with pytest.raises(SystemExit):
        parse_config(["--archs", "monolith mainframe"])
    monkeypatch.setenv("SUT_CPUS", "0-1")
    assert parse_config([]).sut_cpus == [0, 1]


def test_kind_endpoints_and_namespaces_are_pairs():
    parsed = parse_config(
        [
            "--target",
            "kind",
            "--endpoint",
            "monolith=http://127.0.0.1:30080",
            "--namespace",
            "monolith=servinglab-monolith",
        ]
    )
    assert parsed.target == "kind"
    assert parsed.endpoints == {"monolith": "http://127.0.0.1:30080"}
    assert parsed.namespaces == {"monolith": "servinglab-monolith"}
    with pytest.raises(SystemExit):
        parse_config(["--endpoint", "monolith"])


def test_bench_stops_on_a_bad_knob_with_its_message(capsys):
    with pytest.raises(SystemExit) as raised:
        parse_config(["--cache-placement", "inference"])
    assert raised.value.code == 2
    assert "CACHE_PLACEMENT=inference has no effect with CACHE=none" in capsys.readouterr().err


def test_every_knob_has_a_lesson_and_is_documented():
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    exported = {
        name
        for line in re.findall(r"^export (.*)$", makefile, re.MULTILINE)
        for name in line.split()
    }
    for knob in knobs.KNOBS:
        assert len(knob.about.split()) >= 30, f"{knob.variable}: the report needs a real paragraph"
        assert knob.variable in exported, f"{knob.variable} is not exported to make bench"
        assert re.search(rf"^## .*\b{knob.variable}=", makefile, re.MULTILINE), (
            f"{knob.variable} is missing from make help"
        )
        assert f"`{knob.variable}`" in readme, (
            f"{knob.variable} is missing from the README's knob table"
        )
    assert "bench-sweep:" in makefile and {"SWEEP", "SWEEP_VALUES"} <= exported


def test_archs_are_explained_only_when_a_new_topology_is_in_the_run():
    results = {"run": {"knobs": knobs.record(values(archs=("monolith",)))}, "architectures": {}}
    assert knobs.explanations(results) == []
    results["run"]["knobs"]["archs"] = ["monolith", "split"]
    assert [knob.variable for knob, _ in knobs.explanations(results)] == ["ARCHS"]
