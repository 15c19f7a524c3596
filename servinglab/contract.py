"""What the HTTP API and every backend behind it agree on, with no web or RPC framework in sight.

The API (`servinglab.serving.api`) serves a `Backend`; the monolith's runs the stages in process,
the gateway's call them over gRPC, the cache wraps either. They exchange `PredictOutcome`s and
name the model and the stages the same way, so this module is all any of them imports to speak
the contract: importing it pulls in neither Flask nor gRPC nor scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from servinglab.validation import RawBatch

# The pipeline's stages, in order: one gRPC service each in microservices, one call each in the
# monolith. Every other list of stages (ports, services, the chain, timings) is derived from this.
STAGES: tuple[str, ...] = ("preprocess", "inference", "postprocess")
# Server-Timing name of each stage's compute; its hop (microservices) is "hop-" + the same name.
TIMING_NAMES: Mapping[str, str] = dict(zip(STAGES, ("pre", "infer", "post"), strict=True))


# (metric name, milliseconds) or (metric name, milliseconds, description).
Timing = tuple[str, float] | tuple[str, float, str]


@dataclass
class PredictOutcome:
    predictions: list[dict]
    model: dict
    # (metric name, milliseconds) in pipeline order; becomes Server-Timing and stage metrics.
    # An optional third item is the entry's description (the cache's "hit 2/3"), shown as `desc`.
    timings: list[Timing] = field(default_factory=list)


class Backend(Protocol):
    def predict(self, batch: RawBatch) -> PredictOutcome: ...

    def describe(self) -> dict: ...

    def readiness(self) -> tuple[bool, dict[str, str]]: ...


def model_summary(metadata: Mapping[str, Any]) -> dict:
    """What every prediction response says about the model that produced it."""
    return {
        "name": metadata["name"],
        "version": metadata["version"],
        "profile": metadata["profile"],
    }
