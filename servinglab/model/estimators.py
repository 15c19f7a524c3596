"""The reference scikit-learn pipelines, one per model profile.

These are what gets trained and saved. Serving compiles them into a faster path
(`servinglab.model.pipeline`) that must give the same answers; these objects stay the yardstick.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from servinglab.schema import CATEGORICAL_FIELDS, CATEGORICAL_NAMES, NUMERIC_NAMES

# A missing category becomes a category of its own: the model can learn that "sex not recorded"
# carries information, and the same value can never collide with a real category name.
MISSING_CATEGORY = "unknown"

# Profiles differ in inference cost by orders of magnitude, which is the point: students switch
# profiles to see where the per-request work shifts the monolith-vs-microservices balance.
PROFILES: dict[str, dict] = {
    "linear": {"C": 1.0, "max_iter": 2000},
    "forest": {"n_estimators": 300, "min_samples_leaf": 1},
    "boosting": {"max_iter": 60, "learning_rate": 0.1, "max_leaf_nodes": 15},
}
DEFAULT_PROFILE = "linear"


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
    raise ValueError(f"unknown model profile {profile!r}; choose one of {', '.join(PROFILES)}")


def build_estimator(profile: str, seed: int) -> Pipeline:
    return Pipeline(
        [("preprocess", build_preprocessor()), ("classifier", build_classifier(profile, seed))]
    )
