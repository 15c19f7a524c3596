"""gRPC server for the preprocess stage (`servinglab.v1.Preprocess`).

Preprocessing parameters belong to a model version. The server starts with the version its
artifact names and loads another version of the same profile on request
(`servinglab.model.versions.VersionedPreprocessors`), so that during a rollout the gateway can
always get features for the model that will score them.
"""

from __future__ import annotations

import time

import grpc

from microservices import chain
from microservices.convert import batch_from_proto, matrix_to_proto, model_ref
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.grpc_server import create_server as create_stage_server
from servinglab import config as lab_config
from servinglab.config import Settings
from servinglab.model.artifact import ArtifactError, load_artifact
from servinglab.model.versions import VersionedPreprocessors


class PreprocessServicer(pb_grpc.PreprocessServicer):
    def __init__(self, versions: VersionedPreprocessors[pb.ModelRef]):
        self.versions = versions

    def Transform(
        self, request: pb.PreprocessRequest, context: grpc.ServicerContext
    ) -> pb.PreprocessResponse:
        try:
            preprocessor, model = self.versions.get(request.model_version)
        except ArtifactError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        try:
            batch = batch_from_proto(request.instances)
            started = time.perf_counter()
            features = preprocessor(batch)
            compute_ms = (time.perf_counter() - started) * 1e3
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.PreprocessResponse(
            features=matrix_to_proto(features),
            model=model,
            timing=pb.StageTiming(compute_ms=compute_ms),
        )


def create_server(address: str, settings: Settings | None = None):
    settings = settings or lab_config.load()
    artifact = load_artifact(settings.model_dir, settings.model_profile)
    servicer = PreprocessServicer(VersionedPreprocessors(artifact, model_ref))
    return create_stage_server(
        "Preprocess",
        lambda server: pb_grpc.add_PreprocessServicer_to_server(servicer, server),
        address,
        settings,
        extra_services=chain.links("preprocess", servicer, settings),
    )
