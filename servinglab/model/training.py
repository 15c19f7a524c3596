"""Train one model profile with a fixed seed and write a versioned, verifiable artifact.

    python -m servinglab.model.training --profile linear --seed 42 --out models

The version is a fingerprint of everything that determines the model (data, profile, seed,
hyperparameters, library versions), so retraining the same inputs yields the same version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss

from servinglab.model import data
from servinglab.model.artifact import DEFAULT_MODELS_ROOT, save_artifact
from servinglab.model.estimators import DEFAULT_PROFILE, PROFILES, build_estimator
from servinglab.schema import CATEGORICAL_NAMES, CLASSES, NUMERIC_NAMES, TARGET

MODEL_NAME = "penguins-species"
LIBRARIES = ("scikit-learn", "numpy", "skops", "palmerpenguins", "pandas")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        versions[name] = package_metadata.version(name)
    return versions


def git_sha() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def held_out_metrics(estimator, frame) -> dict[str, float]:
    features = frame[[*CATEGORICAL_NAMES, *NUMERIC_NAMES]]
    truth = frame[TARGET].to_numpy()
    probabilities = estimator.predict_proba(features)
    predicted = np.asarray(estimator.classes_)[probabilities.argmax(axis=1)]
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
        "log_loss": float(log_loss(truth, probabilities, labels=list(CLASSES))),
    }


def train(
    profile: str = DEFAULT_PROFILE,
    seed: int = data.DEFAULT_SEED,
    models_root: Path = DEFAULT_MODELS_ROOT,
) -> Path:
    frame = data.load_frame()
    train_frame, held_out = data.split(frame, seed)
    estimator = build_estimator(profile, seed)
    started = time.perf_counter()
    estimator.fit(train_frame[[*CATEGORICAL_NAMES, *NUMERIC_NAMES]], train_frame[TARGET].to_numpy())
    fit_seconds = time.perf_counter() - started
    if tuple(estimator.classes_) != CLASSES:
        raise RuntimeError(f"classes {estimator.classes_} differ from the schema's {CLASSES}")

    libraries = library_versions()
    data_sha = data.data_sha256()
    fingerprint_source = json.dumps(
        {
            "data": data_sha,
            "profile": profile,
            "seed": seed,
            "hyperparameters": PROFILES[profile],
            "libraries": libraries,
        },
        sort_keys=True,
    )
    version = f"{profile}-{hashlib.sha256(fingerprint_source.encode()).hexdigest()[:10]}"
    metadata = {
        "name": MODEL_NAME,
        "version": version,
        "profile": profile,
        "seed": seed,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "hyperparameters": PROFILES[profile],
        "libraries": libraries,
        "data": {
            "source": "palmerpenguins package: data/penguins.csv",
            "sha256": data_sha,
            "rows": len(frame),
            "held_out_fraction": data.HELD_OUT_FRACTION,
            "train_rows": len(train_frame),
            "held_out_rows": len(held_out),
            "stratified_on": TARGET,
        },
        "features": {"numeric": list(NUMERIC_NAMES), "categorical": list(CATEGORICAL_NAMES)},
        "classes": list(CLASSES),
        "metrics": {"held_out": held_out_metrics(estimator, held_out)},
        "fit_seconds": round(fit_seconds, 3),
    }
    return save_artifact(estimator, metadata, Path(models_root) / profile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=data.DEFAULT_SEED)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_MODELS_ROOT, help="models root directory"
    )
    args = parser.parse_args(argv)
    version_dir = train(args.profile, args.seed, args.out)
    metadata = json.loads((version_dir / "metadata.json").read_text())
    metrics = metadata["metrics"]["held_out"]
    print(
        f"trained {metadata['version']} -> {version_dir} "
        f"(held-out accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
