"""The gateway's orchestrated backend: one request = three gRPC calls, each under the request's deadline.

`LAB_GATEWAY_MODE=orchestrated`, the gateway of the `microservices` architecture (lab.architectures).

Channels are created lazily in the process that uses them (after gunicorn forks), because gRPC
channels do not survive fork. The deadline is one budget for the whole request: each hop gets
what the previous hops left, so a slow stage cannot make the request outlive its budget.
Balancing, retries and reconnects are the channel's job (`microservices.channels`).

Versions never mix: the inference stage is the authority on the model version. The gateway asks
preprocess for features of the version inference last reported; if inference has moved on (a
rollout), it refuses the features with its own version in a trailer, and the gateway preprocesses
again for that version, a bounded number of times (`microservices.calls.VersionTracker`).
Deadlines, failures and timings are handled as in the split and chained modes
(`microservices.calls`, `microservices.gateway.common`).
"""

from __future__ import annotations

import time

from grpc_health.v1 import health_pb2_grpc

from microservices.calls import Deadline, VersionTracker, call, health_status
from microservices.channels import open_channel
from microservices.convert import batch_to_proto, model_from_proto, predictions_from_proto
from microservices.gateway.common import describe_model, stage_problems, stage_timings
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from servinglab.config import Settings
from servinglab.contract import STAGES, PredictOutcome
from servinglab.validation import RawBatch


class OrchestratedBackend:
    def __init__(self, settings: Settings):
        self.addresses = {stage: settings.stage_address(stage) for stage in STAGES}
        self.budget_ms = settings.request_budget_ms
        self.ready_timeout_s = settings.ready_check_timeout_ms / 1e3
        self.channels = {
            stage: open_channel(address, settings) for stage, address in self.addresses.items()
        }
        self.versions = VersionTracker()
        self.preprocess = pb_grpc.PreprocessStub(self.channels["preprocess"])
        self.inference = pb_grpc.InferenceStub(self.channels["inference"])
        self.postprocess = pb_grpc.PostprocessStub(self.channels["postprocess"])
        self.health = {
            stage: health_pb2_grpc.HealthStub(channel) for stage, channel in self.channels.items()
        }

    def predict(self, batch: RawBatch) -> PredictOutcome:
        clock = time.perf_counter
        deadline = Deadline.after_ms(self.budget_ms)
        instances = batch_to_proto(batch)

        def preprocess(version: str) -> tuple[pb.PreprocessResponse, str]:
            pre = call(
                "preprocess",
                self.preprocess.Transform,
                pb.PreprocessRequest(instances=instances, model_version=version),
                deadline,
            )
            return pre, pre.model.version

        def infer(pre: pb.PreprocessResponse, version: str, others: dict) -> pb.InferenceResponse:
            alternatives = {other: response.features for other, response in others.items()}
            return call(
                "inference",
                self.inference.Predict,
                pb.InferenceRequest(
                    features=pre.features, expected_version=version, alternatives=alternatives
                ),
                deadline,
            )

        t0 = clock()
        with stage_problems(self.budget_ms):
            pre, inf, t1 = self.versions.run(preprocess, infer)
            t2 = clock()
            post = call(
                "postprocess",
                self.postprocess.Decide,
                pb.PostprocessRequest(probabilities=inf.probabilities, classes=inf.classes),
                deadline,
            )
        t3 = clock()
        # A hop is what the call cost beyond the stage's own compute: (de)serialisation, network,
        # queueing.
        timings = stage_timings(
            (stage, response.timing.compute_ms, elapsed_s * 1e3 - response.timing.compute_ms)
            for stage, response, elapsed_s in (
                ("preprocess", pre, t1 - t0),
                ("inference", inf, t2 - t1),
                ("postprocess", post, t3 - t2),
            )
        )
        return PredictOutcome(predictions_from_proto(post), model_from_proto(inf.model), timings)

    def describe(self) -> dict:
        return describe_model(self.inference.Describe, self.budget_ms)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        checks = {
            stage: health_status(stub, self.ready_timeout_s) for stage, stub in self.health.items()
        }
        return all(value == "SERVING" for value in checks.values()), checks
