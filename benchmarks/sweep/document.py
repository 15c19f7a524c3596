"""sweep.json: one point per knob value, read from that value's results.json, and the verdict.

Schema: benchmarks/sweep.schema.json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import analysis, knobs
from benchmarks.measure.runs import read_json, utc_timestamp
from benchmarks.sweep.verdict import analyse, conclusion
from servinglab.model.training import git_sha

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "sweep.schema.json"
SWEEP_FILE = "sweep.json"
SCHEMA_VERSION = 1


def point_from_results(
    value: str, x: float, run_dir: str, results: Mapping[str, Any]
) -> dict[str, Any]:
    """One sweep point from one bench run's results.json."""
    architectures = {}
    for name, arch in results["architectures"].items():
        cache = arch.get("cache") or {}
        architectures[name] = {
            "capacity_rps": arch["capacity_rps"],
            "p50_at_capacity_ms": arch["p50_at_capacity_ms"],
            "p99_at_capacity_ms": arch["p99_at_capacity_ms"],
            "cost_per_million_usd": dict(arch["cost_per_million_usd"]),
            "cpu_seconds_per_1k": arch["cpu_seconds_per_1k"],
            "peak_rss_mb_total": arch["peak_rss_mb_total"],
            "hit_rate": cache.get("hit_rate"),
            "hop_delay_method": (arch.get("applied") or {}).get("hop_delay_method"),
        }
    return {"value": value, "x": x, "run_dir": run_dir, "architectures": architectures}


def assemble(
    knob: knobs.Knob,
    labels: Sequence[str],
    numeric: bool,
    points: list[dict],
    first_run: Mapping[str, Any],
    started: datetime,
    finished: datetime,
    complete: bool,
) -> dict[str, Any]:
    """The whole sweep.json: the knob, the run (the first value's, minus the swept knob), the
    points, the analysis and the conclusion."""
    base_knobs = {
        key: value for key, value in (first_run.get("knobs") or {}).items() if key != knob.key
    }
    copied = ("quick", "repetitions", "slo_p99_ms", "target", "cpu_budget", "machine", "prices")
    run = {
        **{key: first_run[key] for key in copied},
        "label": f"sweep-{knob.key}",
        "started_at": utc_timestamp(started),
        "finished_at": utc_timestamp(finished),
        "duration_s": round((finished - started).total_seconds(), 1),
        "git_sha": git_sha(),
        "settings": {
            key: value
            for key, value in first_run["settings"].items()
            if not (knob.key == "profile" and key == "model_profile")
        },
        "knobs": base_knobs,
        "complete": complete,
    }
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "knob": {
            "key": knob.key,
            "variable": knob.variable,
            "numeric": numeric,
            "values": list(labels),
        },
        "run": run,
        "points": points,
        "analysis": analyse(points, numeric),
    }
    doc["conclusion"] = conclusion(doc)
    return doc


def validation_errors(doc: Any) -> list[str]:
    return analysis.schema_errors(read_json(SCHEMA_PATH), doc)


def validate(doc: Any) -> None:
    errors = validation_errors(doc)
    if errors:
        raise analysis.ResultsValidationError(errors)
