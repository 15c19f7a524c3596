"""Every setting of every process, with its type and default, in one place: `Settings`.

Settings come from `LAB_<NAME>` environment variables, so the monolith, the gateway, the gRPC
services, gunicorn and the Kubernetes manifests all speak the same names. A process parses them
once, at start-up (`load`), into one frozen `Settings` that it passes down to whatever needs a
value: nothing reads a setting from the environment afterwards, and no caller converts one.

Parsing. A value is read as JSON when it parses (`50`, `0.75`, `true`, `null`, `"quoted"`), else
as its plain text (`models/forest`, `127.0.0.1:50051`), as Flask's `from_prefixed_env` does; it
must then fit the setting's type. An integer takes `50` or `1e3`, not `2.5`; a number any number;
a switch true/false, on/off, 1/0, yes/no; a text setting keeps the text as written. An empty
number means its default (make exports a variable nobody set as an empty string). A value that
does not fit stops start-up with a `SettingsError` naming the variable.

`LAB_*` names that are no setting here are no error: they are kept, parsed as JSON, in
`Settings.extra` (the HTTP app passes them on to Flask's own configuration).
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, get_type_hints

from servinglab.contract import STAGES

ENV_PREFIX = "LAB"

# The stage services' default ports, in pipeline order.
DEFAULT_GRPC_PORTS: dict[str, int] = dict(zip(STAGES, (50051, 50052, 50053), strict=True))


class SettingsError(ValueError):
    """A `LAB_*` value that does not fit its setting; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Typed settings of one process. Field `name` is the variable `LAB_<NAME>`."""

    # Model
    # A models root, a profile directory, or one version directory.
    model_dir: str = "models"
    model_profile: str = "linear"  # used when MODEL_DIR is a models root
    confidence_threshold: float = 0.6  # below this, a prediction is flagged `uncertain`
    # A file of `LAB_<NAME>=value` lines (blank lines and `#` comments allowed), read when a
    # process loads its settings, beneath the environment's values: like a mounted ConfigMap, a
    # changed value reaches what starts next (a rolled stage, a replacement gunicorn worker) and
    # nothing already running. `make scenarios` ships a new confidence threshold this way.
    settings_file: str | None = None
    # Micro-batching of the inference stage (servinglab/serving/batching.py): concurrent requests
    # of one process share a model call. Batches only form among requests in flight together in
    # that process: the inference service has GRPC_THREADS of them; a monolith worker has
    # HTTP_THREADS (gthread), so BATCHING there needs HTTP_THREADS > 1, e.g. 8 (at the default 1
    # every call serves one request). They form behind calls that release the GIL: forest and
    # boosting do, linear (~10 us) does not, so it batches almost never.
    batching: bool = False  # on/off, true/false, 1/0
    batch_max_size: int = 32  # rows per model call; a larger request runs alone
    # Longest the oldest queued request is held back waiting for company, and only under load:
    # a request that finds the model idle goes at once.
    batch_max_wait_ms: float = 2
    batch_timeout_ms: float = 2000  # a caller unanswered this long gets 504 / DEADLINE_EXCEEDED
    # HTTP limits (both architectures)
    max_content_length: int = 1 << 20  # bytes; larger bodies get 413 before being read
    max_instances: int = 1000  # instances per request; more get 413
    # Arrays/objects nested deeper than this get 400 from a byte scan before the JSON parser
    # runs, so the parser's recursion never nears the interpreter's limit (a request needs 3).
    max_json_depth: int = 32
    # Integer literals with more digits get 400. Enforced by CPython's own int parser
    # (sys.set_int_max_str_digits, per process; 0 = unlimited, else >= 640), which bounds the
    # quadratic cost of converting digits at no per-number cost on the hot path.
    max_int_digits: int = 4300
    max_string_chars: int = 64  # longest category value accepted (the longest real one has 9)
    max_key_chars: int = 64  # longest field name accepted (the longest real one has 17)
    # Gateway -> stages
    # How the gateway reaches the stages (microservices/gateway/app.py MODES):
    #   orchestrated: it calls preprocess, inference and postprocess in turn (all three ADDRs);
    #   split:        it runs preprocess and postprocess in process and calls inference
    #                 (INFERENCE_ADDR);
    #   chained:      it calls preprocess, which calls inference, which calls postprocess
    #                 (PREPROCESS_ADDR).
    gateway_mode: str = "orchestrated"
    preprocess_addr: str | None = None  # host:port (or a comma-separated list of replicas)
    inference_addr: str | None = None
    postprocess_addr: str | None = None
    # Chained mode, on the stage services: the next stage's address (preprocess -> inference,
    # inference -> postprocess). Set, the stage also serves servinglab.v1.Chain; unset, it does not.
    next_addr: str | None = None
    request_budget_ms: float = 2000  # deadline for all three hops of one request together
    ready_check_timeout_ms: float = 300  # per-stage health check behind /readyz
    # Retries of UNAVAILABLE by gRPC's own retry policy (service config); every stage call is a
    # pure function of its request, so all are idempotent. Attempts include the first one.
    grpc_retry_attempts: int = 3
    grpc_retry_backoff_ms: float = 20  # first backoff; doubles per attempt, capped below
    grpc_retry_max_backoff_ms: float = 200
    # Retry budget (gRPC retryThrottling): each failure costs a token, each success returns
    # RATIO of one; below half of MAX_TOKENS the channel stops retrying, so a dead stage cannot
    # turn every request into ATTEMPTS requests (no retry storm).
    grpc_retry_max_tokens: int = 20
    grpc_retry_token_ratio: float = 0.2
    # A channel to a dead stage retries the connection with this backoff at most, so the gateway
    # recovers within about a second of the stage coming back (gRPC's default cap is 120 s).
    grpc_reconnect_max_backoff_ms: int = 1000
    # Optional TLS on the gRPC hops: a directory with ca.pem, server.pem, server-key.pem
    # (`make certs`). Unset means plaintext on loopback.
    grpc_tls_dir: str | None = None
    # Simulated network distance (lab/netdelay.py): round trip added to every gateway ->
    # stage call, in ms. Presets: same node 0, same zone 0.5, cross zone 2. 0 = off, as before.
    hop_delay_ms: float = 0
    # auto: real delay when possible (launcher runs the servers in a private network namespace
    # with tc netem on its loopback; needs root), else sleep; netem: that or fail; sleep: the
    # gRPC client sleeps HOP_DELAY_MS before each call (labelled in-process fallback). The
    # launcher hands its children the method it used ("netem", "sleep" or "none").
    hop_delay_method: str = "auto"
    # gRPC servers
    grpc_bind: str | None = None  # host:port; each service has its own default port below
    grpc_threads: int = 4  # concurrent RPCs per service process
    grpc_max_message_bytes: int = 8 << 20  # a full batch of features fits with room to spare
    grpc_grace_s: float = 5.0  # in-flight RPCs get this long after SIGTERM
    # Bounded queue: RPCs beyond this many in flight (running + waiting for a thread) are refused
    # at once with RESOURCE_EXHAUSTED, which the gateway turns into a 503, instead of queueing.
    grpc_max_concurrent_rpcs: int = 64
    grpc_reuseport: bool = False  # let a replacement replica listen on the same port first
    # Reconnect clients this often (k8s: find new pods); 0 = off.
    grpc_max_connection_age_ms: int = 0
    port_file: str | None = None  # where a server started on port 0 writes its real port
    # HTTP servers (gunicorn)
    http_bind: str = "127.0.0.1:8000"
    http_workers: int = 2  # one per core on the reference 2-core machine
    http_worker_class: str = "gthread"  # keeps connections alive; sync workers close each one
    # Measured fastest (more threads contend for the GIL). Trade-off: gunicorn gives a new
    # connection up to 5 s to send its first bytes while holding a thread, so a client that
    # connects and stays silent stalls a one-thread worker; raise this where clients are untrusted.
    http_threads: int = 1
    # Load shedding: a request that waited longer than this in its worker's queue gets a quick
    # 503 + Retry-After instead of a late answer (gthread workers only; 0 turns it off). Above
    # the benchmark's 50 ms SLO: shed what is already too late, not what is merely slow.
    http_max_queue_ms: float = 500
    http_timeout_s: int = 30
    http_graceful_timeout_s: int = 10
    # Close a kept-alive connection after this many requests (0 = never), so its client reconnects
    # and an idle worker can take it: otherwise the worker that accepted a burst of connections
    # keeps them all (see gunicorn_conf.py). Like nginx's keepalive_requests.
    http_keepalive_requests: int = 100
    # gunicorn's preload_app: load the app, and the monolith's model, once in the master and fork
    # the workers from it, so they share its pages copy-on-write (make scenarios' memory scenario
    # measures what that saves). Off by default: a rolling reload then re-reads the model.
    http_preload: bool = False
    # gunicorn's request-head limits, explicit so they are reviewed and tunable rather than
    # inherited; the values are gunicorn's own defaults. gunicorn answers a breach itself (414 or
    # 431, text/html) and closes the connection: the app, and its problem+json, never sees it.
    http_limit_request_line: int = 4094  # bytes in "METHOD /path?query HTTP/1.1"
    http_limit_request_fields: int = 100  # header fields per request
    http_limit_request_field_size: int = 8190  # bytes in one header field, name and value
    # Prediction cache (servinglab.serving.cache), in front of the pipeline. Worth it only when
    # inputs repeat: every miss pays the lookup on top of the pipeline.
    cache: str = "none"  # none | local (LRU per worker process) | redis (shared)
    # redis://host:port/0 or unix:///path; unset: launch starts its own Redis
    cache_url: str | None = None
    # Entries per worker for `local`; about 1 kB each in Python objects.
    cache_size: int = 10_000
    cache_ttl_s: float = 300  # entry lifetime in seconds, both kinds; 0 = until evicted
    # Per Redis call; past it the request computes instead and the cache is skipped for a second
    # (circuit breaker), so a hung Redis costs one timeout per second per process, not per request.
    cache_timeout_ms: float = 20
    # Longest a cached answer can outlive a model rollout: the gateway re-asks inference for its
    # version at most this often when every request is a hit and nothing else would tell it.
    cache_version_refresh_ms: float = 1000
    # Microservices only: "gateway" caches whole predictions before any hop; "inference" caches
    # probabilities by feature row inside the inference service (preprocess and postprocess hops
    # are still paid). The monolith always caches in front of its pipeline.
    cache_placement: str = "gateway"
    # The Redis that launch starts evicts least recently used keys past this.
    cache_redis_maxmemory_mb: int = 64
    # Restart policy of `make run` and `make demo` (lab/watchdog.py RestartPolicy): always | never.
    # Backoff doubles per consecutive restart up to the max; it resets once a process stays up RESET_S.
    # The benchmark, make chaos and the test fixtures never restart: there a crash fails the run.
    restart_policy: str = "always"
    restart_backoff_s: float = 0.5
    restart_max_backoff_s: float = 30.0
    restart_reset_s: float = 30.0
    # Other LAB_* variables, parsed as JSON: no setting of this module, kept for whoever reads them.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Values from code (defaults, overrides, dataclasses.replace) are checked like the
        # environment's, so every Settings holds values of the declared types.
        for name, attribute in _ATTRIBUTES.items():
            value = getattr(self, attribute)
            parsed = _fit(name, value)
            if parsed is not value:
                object.__setattr__(self, attribute, parsed)
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def get(self, name: str, default: Any = None) -> Any:
        """The value of `LAB_<name>`, a setting or an extra variable: for readers that go by
        variable name (required addresses, manifests)."""
        attribute = _ATTRIBUTES.get(name)
        return getattr(self, attribute) if attribute else self.extra.get(name, default)

    def by_name(self) -> dict[str, Any]:
        """Every value by variable name (without the prefix), extra variables included."""
        return {
            **{name: getattr(self, attribute) for name, attribute in _ATTRIBUTES.items()},
            **self.extra,
        }

    def stage_address(self, stage: str) -> str | None:
        """`<STAGE>_ADDR`: where the gateway (orchestrated) reaches `stage`."""
        return self.get(f"{stage.upper()}_ADDR")


# Variable name (without the prefix) -> attribute, and each setting's (type, may be None).
_ATTRIBUTES: dict[str, str] = {
    item.name.upper(): item.name for item in fields(Settings) if item.name != "extra"
}


def _kind(hint: Any) -> tuple[type, bool]:
    """(type, whether None is allowed) of a field annotated `T` or `T | None`."""
    for kind in (bool, int, float, str):
        if hint == kind or hint == kind | None:
            return kind, hint != kind
    raise TypeError(f"a setting must be bool, int, float or str (or None), not {hint}")


_HINTS = get_type_hints(Settings)
_TYPES: dict[str, tuple[type, bool]] = {
    name: _kind(_HINTS[attribute]) for name, attribute in _ATTRIBUTES.items()
}

# Every setting's name (LAB_<NAME> without the prefix) and default, for tables and tools
# (the benchmark's knobs): `load` and `Settings` are what servers use.
DEFAULTS: dict[str, Any] = {
    item.name.upper(): item.default for item in fields(Settings) if item.name != "extra"
}

_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"0", "false", "off", "no", "", "none", "null"})


def env_name(key: str) -> str:
    return f"{ENV_PREFIX}_{key}"


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _switch(name: str, value: Any) -> bool:
    """A boolean as the environment spells it: true/false, on/off, 1/0, yes/no (empty: off)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Number):
        return bool(value)
    text = str(value).strip().lower() if value is not None else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{env_name(name)} must be on or off (true/false, 1/0), got {value!r}")


