"""gRPC server for the preprocess stage (`servinglab.v1.Preprocess`)."""

from __future__ import annotations

import time
from typing import Any

import grpc

from microservices.convert import batch_from_proto, matrix_to_proto, model_ref
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.grpc_server import create_server as create_stage_server
from servinglab import config as lab_config
from servinglab.artifact import load_artifact
from servinglab.pipeline import Preprocessor, model_summary


class PreprocessServicer(pb_grpc.PreprocessServicer):
    def __init__(self, preprocessor: Preprocessor, model: dict):
        self.preprocessor = preprocessor
        self.model = model_ref(model)

    def Transform(self, request: pb.PreprocessRequest, context: grpc.ServicerContext) -> pb.PreprocessResponse:
        try:
            batch = batch_from_proto(request.instances)
            started = time.perf_counter()
            features = self.preprocessor(batch)
            compute_ms = (time.perf_counter() - started) * 1e3
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.PreprocessResponse(features=matrix_to_proto(features), model=self.model,
                                     timing=pb.StageTiming(compute_ms=compute_ms))


def create_server(address: str, settings: dict[str, Any] | None = None):
    settings = settings or lab_config.load()
    artifact = load_artifact(settings["MODEL_DIR"], settings["MODEL_PROFILE"])
    servicer = PreprocessServicer(Preprocessor(artifact.estimator.named_steps["preprocess"]),
                                  model_summary(artifact.metadata))
    return create_stage_server("Preprocess", lambda server: pb_grpc.add_PreprocessServicer_to_server(servicer, server),
                               address, settings)

