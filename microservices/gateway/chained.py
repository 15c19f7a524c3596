"""The gateway's chained backend: one call to preprocess's `Chain.Transform`; the stages call on.

preprocess calls inference, which calls postprocess (`microservices.chain`); the answer comes
back the same way with each stage's compute and each hop's time, so Server-Timing carries the
same entries as the orchestrated mode. Version consistency is preprocess's job here, and a
failure anywhere down the chain comes back naming the stage at fault, so the client gets the
same problem (503 stage down, 504 too slow) as from the orchestrated gateway.
"""

from __future__ import annotations

import time

from grpc_health.v1 import health_pb2_grpc

from microservices.calls import Deadline, call
from microservices.chain import close_hop, probe
from microservices.channels import open_channel
from microservices.convert import batch_to_proto, model_from_proto, predictions_from_proto
from microservices.gateway.common import describe_model, stage_problems, stage_timings
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from servinglab.config import Settings
from servinglab.contract import STAGES, PredictOutcome
from servinglab.validation import RawBatch


class ChainedBackend:
    def __init__(self, settings: Settings):
        self.budget_ms = settings.request_budget_ms
        self.ready_timeout_s = settings.ready_check_timeout_ms / 1e3
        channel = open_channel(settings.preprocess_addr, settings)
        self.chain = pb_grpc.ChainStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    def predict(self, batch: RawBatch) -> PredictOutcome:
        deadline = Deadline.after_ms(self.budget_ms)
        started = time.perf_counter()
        with stage_problems(self.budget_ms):
            response = call(
                "preprocess",
                self.chain.Transform,
                pb.PreprocessRequest(instances=batch_to_proto(batch)),
                deadline,
            )
        timings = close_hop(response.timings, time.perf_counter() - started)
        return PredictOutcome(
            predictions_from_proto(response.result),
            model_from_proto(response.model),
            stage_timings((t.stage, t.compute_ms, t.hop_ms) for t in timings),
        )

    def describe(self) -> dict:
        return describe_model(self.chain.Describe, self.budget_ms)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        # Each stage is asked by its own caller, so a check covers the connection really used.
        deadline = Deadline(self.ready_timeout_s * len(STAGES))
        checks = dict(probe(STAGES[0], self.health, self.chain, deadline, self.ready_timeout_s))
        return all(checks.get(stage) == "SERVING" for stage in STAGES), checks
