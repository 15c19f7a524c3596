"""Unit tests for the three serving stages in `servinglab.model.pipeline`, one stage at a time.

The stages are compiled from the trained linear artifact (conftest's `pipeline` fixture); the
postprocessor is also exercised on hand-built probability matrices so its rules are pinned exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from servinglab.model import data
from servinglab.model.pipeline import DEFAULT_CONFIDENCE_THRESHOLD, Postprocessor
from servinglab.schema import (
    CATEGORICAL_FIELDS,
    CATEGORICAL_NAMES,
    CLASSES,
    FIELD_NAMES,
    NUMERIC_NAMES,
)
from servinglab.validation import RawBatch, validate_instances

N_NUMERIC = len(NUMERIC_NAMES)
# Numeric columns, then every category of every field plus its "unknown" slot.
N_FEATURES = N_NUMERIC + sum(len(field.categories) + 1 for field in CATEGORICAL_FIELDS)


def one_hot_ranges() -> dict[str, range]:
    ranges, offset = {}, N_NUMERIC
    for field in CATEGORICAL_FIELDS:
        width = len(field.categories) + 1
        ranges[field.name] = range(offset, offset + width)
        offset += width
    return ranges


RECORD = {
    "island": "Dream",
    "sex": "male",
    "bill_length_mm": 50.0,
    "bill_depth_mm": 19.0,
    "flipper_length_mm": 196.0,
    "body_mass_g": 3900.0,
    "year": 2008,
}


@pytest.fixture(scope="module")
def training_medians() -> np.ndarray:
    """Medians computed independently from the training split the artifact was fitted on."""
    train, _ = data.split(data.load_frame())
    return train[list(NUMERIC_NAMES)].median().to_numpy(dtype=float)


@pytest.fixture(scope="module")
def scaler(artifact):
    return (
        artifact.estimator.named_steps["preprocess"]
        .named_transformers_["numeric"]
        .named_steps["scale"]
    )


# --- Preprocessor -------------------------------------------------------------------------------


def test_preprocess_output_shape(pipeline, held_out):
    features = pipeline.preprocess(validate_instances(held_out))
    assert N_FEATURES == 12
    assert pipeline.preprocess.n_features == N_FEATURES
    assert features.shape == (len(held_out), N_FEATURES)
    assert features.dtype == np.float64
    assert np.isfinite(features).all()


def test_preprocess_matches_the_fitted_column_transformer(pipeline, artifact):
    _, frame = data.split(data.load_frame())
    expected = artifact.estimator.named_steps["preprocess"].transform(
        frame[[*CATEGORICAL_NAMES, *NUMERIC_NAMES]]
    )
    actual = pipeline.preprocess(validate_instances(data.to_records(frame)))
    np.testing.assert_array_equal(actual, expected)


def test_preprocessor_holds_the_training_medians(pipeline, training_medians):
    np.testing.assert_array_equal(pipeline.preprocess.medians, training_medians)


def test_missing_numeric_values_are_imputed_to_training_medians(pipeline, training_medians, scaler):
    features = pipeline.preprocess(
        validate_instances([{**RECORD, **{name: None for name in NUMERIC_NAMES}}])
    )
    expected = (training_medians - scaler.mean_) / scaler.scale_
    np.testing.assert_allclose(features[0, :N_NUMERIC], expected, rtol=0, atol=1e-12)
    # The imputed year is the median year, 2008; the others are mid-range measurements.
    assert training_medians[NUMERIC_NAMES.index("year")] == 2008.0


def test_only_the_missing_numeric_column_is_imputed(pipeline, training_medians, scaler):
    batch = validate_instances([{**RECORD, "bill_depth_mm": None}])
    features = pipeline.preprocess(batch)[0, :N_NUMERIC]
    raw = np.array([RECORD[name] for name in NUMERIC_NAMES], dtype=float)
    depth = NUMERIC_NAMES.index("bill_depth_mm")
    raw[depth] = training_medians[depth]
    np.testing.assert_allclose(features, (raw - scaler.mean_) / scaler.scale_, rtol=0, atol=1e-12)
    assert features[depth] != pytest.approx((19.0 - scaler.mean_[depth]) / scaler.scale_[depth])


def test_present_numeric_values_are_standardised(pipeline, scaler):
    features = pipeline.preprocess(validate_instances([RECORD]))[0, :N_NUMERIC]
    raw = np.array([RECORD[name] for name in NUMERIC_NAMES], dtype=float)
    np.testing.assert_allclose(features, (raw - scaler.mean_) / scaler.scale_, rtol=0, atol=1e-12)


def test_preprocess_does_not_modify_the_batch(pipeline):
    batch = validate_instances([{**RECORD, "body_mass_g": None}])
    pipeline.preprocess(batch)
    assert batch.columns["body_mass_g"][0] != batch.columns["body_mass_g"][0]  # still NaN
    assert batch.columns["bill_length_mm"] == [50.0]


def test_categories_hit_their_one_hot_slots(pipeline):
    ranges = one_hot_ranges()
    features = pipeline.preprocess(validate_instances([RECORD]))[0]
    island = features[list(ranges["island"])]
    sex = features[list(ranges["sex"])]
    # Slots follow the schema's order, then "unknown" last.
    assert island.tolist() == [0.0, 1.0, 0.0, 0.0]  # Biscoe, Dream, Torgersen, unknown
    assert sex.tolist() == [0.0, 1.0, 0.0]  # female, male, unknown


def test_missing_categories_hit_the_unknown_slot(pipeline):
    ranges = one_hot_ranges()
    features = pipeline.preprocess(validate_instances([{**RECORD, "island": None, "sex": None}]))[0]
    assert features[list(ranges["island"])].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert features[list(ranges["sex"])].tolist() == [0.0, 0.0, 1.0]


def test_one_hot_rows_sum_to_one_per_field(pipeline, held_out):
    records = [*held_out, {**RECORD, "sex": None}, {name: None for name in FIELD_NAMES}]
    features = pipeline.preprocess(validate_instances(records))
    for name, columns in one_hot_ranges().items():
        block = features[:, list(columns)]
        np.testing.assert_array_equal(block.sum(axis=1), np.ones(len(records)), err_msg=name)
        assert set(np.unique(block).tolist()) == {0.0, 1.0}


def test_preprocess_rejects_a_category_that_bypassed_validation(pipeline):
    columns = validate_instances([RECORD]).columns
    columns["island"] = ["Atlantis"]
    with pytest.raises(ValueError, match="unknown island category 'Atlantis'"):
        pipeline.preprocess(RawBatch(columns=columns, size=1))


# --- Classifier ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, N_FEATURES - 1), (3, N_FEATURES + 1), (2, 0)])
def test_classifier_rejects_wrong_column_count(pipeline, shape):
    with pytest.raises(ValueError, match=f"expected a matrix with {N_FEATURES} columns"):
        pipeline.classifier.predict_proba(np.zeros(shape))


def test_classifier_rejects_a_vector(pipeline):
    with pytest.raises(ValueError, match="columns"):
        pipeline.classifier.predict_proba(np.zeros(N_FEATURES))


def test_probability_rows_sum_to_one(pipeline, held_out):
    probabilities = pipeline.classifier.predict_proba(
        pipeline.preprocess(validate_instances(held_out))
    )
    assert probabilities.shape == (len(held_out), len(CLASSES))
    assert (probabilities >= 0).all() and (probabilities <= 1).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_classifier_matches_the_fitted_estimator(pipeline, artifact, held_out):
    features = pipeline.preprocess(validate_instances(held_out))
    expected = artifact.estimator.named_steps["classifier"].predict_proba(features)
    np.testing.assert_allclose(
        pipeline.classifier.predict_proba(features), expected, rtol=0, atol=1e-12
    )


def test_classifier_is_confident_on_a_typical_gentoo(pipeline):
    gentoo = {
        "island": "Biscoe",
        "sex": "male",
        "bill_length_mm": 49.0,
        "bill_depth_mm": 15.5,
        "flipper_length_mm": 222.0,
        "body_mass_g": 5500.0,
        "year": 2008,
    }
    probabilities = pipeline.classifier.predict_proba(
        pipeline.preprocess(validate_instances([gentoo]))
    )
    assert CLASSES[int(probabilities[0].argmax())] == "Gentoo"
    assert probabilities[0].max() > 0.9


# --- Postprocessor ------------------------------------------------------------------------------


def test_species_is_argmax_and_confidence_is_max():
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.85, 0.05], [0.05, 0.15, 0.8], [0.3, 0.3, 0.4]]
    )
    predictions = Postprocessor()(probabilities)
    assert [p["species"] for p in predictions] == ["Adelie", "Chinstrap", "Gentoo", "Gentoo"]
    assert [p["confidence"] for p in predictions] == [0.7, 0.85, 0.8, 0.4]
    assert predictions[1]["probabilities"] == {"Adelie": 0.1, "Chinstrap": 0.85, "Gentoo": 0.05}
    assert all(type(p["confidence"]) is float for p in predictions)


def test_uncertain_flag_flips_exactly_at_the_threshold():
    below = math.nextafter(0.6, 0.0)
    above = math.nextafter(0.6, 1.0)
    probabilities = np.array(
        [
            [0.6, 0.3, 0.1],
            [below, 1.0 - below - 0.1, 0.1],
            [above, 1.0 - above - 0.1, 0.1],
        ]
    )
    predictions = Postprocessor(confidence_threshold=0.6)(probabilities)
    assert [p["uncertain"] for p in predictions] == [False, True, False]
    assert DEFAULT_CONFIDENCE_THRESHOLD == 0.6
    assert [p["uncertain"] for p in Postprocessor()(probabilities)] == [False, True, False]


@pytest.mark.parametrize(
    "threshold,expected",
    [
        (0.0, [False, False]),
        (0.5, [False, True]),
        (1.0, [False, True]),
    ],
)
def test_threshold_bounds_are_valid(threshold, expected):
    probabilities = np.array([[0.0, 1.0, 0.0], [0.45, 0.45, 0.1]])
    assert [
        p["uncertain"] for p in Postprocessor(confidence_threshold=threshold)(probabilities)
    ] == expected


@pytest.mark.parametrize("threshold", [-0.01, 1.01, 60, float("nan")])
def test_invalid_threshold_raises(threshold):
    with pytest.raises(ValueError, match="confidence threshold"):
        Postprocessor(confidence_threshold=threshold)


@pytest.mark.parametrize("shape", [(3,), (2, 2), (2, 4), (1, 3, 1)])
def test_postprocessor_rejects_wrong_shape(shape):
    with pytest.raises(ValueError, match="expected 3 probability columns"):
        Postprocessor()(np.full(shape, 1.0 / 3))


def test_postprocessor_uses_the_given_class_order():
    predictions = Postprocessor(classes=("b", "a"))(np.array([[0.2, 0.8]]))
    assert predictions == [
        {
            "species": "a",
            "probabilities": {"b": 0.2, "a": 0.8},
            "confidence": 0.8,
            "uncertain": False,
        }
    ]


# --- All three stages ---------------------------------------------------------------------------


def test_batch_of_n_gives_n_predictions_in_order(pipeline, held_out):
    batch_predictions = pipeline.predict(validate_instances(held_out))
    assert len(batch_predictions) == len(held_out)
    singles = [pipeline.predict(validate_instances([instance]))[0] for instance in held_out]
    assert [p["species"] for p in batch_predictions] == [p["species"] for p in singles]
    for batched, single in zip(batch_predictions, singles):
        for name in CLASSES:
            assert batched["probabilities"][name] == pytest.approx(
                single["probabilities"][name], abs=1e-12
            )


def test_reversed_batch_gives_reversed_predictions(pipeline, held_out):
    forward = pipeline.predict(validate_instances(held_out))
    backward = pipeline.predict(validate_instances(held_out[::-1]))
    assert [p["species"] for p in backward] == [p["species"] for p in forward][::-1]
    # The held-out set holds all three species, so a mix-up in ordering would show.
    assert {p["species"] for p in forward} == set(CLASSES)
