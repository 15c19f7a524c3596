"""Client channels to stage services: the one place that says how a call is balanced and retried.

Every stage call is a pure function of its request, so all are idempotent and safe to retry.
The policy, all from settings in `servinglab.config`:
- **Deadline**: the caller passes what is left of the request budget; retries and backoff spend
  the same deadline, so a retry can never make a request outlive its budget.
- **Retries**: only `UNAVAILABLE` (the call never reached a live server: a replica stopped or
  died, a connection dropped) and a server-side `CANCELLED` (a draining replica dropping a call
  it had not started), at most `GRPC_RETRY_ATTEMPTS` attempts with exponential backoff,
  by gRPC's own retry policy in the service config, not a hand-written loop.
- **Retry budget**: gRPC's `retryThrottling`; when most calls fail, retrying stops, so a dead
  stage costs one attempt per request rather than three.
- **Balancing**: `round_robin` over every address in a comma-separated list (local replicas) or
  every address a DNS name resolves to (a Kubernetes headless Service); a replica that is down is
  skipped until it reconnects.
- **Reconnects**: backoff capped at `GRPC_RECONNECT_MAX_BACKOFF_MS`, so a restarted stage is used
  again within about a second, without restarting the gateway.
- **Simulated distance**: with `HOP_DELAY_MS` and no real delay on the hops (`HOP_DELAY_METHOD`
  other than `netem`, see `lab.netdelay`), the client sleeps that long before each call,
  inside the call's deadline: the labelled in-process fallback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from microservices.generated.servinglab.v1 import pipeline_pb2
from servinglab.config import Settings

# Trailing metadata of a FAILED_PRECONDITION from Inference.Predict: the version it serves.
MODEL_VERSION_TRAILER = "lab-model-version"

STAGE_SERVICE_NAMES = [
    service.full_name for service in pipeline_pb2.DESCRIPTOR.services_by_name.values()
]


def message_size_options(settings: Settings) -> list[tuple[str, Any]]:
    limit = settings.grpc_max_message_bytes
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def service_config(settings: Settings) -> dict:
    backoff_s = settings.grpc_retry_backoff_ms / 1e3
    max_backoff_s = settings.grpc_retry_max_backoff_ms / 1e3
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": name} for name in [*STAGE_SERVICE_NAMES, "grpc.health.v1.Health"]
                ],
                "retryPolicy": {
                    "maxAttempts": settings.grpc_retry_attempts,
                    "initialBackoff": f"{backoff_s:.3f}s",
                    "maxBackoff": f"{max_backoff_s:.3f}s",
                    "backoffMultiplier": 2,
                    # CANCELLED too: a draining server cancels what it accepted but could not start.
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                },
            }
        ],
        "retryThrottling": {
            "maxTokens": settings.grpc_retry_max_tokens,
            "tokenRatio": settings.grpc_retry_token_ratio,
        },
    }


def channel_target(addresses: str | None) -> str:
    """`host:port` or a comma-separated list of `ip:port` replicas, as a gRPC target."""
    parts = [part.strip() for part in (addresses or "").split(",") if part.strip()]
    if not parts:
        raise ValueError("no stage address given")
    if len(parts) == 1:
        return parts[0]
    # A static list needs the ipv4 resolver: the DNS one takes a single name.
    return "ipv4:" + ",".join(parts)


def channel_options(settings: Settings) -> list[tuple[str, Any]]:
    reconnect_ms = settings.grpc_reconnect_max_backoff_ms
    return [
        *message_size_options(settings),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(service_config(settings))),
        ("grpc.initial_reconnect_backoff_ms", min(100, reconnect_ms)),
        ("grpc.min_reconnect_backoff_ms", min(100, reconnect_ms)),
        ("grpc.max_reconnect_backoff_ms", reconnect_ms),
    ]


def tls_files(settings: Settings) -> Path | None:
    directory = settings.grpc_tls_dir
    if not directory:
        return None
    path = Path(directory)
    missing = [
        name for name in ("ca.pem", "server.pem", "server-key.pem") if not (path / name).is_file()
    ]
    if missing:
        raise RuntimeError(
            f"LAB_GRPC_TLS_DIR={path} lacks {', '.join(missing)}; create them with `make certs`"
        )
    return path


def client_delay_s(settings: Settings) -> float:
    """Seconds the client sleeps per call: HOP_DELAY_MS, unless the hops are delayed for real
    ("netem", set by the launcher) or there is nothing to delay ("none")."""
    if settings.hop_delay_method.lower() in ("netem", "none"):
        return 0.0
    return max(settings.hop_delay_ms, 0.0) / 1e3


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class SleepBeforeCall(grpc.UnaryUnaryClientInterceptor):
    """The in-process stand-in for network distance: sleep, then call with what is left of the
    deadline. Adds latency only: no packets in flight, and gRPC's own retries do not pay it again."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s

    def intercept_unary_unary(self, continuation, client_call_details, request):
        time.sleep(self.delay_s)
        timeout = client_call_details.timeout
        if timeout is not None:
            client_call_details = _CallDetails(
                client_call_details.method,
                max(timeout - self.delay_s, 0.0),
                client_call_details.metadata,
                client_call_details.credentials,
                client_call_details.wait_for_ready,
                client_call_details.compression,
            )
        return continuation(client_call_details, request)


def open_channel(addresses: str | None, settings: Settings) -> grpc.Channel:
    target = channel_target(addresses)
    options = channel_options(settings)
    tls_dir = tls_files(settings)
    if tls_dir is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(tls_dir / "ca.pem").read_bytes()
        )
        if target.startswith("ipv4:"):
            # A list of replicas has no single name to verify; every replica is the same service
            # on the same host, so check the certificate against that host (an IP SAN locally).
            host = target.removeprefix("ipv4:").split(",")[0].rsplit(":", 1)[0]
            options = [*options, ("grpc.ssl_target_name_override", host)]
        channel = grpc.secure_channel(target, credentials, options=options)
    delay_s = client_delay_s(settings)
    return grpc.intercept_channel(channel, SleepBeforeCall(delay_s)) if delay_s > 0 else channel


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    tls_dir = tls_files(settings)
    if tls_dir is None:
        return None
    return grpc.ssl_server_credentials(
        [((tls_dir / "server-key.pem").read_bytes(), (tls_dir / "server.pem").read_bytes())]
    )
