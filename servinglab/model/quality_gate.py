"""Quality gate for a trained model: it must load, tell the truth, clear floors and not regress.

    python -m servinglab.model.quality_gate --candidate models/linear
    python -m servinglab.model.quality_gate --candidate models/linear --baseline baseline/linear \
        --floors servinglab/model/quality_floors.json --json gate.json

Checks, in order (exit code 0 only when every one passes, 1 otherwise):
1. The artifact loads through `servinglab.model.artifact.load_artifact` (sha256 verified, trusted types).
2. It was trained on this data: the metadata's data fingerprint matches the packaged CSV.
3. Its held-out metrics are re-computed here, on the held-out split its own seed selects, and
   must equal what `metadata.json` claims. A hand-edited (or stale) metadata file fails here.
4. The re-computed metrics clear the floors (and the log-loss ceiling) in the floors file.
5. With `--baseline` (the model currently in service; only its metadata.json is read): no metric
   may be worse than the baseline's by more than its `max_regression`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servinglab.model import data, training
from servinglab.model.artifact import (
    ArtifactError,
    load_artifact,
    read_metadata,
    resolve_model_dir,
)

DEFAULT_FLOORS = Path(__file__).with_name("quality_floors.json")


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class GateResult:
    candidate: str
    version: str | None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed

    def report(self) -> str:
        lines = [f"Quality gate for {self.candidate} (version {self.version or 'unknown'})"]
        lines += [f"  {'PASS' if c.passed else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        lines += [f"  note  {note}" for note in self.notes]
        lines.append(f"RESULT: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "version": self.version,
            "passed": self.passed,
            "checks": [asdict(check) for check in self.checks],
            "notes": self.notes,
        }


def load_policy(path: Path = DEFAULT_FLOORS) -> dict[str, Any]:
    """Read and sanity-check the floors file, so a typo fails loudly instead of disabling a check."""
    policy = json.loads(Path(path).read_text())
    for name, rule in policy["metrics"].items():
        if rule.get("better") not in ("higher", "lower"):
            raise ValueError(f"{path}: metric {name!r} needs better: higher|lower")
        limit_key = "floor" if rule["better"] == "higher" else "ceiling"
        if not isinstance(rule.get(limit_key), (int, float)) or not isinstance(
            rule.get("max_regression"), (int, float)
        ):
            raise ValueError(
                f"{path}: metric {name!r} needs numeric {limit_key!r} and 'max_regression'"
            )
    float(policy["reproduction_tolerance"])
    return policy


def _worse_by(rule: dict, value: float, reference: float) -> float:
    """How much worse `value` is than `reference` (negative when better)."""
    return reference - value if rule["better"] == "higher" else value - reference


def _check_limits(result: GateResult, metrics: dict[str, float], policy: dict) -> None:
    for name, rule in policy["metrics"].items():
        value = metrics[name]
        if rule["better"] == "higher":
            result.add(f"{name} floor", value >= rule["floor"], f"{value:.4f} >= {rule['floor']}")
        else:
            result.add(
                f"{name} ceiling", value <= rule["ceiling"], f"{value:.4f} <= {rule['ceiling']}"
            )


def _check_baseline(
    result: GateResult,
    metrics: dict[str, float],
    candidate_meta: dict,
    baseline: Path,
    policy: dict,
) -> None:
    try:
        baseline_meta = read_metadata(resolve_model_dir(baseline))
        claimed = baseline_meta["metrics"]["held_out"]
    except (ArtifactError, KeyError, TypeError) as error:
        result.add(
            "baseline readable", False, f"cannot read the baseline's held-out metrics: {error}"
        )
        return
    if baseline_meta.get("seed") != candidate_meta.get("seed") or baseline_meta.get("data", {}).get(
        "sha256"
    ) != candidate_meta.get("data", {}).get("sha256"):
        result.notes.append(
            "baseline was scored on a different seed or data set: its held-out rows differ, "
            "so the comparison is indicative only"
        )
    for name, rule in policy["metrics"].items():
        if name not in claimed:
            result.add(
                f"{name} vs baseline",
                False,
                f"baseline {baseline_meta.get('version')} has no {name}",
            )
            continue
        worse = _worse_by(rule, metrics[name], float(claimed[name]))
        result.add(
            f"{name} vs baseline",
            worse <= rule["max_regression"],
            f"{metrics[name]:.4f} vs {float(claimed[name]):.4f} from {baseline_meta.get('version')} "
            f"(worse by {max(worse, 0.0):.4f}, allowed {rule['max_regression']})",
        )


def evaluate(
    candidate: Path, baseline: Path | None = None, policy: dict | None = None
) -> GateResult:
    policy = policy or load_policy()
    result = GateResult(str(candidate), None)
    try:
        artifact = load_artifact(candidate)
    except ArtifactError as error:
        result.add("artifact loads", False, str(error))
        return result
    metadata = artifact.metadata
    result.version = metadata.get("version")
    result.add("artifact loads", True, f"{artifact.path} (sha256 verified, trusted types only)")

    data_sha = data.data_sha256()
    claimed_sha = metadata.get("data", {}).get("sha256")
    if not result.add(
        "trained on this data",
        claimed_sha == data_sha,
        f"metadata data sha256 {str(claimed_sha)[:12]}..., packaged CSV {data_sha[:12]}...",
    ):
        return result  # a different data set has different held-out rows: nothing below would mean anything

    _, held_out = data.split(data.load_frame(), int(metadata.get("seed", data.DEFAULT_SEED)))
    try:
        metrics = training.held_out_metrics(artifact.estimator, held_out)
    except (
        Exception
    ) as error:  # a model that cannot even score the held-out rows fails the gate, not the tool
        result.add(
            "re-evaluation", False, f"scoring {len(held_out)} held-out rows failed: {error!r}"
        )
        return result
    claimed = metadata.get("metrics", {}).get("held_out", {})
    tolerance = float(policy["reproduction_tolerance"])
    mismatches = [
        f"{name}: metadata says {claimed.get(name)}, re-evaluation gives {value:.6f}"
        for name, value in metrics.items()
        if not isinstance(claimed.get(name), (int, float)) or abs(claimed[name] - value) > tolerance
    ]
    result.add(
        "metadata matches re-evaluation",
        not mismatches,
        "; ".join(mismatches)
        or f"all {len(metrics)} metrics reproduce on {len(held_out)} held-out rows",
    )

    _check_limits(result, metrics, policy)
    if baseline is not None:
        _check_baseline(result, metrics, metadata, baseline, policy)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--candidate",
        type=Path,
        required=True,
        help="model to check: a profile directory (follows CURRENT) or a version directory",
    )
    parser.add_argument(
        "--baseline", type=Path, help="model currently in service; only its metadata.json is read"
    )
    parser.add_argument(
        "--floors", type=Path, default=DEFAULT_FLOORS, help="thresholds file (default: %(default)s)"
    )
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    result = evaluate(args.candidate, args.baseline, load_policy(args.floors))
    print(result.report())
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
