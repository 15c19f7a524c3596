"""The three serving stages, compiled from a trained scikit-learn pipeline.

sklearn spends hundreds of microseconds per call checking its input, while the arithmetic for one
penguin takes a few. Each stage here reads the fitted parameters once and replays the same
floating-point operations in numpy, so answers match the reference (a test holds them to 1e-9)
at a fraction of the cost. Stages know nothing about HTTP or gRPC: both architectures call these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from servinglab.model.artifact import Artifact, load_artifact
from servinglab.schema import CATEGORICAL_FIELDS, CLASSES, MISSING_CATEGORY, NUMERIC_NAMES
from servinglab.validation import RawBatch

DEFAULT_CONFIDENCE_THRESHOLD = 0.6
# Up to this many rows, preprocessing runs on Python floats: a dozen numpy calls cost more than
# the arithmetic on a cold cache between requests (profiled: ~14% of a monolith worker's time).
PYTHON_PREPROCESS_MAX_ROWS = 8


class Preprocessor:
    """Raw columns -> the feature matrix the fitted ColumnTransformer would produce."""

    def __init__(self, column_transformer: Any):
        numeric = column_transformer.named_transformers_["numeric"]
        categorical = column_transformer.named_transformers_["categorical"]
        self.medians = numeric.named_steps["impute"].statistics_.astype(float)
        self.means = numeric.named_steps["scale"].mean_.astype(float)
        self.scales = numeric.named_steps["scale"].scale_.astype(float)
        encoder = categorical.named_steps["onehot"]
        self.n_numeric = len(NUMERIC_NAMES)
        # Column offset of every (field, category) one-hot slot, in the encoder's output order.
        self.slots: list[tuple[str, dict[Any, int]]] = []
        offset = self.n_numeric
        for field, categories in zip(CATEGORICAL_FIELDS, encoder.categories_):
            lookup = {category: offset + i for i, category in enumerate(categories)}
            lookup[None] = lookup[MISSING_CATEGORY]
            self.slots.append((field.name, lookup))
            offset += len(categories)
        self.n_features = offset
        self.numeric_params = [
            (name, float(median), float(mean), float(scale))
            for name, median, mean, scale in zip(
                NUMERIC_NAMES, self.medians, self.means, self.scales
            )
        ]

    def __call__(self, batch: RawBatch) -> np.ndarray:
        if batch.size <= PYTHON_PREPROCESS_MAX_ROWS:
            return self._python_rows(batch)
        columns = batch.columns
        numeric = np.array([columns[name] for name in NUMERIC_NAMES], dtype=float).T
        missing = np.isnan(numeric)
        if missing.any():
            numeric = np.where(missing, self.medians, numeric)
        # Same operations, same order as SimpleImputer then StandardScaler: bit-identical results.
        numeric -= self.means
        numeric /= self.scales
        features = np.zeros((batch.size, self.n_features))
        features[:, : self.n_numeric] = numeric
        rows = np.arange(batch.size)
        for name, lookup in self.slots:
            try:
                features[rows, [lookup[value] for value in columns[name]]] = 1.0
            except KeyError as exc:
                raise ValueError(f"unknown {name} category {exc.args[0]!r}") from None
        return features

    def _python_rows(self, batch: RawBatch) -> np.ndarray:
        """The same IEEE double operations as the numpy path, so the same bits, one row at a time."""
        columns = batch.columns
        rows = []
        for index in range(batch.size):
            row = [0.0] * self.n_features
            for position, (name, median, mean, scale) in enumerate(self.numeric_params):
                value = columns[name][index]
                if value != value:  # NaN: a missing measurement
                    value = median
                row[position] = (value - mean) / scale
            for name, lookup in self.slots:
                value = columns[name][index]
                if value not in lookup:
                    raise ValueError(f"unknown {name} category {value!r}")
                row[lookup[value]] = 1.0
            rows.append(row)
        return np.array(rows)


class Classifier:
    """Feature matrix -> class probabilities; a numpy fast path for the linear profile."""

    def __init__(self, estimator: Any):
        # scikit-learn is imported where a classifier is made, not with the module: the
        # postprocess stage imports this module for its Postprocessor and needs no estimator.
        # Once an artifact is loaded, sklearn is in sys.modules and these imports cost nothing.
        import sklearn
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression

        self.estimator = estimator
        self.config_context = sklearn.config_context
        self.n_features = estimator.n_features_in_
        if isinstance(estimator, LogisticRegression) and len(estimator.classes_) > 2:
            # One contiguous row of weights per class: each score is then a dot product of two
            # contiguous vectors of n_features, see _softmax_regression.
            self.coef = np.ascontiguousarray(estimator.coef_, dtype=float)
            self.intercept = estimator.intercept_.copy()
            self._predict = self._softmax_regression
        elif isinstance(estimator, RandomForestClassifier):
            # The forest's own predict_proba dispatches every tree through joblib, which costs
            # ~100 us a tree on one row; summing the trees in the same order gives the same sum.
            self.trees = list(estimator.estimators_)
            self._predict = self._forest_average
        else:
            # Trees spend their time walking nodes, not validating input: the library call is
            # already dominated by real work, so only its parameter checks are switched off.
            self._predict = self._library_predict

    def _softmax_regression(self, features: np.ndarray) -> np.ndarray:
        # Not `features @ coef.T`: BLAS picks gemv for one row and gemm for several, and their
        # summation orders differ, so a row's last bits depended on the batch around it (seen
        # on OpenBLAS/Haswell). vecdot makes one length-n_features dot product per (row, class),
        # identical calls whatever the batch, so micro-batching cannot change an answer; and it
        # is no slower for one row. C order keeps every call on the same unit-stride path.
        scores = np.vecdot(np.ascontiguousarray(features)[:, None, :], self.coef)
        scores += self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def _forest_average(self, features: np.ndarray) -> np.ndarray:
        features = features.astype(np.float32)
        total = self.trees[0].predict_proba(features, check_input=False)
        for tree in self.trees[1:]:
            total += tree.predict_proba(features, check_input=False)
        total /= len(self.trees)
        return total

    def _library_predict(self, features: np.ndarray) -> np.ndarray:
        with self.config_context(assume_finite=True, skip_parameter_validation=True):
            return self.estimator.predict_proba(features)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(
                f"expected a matrix with {self.n_features} columns, got shape {features.shape}"
            )
        return self._predict(features)


class Postprocessor:
    """Probabilities -> labelled predictions with confidence and an `uncertain` flag."""

    def __init__(
        self,
        classes: tuple[str, ...] = CLASSES,
        confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    ):
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(
                f"confidence threshold must be within [0, 1], got {confidence_threshold}"
            )
        self.classes = classes
        self.confidence_threshold = confidence_threshold

    def __call__(self, probabilities: np.ndarray) -> list[dict]:
        if probabilities.ndim != 2 or probabilities.shape[1] != len(self.classes):
            raise ValueError(
                f"expected {len(self.classes)} probability columns, got shape {probabilities.shape}"
            )
        best = probabilities.argmax(axis=1).tolist()
        classes = self.classes
        threshold = self.confidence_threshold
        predictions = []
        for winner, row in zip(best, probabilities.tolist()):
            confidence = row[winner]
            predictions.append(
                {
                    "species": classes[winner],
                    "probabilities": dict(zip(classes, row)),
                    "confidence": confidence,
                    "uncertain": confidence < threshold,
                }
            )
        return predictions


@dataclass
class ServingPipeline:
    """All three stages of one artifact, for the monolith (microservices load one stage each)."""

    preprocess: Preprocessor
    classifier: Classifier
    postprocess: Postprocessor
    metadata: dict

    @classmethod
    def from_artifact(
        cls, artifact: Artifact, confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    ) -> ServingPipeline:
        estimator = artifact.estimator
        return cls(
            preprocess=Preprocessor(estimator.named_steps["preprocess"]),
            classifier=Classifier(estimator.named_steps["classifier"]),
            postprocess=Postprocessor(tuple(estimator.classes_), confidence_threshold),
            metadata=artifact.metadata,
        )

    @classmethod
    def load(
        cls, location=None, confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    ) -> ServingPipeline:
        return cls.from_artifact(load_artifact(location), confidence_threshold)

    def predict(self, batch: RawBatch) -> list[dict]:
        return self.postprocess(self.classifier.predict_proba(self.preprocess(batch)))
