"""The gateway's backend: one request = three gRPC calls, each under the request's deadline.

Channels are created lazily in the process that uses them (after gunicorn forks), because gRPC
channels do not survive fork. The deadline is one budget for the whole request: each hop gets
what the previous hops left, so a slow stage cannot make the request outlive its budget.
Balancing, retries and reconnects are the channel's job (`microservices.channels`).

Versions never mix: the inference stage is the authority on the model version. The gateway asks
preprocess for features of the version inference last reported; if inference has moved on (a
rollout), it refuses the features with its own version in a trailer, and the gateway preprocesses
again for that version, at most `VERSION_RETRIES` times.
"""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microservices.convert import batch_to_proto, predictions_from_proto
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.channels import MODEL_VERSION_TRAILER, open_channel
from servinglab.api import PredictOutcome
from servinglab.problems import Problem, stage_timeout, stage_unavailable
from servinglab.validation import RawBatch

STAGES = ("preprocess", "inference", "postprocess")
# Two rollouts overtaking one request is already unlikely; a third means something is flapping.
VERSION_RETRIES = 2


class VersionSkew(Exception):
    def __init__(self, served_version: str):
        super().__init__(served_version)
        self.served_version = served_version


def _served_version(error: grpc.RpcError) -> str | None:
    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
        return None
    return dict(error.trailing_metadata() or ()).get(MODEL_VERSION_TRAILER)


def _rpc_problem(stage: str, error: grpc.RpcError, budget_ms: float) -> Problem:
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return stage_timeout(stage, budget_ms)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Problem(503, "stage-overloaded", "Pipeline stage overloaded",
                       f"The {stage} stage is shedding load; retry later.")
    return stage_unavailable(stage, f"{code.name.lower()}: {error.details()}")


class GrpcBackend:
    def __init__(self, settings: dict[str, Any]):
        self.addresses = {stage: settings[f"{stage.upper()}_ADDR"] for stage in STAGES}
        self.budget_ms = float(settings["REQUEST_BUDGET_MS"])
        self.ready_timeout_s = float(settings["READY_CHECK_TIMEOUT_MS"]) / 1e3
        self.channels = {stage: open_channel(address, settings) for stage, address in self.addresses.items()}
        self.model_version = ""  # learnt from inference's answers; "" lets preprocess use its own
        self.preprocess = pb_grpc.PreprocessStub(self.channels["preprocess"])
        self.inference = pb_grpc.InferenceStub(self.channels["inference"])
        self.postprocess = pb_grpc.PostprocessStub(self.channels["postprocess"])
        self.health = {stage: health_pb2_grpc.HealthStub(channel) for stage, channel in self.channels.items()}

    def _call(self, stage: str, method, request, deadline: float):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise stage_timeout(stage, self.budget_ms)
        try:
            return method(request, timeout=remaining)
        except grpc.RpcError as error:
            served = _served_version(error) if stage == "inference" else None
            if served:
                raise VersionSkew(served) from None
            raise _rpc_problem(stage, error, self.budget_ms) from None

    def _features_and_scores(self, batch: RawBatch, deadline: float):
        instances = batch_to_proto(batch)
        for _ in range(VERSION_RETRIES + 1):
            pre = self._call("preprocess", self.preprocess.Transform,
                             pb.PreprocessRequest(instances=instances, model_version=self.model_version), deadline)
            started = time.perf_counter()
            try:
                inf = self._call("inference", self.inference.Predict,
                                 pb.InferenceRequest(features=pre.features, expected_version=pre.model.version),
                                 deadline)
            except VersionSkew as skew:
                self.model_version = skew.served_version
                continue
            self.model_version = inf.model.version
            return pre, inf, started
        raise Problem(503, "version-skew", "Model versions in flux",
                      "The model version changed repeatedly while this request was served; retry.")

    def predict(self, batch: RawBatch) -> PredictOutcome:
        clock = time.perf_counter
        deadline = time.monotonic() + self.budget_ms / 1e3
        t0 = clock()
        pre, inf, t1 = self._features_and_scores(batch, deadline)
        t2 = clock()
        post = self._call("postprocess", self.postprocess.Decide,
                          pb.PostprocessRequest(probabilities=inf.probabilities, classes=inf.classes), deadline)
        t3 = clock()
        predictions = predictions_from_proto(post)
        model = {"name": inf.model.name, "version": inf.model.version, "profile": inf.model.profile}
        timings = []
        for stage, response, elapsed_s in (("pre", pre, t1 - t0), ("infer", inf, t2 - t1), ("post", post, t3 - t2)):
            compute = response.timing.compute_ms
            timings.append((stage, compute))
            # What the call cost beyond the stage's own compute: (de)serialisation, network, queueing.
            timings.append((f"hop-{stage}", max(elapsed_s * 1e3 - compute, 0.0)))
        return PredictOutcome(predictions, model, timings)

    def describe(self) -> dict:
        response = self._call("inference", self.inference.Describe, pb.DescribeRequest(),
                              time.monotonic() + self.budget_ms / 1e3)
        return json.loads(response.metadata_json)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        request = health_pb2.HealthCheckRequest(service="")
        for stage, stub in self.health.items():
            try:
                status = stub.Check(request, timeout=self.ready_timeout_s).status
                checks[stage] = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as error:
                checks[stage] = f"unreachable ({error.code().name})"
        return all(value == "SERVING" for value in checks.values()), checks
