"""gRPC server for the inference stage (`servinglab.v1.Inference`).

With `LAB_BATCHING` on, concurrent RPCs (up to GRPC_THREADS) share model calls through a
`MicroBatcher`; the reported compute time then includes the wait for the batch, and this process
publishes its lab_batch_* metrics to `LAB_METRICS_DIR`, where the gateway's /metrics merges them.
"""

from __future__ import annotations

import json
import time

import grpc

from microservices import chain
from microservices.channels import MODEL_VERSION_TRAILER
from microservices.convert import matrix_from_proto, matrix_to_proto, model_ref
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.grpc_server import create_server as create_stage_server
from servinglab import config as lab_config
from servinglab.config import Settings
from servinglab.contract import model_summary
from servinglab.model.artifact import load_artifact
from servinglab.model.pipeline import Classifier
from servinglab.serving import batching, metrics
from servinglab.serving.cache import cached_classifier


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(
        self,
        classifier: Classifier,
        classes: list[str],
        metadata: dict,
        batcher: batching.MicroBatcher | None = None,
    ):
        self.classifier = classifier
        self.batcher = batcher
        self.classes = classes
        self.metadata = metadata
        self.model = model_ref(model_summary(metadata))

    def Predict(
        self, request: pb.InferenceRequest, context: grpc.ServicerContext
    ) -> pb.InferenceResponse:
        matrix = request.features
        if request.expected_version and request.expected_version != self.model.version:
            if self.model.version not in request.alternatives:
                # Features computed for another model version would be silently wrong here. The
                # trailer tells the caller which version to preprocess for instead.
                context.set_trailing_metadata(((MODEL_VERSION_TRAILER, self.model.version),))
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"features are for model {request.expected_version}, this server has {self.model.version}",
                )
            matrix = request.alternatives[self.model.version]
        try:
            features = matrix_from_proto(matrix)
            started = time.perf_counter()
            if self.batcher is None:
                probabilities = self.classifier.predict_proba(features)
            else:
                probabilities, _ = self.batcher.submit(features, self._batch_timeout_s(context))
            compute_ms = (time.perf_counter() - started) * 1e3
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except TimeoutError as exc:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        return pb.InferenceResponse(
            probabilities=matrix_to_proto(probabilities),
            classes=self.classes,
            model=self.model,
            timing=pb.StageTiming(compute_ms=compute_ms),
        )

    def _batch_timeout_s(self, context: grpc.ServicerContext) -> float:
        # No point waiting for a batch past the caller's own deadline: nobody reads the answer.
        remaining = context.time_remaining()
        assert self.batcher is not None  # only called when batching is on
        return (
            self.batcher.timeout_s if remaining is None else min(self.batcher.timeout_s, remaining)
        )

    def Describe(
        self, request: pb.DescribeRequest, context: grpc.ServicerContext
    ) -> pb.ModelDescription:
        return pb.ModelDescription(model=self.model, metadata_json=json.dumps(self.metadata))


def create_server(address: str, settings: Settings | None = None):
    settings = settings or lab_config.load()
    artifact = load_artifact(settings.model_dir, settings.model_profile)
    estimator = artifact.estimator
    classifier = Classifier(estimator.named_steps["classifier"])
    # CACHE_PLACEMENT=inference: probabilities cached per feature row; otherwise this is a no-op.
    classifier = cached_classifier(classifier, artifact.metadata["version"], settings)
    batcher = batching.from_settings(
        classifier.predict_proba, classifier.n_features, settings, max_callers=settings.grpc_threads
    )
    if batcher is not None:
        metrics.start_flusher()
    servicer = InferenceServicer(classifier, list(estimator.classes_), artifact.metadata, batcher)
    return create_stage_server(
        "Inference",
        lambda server: pb_grpc.add_InferenceServicer_to_server(servicer, server),
        address,
        settings,
        extra_services=chain.links("inference", servicer, settings),
    )
