"""What the gateway's three modes (orchestrated, split, chained) share beyond `microservices.calls`.

One mapping from a failed stage call to the problem a client sees, and one naming of stage times
in Server-Timing, so a client (and the benchmark's breakdown) cannot tell the modes apart except
by speed and by which hops exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from microservices.calls import Deadline, StageFailure, call
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from servinglab.contract import TIMING_NAMES, Timing
from servinglab.problems import Problem, stage_timeout, stage_unavailable
from servinglab.serving import metrics


def problem_for(failure: StageFailure, budget_ms: float) -> Problem:
    if failure.served_version:
        return Problem(
            503,
            "version-skew",
            "Model versions in flux",
            "The model version changed repeatedly while this request was served; retry.",
        )
    if failure.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return stage_timeout(failure.stage, budget_ms)
    if failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        metrics.SHED.inc((f"{failure.stage}-overloaded",))
        return Problem(
            503,
            "stage-overloaded",
            "Pipeline stage overloaded",
            f"The {failure.stage} stage is shedding load; retry later.",
            headers={"Retry-After": "1"},
        )
    return stage_unavailable(failure.stage, f"{failure.code.name.lower()}: {failure.details}")


@contextmanager
def stage_problems(budget_ms: float) -> Iterator[None]:
    """Turn a failed stage call inside the block into the problem the client gets."""
    try:
        yield
    except StageFailure as failure:
        raise problem_for(failure, budget_ms) from None


def describe_model(describe: Callable[..., Any], budget_ms: float) -> dict:
    """The artifact's metadata from inference, through `describe` (an Inference or Chain stub's)."""
    with stage_problems(budget_ms):
        response = call("inference", describe, pb.DescribeRequest(), Deadline.after_ms(budget_ms))
    return json.loads(response.metadata_json)


def stage_timings(entries: Iterable[tuple[str, float, float | None]]) -> list[Timing]:
    """(stage, compute ms, hop ms or None where the stage ran in process), in pipeline order."""
    timings: list[Timing] = []
    for stage, compute_ms, hop_ms in entries:
        name = TIMING_NAMES[stage]
        timings.append((name, compute_ms))
        if hop_ms is not None:
            # A clock difference minus a compute time: negative only by measurement noise.
            timings.append((f"hop-{name}", max(hop_ms, 0.0)))
    return timings
