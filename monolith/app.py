"""Monolith app factory: the shared HTTP API around an in-process pipeline.

    gunicorn -c python:servinglab.gunicorn_conf 'monolith.app:create_app()'   # production
    make dev                                                                    # Flask dev server

The model loads when the app is created, so a bad artifact stops the server at start-up with the
artifact's own error message instead of failing the first request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Flask

from servinglab import config as lab_config
from servinglab.api import PredictOutcome, build_app
from servinglab.artifact import load_artifact
from servinglab.pipeline import ServingPipeline, model_summary
from servinglab.validation import RawBatch


class InProcessBackend:
    """Calls the three stages directly; the only 'hops' are Python function calls."""

    def __init__(self, pipeline: ServingPipeline):
        self.pipeline = pipeline
        self.model = model_summary(pipeline.metadata)

    def predict(self, batch: RawBatch) -> PredictOutcome:
        clock = time.perf_counter
        t0 = clock()
        features = self.pipeline.preprocess(batch)
        t1 = clock()
        probabilities = self.pipeline.classifier.predict_proba(features)
        t2 = clock()
        predictions = self.pipeline.postprocess(probabilities)
        t3 = clock()
        return PredictOutcome(predictions, self.model,
                              [("pre", (t1 - t0) * 1e3), ("infer", (t2 - t1) * 1e3), ("post", (t3 - t2) * 1e3)])

    def describe(self) -> dict:
        return dict(self.pipeline.metadata)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        return True, {"model": f"loaded {self.model['version']}"}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    settings = lab_config.load(overrides=config)
    artifact = load_artifact(settings["MODEL_DIR"], settings["MODEL_PROFILE"])
    pipeline = ServingPipeline.from_artifact(artifact, float(settings["CONFIDENCE_THRESHOLD"]))
    backend = InProcessBackend(pipeline)
    return build_app(lambda: backend, __name__, config)
