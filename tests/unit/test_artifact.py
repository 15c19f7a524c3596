"""Unit tests for versioned model artifacts (`servinglab.model.artifact`) and the training that writes them.

A real, small model (the linear profile, well under a second to fit) is trained into temporary
directories, so saving, the CURRENT pointer, verification and reproducibility are all checked on
files this test wrote, never on the shared `models/` directory.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np
import pytest
from helpers import held_out_frame
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from servinglab.model import data
from servinglab.model.artifact import (
    CURRENT_FILE,
    METADATA_FILE,
    MODEL_FILE,
    ArtifactError,
    load_artifact,
    resolve_model_dir,
    save_artifact,
    sha256_file,
)
from servinglab.model.training import train
from servinglab.schema import CATEGORICAL_NAMES, CLASSES, NUMERIC_NAMES

SEED = data.DEFAULT_SEED
OTHER_SEED = 7


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Version directory of a linear model trained with the default seed into a fresh root."""
    return train(profile="linear", seed=SEED, models_root=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def root(trained) -> Path:
    return trained.parent.parent


@pytest.fixture(scope="module")
def loaded(trained):
    return load_artifact(trained)


def features(frame):
    return frame[[*CATEGORICAL_NAMES, *NUMERIC_NAMES]]


def copy_of(trained: Path, destination: Path) -> Path:
    """A private copy of the profile directory, for tests that damage it."""
    profile_dir = shutil.copytree(trained.parent, destination / "linear")
    return profile_dir / trained.name


# --- Layout and round trip ----------------------------------------------------------------------


def test_training_writes_the_versioned_layout(trained, root):
    assert trained.parent == root / "linear"
    assert re.fullmatch(r"linear-[0-9a-f]{10}", trained.name)
    assert sorted(p.name for p in trained.iterdir()) == [METADATA_FILE, MODEL_FILE]
    assert (root / "linear" / CURRENT_FILE).read_text() == trained.name + "\n"
    # The temporary pointer used for the atomic switch is gone.
    assert sorted(p.name for p in (root / "linear").iterdir()) == [CURRENT_FILE, trained.name]


def test_round_trip_gives_a_working_estimator(loaded, trained):
    frame = held_out_frame()
    assert loaded.path == trained
    assert tuple(loaded.estimator.classes_) == CLASSES
    probabilities = loaded.estimator.predict_proba(features(frame))
    assert probabilities.shape == (len(frame), len(CLASSES))
    predicted = np.asarray(CLASSES)[probabilities.argmax(axis=1)]
    accuracy = float((predicted == frame["species"].to_numpy()).mean())
    assert accuracy == loaded.metadata["metrics"]["held_out"]["accuracy"]


def test_loaded_metadata_is_the_file_on_disk(loaded, trained):
    assert loaded.metadata == json.loads((trained / METADATA_FILE).read_text())


def test_save_artifact_round_trips_any_estimator_and_moves_current(tmp_path, loaded):
    profile_dir = tmp_path / "linear"
    first = save_artifact(loaded.estimator, {**loaded.metadata, "version": "v1"}, profile_dir)
    second = save_artifact(loaded.estimator, {**loaded.metadata, "version": "v2"}, profile_dir)
    assert (first.name, second.name) == ("v1", "v2")
    assert (profile_dir / CURRENT_FILE).read_text().strip() == "v2"
    assert load_artifact(profile_dir).metadata["version"] == "v2"
    # The older version stays loadable by its own directory.
    assert load_artifact(first).metadata["version"] == "v1"


# --- Resolving a location -----------------------------------------------------------------------


def test_resolve_version_dir_is_itself(trained):
    assert resolve_model_dir(trained) == trained
    assert resolve_model_dir(str(trained), profile="forest") == trained


def test_resolve_profile_dir_follows_current(trained):
    assert resolve_model_dir(trained.parent) == trained


def test_resolve_root_uses_the_profile(trained, root):
    assert resolve_model_dir(root, profile="linear") == trained


def test_resolve_root_defaults_to_linear(trained, root):
    assert resolve_model_dir(root) == trained


def test_resolve_root_for_an_untrained_profile_fails(root):
    with pytest.raises(ArtifactError, match="make train"):
        resolve_model_dir(root, profile="forest")


def test_resolve_follows_a_moved_current_pointer(trained, tmp_path):
    version_dir = copy_of(trained, tmp_path)
    other = shutil.copytree(version_dir, version_dir.parent / "linear-other")
    (version_dir.parent / CURRENT_FILE).write_text("linear-other\n")
    assert resolve_model_dir(tmp_path) == other


def test_missing_directory_says_to_run_make_train(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ArtifactError) as caught:
        load_artifact(missing)
    message = str(caught.value)
    assert "`make train`" in message
    assert str(missing.resolve()) in message


def test_empty_directory_says_to_run_make_train(tmp_path):
    with pytest.raises(ArtifactError, match="make train"):
        resolve_model_dir(tmp_path, profile="linear")


def test_current_naming_a_missing_version_is_an_artifact_error(trained, tmp_path):
    version_dir = copy_of(trained, tmp_path)
    (version_dir.parent / CURRENT_FILE).write_text("linear-0000000000\n")
    with pytest.raises(ArtifactError, match="Cannot read"):
        load_artifact(version_dir.parent)


# --- Verification before loading ----------------------------------------------------------------


def test_appending_a_byte_to_the_model_is_refused(trained, tmp_path):
    version_dir = copy_of(trained, tmp_path)
    with (version_dir / MODEL_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError) as caught:
        load_artifact(version_dir)
    message = str(caught.value)
    assert "sha256" in message
    assert sha256_file(version_dir / MODEL_FILE) in message
    assert json.loads((version_dir / METADATA_FILE).read_text())["model_sha256"] in message


def test_missing_model_file_is_refused(trained, tmp_path):
    version_dir = copy_of(trained, tmp_path)
    (version_dir / MODEL_FILE).unlink()
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(version_dir)


def test_corrupt_metadata_is_an_artifact_error(trained, tmp_path):
    version_dir = copy_of(trained, tmp_path)
    (version_dir / METADATA_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="Cannot read"):
        load_artifact(version_dir)


def test_unexpected_types_inside_a_model_are_refused(tmp_path, loaded):
    # A correctly hashed file is still refused when it would call a function outside the allow-list.
    hostile = Pipeline([("call", FunctionTransformer(func=json.dumps))])
    version_dir = save_artifact(
        hostile, {**loaded.metadata, "version": "hostile"}, tmp_path / "linear"
    )
    with pytest.raises(ArtifactError, match=r"unexpected types.*json\.dumps"):
        load_artifact(version_dir)


# --- Metadata -----------------------------------------------------------------------------------


def test_metadata_records_the_data_fingerprint(loaded):
    recorded = loaded.metadata["data"]
    assert recorded["sha256"] == data.data_sha256()
    assert re.fullmatch(r"[0-9a-f]{64}", recorded["sha256"])
    assert recorded["rows"] == 344
    assert recorded["train_rows"] + recorded["held_out_rows"] == 344
    assert recorded["held_out_rows"] == 86


def test_metadata_records_library_versions(loaded):
    libraries = loaded.metadata["libraries"]
    assert set(libraries) == {
        "python",
        "scikit-learn",
        "numpy",
        "skops",
        "palmerpenguins",
        "pandas",
    }
    for name in ("scikit-learn", "numpy", "skops", "palmerpenguins", "pandas"):
        assert libraries[name] == package_metadata.version(name)


def test_metadata_records_seed_profile_and_schema(loaded):
    metadata = loaded.metadata
    assert metadata["seed"] == SEED
    assert metadata["profile"] == "linear"
    assert metadata["name"] == "penguins-species"
    assert metadata["classes"] == list(CLASSES)
    assert metadata["features"] == {
        "numeric": list(NUMERIC_NAMES),
        "categorical": list(CATEGORICAL_NAMES),
    }
    assert metadata["hyperparameters"] == {"C": 1.0, "max_iter": 2000}


def test_metadata_records_held_out_metrics(loaded):
    metrics = loaded.metadata["metrics"]["held_out"]
    assert set(metrics) == {"accuracy", "balanced_accuracy", "macro_f1", "log_loss"}
    # Palmer penguin species are almost linearly separable; see tests/model for the floors.
    assert metrics["accuracy"] >= 0.97
    assert 0.0 < metrics["log_loss"] < 0.2


def test_metadata_records_git_sha_and_creation_time(loaded):
    metadata = loaded.metadata
    assert "git_sha" in metadata
    assert metadata["git_sha"] is None or re.fullmatch(r"[0-9a-f]{40}", metadata["git_sha"])
    created = datetime.fromisoformat(metadata["created_at"])
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(hours=1)


def test_metadata_records_the_model_hash(loaded, trained):
    assert loaded.metadata["model_file"] == MODEL_FILE
    assert loaded.metadata["model_sha256"] == sha256_file(trained / MODEL_FILE)


# --- Reproducibility ----------------------------------------------------------------------------


def test_same_seed_gives_same_version_and_identical_predictions(trained, loaded, tmp_path):
    again = train(profile="linear", seed=SEED, models_root=tmp_path)
    assert again.name == trained.name
    retrained = load_artifact(again)
    np.testing.assert_array_equal(
        retrained.estimator.predict_proba(features(held_out_frame())),
        loaded.estimator.predict_proba(features(held_out_frame())),
    )


def test_retraining_into_the_same_root_keeps_one_version(tmp_path):
    first = train(profile="linear", seed=SEED, models_root=tmp_path)
    second = train(profile="linear", seed=SEED, models_root=tmp_path)
    assert first == second
    assert sorted(p.name for p in (tmp_path / "linear").iterdir()) == [CURRENT_FILE, first.name]
    assert load_artifact(tmp_path).metadata["version"] == first.name


def test_different_seed_gives_different_version(trained, tmp_path):
    other = train(profile="linear", seed=OTHER_SEED, models_root=tmp_path)
    assert other.name != trained.name
    assert other.name.startswith("linear-")
    assert load_artifact(other).metadata["seed"] == OTHER_SEED
