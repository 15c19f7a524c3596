"""Unit tests for the model quality gate (`servinglab.model.quality_gate`).

The gate must pass the trained model in models/ and fail real degraded ones: models trained here
with crippled estimators (a majority-class dummy, an over-regularised logistic regression, a
dozen training rows), an honest model whose metadata.json was edited to look better, and a model
file that was changed after training. Baselines are metadata files written by the test, since
the gate reads nothing else of a baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from servinglab.model import data, training
from servinglab.model.artifact import METADATA_FILE, MODEL_FILE, read_metadata, save_artifact
from servinglab.model.estimators import build_preprocessor
from servinglab.model.quality_gate import DEFAULT_FLOORS, evaluate, load_policy
from servinglab.schema import CATEGORICAL_NAMES, CLASSES, NUMERIC_NAMES, TARGET

FEATURES = [*CATEGORICAL_NAMES, *NUMERIC_NAMES]
SEED = data.DEFAULT_SEED


def train_candidate(root: Path, version: str, classifier, train_rows: int | None = None) -> Path:
    """Fit preprocess + `classifier` on the standard split and save it with honest metadata."""
    train, held_out = data.split(data.load_frame(), SEED)
    if train_rows is not None:
        train = train.iloc[:train_rows]
    estimator = Pipeline([("preprocess", build_preprocessor()), ("classifier", classifier)])
    estimator.fit(train[FEATURES], train[TARGET].to_numpy())
    metadata = {
        "name": training.MODEL_NAME,
        "version": version,
        "profile": "linear",
        "seed": SEED,
        "data": {"sha256": data.data_sha256(), "held_out_rows": len(held_out)},
        "classes": list(CLASSES),
        "metrics": {"held_out": training.held_out_metrics(estimator, held_out)},
    }
    return save_artifact(estimator, metadata, root / "linear")


def write_baseline(directory: Path, version: str = "baseline-1", **metrics: float) -> Path:
    """A baseline as the gate sees one: a metadata.json with held-out metrics, nothing else."""
    directory.mkdir(parents=True, exist_ok=True)
    held_out = {
        "accuracy": 1.0,
        "balanced_accuracy": 1.0,
        "macro_f1": 1.0,
        "log_loss": 0.03,
        **metrics,
    }
    (directory / METADATA_FILE).write_text(
        json.dumps(
            {
                "version": version,
                "seed": SEED,
                "data": {"sha256": data.data_sha256()},
                "metrics": {"held_out": held_out},
            }
        )
    )
    return directory


def failed(result) -> set[str]:
    return {check.name for check in result.checks if not check.passed}


@pytest.fixture(scope="module")
def policy() -> dict:
    return load_policy()


@pytest.fixture(scope="module")
def lenient_floors(tmp_path_factory) -> Path:
    """The committed tolerances with floors far down, to test regression checks on their own."""
    rules = json.loads(DEFAULT_FLOORS.read_text())
    for rule in rules["metrics"].values():
        rule.update({"floor": 0.0} if rule["better"] == "higher" else {"ceiling": 10.0})
    path = tmp_path_factory.mktemp("floors") / "lenient.json"
    path.write_text(json.dumps(rules))
    return path


@pytest.fixture(scope="module")
def dummy_model(tmp_path_factory) -> Path:
    return train_candidate(
        tmp_path_factory.mktemp("dummy"), "linear-dummy", DummyClassifier(strategy="prior")
    )


def test_the_trained_model_passes(models_root, policy):
    result = evaluate(models_root / "linear", policy=policy)
    assert result.passed, result.report()
    names = [check.name for check in result.checks]
    assert names[:3] == ["artifact loads", "trained on this data", "metadata matches re-evaluation"]
    assert {
        "accuracy floor",
        "balanced_accuracy floor",
        "macro_f1 floor",
        "log_loss ceiling",
    } <= set(names)
    assert result.report().endswith("RESULT: PASS")


def test_every_committed_profile_passes_against_the_linear_baseline(models_root, policy):
    for profile in ("linear", "forest", "boosting"):
        result = evaluate(models_root / profile, baseline=models_root / "linear", policy=policy)
        assert result.passed, result.report()


def test_a_majority_class_model_fails_every_floor(dummy_model, policy):
    result = evaluate(dummy_model, policy=policy)
    assert not result.passed
    assert failed(result) == {
        "accuracy floor",
        "balanced_accuracy floor",
        "macro_f1 floor",
        "log_loss ceiling",
    }
    assert result.report().endswith("RESULT: FAIL")


def test_a_calibration_regression_fails_the_ceiling_although_accuracy_is_fine(tmp_path, policy):
    # Strong regularisation: 99 % accuracy, but probabilities so flat that log loss doubles.
    candidate = train_candidate(tmp_path, "linear-flat", LogisticRegression(C=0.03, max_iter=2000))
    result = evaluate(candidate, policy=policy)
    assert failed(result) == {"log_loss ceiling"}, result.report()


def test_edited_metadata_is_caught_by_re_evaluation(dummy_model, tmp_path, models_root, policy):
    """The dummy model's metadata claims the good model's numbers: the floors alone would pass it."""
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in (MODEL_FILE, METADATA_FILE):
        (tampered / name).write_bytes((dummy_model / name).read_bytes())
    metadata = read_metadata(tampered)
    metadata["metrics"]["held_out"] = read_metadata(
        models_root / "linear" / (models_root / "linear" / "CURRENT").read_text().strip()
    )["metrics"]["held_out"]
    (tampered / METADATA_FILE).write_text(json.dumps(metadata))

    result = evaluate(tampered, policy=policy)
    assert not result.passed
    assert "metadata matches re-evaluation" in failed(result)
    mismatch = next(
        check for check in result.checks if check.name == "metadata matches re-evaluation"
    )
    assert "metadata says 1.0, re-evaluation gives 0.44" in mismatch.detail


def test_a_model_file_changed_after_training_does_not_load(dummy_model, tmp_path, policy):
    corrupted = tmp_path / "corrupted"
    corrupted.mkdir()
    (corrupted / METADATA_FILE).write_bytes((dummy_model / METADATA_FILE).read_bytes())
    model = bytearray((dummy_model / MODEL_FILE).read_bytes())
    model[-10] ^= 0xFF
    (corrupted / MODEL_FILE).write_bytes(bytes(model))
    result = evaluate(corrupted, policy=policy)
    assert [(c.name, c.passed) for c in result.checks] == [("artifact loads", False)]
    assert "sha256" in result.checks[0].detail


def test_a_model_trained_on_other_data_fails(dummy_model, tmp_path, policy):
    other = tmp_path / "other-data"
    other.mkdir()
    (other / MODEL_FILE).write_bytes((dummy_model / MODEL_FILE).read_bytes())
    metadata = read_metadata(dummy_model)
    metadata["data"]["sha256"] = "0" * 64
    (other / METADATA_FILE).write_text(json.dumps(metadata))
    result = evaluate(other, policy=policy)
    assert failed(result) == {"trained on this data"}


def test_regression_beyond_tolerance_fails_and_within_passes(tmp_path, lenient_floors):
    policy = load_policy(lenient_floors)
    # Trained on 12 birds: 95 % accuracy, 4.7 points below a perfect baseline (tolerance 2.4).
    weak = train_candidate(
        tmp_path / "weak", "linear-12rows", LogisticRegression(max_iter=2000), train_rows=12
    )
    perfect = write_baseline(tmp_path / "perfect", accuracy=1.0, log_loss=1.0)
    result = evaluate(weak, baseline=perfect, policy=policy)
    assert "accuracy vs baseline" in failed(result), result.report()
    assert not {"accuracy floor", "metadata matches re-evaluation"} & failed(result)

    close = write_baseline(
        tmp_path / "close", accuracy=0.96, balanced_accuracy=0.93, macro_f1=0.95, log_loss=0.2
    )
    result = evaluate(weak, baseline=close, policy=policy)
    assert result.passed, result.report()


def test_log_loss_regression_is_measured_in_the_other_direction(models_root, tmp_path, policy):
    # Lower is better: a candidate at 0.031 is fine next to 0.06, and 0.031 - 0 is within 0.05.
    assert evaluate(
        models_root / "linear",
        baseline=write_baseline(tmp_path / "a", log_loss=0.06),
        policy=policy,
    ).passed
    candidate = train_candidate(
        tmp_path / "c", "linear-c01", LogisticRegression(C=0.1, max_iter=2000)
    )
    result = evaluate(candidate, baseline=models_root / "linear", policy=policy)
    assert failed(result) == {"log_loss vs baseline"}, result.report()


def test_an_unreadable_baseline_fails_rather_than_being_skipped(models_root, tmp_path, policy):
    (tmp_path / METADATA_FILE).write_text(json.dumps({"version": "no-metrics"}))
    result = evaluate(models_root / "linear", baseline=tmp_path, policy=policy)
    assert failed(result) == {"baseline readable"}


def test_a_baseline_on_another_split_is_compared_with_a_warning(models_root, tmp_path, policy):
    baseline = write_baseline(tmp_path)
    metadata = json.loads((baseline / METADATA_FILE).read_text())
    metadata["seed"] = SEED + 1
    (baseline / METADATA_FILE).write_text(json.dumps(metadata))
    result = evaluate(models_root / "linear", baseline=baseline, policy=policy)
    assert result.passed and any("different seed" in note for note in result.notes)


def test_a_floors_file_with_a_missing_threshold_is_refused(tmp_path):
    rules = json.loads(DEFAULT_FLOORS.read_text())
    del rules["metrics"]["accuracy"]["floor"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(rules))
    with pytest.raises(ValueError, match="accuracy"):
        load_policy(broken)


def test_the_committed_floors_cover_every_metric_training_records(policy, artifact):
    assert set(policy["metrics"]) == set(artifact.metadata["metrics"]["held_out"])


def test_the_command_line_exit_codes_and_json_report(models_root, dummy_model, tmp_path):
    command = [sys.executable, "-m", "servinglab.model.quality_gate"]
    report = tmp_path / "gate.json"
    ok = subprocess.run(
        [*command, "--candidate", str(models_root / "linear"), "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "RESULT: PASS" in ok.stdout
    assert json.loads(report.read_text())["passed"] is True

    bad = subprocess.run(
        [*command, "--candidate", str(dummy_model)], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1
    assert "FAIL  accuracy floor" in bad.stdout and "RESULT: FAIL" in bad.stdout
