"""gRPC server for the postprocess stage (`servinglab.v1.Postprocess`).

It needs no model file: only the class names, which arrive with each request, and the
confidence threshold, which is configuration.
"""

from __future__ import annotations

import time

import grpc

from microservices.convert import matrix_from_proto
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.grpc_server import create_server as create_stage_server
from servinglab import config as lab_config
from servinglab.config import Settings
from servinglab.model.versions import PostprocessorsByClasses


class PostprocessServicer(pb_grpc.PostprocessServicer):
    def __init__(self, confidence_threshold: float):
        self.postprocessors = PostprocessorsByClasses(confidence_threshold)

    def Decide(
        self, request: pb.PostprocessRequest, context: grpc.ServicerContext
    ) -> pb.PostprocessResponse:
        classes = tuple(request.classes)
        if not classes:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "classes must not be empty")
        try:
            probabilities = matrix_from_proto(request.probabilities)
            started = time.perf_counter()
            predictions = self.postprocessors.get(classes)(probabilities)
            compute_ms = (time.perf_counter() - started) * 1e3
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.PostprocessResponse(
            predictions=[
                pb.Prediction(
                    species=item["species"],
                    probabilities=list(item["probabilities"].values()),
                    confidence=item["confidence"],
                    uncertain=item["uncertain"],
                )
                for item in predictions
            ],
            classes=classes,
            timing=pb.StageTiming(compute_ms=compute_ms),
        )


def create_server(address: str, settings: Settings | None = None):
    settings = settings or lab_config.load()
    servicer = PostprocessServicer(settings.confidence_threshold)
    return create_stage_server(
        "Postprocess",
        lambda server: pb_grpc.add_PostprocessServicer_to_server(servicer, server),
        address,
        settings,
    )
