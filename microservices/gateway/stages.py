"""The gateway's backend: one request = three gRPC calls, each under the request's deadline.

Channels are created lazily in the process that uses them (after gunicorn forks), because gRPC
channels do not survive fork. The deadline is one budget for the whole request: each hop gets
what the previous hops left, so a slow stage cannot make the request outlive its budget.
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
from microservices.grpc_server import message_size_options
from servinglab.api import PredictOutcome
from servinglab.problems import Problem, stage_timeout, stage_unavailable
from servinglab.validation import RawBatch

STAGES = ("preprocess", "inference", "postprocess")


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
        options = message_size_options(settings)
        self.channels = {stage: grpc.insecure_channel(address, options=options)
                         for stage, address in self.addresses.items()}
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
            raise _rpc_problem(stage, error, self.budget_ms) from None

    def predict(self, batch: RawBatch) -> PredictOutcome:
        clock = time.perf_counter
        deadline = time.monotonic() + self.budget_ms / 1e3
        t0 = clock()
        pre = self._call("preprocess", self.preprocess.Transform,
                         pb.PreprocessRequest(instances=batch_to_proto(batch)), deadline)
        t1 = clock()
        inf = self._call("inference", self.inference.Predict,
                         pb.InferenceRequest(features=pre.features, expected_version=pre.model.version), deadline)
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
