"""The one table of architectures: which processes each is made of and how they are wired.

The launcher (`lab.launch`), the container entrypoint (`docker/entrypoint.py`) and the image
build all read it, so an architecture or a role is added here and nowhere else. Roles are named
by import strings: the serving packages never learn what stands above them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servinglab.contract import STAGES

# The gRPC stage services, in pipeline order; each is `python -m microservices.<stage>`.
STAGE_SERVICES: tuple[str, ...] = STAGES
# The HTTP roles: gunicorn app targets.
HTTP_APPS: Mapping[str, str] = {
    "monolith": "monolith.app:create_app()",
    "gateway": "microservices.gateway.app:create_app()",
}
# Every role a process (or a container) can play.
ROLES: tuple[str, ...] = (*HTTP_APPS, *STAGE_SERVICES)


def stage_module(stage: str) -> str:
    """The module that `python -m` runs to serve one gRPC stage."""
    return f"microservices.{stage}"


@dataclass(frozen=True)
class Topology:
    """How one architecture is wired: an HTTP entry point and the gRPC services behind it."""

    entry: str  # the HTTP role (a key of HTTP_APPS)
    services: tuple[str, ...] = ()  # gRPC services, started in this order
    # service -> {setting: other service}: addresses a service needs (chained calls), so a
    # service is started after the ones it calls.
    service_upstreams: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # setting of the HTTP entry point -> service whose replicas' addresses it gets.
    entry_upstreams: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    # Settings of the HTTP entry point that make it this architecture (e.g. the gateway's mode);
    # they win over the caller's settings.
    entry_settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def app(self) -> str:
        """The gunicorn app target of the HTTP entry point."""
        return HTTP_APPS[self.entry]


TOPOLOGIES: dict[str, Topology] = {
    "monolith": Topology(
        entry="monolith", description="one gunicorn app running all three stages in process"
    ),
    "microservices": Topology(
        entry="gateway",
        services=STAGE_SERVICES,
        entry_upstreams={f"{stage.upper()}_ADDR": stage for stage in STAGE_SERVICES},
        description="a Flask gateway calling preprocess, inference and postprocess over gRPC",
    ),
    # KServe's transformer/predictor split: the HTTP entry transforms in process, predicts over gRPC.
    "split": Topology(
        entry="gateway",
        services=("inference",),
        entry_upstreams={"INFERENCE_ADDR": "inference"},
        entry_settings={"GATEWAY_MODE": "split"},
        description="a Flask gateway running preprocess and postprocess in process, calling inference over gRPC",
    ),
    # Each stage calls the next, so each is started after the one it calls.
    "chained": Topology(
        entry="gateway",
        services=("postprocess", "inference", "preprocess"),
        service_upstreams={
            "inference": {"NEXT_ADDR": "postprocess"},
            "preprocess": {"NEXT_ADDR": "inference"},
        },
        entry_upstreams={"PREPROCESS_ADDR": "preprocess"},
        entry_settings={"GATEWAY_MODE": "chained"},
        description="a Flask gateway calling preprocess, which calls inference, which calls postprocess",
    ),
}
ARCHITECTURES: tuple[str, ...] = tuple(TOPOLOGIES)