def _fit(name: str, value: Any) -> Any:
    """`value` as setting `name`'s type, or SettingsError naming the variable."""
    kind, optional = _TYPES[name]
    if kind is bool:
        return _switch(name, value)
    if value is None:
        if optional:
            return None
        raise SettingsError(f"{env_name(name)} must be {_a(kind)}, got null")
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise SettingsError(f"{env_name(name)} must be {_a(kind)}, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return _fit(name, DEFAULTS[name])
        number = _parse(text)
        if isinstance(number, str | bool) or number is None:
            raise SettingsError(f"{env_name(name)} must be {_a(kind)}, got {value!r}")
        return _fit(name, number)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if kind is float:
            return value if type(value) is float else float(value)
        if isinstance(value, numbers.Integral):
            return value if type(value) is int else int(value)
        if float(value).is_integer():
            return int(float(value))
    raise SettingsError(f"{env_name(name)} must be {_a(kind)}, got {value!r}")


def _a(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "text"}[kind]


def _from_text(name: str, text: str) -> Any:
    """An environment value: JSON when it parses, else the text; text settings keep their text."""
    parsed = _parse(text)
    if _TYPES.get(name, (None,))[0] is str and not (parsed is None or isinstance(parsed, str)):
        return text  # e.g. LAB_MODEL_PROFILE=2024 is the name "2024", not a number
    return parsed


def load(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Defaults, then `LAB_*` variables, then explicit overrides (tests, factories); checked."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    prefix = ENV_PREFIX + "_"
    for variable, text in environ.items():
        if variable.startswith(prefix):
            name = variable[len(prefix) :]
            (values if name in _ATTRIBUTES else extra)[name] = _from_text(name, text)
    settings_file = (overrides or {}).get("SETTINGS_FILE", values.get("SETTINGS_FILE"))
    if settings_file:
        for name, text in _read_settings_file(settings_file).items():
            # setdefault: the environment wins over the file, the overrides below over both.
            (values if name in _ATTRIBUTES else extra).setdefault(name, _from_text(name, text))
    for name, value in (overrides or {}).items():
        (values if name in _ATTRIBUTES else extra)[name] = value
    return Settings(**{_ATTRIBUTES[name]: value for name, value in values.items()}, extra=extra)


def _read_settings_file(path: Any) -> dict[str, str]:
    """`LAB_<NAME>=value` lines of a settings file -> {NAME: text}; SettingsError naming the line."""
    variable = env_name("SETTINGS_FILE")
    try:
        with open(os.fspath(path), encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as error:
        raise SettingsError(f"{variable}: cannot read {path}: {error.strerror}") from None
    found: dict[str, str] = {}
    prefix = ENV_PREFIX + "_"
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, equals, value = text.partition("=")
        key = key.strip()
        if not equals or not key.startswith(prefix) or key == variable:
            raise SettingsError(
                f"{variable} {path}, line {number}: expected LAB_<NAME>=value, got {text!r}"
            )
        found[key[len(prefix) :]] = value.strip()
    return found


def resolve(settings: Settings | Mapping[str, Any] | None = None) -> Settings:
    """`settings` as they are, or the environment's with these overrides (factories take both)."""
    return settings if isinstance(settings, Settings) else load(overrides=settings)


def require(settings: Settings, *keys: str) -> None:
    """Fail at start-up, naming the variables, rather than on the first request."""
    missing = [env_name(key) for key in keys if not settings.get(key)]
    if missing:
        raise RuntimeError(
            f"missing required setting(s): {', '.join(missing)} (host:port of each stage service)"
        )
