"""Monolith app factory: the shared HTTP API around an in-process pipeline.

    gunicorn -c python:servinglab.serving.gunicorn_conf 'monolith.app:create_app()'   # production
    make dev                                                                    # Flask dev server

The model loads when the app is created, so a bad artifact stops the server at start-up with the
artifact's own error message instead of failing the first request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask

from servinglab import config as lab_config
from servinglab.config import Settings
from servinglab.contract import Backend, PredictOutcome, model_summary
from servinglab.model.artifact import load_artifact
from servinglab.model.pipeline import ServingPipeline
from servinglab.problems import stage_timeout
from servinglab.serving import batching
from servinglab.serving.api import build_app
from servinglab.serving.cache import with_cache
from servinglab.validation import RawBatch

log = logging.getLogger(__name__)


class InProcessBackend:
    """Calls the three stages directly; the only 'hops' are Python function calls.

    With a `batcher`, the infer stage goes through it, so this worker's concurrent requests share
    model calls; `infer` then includes the wait for the batch (lab_batch_* metrics show sizes).
    """

    def __init__(self, pipeline: ServingPipeline, batcher: batching.MicroBatcher | None = None):
        self.pipeline = pipeline
        self.model = model_summary(pipeline.metadata)
        self.batcher = batcher

    def predict(self, batch: RawBatch) -> PredictOutcome:
        clock = time.perf_counter
        t0 = clock()
        features = self.pipeline.preprocess(batch)
        t1 = clock()
        if self.batcher is None:
            probabilities = self.pipeline.classifier.predict_proba(features)
        else:
            try:
                probabilities, _ = self.batcher.submit(features)
            except TimeoutError:
                raise stage_timeout("inference", self.batcher.timeout_s * 1e3) from None
        t2 = clock()
        predictions = self.pipeline.postprocess(probabilities)
        t3 = clock()
        return PredictOutcome(
            predictions,
            self.model,
            [("pre", (t1 - t0) * 1e3), ("infer", (t2 - t1) * 1e3), ("post", (t3 - t2) * 1e3)],
        )

    def describe(self) -> dict:
        return dict(self.pipeline.metadata)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        return True, {"model": f"loaded {self.model['version']}"}


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """`config`: the settings, or overrides of the environment's (`servinglab.config.resolve`)."""
    settings = lab_config.resolve(config)
    artifact = load_artifact(settings.model_dir, settings.model_profile)
    pipeline = ServingPipeline.from_artifact(artifact, settings.confidence_threshold)
    classifier = pipeline.classifier
    # One batcher per gunicorn worker: the app is built in each worker (preload_app is off), and
    # the batcher starts its thread on first use anyway, so a fork could not break it.
    batcher = batching.from_settings(
        classifier.predict_proba, classifier.n_features, settings, max_callers=settings.http_threads
    )
    if batcher is not None and settings.http_threads < 2:
        log.warning(
            "BATCHING is on with HTTP_THREADS=%s: a worker serves one request at a time, "
            "so every batch holds one request; set LAB_HTTP_THREADS to 8 or so",
            settings.http_threads,
        )
    backend: Backend = InProcessBackend(pipeline, batcher)
    # In front of everything, batching included: a request whose instances all hit skips the pipeline.
    backend = with_cache(backend, settings, "monolith")
    return build_app(lambda: backend, __name__, settings)
