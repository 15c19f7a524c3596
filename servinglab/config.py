"""Every setting of every process, with its default, in one place.

Settings come from `LAB_<NAME>` environment variables (values parsed as JSON when they parse, as
Flask's `from_prefixed_env` does), so the monolith, the gateway, the gRPC services, gunicorn and
the Kubernetes manifests all speak the same names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "LAB"

DEFAULTS: dict[str, Any] = {
    # Model
    "MODEL_DIR": "models",            # a models root, a profile directory, or one version directory
    "MODEL_PROFILE": "linear",        # used when MODEL_DIR is a models root
    "CONFIDENCE_THRESHOLD": 0.6,      # below this, a prediction is flagged `uncertain`
    # HTTP limits (both architectures)
    "MAX_CONTENT_LENGTH": 1 << 20,    # bytes; larger bodies get 413 before being read
    "MAX_INSTANCES": 1000,            # instances per request; more get 413
    # Gateway -> stages
    "PREPROCESS_ADDR": None,          # host:port, required by the gateway
    "INFERENCE_ADDR": None,
    "POSTPROCESS_ADDR": None,
    "REQUEST_BUDGET_MS": 2000,        # deadline for all three hops of one request together
    "READY_CHECK_TIMEOUT_MS": 300,    # per-stage health check behind /readyz
    # Retries of UNAVAILABLE by gRPC's own retry policy (service config); every stage call is a
    # pure function of its request, so all are idempotent. Attempts include the first one.
    "GRPC_RETRY_ATTEMPTS": 3,
    "GRPC_RETRY_BACKOFF_MS": 20,      # first backoff; doubles per attempt, capped below
    "GRPC_RETRY_MAX_BACKOFF_MS": 200,
    # Retry budget (gRPC retryThrottling): each failure costs a token, each success returns
    # RATIO of one; below half of MAX_TOKENS the channel stops retrying, so a dead stage cannot
    # turn every request into ATTEMPTS requests (no retry storm).
    "GRPC_RETRY_MAX_TOKENS": 20,
    "GRPC_RETRY_TOKEN_RATIO": 0.2,
    # A channel to a dead stage retries the connection with this backoff at most, so the gateway
    # recovers within about a second of the stage coming back (gRPC's default cap is 120 s).
    "GRPC_RECONNECT_MAX_BACKOFF_MS": 1000,
    # Optional TLS on the gRPC hops: a directory with ca.pem, server.pem, server-key.pem
    # (`make certs`). Unset means plaintext on loopback.
    "GRPC_TLS_DIR": None,
    # gRPC servers
    "GRPC_BIND": None,                # host:port; each service has its own default port below
    "GRPC_THREADS": 4,                # concurrent RPCs per service process
    "GRPC_MAX_MESSAGE_BYTES": 8 << 20,  # a full batch of features fits with room to spare
    "GRPC_GRACE_S": 5.0,              # in-flight RPCs get this long after SIGTERM
    # Bounded queue: RPCs beyond this many in flight (running + waiting for a thread) are refused
    # at once with RESOURCE_EXHAUSTED, which the gateway turns into a 503, instead of queueing.
    "GRPC_MAX_CONCURRENT_RPCS": 64,
    "PORT_FILE": None,                # where a server started on port 0 writes its real port
    # HTTP servers (gunicorn)
    "HTTP_BIND": "127.0.0.1:8000",
    "HTTP_WORKERS": 2,                # one per core on the reference 2-core machine
    "HTTP_WORKER_CLASS": "gthread",   # keeps connections alive; sync workers close each one
    # Measured fastest (more threads contend for the GIL). Trade-off: gunicorn gives a new
    # connection up to 5 s to send its first bytes while holding a thread, so a client that
    # connects and stays silent stalls a one-thread worker; raise this where clients are untrusted.
    "HTTP_THREADS": 1,
    "HTTP_TIMEOUT_S": 30,
    "HTTP_GRACEFUL_TIMEOUT_S": 10,
}

DEFAULT_GRPC_PORTS = {"preprocess": 50051, "inference": 50052, "postprocess": 50053}


def env_name(key: str) -> str:
    return f"{ENV_PREFIX}_{key}"


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def load(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then `LAB_*` variables, then explicit overrides (tests, factories)."""
    environ = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    prefix = ENV_PREFIX + "_"
    for name, value in environ.items():
        if name.startswith(prefix):
            settings[name[len(prefix):]] = _parse(value)
    settings.update(overrides or {})
    return settings


def require(settings: Mapping[str, Any], *keys: str) -> None:
    """Fail at start-up, naming the variables, rather than on the first request."""
    missing = [env_name(key) for key in keys if not settings.get(key)]
    if missing:
        raise RuntimeError(f"missing required setting(s): {', '.join(missing)} (host:port of each stage service)")
