"""The chained topology's links: a stage that calls the next stage itself (`servinglab.v1.Chain`).

    gateway -> preprocess (Chain.Transform) -> inference (Chain.Predict) -> postprocess (Decide)

A stage serves `Chain` only when `LAB_NEXT_ADDR` gives it the next stage's address (`links`);
postprocess ends the chain with its plain `Decide`, so it needs nothing from here. A link computes
its own step with the stage's servicer, the very code the orchestrated topology calls, then calls
on and passes the answer back, adding its timings in front. The rules the orchestrated gateway
follows hold along the chain too, through the same helpers (`microservices.calls`):
- each hop gets what is left of the caller's deadline (`context.time_remaining()`);
- a failure further down is relayed with trailers naming the stage at fault and its own code,
  never as UNAVAILABLE (which would make every channel upstream replay the rest of the chain);
- preprocess never lets inference score features of another version: on inference's version
  trailer it preprocesses again for the served version, a bounded number of times;
- every stage reports its compute and the time it waited on the next stage, and each caller
  fills in the hop it saw (`close_hop`), so the gateway's Server-Timing has the same `pre`,
  `hop-pre`, `infer`, ... entries as in the orchestrated topology.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health_pb2_grpc

from microservices.calls import (
    Deadline,
    StageFailure,
    VersionTracker,
    call,
    health_status,
)
from microservices.channels import open_channel
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from servinglab.config import Settings
from servinglab.contract import STAGES


def close_hop(timings: Sequence[pb.ChainTiming], waited_s: float) -> Sequence[pb.ChainTiming]:
    """Fill in the first stage's hop: what its caller waited beyond the stage's own accounts."""
    first = timings[0]
    first.hop_ms = max(waited_s * 1e3 - first.compute_ms - first.downstream_ms, 0.0)
    return timings


def probe(
    stage: str, health: Any, chain: Any | None, deadline: Deadline, check_timeout_s: float
) -> list[tuple[str, str]]:
    """(stage, status) of `stage` and every stage after it: its gRPC health as seen from here,
    then, if it is a serving link (`chain` is its Chain stub), what it reports of the rest."""
    status = health_status(health, min(check_timeout_s, deadline.remaining_s()))
    statuses = [(stage, status)]
    why_not = f"not checked: {stage} is {status}"
    if chain is not None and status == "SERVING":
        try:
            answer = chain.Probe(pb.ChainProbeRequest(), timeout=max(deadline.remaining_s(), 1e-3))
            statuses += [(item.stage, item.status) for item in answer.stages]
        except grpc.RpcError as error:
            why_not = f"not checked: {stage} could not tell ({error.code().name})"
    known = {name for name, _ in statuses}
    statuses += [
        (later, why_not) for later in STAGES[STAGES.index(stage) + 1 :] if later not in known
    ]
    return statuses


class ChainLink(pb_grpc.ChainServicer):
    """What both links share: the channel to the next stage, deadlines, relaying, probing."""

    stage_name = ""
    next_stage = ""

    def __init__(self, stage: Any, settings: Settings):
        self.stage = stage  # the stage's own servicer: computes this link's step
        self.budget_ms = settings.request_budget_ms
        self.ready_timeout_s = settings.ready_check_timeout_ms / 1e3
        self.channel = open_channel(settings.next_addr, settings)
        self.next_health = health_pb2_grpc.HealthStub(self.channel)

    def deadline(self, context: grpc.ServicerContext) -> Deadline:
        # A caller that set no deadline (a tool) gets the budget a gateway request would have.
        return Deadline.of_context(context, self.budget_ms)

    @staticmethod
    def relay(context: grpc.ServicerContext, failure: StageFailure) -> NoReturn:
        context.set_trailing_metadata(failure.relay_trailers())
        context.abort(failure.relay_code, failure.details)
        raise AssertionError("context.abort raises")  # for the type checker: abort never returns

    def next_chain(self) -> Any | None:
        """The next stage's Chain stub, if it is a link itself."""
        return None

    def Probe(
        self, request: pb.ChainProbeRequest, context: grpc.ServicerContext
    ) -> pb.ChainProbeResponse:
        statuses = probe(
            self.next_stage,
            self.next_health,
            self.next_chain(),
            self.deadline(context),
            self.ready_timeout_s,
        )
        return pb.ChainProbeResponse(
            stages=[pb.StageStatus(stage=stage, status=status) for stage, status in statuses]
        )


