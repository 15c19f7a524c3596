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
    # Micro-batching of the inference stage (servinglab/serving/batching.py): concurrent requests of one
    # process share a model call. Batches only form among requests in flight together in that
    # process: the inference service has GRPC_THREADS of them; a monolith worker has HTTP_THREADS
    # (gthread), so BATCHING there needs HTTP_THREADS > 1, e.g. 8 (at the default 1 every call
    # serves one request). They form behind calls that release the GIL: forest and boosting do,
    # linear (~10 us) does not, so it batches almost never.
    "BATCHING": False,                # on/off, true/false, 1/0
    "BATCH_MAX_SIZE": 32,             # rows per model call; a larger request runs alone
    # Longest the oldest queued request is held back waiting for company, and only under load:
    # a request that finds the model idle goes at once.
    "BATCH_MAX_WAIT_MS": 2,
    "BATCH_TIMEOUT_MS": 2000,         # a caller unanswered this long gets 504 / DEADLINE_EXCEEDED
    # HTTP limits (both architectures)
    "MAX_CONTENT_LENGTH": 1 << 20,    # bytes; larger bodies get 413 before being read
    "MAX_INSTANCES": 1000,            # instances per request; more get 413
    # Arrays/objects nested deeper than this get 400 from a byte scan before the JSON parser
    # runs, so the parser's recursion never nears the interpreter's limit (a request needs 3).
    "MAX_JSON_DEPTH": 32,
    # Integer literals with more digits get 400. Enforced by CPython's own int parser
    # (sys.set_int_max_str_digits, per process; 0 = unlimited, else >= 640), which bounds the
    # quadratic cost of converting digits at no per-number cost on the hot path.
    "MAX_INT_DIGITS": 4300,
    "MAX_STRING_CHARS": 64,           # longest category value accepted (the longest real one has 9)
    "MAX_KEY_CHARS": 64,              # longest field name accepted (the longest real one has 17)
    # Gateway -> stages
    # How the gateway reaches the stages (microservices/gateway/app.py MODES):
    #   orchestrated: it calls preprocess, inference and postprocess in turn (all three ADDRs);
    #   split:        it runs preprocess and postprocess in process and calls inference (INFERENCE_ADDR);
    #   chained:      it calls preprocess, which calls inference, which calls postprocess (PREPROCESS_ADDR).
    "GATEWAY_MODE": "orchestrated",
    "PREPROCESS_ADDR": None,          # host:port (or a comma-separated list of replicas)
    "INFERENCE_ADDR": None,
    "POSTPROCESS_ADDR": None,
    # Chained mode, on the stage services: the next stage's address (preprocess -> inference,
    # inference -> postprocess). Set, the stage also serves servinglab.v1.Chain; unset, it does not.
    "NEXT_ADDR": None,
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
    # Simulated network distance (lab/netdelay.py): round trip added to every gateway ->
    # stage call, in ms. Presets: same node 0, same zone 0.5, cross zone 2. 0 = off, as before.
    "HOP_DELAY_MS": 0,
    # auto: real delay when possible (launcher runs the servers in a private network namespace
    # with tc netem on its loopback; needs root), else sleep; netem: that or fail; sleep: the
    # gRPC client sleeps HOP_DELAY_MS before each call (labelled in-process fallback). The
    # launcher hands its children the method it used ("netem", "sleep" or "none").
    "HOP_DELAY_METHOD": "auto",
    # gRPC servers
    "GRPC_BIND": None,                # host:port; each service has its own default port below
    "GRPC_THREADS": 4,                # concurrent RPCs per service process
    "GRPC_MAX_MESSAGE_BYTES": 8 << 20,  # a full batch of features fits with room to spare
    "GRPC_GRACE_S": 5.0,              # in-flight RPCs get this long after SIGTERM
    # Bounded queue: RPCs beyond this many in flight (running + waiting for a thread) are refused
    # at once with RESOURCE_EXHAUSTED, which the gateway turns into a 503, instead of queueing.
    "GRPC_MAX_CONCURRENT_RPCS": 64,
    "GRPC_REUSEPORT": False,          # let a replacement replica listen on the same port first
    "PORT_FILE": None,                # where a server started on port 0 writes its real port
    # HTTP servers (gunicorn)
    "HTTP_BIND": "127.0.0.1:8000",
    "HTTP_WORKERS": 2,                # one per core on the reference 2-core machine
    "HTTP_WORKER_CLASS": "gthread",   # keeps connections alive; sync workers close each one
    # Measured fastest (more threads contend for the GIL). Trade-off: gunicorn gives a new
    # connection up to 5 s to send its first bytes while holding a thread, so a client that
    # connects and stays silent stalls a one-thread worker; raise this where clients are untrusted.
    "HTTP_THREADS": 1,
    # Load shedding: a request that waited longer than this in its worker's queue gets a quick
    # 503 + Retry-After instead of a late answer (gthread workers only; 0 turns it off). Above
    # the benchmark's 50 ms SLO: shed what is already too late, not what is merely slow.
    "HTTP_MAX_QUEUE_MS": 500,
    "HTTP_TIMEOUT_S": 30,
    "HTTP_GRACEFUL_TIMEOUT_S": 10,
    # gunicorn's request-head limits, explicit so they are reviewed and tunable rather than
    # inherited; the values are gunicorn's own defaults. gunicorn answers a breach itself (414 or
    # 431, text/html) and closes the connection: the app, and its problem+json, never sees it.
    "HTTP_LIMIT_REQUEST_LINE": 4094,        # bytes in "METHOD /path?query HTTP/1.1"
    "HTTP_LIMIT_REQUEST_FIELDS": 100,       # header fields per request
    "HTTP_LIMIT_REQUEST_FIELD_SIZE": 8190,  # bytes in one header field, name and value
    # Prediction cache (servinglab.serving.cache), in front of the pipeline. Worth it only when inputs
    # repeat: every miss pays the lookup on top of the pipeline.
    "CACHE": "none",                  # none | local (LRU per worker process) | redis (shared)
    "CACHE_URL": None,                # redis://host:port/0 or unix:///path; unset: launch starts its own Redis
    "CACHE_SIZE": 10_000,             # entries per worker for `local`; about 1 kB each in Python objects
    "CACHE_TTL_S": 300,               # entry lifetime in seconds, both kinds; 0 = until evicted
    # Per Redis call; past it the request computes instead and the cache is skipped for a second
    # (circuit breaker), so a hung Redis costs one timeout per second per process, not per request.
    "CACHE_TIMEOUT_MS": 20,
    # Longest a cached answer can outlive a model rollout: the gateway re-asks inference for its
    # version at most this often when every request is a hit and nothing else would tell it.
    "CACHE_VERSION_REFRESH_MS": 1000,
    # Microservices only: "gateway" caches whole predictions before any hop; "inference" caches
    # probabilities by feature row inside the inference service (preprocess and postprocess hops
    # are still paid). The monolith always caches in front of its pipeline.
    "CACHE_PLACEMENT": "gateway",
    "CACHE_REDIS_MAXMEMORY_MB": 64,   # the Redis launch starts evicts least recently used keys past this
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
