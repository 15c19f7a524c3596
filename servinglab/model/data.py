"""The Palmer Penguins data set, as shipped inside the `palmerpenguins` package (no download).

One function gives the frame, one its fingerprint, one the deterministic train/held-out split, so
training, tests and the benchmark's request bodies all agree on which birds were held out.
"""

from __future__ import annotations

import hashlib
import math
from importlib import resources
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from servinglab.schema import CATEGORICAL_NAMES, NUMERIC_NAMES, TARGET

DEFAULT_SEED = 42
HELD_OUT_FRACTION = 0.25


def _csv_path():
    return resources.files("palmerpenguins").joinpath("data", "penguins.csv")


def data_sha256() -> str:
    return hashlib.sha256(_csv_path().read_bytes()).hexdigest()


def load_frame() -> pd.DataFrame:
    """All 344 birds; rows without a label would be useless for training and there are none."""
    with _csv_path().open("rb") as handle:
        frame = pd.read_csv(handle)
    columns = [*CATEGORICAL_NAMES, *NUMERIC_NAMES]
    frame = frame[[*columns, TARGET]].dropna(subset=[TARGET]).reset_index(drop=True)
    # Plain object/float columns: the fitted transformers then see the same dtypes that the
    # serving path builds from JSON, whatever pandas' default string dtype is this year.
    for name in CATEGORICAL_NAMES:
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    for name in NUMERIC_NAMES:
        frame[name] = frame[name].astype(float)
    return frame


def split(frame: pd.DataFrame, seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified split: every species keeps its share in both halves."""
    train, held_out = train_test_split(
        frame, test_size=HELD_OUT_FRACTION, stratify=frame[TARGET], random_state=seed
    )
    return train.reset_index(drop=True), held_out.reset_index(drop=True)


def to_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as API instances: JSON-ready values, None for missing, integers where the schema says."""
    records = []
    for row in frame[[*CATEGORICAL_NAMES, *NUMERIC_NAMES]].to_dict("records"):
        record: dict[str, Any] = {}
        for name, value in row.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                record[name] = None
            elif name == "year":
                record[name] = int(value)
            elif name in NUMERIC_NAMES:
                record[name] = float(value)
            else:
                record[name] = str(value)
        records.append(record)
    return records


def held_out_records(seed: int = DEFAULT_SEED) -> list[dict]:
    return to_records(split(load_frame(), seed)[1])
