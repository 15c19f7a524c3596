"""The reference scikit-learn pipelines, one per model profile.

These are what gets trained and saved. Serving compiles them into a faster path
(`servinglab.model.pipeline`) that must give the same answers; these objects stay the yardstick.
"""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from servinglab.schema import (
    CATEGORICAL_FIELDS,
    CATEGORICAL_NAMES,
    MISSING_CATEGORY,
    NUMERIC_NAMES,
)

# Profiles differ in inference cost by orders of magnitude, which is the point: students switch
# profiles to see where the per-request work shifts the monolith-vs-microservices balance.
PROFILES: dict[str, dict] = {
    "linear": {"C": 1.0, "max_iter": 2000},
    "forest": {"n_estimators": 300, "min_samples_leaf": 1},
    "boosting": {"max_iter": 60, "learning_rate": 0.1, "max_leaf_nodes": 15},
    # Big in memory for the reason retrieval models are: the model *is* its reference set. Each
    # training bird stands for `copies` synthetic birds (see AugmentedNeighborsClassifier): about
    # a million rows, 123 MB on disk and ~140 MiB in every process that serves it (make
    # scenarios, scenario 2); the k-d tree answers a query in a few milliseconds.
    "knn": {"n_neighbors": 50, "copies": 4000, "bandwidth": 0.3, "leaf_size": 40},
}
DEFAULT_PROFILE = "linear"


class AugmentedNeighborsClassifier(KNeighborsClassifier):
    """k nearest neighbours over a smoothed bootstrap of the training birds.

    `fit` repeats every (preprocessed) training row `copies` times and adds seeded Gaussian noise
    of `bandwidth` standard deviations to the four body measurements (the first four columns:
    the preprocessor puts the scaled numeric fields first and `year` fifth, which stays exact),
    i.e. it samples each species' kernel density estimate. Neighbours then vote from overlapping
    clouds rather than from copies of one bird, so probabilities stay smooth and calibrated.

    Artifacts load only library types (`artifact.TRUSTED_TYPE_PREFIXES`), and the augmentation
    matters at fit time only, so a fitted instance becomes the plain `KNeighborsClassifier` it is
    underneath: what is saved, loaded and served is scikit-learn's own class.
    """

    AUGMENTED_COLUMNS = 4  # bill length, bill depth, flipper length, body mass

    def __init__(
        self,
        n_neighbors: int = 50,
        *,
        copies: int = 1,
        bandwidth: float = 0.3,
        leaf_size: int = 40,
        random_state: int | None = None,
    ):
        super().__init__(n_neighbors=n_neighbors, algorithm="kd_tree", leaf_size=leaf_size)
        self.copies = copies
        self.bandwidth = bandwidth
        self.random_state = random_state

    def fit(self, X, y):
        features = np.asarray(X, dtype=float)
        labels = np.asarray(y)
        rng = np.random.default_rng(self.random_state)
        reference = np.repeat(features, self.copies, axis=0)
        columns = self.AUGMENTED_COLUMNS
        reference[:, :columns] += rng.normal(0.0, self.bandwidth, (len(reference), columns))
        super().fit(reference, np.repeat(labels, self.copies))
        self.__class__ = KNeighborsClassifier
        return self


def build_preprocessor() -> ColumnTransformer:
    numeric = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            (
                "impute",
                SimpleImputer(
                    missing_values=None, strategy="constant", fill_value=MISSING_CATEGORY
                ),
            ),
            (
                "onehot",
                OneHotEncoder(
                    categories=[
                        [*field.categories, MISSING_CATEGORY] for field in CATEGORICAL_FIELDS
                    ],
                    handle_unknown="error",
                    sparse_output=False,
                ),
            ),
        ]
    )
    return ColumnTransformer(
        [
            ("numeric", numeric, list(NUMERIC_NAMES)),
            ("categorical", categorical, list(CATEGORICAL_NAMES)),
        ],
        remainder="drop",
    )


def build_classifier(profile: str, seed: int):
    params = PROFILES[profile]
    if profile == "linear":
        return LogisticRegression(random_state=seed, **params)
    if profile == "forest":
        return RandomForestClassifier(random_state=seed, n_jobs=1, **params)
    if profile == "boosting":
        return HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params)
    if profile == "knn":
        return AugmentedNeighborsClassifier(random_state=seed, **params)
    raise ValueError(f"unknown model profile {profile!r}; choose one of {', '.join(PROFILES)}")


def build_estimator(profile: str, seed: int) -> Pipeline:
    return Pipeline(
        [("preprocess", build_preprocessor()), ("classifier", build_classifier(profile, seed))]
    )