class PreprocessLink(ChainLink):
    stage_name = "preprocess"
    next_stage = "inference"

    def __init__(self, stage: Any, settings: Settings):
        super().__init__(stage, settings)
        self.chain = pb_grpc.ChainStub(self.channel)
        self.inference = pb_grpc.InferenceStub(self.channel)
        self.versions = VersionTracker()

    def next_chain(self) -> Any:
        return self.chain

    def Transform(
        self, request: pb.PreprocessRequest, context: grpc.ServicerContext
    ) -> pb.ChainResponse:
        deadline = self.deadline(context)
        budget_ms = deadline.remaining_s() * 1e3
        compute_ms = 0.0

        def preprocess(version: str) -> tuple[pb.PreprocessResponse, str]:
            nonlocal compute_ms
            # A failure here aborts this call with the stage's own status, as Preprocess.Transform.
            pre = self.stage.Transform(
                pb.PreprocessRequest(instances=request.instances, model_version=version), context
            )
            compute_ms += pre.timing.compute_ms
            return pre, pre.model.version

        def infer(pre: pb.PreprocessResponse, version: str, others: dict) -> pb.ChainResponse:
            alternatives = {other: response.features for other, response in others.items()}
            return call(
                "inference",
                self.chain.Predict,
                pb.InferenceRequest(
                    features=pre.features, expected_version=version, alternatives=alternatives
                ),
                deadline,
            )

        try:
            _, rest, started = self.versions.run(preprocess, infer)
        except StageFailure as failure:
            self.relay(context, failure)
        waited_s = time.perf_counter() - started
        mine = pb.ChainTiming(
            stage=self.stage_name,
            compute_ms=compute_ms,
            downstream_ms=waited_s * 1e3,
            budget_ms=budget_ms,
        )
        return pb.ChainResponse(
            result=rest.result, model=rest.model, timings=[mine, *close_hop(rest.timings, waited_s)]
        )

    def Describe(
        self, request: pb.DescribeRequest, context: grpc.ServicerContext
    ) -> pb.ModelDescription:
        try:
            return call("inference", self.inference.Describe, request, self.deadline(context))
        except StageFailure as failure:
            self.relay(context, failure)


class InferenceLink(ChainLink):
    stage_name = "inference"
    next_stage = "postprocess"

    def __init__(self, stage: Any, settings: Settings):
        super().__init__(stage, settings)
        self.postprocess = pb_grpc.PostprocessStub(self.channel)

    def Predict(
        self, request: pb.InferenceRequest, context: grpc.ServicerContext
    ) -> pb.ChainResponse:
        deadline = self.deadline(context)
        budget_ms = deadline.remaining_s() * 1e3
        # Refuses features of another version with the served version in a trailer, as
        # Inference.Predict does: the preprocess link repairs that, not this one.
        inf = self.stage.Predict(request, context)
        started = time.perf_counter()
        try:
            post = call(
                "postprocess",
                self.postprocess.Decide,
                pb.PostprocessRequest(probabilities=inf.probabilities, classes=inf.classes),
                deadline,
            )
        except StageFailure as failure:
            self.relay(context, failure)
        waited_s = time.perf_counter() - started
        # Postprocess is the end of the chain: its timing comes back in its plain Decide answer.
        timings = [
            pb.ChainTiming(
                stage=self.stage_name,
                compute_ms=inf.timing.compute_ms,
                downstream_ms=waited_s * 1e3,
                budget_ms=budget_ms,
            ),
            pb.ChainTiming(stage=self.next_stage, compute_ms=post.timing.compute_ms),
        ]
        close_hop(timings[1:], waited_s)
        return pb.ChainResponse(result=post, model=inf.model, timings=timings)

    def Describe(
        self, request: pb.DescribeRequest, context: grpc.ServicerContext
    ) -> pb.ModelDescription:
        return self.stage.Describe(request, context)


LINKS = {"preprocess": PreprocessLink, "inference": InferenceLink}


def links(
    stage: str, servicer: Any, settings: Settings
) -> list[tuple[str, Callable[[grpc.Server], None]]]:
    """`extra_services` for `stage`'s server: its Chain link when LAB_NEXT_ADDR is set, else none."""
    if not settings.next_addr:
        return []
    if stage not in LINKS:
        raise RuntimeError(
            f"LAB_NEXT_ADDR is set for {stage}, which ends the chain and calls no other stage"
        )
    link = LINKS[stage](servicer, settings)
    return [("Chain", lambda server: pb_grpc.add_ChainServicer_to_server(link, server))]
