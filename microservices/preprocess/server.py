"""gRPC server for the preprocess stage (`servinglab.v1.Preprocess`).

Preprocessing parameters belong to a model version. The server starts with the version its
artifact names and loads another version of the same profile on request (kept in a small cache),
so that during a rollout the gateway can always get features for the model that will score them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import grpc

from microservices import chain
from microservices.convert import batch_from_proto, matrix_to_proto, model_ref
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.grpc_server import create_server as create_stage_server
from servinglab import config as lab_config
from servinglab.model.artifact import Artifact, ArtifactError, load_artifact, sibling_version
from servinglab.model.pipeline import Preprocessor, model_summary

# Two versions are live during a rollout; a few more cover a quick rollback.
KEPT_VERSIONS = 4


class VersionedPreprocessors:
    def __init__(self, artifact: Artifact):
        self.served = artifact.path
        self.default_version = artifact.metadata["version"]
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, tuple[Preprocessor, pb.ModelRef]] = OrderedDict()
        self._add(artifact)

    def _add(self, artifact: Artifact) -> tuple[Preprocessor, pb.ModelRef]:
        entry = (Preprocessor(artifact.estimator.named_steps["preprocess"]), model_ref(model_summary(artifact.metadata)))
        self._loaded[artifact.metadata["version"]] = entry
        while len(self._loaded) > KEPT_VERSIONS:
            self._loaded.popitem(last=False)
        return entry

    def get(self, version: str) -> tuple[Preprocessor, pb.ModelRef]:
        version = version or self.default_version
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
            # Loading verifies the checksum, as at start-up; a rare event (once per rollout).
            return self._add(load_artifact(sibling_version(self.served, version)))


class PreprocessServicer(pb_grpc.PreprocessServicer):
    def __init__(self, versions: VersionedPreprocessors):
        self.versions = versions

    def Transform(self, request: pb.PreprocessRequest, context: grpc.ServicerContext) -> pb.PreprocessResponse:
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
        return pb.PreprocessResponse(features=matrix_to_proto(features), model=model,
                                     timing=pb.StageTiming(compute_ms=compute_ms))


def create_server(address: str, settings: dict[str, Any] | None = None):
    settings = settings or lab_config.load()
    artifact = load_artifact(settings["MODEL_DIR"], settings["MODEL_PROFILE"])
    servicer = PreprocessServicer(VersionedPreprocessors(artifact))
    return create_stage_server("Preprocess", lambda server: pb_grpc.add_PreprocessServicer_to_server(servicer, server),
                               address, settings, extra_services=chain.links("preprocess", servicer, settings))
