"""The bench verdict's regime sentence: which workload it measured, which scenario could reverse it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks.scenarios import regime

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results_small.json"


@pytest.fixture
def results() -> dict:
    return json.loads(FIXTURE.read_text())


def _with(results: dict, **knobs) -> dict:
    changed = copy.deepcopy(results)
    changed["run"].setdefault("knobs", {}).update(knobs)
    return changed


def _winner(results: dict) -> str:
    capacities = {name: arch["capacity_rps"] for name, arch in results["architectures"].items()}
    return max(capacities, key=lambda name: capacities[name] or 0)


def test_the_sentence_names_the_regime_and_the_scenario(results):
    assert _winner(results) == "monolith"
    sentence = regime.regime_sentence(results)
    assert sentence.startswith("For this workload (profile linear, batching off, ")
    assert "the monolith; see scenario 2, a model that is big in memory" in sentence
    assert sentence.endswith("(`make scenarios SCENARIOS=memory`).")


@pytest.mark.parametrize(
    ("knobs", "scenario"),
    [
        ({"profile": "forest", "batching": False}, "batching"),
        ({"profile": "forest", "batching": True}, "planner"),
        ({"profile": "linear"}, "memory"),
    ],
)
def test_the_pointer_follows_the_regime(results, knobs, scenario):
    assert regime.reversing_scenario(_with(results, **knobs), "monolith") == scenario
    assert f"SCENARIOS={scenario}`" in regime.regime_sentence(_with(results, **knobs))


def test_a_microservices_win_points_at_the_priced_replicas(results):
    assert regime.reversing_scenario(results, "microservices") == "planner"


def test_knobs_off_their_defaults_are_named(results):
    sentence = regime.regime_sentence(
        _with(results, cache="local", cache_rate=0.9, replicas={"inference": 2}, hop_delay_ms=2.0)
    )
    assert "cache local at a 0.9 repeat rate, replicas inference=2, 2 ms per hop" in sentence


def test_no_sentence_without_a_comparison(results):
    alone = copy.deepcopy(results)
    alone["architectures"] = {"monolith": alone["architectures"]["monolith"]}
    assert regime.regime_sentence(alone) is None
    missed = copy.deepcopy(results)
    for arch in missed["architectures"].values():
        arch["capacity_rps"] = None
    assert regime.regime_sentence(missed) is None
