"""The regime of one bench run, in a sentence, and the scenario that could reverse its verdict.

A bench verdict holds for the workload it measured: one profile, one set of knobs, one budget.
`regime_sentence(results)` names that regime and points at the `make scenarios` scenario whose
mechanism is the likeliest to change the answer, e.g. "For this workload (profile linear,
batching off, 1 vCPU) the monolith; see scenario 2, a model that is big in memory, for when that
changes (`make scenarios SCENARIOS=memory`)." It reads only results.json, so the bench report
(`benchmarks/report/verdict.py`) can print it without importing any scenario.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.reporting.text import display_name

# The scenarios a verdict can point at: number, name (SCENARIOS=), what they vary.
SCENARIO_TITLES = {
    "planner": (1, "scale only what is hot"),
    "memory": (2, "a model that is big in memory"),
    "batching": (3, "one model server batching for everyone"),
    "ship": (4, "ship a change to one stage"),
}
# Profiles whose model call costs milliseconds: where one shared model server's batching and
# per-stage scaling have something to work on.
HEAVY_PROFILES = {"forest", "boosting"}


def _regime(results: Mapping[str, Any]) -> str:
    run = results["run"]
    knobs = run.get("knobs") or {}
    parts = [f"profile {knobs.get('profile') or run['settings'].get('model_profile', '?')}"]
    parts.append("batching on" if knobs.get("batching") else "batching off")
    if knobs.get("cache") not in (None, "none"):
        parts.append(f"cache {knobs['cache']} at a {knobs.get('cache_rate', 0):g} repeat rate")
    if knobs.get("replicas"):
        parts.append(
            "replicas " + ",".join(f"{name}={count}" for name, count in knobs["replicas"].items())
        )
    if knobs.get("hop_delay_ms"):
        parts.append(f"{knobs['hop_delay_ms']:g} ms per hop")
    vcpus = (run.get("cpu_budget") or {}).get("sut_vcpus")
    if vcpus:
        parts.append(f"{vcpus:g} vCPU")
    return ", ".join(parts)


def reversing_scenario(results: Mapping[str, Any], winner: str) -> str:
    """The name of the scenario likeliest to reverse `winner` for this run's regime."""
    knobs = results["run"].get("knobs") or {}
    heavy = (knobs.get("profile") or "linear") in HEAVY_PROFILES
    if winner != "monolith":
        return "planner"  # what the extra hops cost once replicas are priced at scale
    if heavy and not knobs.get("batching"):
        return "batching"
    if heavy:
        return "planner"
    return "memory"


def regime_sentence(results: Mapping[str, Any]) -> str | None:
    """ "For this workload (...) the monolith; see scenario N, ..., for when that changes (...)."
    None when no architecture met the SLO, or only one was measured."""
    architectures = results["architectures"]
    measured = {
        name: arch["capacity_rps"]
        for name, arch in architectures.items()
        if arch.get("capacity_rps") is not None
    }
    if len(architectures) < 2 or not measured:
        return None
    winner = max(measured, key=lambda name: measured[name])
    name = reversing_scenario(results, winner)
    number, title = SCENARIO_TITLES[name]
    return (
        f"For this workload ({_regime(results)}) {display_name(winner)}; see scenario {number}, "
        f"{title}, for when that changes (`make scenarios SCENARIOS={name}`)."
    )
