"""gRPC server for the inference stage (`servinglab.v1.Inference`)."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc

from microservices.channels import MODEL_VERSION_TRAILER
from microservices.convert import matrix_from_proto, matrix_to_proto, model_ref
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.grpc_server import create_server as create_stage_server
from servinglab import config as lab_config
from servinglab.artifact import load_artifact
from servinglab.pipeline import Classifier, model_summary


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(self, classifier: Classifier, classes: list[str], metadata: dict):
        self.classifier = classifier
        self.classes = classes
        self.metadata = metadata
        self.model = model_ref(model_summary(metadata))

    def Predict(self, request: pb.InferenceRequest, context: grpc.ServicerContext) -> pb.InferenceResponse:
        if request.expected_version and request.expected_version != self.model.version:
            # Features computed for another model version would be silently wrong here. The
            # trailer tells the gateway which version to preprocess for instead.
            context.set_trailing_metadata(((MODEL_VERSION_TRAILER, self.model.version),))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"features are for model {request.expected_version}, this server has {self.model.version}")
        try:
            features = matrix_from_proto(request.features)
            started = time.perf_counter()
            probabilities = self.classifier.predict_proba(features)
            compute_ms = (time.perf_counter() - started) * 1e3
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.InferenceResponse(probabilities=matrix_to_proto(probabilities), classes=self.classes,
                                    model=self.model, timing=pb.StageTiming(compute_ms=compute_ms))

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> pb.ModelDescription:
        return pb.ModelDescription(model=self.model, metadata_json=json.dumps(self.metadata))


def create_server(address: str, settings: dict[str, Any] | None = None):
    settings = settings or lab_config.load()
    artifact = load_artifact(settings["MODEL_DIR"], settings["MODEL_PROFILE"])
    estimator = artifact.estimator
    servicer = InferenceServicer(Classifier(estimator.named_steps["classifier"]), list(estimator.classes_),
                                 artifact.metadata)
    return create_stage_server("Inference", lambda server: pb_grpc.add_InferenceServicer_to_server(servicer, server),
                               address, settings)

