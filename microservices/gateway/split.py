"""The gateway's split backend (KServe's transformer/predictor pattern): preprocess and postprocess
run in the gateway's own process, the model behind one gRPC call to the inference service.

The in-process stages are the shared pipeline code the monolith and the stage services run, so
answers are the same bits. Versions never mix: inference stays the authority on the model version,
and the gateway keeps preprocessing parameters per version exactly as the preprocess service does
(`servinglab.model.versions`), so during a rollout it preprocesses for the version inference serves.
"""

from __future__ import annotations

import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2_grpc

from microservices.calls import (
    Deadline,
    StageFailure,
    VersionTracker,
    call,
    health_status,
)
from microservices.channels import open_channel
from microservices.convert import matrix_from_proto, matrix_to_proto, model_from_proto
from microservices.gateway.common import describe_model, stage_problems, stage_timings
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from servinglab.config import Settings
from servinglab.contract import PredictOutcome
from servinglab.model.artifact import ArtifactError, load_artifact
from servinglab.model.versions import PostprocessorsByClasses, VersionedPreprocessors
from servinglab.validation import RawBatch


class LocalStages:
    """What the gateway computes itself; built once before gunicorn forks, shared by its workers."""

    def __init__(self, settings: Settings):
        # Loaded at start-up, so a bad artifact stops the gateway with the artifact's own message.
        artifact = load_artifact(settings.model_dir, settings.model_profile)
        # Each version tagged with its name: what inference is told the features are for.
        self.preprocessors = VersionedPreprocessors(artifact, lambda summary: summary["version"])
        self.loaded_version = self.preprocessors.default_version
        # Keyed by the class names inference reports, as in the postprocess service.
        self.postprocessors = PostprocessorsByClasses(settings.confidence_threshold)

    def preprocess(self, batch: RawBatch, version: str) -> tuple[np.ndarray, str]:
        try:
            preprocessor, served_version = self.preprocessors.get(version)
        except ArtifactError as exc:
            # What the preprocess service answers in the same case, so the client sees the same 503.
            raise StageFailure(
                "preprocess", grpc.StatusCode.FAILED_PRECONDITION, str(exc)
            ) from None
        return preprocessor(batch), served_version

    def postprocess(self, probabilities: np.ndarray, classes: tuple[str, ...]) -> list[dict]:
        return self.postprocessors.get(classes)(probabilities)


class SplitBackend:
    def __init__(self, settings: Settings, local: LocalStages):
        self.local = local
        self.budget_ms = settings.request_budget_ms
        self.ready_timeout_s = settings.ready_check_timeout_ms / 1e3
        channel = open_channel(settings.inference_addr, settings)
        self.inference = pb_grpc.InferenceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.versions = VersionTracker()

    def predict(self, batch: RawBatch) -> PredictOutcome:
        clock = time.perf_counter
        deadline = Deadline.after_ms(self.budget_ms)

        def infer(features: np.ndarray, version: str, others: dict) -> pb.InferenceResponse:
            alternatives = {other: matrix_to_proto(matrix) for other, matrix in others.items()}
            return call(
                "inference",
                self.inference.Predict,
                pb.InferenceRequest(
                    features=matrix_to_proto(features),
                    expected_version=version,
                    alternatives=alternatives,
                ),
                deadline,
            )

        t0 = clock()
        with stage_problems(self.budget_ms):
            _, inf, t1 = self.versions.run(
                lambda version: self.local.preprocess(batch, version), infer
            )
        t2 = clock()
        predictions = self.local.postprocess(
            matrix_from_proto(inf.probabilities), tuple(inf.classes)
        )
        t3 = clock()
        compute_ms = inf.timing.compute_ms
        timings = stage_timings(
            [
                ("preprocess", (t1 - t0) * 1e3, None),
                ("inference", compute_ms, (t2 - t1) * 1e3 - compute_ms),
                ("postprocess", (t3 - t2) * 1e3, None),
            ]
        )
        return PredictOutcome(predictions, model_from_proto(inf.model), timings)

    def describe(self) -> dict:
        return describe_model(self.inference.Describe, self.budget_ms)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        checks = {
            "inference": health_status(self.health, self.ready_timeout_s),
            "model": f"preprocess and postprocess in process, loaded {self.local.loaded_version}",
        }
        return checks["inference"] == "SERVING", checks
