"""Behavioural tests of every trained model profile, through the compiled serving pipeline.

Each profile (linear, forest, boosting) is loaded from the trained `models/` root and checked for
held-out accuracy, for agreement with the scikit-learn reference it was compiled from, and for
sensible behaviour on inputs that should barely matter (the recording year) or that are missing.

Thresholds were set from measurements on the shipped models (seed 42, 86 held-out birds):

    profile   accuracy  year: same species / max prob move   sex nulled: same species
    linear    1.000     85/86 (0.988) / 0.053                86/86 (1.000)
    forest    1.000     86/86 (1.000) / 0.057                85/86 (0.988)
    boosting  0.988     86/86 (1.000) / 0.020                85/86 (0.988)

Fast path vs reference: max absolute difference 0.0 on held-out rows for all three profiles.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from helpers import held_out_frame

from servinglab.model.artifact import load_artifact
from servinglab.model.pipeline import PYTHON_PREPROCESS_MAX_ROWS, ServingPipeline
from servinglab.schema import (
    CATEGORICAL_FIELDS,
    CATEGORICAL_NAMES,
    CLASSES,
    FIELD_NAMES,
    NUMERIC_FIELDS,
    NUMERIC_NAMES,
)
from servinglab.validation import RawBatch, validate_instances

PROFILES = ("linear", "forest", "boosting")
# The serving path must replay the reference's arithmetic; only rounding noise is tolerated.
REFERENCE_TOLERANCE = 1e-9
# Species are nearly separable on bill and flipper measurements (published classifiers reach
# 97-100 %). 0.97 on 86 birds allows two mistakes: measured 1.0 / 1.0 / 0.988, so a floor that
# still catches a model that lost one of its strong features (which drops it below ~0.95).
ACCURACY_FLOOR = 0.97
# The year is when a bird was measured, not what it is: moving it within the study's 2007-2009
# must leave the species alone for all but borderline birds. Measured worst case: one flip in 86
# (linear, 0.988); 0.97 allows two. Probabilities moved by at most 0.057 (forest); 0.10 leaves
# headroom for retraining noise while still failing a model that leans on the year.
YEAR_SAME_SPECIES_FLOOR = 0.97
YEAR_MAX_PROBABILITY_MOVE = 0.10
STUDY_YEARS = (2007, 2008, 2009)
# Sex is a real but secondary signal (males are heavier, with longer bills), so forgetting it may
# tip a borderline bird. Measured worst case: one flip in 86 (forest, boosting); 0.95 allows four.
SEX_NULLED_SAME_SPECIES_FLOOR = 0.95
EDGE_ROWS_PER_PATTERN = 3
EDGE_SEED = 20240607


@pytest.fixture(scope="module", params=PROFILES)
def profile_model(request, models_root):
    artifact = load_artifact(models_root, request.param)
    assert artifact.metadata["profile"] == request.param
    return artifact, ServingPipeline.from_artifact(artifact)


@pytest.fixture(scope="module")
def edge_records() -> list[dict]:
    """Every combination of missing fields, with values spread over the whole schema range.

    Half the numeric draws are inside the training range, half anywhere within the schema's
    physical bounds (a 1 mm bill, a 19 kg penguin, the year 2100), far from anything seen in training.
    """
    rng = np.random.default_rng(EDGE_SEED)
    typical = {
        "bill_length_mm": (32.0, 60.0),
        "bill_depth_mm": (13.0, 21.5),
        "flipper_length_mm": (172.0, 231.0),
        "body_mass_g": (2700.0, 6300.0),
        "year": (2007, 2009),
    }
    names = sorted(FIELD_NAMES)
    records = []
    for pattern in itertools.product((False, True), repeat=len(names)):
        missing = {name for name, is_missing in zip(names, pattern) if is_missing}
        for _ in range(EDGE_ROWS_PER_PATTERN):
            record = {}
            for field in NUMERIC_FIELDS:
                low, high = (
                    typical[field.name] if rng.random() < 0.5 else (field.minimum, field.maximum)
                )
                if field.integer:
                    record[field.name] = int(rng.integers(low, high, endpoint=True))
                else:
                    record[field.name] = float(rng.uniform(low, high))
            for field in CATEGORICAL_FIELDS:
                record[field.name] = str(rng.choice(field.categories))
            record.update({name: None for name in missing})
            records.append(record)
    return records


def reference_frame(batch: RawBatch) -> pd.DataFrame:
    """The validated columns as the frame the sklearn pipeline was fitted on.

    `data.py` builds training frames with categorical columns as object dtype holding None for a
    missing value and numeric columns as float with NaN; a validated batch already holds exactly
    those values, so only the dtypes are fixed here.
    """
    columns = {name: pd.Series(batch.columns[name], dtype=object) for name in CATEGORICAL_NAMES}
    columns.update({name: pd.Series(batch.columns[name], dtype=float) for name in NUMERIC_NAMES})
    return pd.DataFrame(columns)[[*CATEGORICAL_NAMES, *NUMERIC_NAMES]]


def fast_proba(pipeline: ServingPipeline, records: list[dict]) -> np.ndarray:
    return pipeline.classifier.predict_proba(pipeline.preprocess(validate_instances(records)))


def species(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(CLASSES)[probabilities.argmax(axis=1)]


# --- Quality ------------------------------------------------------------------------------------


def test_held_out_accuracy_floor(profile_model, held_out):
    artifact, pipeline = profile_model
    predictions = pipeline.predict(validate_instances(held_out))
    predicted = [p["species"] for p in predictions]
    truth = held_out_frame()["species"].tolist()
    assert len(predicted) == len(truth) == 86
    accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
    assert accuracy >= ACCURACY_FLOOR, (
        f"{artifact.metadata['version']}: held-out accuracy {accuracy:.3f}"
    )
    # The metadata's own claim must be what the served model actually does.
    assert accuracy == pytest.approx(
        artifact.metadata["metrics"]["held_out"]["accuracy"], abs=1e-12
    )


# --- Agreement with the reference ---------------------------------------------------------------


def test_fast_path_matches_reference_on_held_out(profile_model, held_out):
    artifact, pipeline = profile_model
    expected = artifact.estimator.predict_proba(
        held_out_frame()[[*CATEGORICAL_NAMES, *NUMERIC_NAMES]]
    )
    actual = fast_proba(pipeline, held_out)
    assert actual.shape == expected.shape == (86, 3)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=REFERENCE_TOLERANCE)


def test_every_missing_pattern_and_extreme_value_gets_a_sound_prediction(
    profile_model, edge_records
):
    """Any mix of missing fields and physically possible values gives one labelled, finite
    prediction per record, the species and confidence of the reference estimator."""
    artifact, pipeline = profile_model
    patterns = {
        frozenset(name for name, value in record.items() if value is None)
        for record in edge_records
    }
    # What the records span, so that the checks below are about every pattern and far values.
    assert len(patterns) == 2 ** len(FIELD_NAMES)
    numbers = {
        name: [r[name] for r in edge_records if r[name] is not None] for name in NUMERIC_NAMES
    }
    assert min(numbers["body_mass_g"]) < 1000 and max(numbers["body_mass_g"]) > 10000
    assert min(numbers["year"]) < 2000 and max(numbers["year"]) > 2050

    batch = validate_instances(edge_records)
    features = pipeline.preprocess(batch)
    assert np.isfinite(features).all(), "imputation must leave no NaN for the classifier"
    predictions = pipeline.predict(batch)
    reference = artifact.estimator.predict_proba(reference_frame(batch))
    assert len(predictions) == len(edge_records)
    for index, (prediction, expected) in enumerate(zip(predictions, reference, strict=True)):
        probabilities = prediction["probabilities"]
        assert list(probabilities) == list(CLASSES), index
        assert all(0.0 <= p <= 1.0 for p in probabilities.values()), (index, probabilities)
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9), index
        assert prediction["species"] == CLASSES[int(expected.argmax())], (
            index,
            edge_records[index],
        )
        assert prediction["confidence"] == max(probabilities.values())
        assert prediction["confidence"] == pytest.approx(expected.max(), abs=REFERENCE_TOLERANCE)
        assert prediction["uncertain"] == (
            prediction["confidence"] < pipeline.postprocess.confidence_threshold
        )


def test_fast_path_matches_reference_on_edge_cases(profile_model, edge_records):
    artifact, pipeline = profile_model
    batch = validate_instances(edge_records)
    expected = artifact.estimator.predict_proba(reference_frame(batch))
    actual = pipeline.classifier.predict_proba(pipeline.preprocess(batch))
    assert actual.shape == (len(edge_records), len(CLASSES))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=REFERENCE_TOLERANCE)
    np.testing.assert_allclose(actual.sum(axis=1), 1.0, rtol=0, atol=1e-9)


def test_small_batches_take_a_python_path_with_identical_bits(profile_model, edge_records):
    """Up to PYTHON_PREPROCESS_MAX_ROWS rows, preprocessing runs on Python floats; same operations, same bits."""
    artifact, pipeline = profile_model
    assert len(edge_records) > PYTHON_PREPROCESS_MAX_ROWS
    numpy_path = pipeline.preprocess(validate_instances(edge_records))
    python_path = np.vstack(
        [pipeline.preprocess(validate_instances([record])) for record in edge_records]
    )
    np.testing.assert_array_equal(python_path, numpy_path)
    small = edge_records[:PYTHON_PREPROCESS_MAX_ROWS]
    expected = artifact.estimator.predict_proba(reference_frame(validate_instances(small)))
    np.testing.assert_allclose(
        fast_proba(pipeline, small), expected, rtol=0, atol=REFERENCE_TOLERANCE
    )


# --- Invariances --------------------------------------------------------------------------------


def test_year_barely_matters(profile_model, held_out):
    _, pipeline = profile_model
    by_year = {
        year: fast_proba(pipeline, [{**r, "year": year} for r in held_out]) for year in STUDY_YEARS
    }
    labels = np.stack([species(p) for p in by_year.values()])
    same = (labels == labels[0]).all(axis=0).mean()
    assert same >= YEAR_SAME_SPECIES_FLOOR, (
        f"species unchanged across years for only {same:.3f} of rows"
    )
    move = max(
        np.abs(by_year[a] - by_year[b]).max() for a, b in itertools.combinations(STUDY_YEARS, 2)
    )
    assert move <= YEAR_MAX_PROBABILITY_MOVE, (
        f"changing only the year moved a probability by {move:.3f}"
    )


# --- Missing values -----------------------------------------------------------------------------


def test_every_numeric_measurement_missing_still_predicts(profile_model, held_out):
    _, pipeline = profile_model
    records = [{**r, **{name: None for name in NUMERIC_NAMES}} for r in held_out]
    predictions = pipeline.predict(validate_instances(records))
    assert len(predictions) == len(held_out)
    for prediction in predictions:
        assert prediction["species"] in CLASSES
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
        assert all(0.0 <= p <= 1.0 for p in prediction["probabilities"].values())


def test_a_record_with_every_field_missing_still_predicts(profile_model):
    _, pipeline = profile_model
    [prediction] = pipeline.predict(validate_instances([{name: None for name in FIELD_NAMES}]))
    assert prediction["species"] in CLASSES
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
    assert prediction["confidence"] == max(prediction["probabilities"].values())


def test_missing_sex_keeps_most_predictions(profile_model, held_out):
    _, pipeline = profile_model
    with_sex = species(fast_proba(pipeline, held_out))
    without_sex = species(fast_proba(pipeline, [{**r, "sex": None} for r in held_out]))
    kept = (with_sex == without_sex).mean()
    assert kept >= SEX_NULLED_SAME_SPECIES_FLOOR, f"nulling sex kept only {kept:.3f} of predictions"
