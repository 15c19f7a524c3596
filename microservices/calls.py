"""How one request's calls to stage services are made, timed and, when they fail, named.

Shared by every caller of a stage, wherever it runs: the gateway in each of its modes and the
chained stages, which call the next stage themselves. In one place:
- **Deadline**: one budget per request; each call gets what is left of it, and a stage that calls
  on passes on what is left of its caller's deadline (`Deadline.of_context`).
- **Failures**: a failed call becomes a `StageFailure` naming the stage at fault and its status
  code. A chained stage relays a failure from further down with trailers naming that stage
  (`relay_trailers`), so the first caller learns which stage failed however deep it was.
- **Version consistency**: inference is the authority on the model version; `VersionTracker`
  preprocesses for the version inference last reported and, when inference refuses the
  features with its own version in a trailer, preprocesses again for that one, a bounded number
  of times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from microservices.channels import MODEL_VERSION_TRAILER

# Trailers of a failure relayed along a chain: the stage whose call failed and that call's code.
FAILED_STAGE_TRAILER = "lab-failed-stage"
FAILED_CODE_TRAILER = "lab-failed-code"
# Two rollouts overtaking one request is already unlikely; a third means something is flapping.
VERSION_RETRIES = 2
# A server whose caller set no deadline reports a remaining time of years: treat it as "none".
_NO_DEADLINE_S = 1e6

Features = TypeVar("Features")
Scored = TypeVar("Scored", bound=Any)  # an inference answer: has `.model.version`


class Deadline:
    """When one request must be done by, on the monotonic clock."""

    def __init__(self, seconds: float):
        self.expires = time.monotonic() + seconds

    @classmethod
    def after_ms(cls, budget_ms: float) -> Deadline:
        return cls(budget_ms / 1e3)

    @classmethod
    def of_context(cls, context: grpc.ServicerContext, fallback_ms: float) -> Deadline:
        """The caller's deadline as this server sees it; `fallback_ms` when the caller set none."""
        remaining = context.time_remaining()
        if remaining is None or math.isinf(remaining) or remaining > _NO_DEADLINE_S:
            return cls.after_ms(fallback_ms)
        return cls(remaining)

    def remaining_s(self) -> float:
        return self.expires - time.monotonic()


class StageFailure(Exception):
    """A call to `stage` failed with `code`. `served_version` is set when inference refused
    features of another version: it is the version inference serves."""

    def __init__(
        self, stage: str, code: grpc.StatusCode, details: str, served_version: str | None = None
    ):
        super().__init__(f"{stage}: {code.name}: {details}")
        self.stage = stage
        self.code = code
        self.details = details
        self.served_version = served_version

    @classmethod
    def from_rpc(cls, stage: str, error: grpc.RpcError) -> StageFailure:
        trailers = dict(error.trailing_metadata() or ())
        code = error.code()
        relayed_stage = trailers.get(FAILED_STAGE_TRAILER)
        if relayed_stage:
            # Failed further down a chain: the stage named in the trailer is the one at fault,
            # and its own code says how (the code on the wire was chosen not to be retried).
            stage = relayed_stage
            code = getattr(grpc.StatusCode, trailers.get(FAILED_CODE_TRAILER, ""), code)
        served = (
            trailers.get(MODEL_VERSION_TRAILER)
            if code == grpc.StatusCode.FAILED_PRECONDITION
            else None
        )
        return cls(stage, code, error.details() or "", served)

    def relay_trailers(self) -> tuple[tuple[str, str], ...]:
        trailers = [(FAILED_STAGE_TRAILER, self.stage), (FAILED_CODE_TRAILER, self.code.name)]
        if self.served_version:
            trailers.append((MODEL_VERSION_TRAILER, self.served_version))
        return tuple(trailers)

    @property
    def relay_code(self) -> grpc.StatusCode:
        """The status to relay this failure with. Never UNAVAILABLE: that would tell the caller's
        channel the relaying stage itself was unreachable, and its retry policy would replay the
        whole rest of the chain (retries multiplying at every hop)."""
        return grpc.StatusCode.ABORTED if self.code == grpc.StatusCode.UNAVAILABLE else self.code


def call(stage: str, method: Callable[..., Any], request: Any, deadline: Deadline) -> Any:
    """`method(request)` within what is left of `deadline`; failures raise `StageFailure`."""
    remaining = deadline.remaining_s()
    if remaining <= 0:
        raise StageFailure(stage, grpc.StatusCode.DEADLINE_EXCEEDED, "no time left to call it")
    try:
        return method(request, timeout=remaining)
    except grpc.RpcError as error:
        raise StageFailure.from_rpc(stage, error) from None


def version_skew(version: str) -> StageFailure:
    """What a request ends with when the model version kept changing under it."""
    return StageFailure(
        "inference",
        grpc.StatusCode.FAILED_PRECONDITION,
        "the model version changed repeatedly while this request was served",
        version,
    )


class VersionTracker:
    """The model version inference last reported, and the bounded loop that keeps features on it.

    One per caller process (the gateway's backend, a chained preprocess stage): every request
    starts from the version the previous one found, so a rollout costs one refused call per
    caller, not one per request.
    """

    def __init__(self) -> None:
        self.version = ""  # "" until inference has answered: preprocess uses its own artifact's

    def run(
        self,
        preprocess: Callable[[str], tuple[Features, str]],
        infer: Callable[[Features, str, dict[str, Features]], Scored],
    ) -> tuple[Features, Scored, float]:
        """`preprocess(version)` -> (features, version they are for); `infer(features, version,
        alternatives)` -> a response with `.model.version`, where `alternatives` holds this
        request's features for other versions met so far. Returns the features the answering
        model scored, its response, and the `perf_counter` time the successful `infer` started,
        so callers time the two apart (refused attempts count as preprocessing, where they are
        repaired). Raises `StageFailure`.

        During a rollout, replicas of both versions answer behind one round-robin channel, so a
        retry may well reach the other version again; sending the features of every version met
        so far lets whichever replica answers use its own, and the loop ends after one repair.
        """
        computed: dict[str, Features] = {}
        version = self.version
        for _ in range(VERSION_RETRIES + 1):
            if version not in computed:
                features, version = preprocess(version)
                computed[version] = features
            infer_started = time.perf_counter()
            try:
                scored = infer(
                    computed[version], version, {v: f for v, f in computed.items() if v != version}
                )
            except StageFailure as failure:
                if failure.stage == "inference" and failure.served_version:
                    version = self.version = failure.served_version
                    continue
                raise
            self.version = scored.model.version
            return computed.get(scored.model.version, computed[version]), scored, infer_started
        raise version_skew(self.version)


def health_status(stub: Any, timeout_s: float) -> str:
    """The server-wide gRPC health status behind `stub` (a HealthStub), or why there is none."""
    if timeout_s <= 0:
        return "unreachable (DEADLINE_EXCEEDED)"
    try:
        status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s).status
    except grpc.RpcError as error:
        return f"unreachable ({error.code().name})"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)
