"""Conversions between the pipeline's Python/numpy values and the protobuf messages.

Both sides of every hop use these, so a value crosses the wire and comes back unchanged: doubles
travel as IEEE doubles, missing numbers as NaN, missing categories as "".
"""

from __future__ import annotations

import numpy as np

from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from servinglab.schema import CATEGORICAL_NAMES, NUMERIC_NAMES
from servinglab.validation import RawBatch


def batch_to_proto(batch: RawBatch) -> pb.RawInstances:
    message = pb.RawInstances(count=batch.size)
    for name in NUMERIC_NAMES:
        getattr(message, name).extend(batch.columns[name])
    for name in CATEGORICAL_NAMES:
        getattr(message, name).extend([value or "" for value in batch.columns[name]])
    return message


def batch_from_proto(message: pb.RawInstances) -> RawBatch:
    columns: dict[str, list] = {}
    for name in NUMERIC_NAMES:
        columns[name] = list(getattr(message, name))
    for name in CATEGORICAL_NAMES:
        columns[name] = [value or None for value in getattr(message, name)]
    lengths = {len(column) for column in columns.values()}
    if lengths != {message.count}:
        raise ValueError(
            f"every column must hold count={message.count} values, got lengths {sorted(lengths)}"
        )
    return RawBatch(columns=columns, size=message.count)


def matrix_to_proto(matrix: np.ndarray) -> pb.Matrix:
    rows, cols = matrix.shape
    return pb.Matrix(rows=rows, cols=cols, values=matrix.ravel().tolist())


def matrix_from_proto(message: pb.Matrix) -> np.ndarray:
    values = np.array(message.values, dtype=float)
    if values.size != message.rows * message.cols:
        raise ValueError(f"matrix of {message.rows}x{message.cols} carries {values.size} values")
    return values.reshape(message.rows, message.cols)


def model_ref(summary: dict) -> pb.ModelRef:
    """A model's summary (`servinglab.contract.model_summary`) as it travels."""
    return pb.ModelRef(**summary)


def model_from_proto(model: pb.ModelRef) -> dict:
    """The summary a `ModelRef` carries, as responses show it: the inverse of `model_ref`."""
    return {"name": model.name, "version": model.version, "profile": model.profile}


def predictions_from_proto(message: pb.PostprocessResponse) -> list[dict]:
    classes = tuple(message.classes)
    return [
        {
            "species": item.species,
            "probabilities": dict(zip(classes, item.probabilities)),
            "confidence": item.confidence,
            "uncertain": item.uncertain,
        }
        for item in message.predictions
    ]
