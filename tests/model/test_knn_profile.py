"""The `knn` profile: a model that is big in memory because its reference set is.

Checked on the trained artifact (`models/knn`): it passes the quality gate, it is scikit-learn's
own `KNeighborsClassifier` (the only kind of object an artifact may hold), its reference set has
the documented size, and the serving pipeline answers as the reference does. The augmentation is
checked on a small fit: seeded, only the four body measurements jittered, by the bandwidth.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from servinglab.model import data, quality_gate
from servinglab.model.artifact import load_artifact
from servinglab.model.estimators import PROFILES, AugmentedNeighborsClassifier, build_classifier
from servinglab.model.pipeline import ServingPipeline
from servinglab.schema import CATEGORICAL_NAMES, NUMERIC_NAMES
from servinglab.validation import validate_instances

PROFILE = "knn"


@pytest.fixture(scope="module")
def knn_artifact(models_root):
    if not (models_root / PROFILE / "CURRENT").exists():
        pytest.fail("the knn profile is not trained: `make models` (or `make test`) trains it")
    return load_artifact(models_root, PROFILE)


def test_trained_knn_passes_the_quality_gate(models_root):
    result = quality_gate.evaluate(models_root / PROFILE)
    assert result.passed, result.report()


def test_the_reference_set_is_the_documented_augmentation(knn_artifact):
    classifier = knn_artifact.estimator.named_steps["classifier"]
    assert type(classifier) is KNeighborsClassifier  # saved as the library's class, not ours
    params = PROFILES[PROFILE]
    train_rows = knn_artifact.metadata["data"]["train_rows"]
    assert classifier.n_samples_fit_ == params["copies"] * train_rows
    assert classifier.n_neighbors == params["n_neighbors"]
    assert knn_artifact.metadata["hyperparameters"] == params
    # Big in memory: the reference rows alone, before the k-d tree's own arrays.
    assert classifier._fit_X.nbytes > 50 * (1 << 20)


def test_serving_answers_as_the_reference(knn_artifact, held_out):
    pipeline = ServingPipeline.from_artifact(knn_artifact)
    batch = validate_instances(held_out)
    served = pipeline.classifier.predict_proba(pipeline.preprocess(batch))
    _, frame = data.split(data.load_frame(), knn_artifact.metadata["seed"])
    reference = knn_artifact.estimator.predict_proba(frame[[*CATEGORICAL_NAMES, *NUMERIC_NAMES]])
    np.testing.assert_allclose(served, reference, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def small_training_set():
    rng = np.random.default_rng(7)
    features = np.hstack([rng.normal(size=(30, 5)), rng.integers(0, 2, (30, 7)).astype(float)])
    labels = np.array(["Adelie", "Chinstrap", "Gentoo"] * 10)
    return features, labels


def fitted_reference(features, labels, seed, copies=200, bandwidth=0.3):
    model = AugmentedNeighborsClassifier(5, copies=copies, bandwidth=bandwidth, random_state=seed)
    return model.fit(features, labels)


def test_augmentation_is_seeded_and_jitters_only_the_body_measurements(small_training_set):
    features, labels = small_training_set
    first = fitted_reference(features, labels, seed=1)
    again = fitted_reference(features, labels, seed=1)
    other = fitted_reference(features, labels, seed=2)
    assert type(first) is KNeighborsClassifier
    np.testing.assert_array_equal(first._fit_X, again._fit_X)
    assert not np.array_equal(first._fit_X, other._fit_X)

    copies = np.repeat(features, 200, axis=0)
    columns = AugmentedNeighborsClassifier.AUGMENTED_COLUMNS
    # The year (column 4) and the one-hot columns are copied exactly.
    np.testing.assert_array_equal(first._fit_X[:, columns:], copies[:, columns:])
    noise = first._fit_X[:, :columns] - copies[:, :columns]
    assert np.all(noise.std(axis=0) == pytest.approx(0.3, rel=0.05))
    assert np.all(np.abs(noise.mean(axis=0)) < 0.02)
    assert list(first.classes_) == ["Adelie", "Chinstrap", "Gentoo"]


def test_build_classifier_passes_the_seed_and_profile_parameters():
    model = build_classifier(PROFILE, seed=42)
    assert isinstance(model, AugmentedNeighborsClassifier)
    assert model.random_state == 42
    assert model.copies == PROFILES[PROFILE]["copies"]
    assert model.bandwidth == PROFILES[PROFILE]["bandwidth"]
