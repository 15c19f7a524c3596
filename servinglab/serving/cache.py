"""A prediction cache in front of the pipeline: `CACHE=none|local|redis`.

What is cached is one *instance*, not one request: a request's instances are looked up together,
only the misses go to the pipeline (as a smaller batch, in order), and the answers are merged back
in request order. A request whose instances are all cached never reaches the pipeline.

Keys. A key is the model version plus a canonical form of one validated row (`canonical_row`):
built from the `RawBatch` that validation produced, not from the client's JSON, so key order,
`2007` versus `2007.0`, `-0.0` versus `0.0` and other spellings of the same bird all meet in one
key. The version makes invalidation automatic: a new model never sees the old model's entries,
which simply age out (TTL, LRU). The confidence threshold is part of the key too, because it
decides the `uncertain` flag of a cached prediction.

Version freshness. The monolith knows its version (loaded at start, fixed for the process). The
gateway learns it from inference's answers, but a fully cached workload sends none, so the
`CachingBackend` re-reads it with `describe()` (Inference.Describe) at most once per
`CACHE_VERSION_REFRESH_MS`. Staleness bound: after inference switches model, a gateway worker
may go on answering from the previous version's entries for at most CACHE_VERSION_REFRESH_MS
(plus one Describe call); any miss in between tells it sooner. Answers are never mixed: a request
whose misses come back from another version than its hits were looked up under is recomputed whole.
While the version cannot be read (inference unreachable), nothing is served from the cache.

Kinds. `local` is an LRU with TTL in each worker process (no sharing; a worker must see an input
once before it hits). `redis` is shared by every process: one MGET per request, one pipelined SET
(with EX) for its misses. Redis is never a single point of failure: an error or timeout
(`CACHE_TIMEOUT_MS`) makes the request compute as if uncached, and a circuit breaker then skips
Redis for `BREAKER_OPEN_S`, so a dead Redis costs one failed call per second per process, not
one per request. Failures are counted (`lab_cache_errors_total`) and logged once per outage.

Placement (microservices): `gateway` wraps the gateway's backend (whole predictions, no hop
when all hit); `inference` wraps the classifier inside the inference service
(`cached_classifier`), keyed by version and the exact bytes of each feature row, so preprocess and
postprocess are still called. Its counters reach the gateway's /metrics through the shared
metrics directory.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from math import isnan
from pathlib import Path
from typing import Any

import numpy as np

from servinglab.serving import metrics
from servinglab.problems import Problem
from servinglab.schema import CATEGORICAL_NAMES, NUMERIC_NAMES
from servinglab.validation import RawBatch

log = logging.getLogger(__name__)

MODES = ("none", "local", "redis")
PLACEMENTS = ("gateway", "inference")
# Bump when the canonical form or the stored value format changes: old entries then never match.
KEY_PREFIX = "servinglab:1"
# How long the breaker keeps a failing Redis out of the request path before trying it again.
BREAKER_OPEN_S = 1.0

Clock = Callable[[], float]


# --- keys ----------------------------------------------------------------------------------------

def canonical_row(columns: Mapping[str, list], index: int) -> str:
    """One validated instance as a string that is equal exactly when the instances are equal.

    Fields in schema order; numbers as the shortest repr of the float validation produced (ints
    were already turned into floats), with -0.0 folded into 0.0 (the model cannot tell them
    apart); a missing number or category as an empty field. Categories are validated enum values,
    so they cannot contain the separator.
    """
    parts = []
    for name in NUMERIC_NAMES:
        value = columns[name][index]
        parts.append("" if isnan(value) else repr(value + 0.0))
    for name in CATEGORICAL_NAMES:
        value = columns[name][index]
        parts.append("" if value is None else value)
    return "|".join(parts)


def canonical_rows(batch: RawBatch) -> list[str]:
    return [canonical_row(batch.columns, index) for index in range(batch.size)]


def prediction_key(namespace: str, version: str, row: str) -> str:
    # Readable on purpose (redis-cli KEYS shows what is cached); a row is under 100 bytes.
    return f"{KEY_PREFIX}:pred:{namespace}:{version}:{row}"


def subset(batch: RawBatch, indexes: Sequence[int]) -> RawBatch:
    """The rows at `indexes`, in that order, as a batch of their own."""
    return RawBatch({name: [column[i] for i in indexes] for name, column in batch.columns.items()}, len(indexes))


# --- stores --------------------------------------------------------------------------------------

class LocalStore:
    """An LRU with a TTL, private to one process; thread-safe for gthread workers."""

    def __init__(self, max_size: int, ttl_s: float, clock: Clock = time.monotonic):
        if max_size < 1:
            raise ValueError(f"CACHE_SIZE must be at least 1, got {max_size}")
        self.max_size = int(max_size)
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self.entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        # OrderedDict's move_to_end/popitem pairs are not atomic under threads.
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def get_many(self, keys: Sequence[Any]) -> list[Any | None]:
        now = self.clock()
        found: list[Any | None] = []
        with self.lock:
            for key in keys:
                entry = self.entries.get(key)
                if entry is None:
                    found.append(None)
                elif entry[0] <= now:
                    del self.entries[key]  # expired: gone, as Redis would have it
                    found.append(None)
                else:
                    self.entries.move_to_end(key)
                    found.append(entry[1])
        return found

    def set_many(self, items: Sequence[tuple[Any, Any]]) -> None:
        expires = self.clock() + self.ttl_s if self.ttl_s > 0 else float("inf")
        with self.lock:
            for key, value in items:
                self.entries[key] = (expires, value)
                self.entries.move_to_end(key)
            while len(self.entries) > self.max_size:
                self.entries.popitem(last=False)


class RedisStore:
    """Redis behind a circuit breaker. `get_many` returns None when Redis could not be asked."""

    def __init__(self, url: str, ttl_s: float, timeout_ms: float, placement: str,
                 encode: Callable[[Any], bytes], decode: Callable[[bytes], Any], clock: Clock = time.monotonic):
        self.url = url
        self.ttl_s = int(ttl_s)
        self.timeout_s = float(timeout_ms) / 1e3
        self.placement = placement
        self.encode, self.decode = encode, decode
        self.clock = clock
        self.open_until = 0.0   # the breaker is open (Redis skipped) until this clock reading
        self.failing = False    # within an outage: log its start once, and its end
        self._client = None
        self._client_pid = 0

    def client(self):
        # redis is imported only where CACHE=redis: the other modes do not pay for the import.
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Created in the process that uses it: a connection must not be shared across a fork.
        if self._client is None or self._client_pid != os.getpid():
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
                # redis-py retries failed calls 3 times by default: that would triple the
                # cost of a dead Redis that the breaker exists to bound.
                retry=Retry(NoBackoff(), 0), health_check_interval=0)
            self._client_pid = os.getpid()
        return self._client

    def available(self) -> bool:
        return self.clock() >= self.open_until

    def _failed(self, operation: str, error: Exception) -> None:
        metrics.CACHE_ERRORS.inc((self.placement, operation))
        self.open_until = self.clock() + BREAKER_OPEN_S
        if not self.failing:
            self.failing = True
            log.warning("cache unavailable (%s %s: %s); computing without it, retrying every %.0f s",
                        operation, self.url, error, BREAKER_OPEN_S)

    def _succeeded(self) -> None:
        if self.failing:
            self.failing = False
            log.warning("cache available again at %s", self.url)

    def get_many(self, keys: Sequence[Any]) -> list[Any | None] | None:
        import redis

        if not self.available():
            return None
        try:
            raw = self.client().mget(keys)
        except redis.RedisError as error:
            self._failed("get", error)
            return None
        self._succeeded()
        found: list[Any | None] = []
        for value in raw:
            try:
                found.append(None if value is None else self.decode(value))
            except ValueError:
                # A value this code cannot read (another version wrote it): a miss, overwritten below.
                metrics.CACHE_ERRORS.inc((self.placement, "decode"))
                found.append(None)
        return found

    def set_many(self, items: Sequence[tuple[Any, Any]]) -> None:
        import redis

        if not items or not self.available():
            return
        try:
            pipe = self.client().pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, self.encode(value), ex=self.ttl_s or None)
            pipe.execute()
        except redis.RedisError as error:
            self._failed("set", error)


def _json_bytes(value: Any) -> bytes:
    # Floats are written as their shortest repr, so they read back as the same doubles.
    return json.dumps(value, separators=(",", ":")).encode()


def make_store(settings: Mapping[str, Any], placement: str,
               encode: Callable[[Any], bytes] = _json_bytes, decode: Callable[[bytes], Any] = json.loads,
               clock: Clock = time.monotonic) -> LocalStore | RedisStore:
    mode = settings["CACHE"]
    if mode == "local":
        return LocalStore(int(settings["CACHE_SIZE"]), float(settings["CACHE_TTL_S"]), clock)
    if mode == "redis":
        if not settings.get("CACHE_URL"):
            raise RuntimeError("LAB_CACHE=redis needs LAB_CACHE_URL (redis://host:port/0 or unix:///path); "
                               "lab.launch starts a Redis and sets it when it is unset")
        return RedisStore(str(settings["CACHE_URL"]), float(settings["CACHE_TTL_S"]),
                          float(settings["CACHE_TIMEOUT_MS"]), placement, encode, decode, clock)
    raise ValueError(f"LAB_CACHE must be one of {', '.join(MODES)}, got {mode!r}")


def cache_mode(settings: Mapping[str, Any]) -> str:
    """The configured mode, checked, so a typo stops start-up instead of silently not caching."""
    mode = settings.get("CACHE") or "none"
    if mode not in MODES:
        raise ValueError(f"LAB_CACHE must be one of {', '.join(MODES)}, got {mode!r}")
    placement = settings.get("CACHE_PLACEMENT") or "gateway"
    if placement not in PLACEMENTS:
        raise ValueError(f"LAB_CACHE_PLACEMENT must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    return mode


# --- in front of a backend (monolith, gateway) ---------------------------------------------------

def _model_summary(metadata: Mapping[str, Any]) -> dict:
    # servinglab.model.pipeline.model_summary, without importing scikit-learn into the gateway.
    return {"name": metadata["name"], "version": metadata["version"], "profile": metadata["profile"]}


class CachingBackend:
    """A `Backend` that answers cached instances itself and sends only the misses on."""

    def __init__(self, backend: Any, store: LocalStore | RedisStore, placement: str,
                 version_refresh_s: float, namespace: str = "", clock: Clock = time.monotonic):
        self.backend = backend
        self.store = store
        self.placement = placement
        self.version_refresh_s = float(version_refresh_s)
        self.namespace = namespace
        self.clock = clock
        self.model: dict | None = None
        self.model_seen_at = 0.0

    def _learn(self, model: dict) -> None:
        self.model, self.model_seen_at = model, self.clock()

    def current_model(self) -> dict | None:
        """The serving model, at most `version_refresh_s` old; None when it cannot be read."""
        if self.model is not None and self.clock() - self.model_seen_at < self.version_refresh_s:
            return self.model
        try:
            self._learn(_model_summary(self.backend.describe()))
        except Problem:
            return None
        return self.model

    def _keys(self, version: str, rows: Sequence[str]) -> list[str]:
        return [prediction_key(self.namespace, version, row) for row in rows]

    def _count(self, hits: int, misses: int, skipped: int) -> None:
        for result, count in (("hit", hits), ("miss", misses), ("skipped", skipped)):
            if count:
                metrics.CACHE_LOOKUPS.inc((self.placement, result), count)

    def _computed(self, batch: RawBatch, rows: list[str], spent: float, desc: str):
        """Everything from the pipeline (cache unusable or answers would mix versions); stored."""
        from servinglab.serving.api import PredictOutcome

        outcome = self.backend.predict(batch)
        self._learn(outcome.model)
        resumed = time.perf_counter()
        unique = dict(zip(rows, outcome.predictions))
        self.store.set_many(list(zip(self._keys(outcome.model["version"], list(unique)), unique.values())))
        spent += time.perf_counter() - resumed
        return PredictOutcome(outcome.predictions, outcome.model, [("cache", spent * 1e3, desc), *outcome.timings])

    def predict(self, batch: RawBatch):
        # Imported here: servinglab.serving.api pulls in Flask, which the inference service (the other
        # user of this module) has no use for.
        from servinglab.serving.api import PredictOutcome

        started = time.perf_counter()
        size = batch.size
        rows = canonical_rows(batch)
        model = self.current_model()
        found = None if model is None else self.store.get_many(self._keys(model["version"], rows))
        if found is None:
            self._count(0, 0, size)
            return self._computed(batch, rows, time.perf_counter() - started, f"hit 0/{size} unavailable")
        # First position of each distinct missing row: a bird sent twice is computed once.
        missing: dict[str, int] = {}
        for index, value in enumerate(found):
            if value is None and rows[index] not in missing:
                missing[rows[index]] = index
        hits = size - sum(1 for value in found if value is None)
        self._count(hits, size - hits, 0)
        if not missing:
            return PredictOutcome(list(found), model,
                                  [("cache", (time.perf_counter() - started) * 1e3, f"hit {size}/{size}")])
        lookup_s = time.perf_counter() - started
        outcome = self.backend.predict(subset(batch, list(missing.values())))
        self._learn(outcome.model)
        if hits and outcome.model["version"] != model["version"]:
            # The model changed between the lookup and the pipeline call: the hits belong to the
            # previous version, so the whole request is computed again by one version.
            return self._computed(batch, rows, lookup_s, f"hit 0/{size} version-changed")
        resumed = time.perf_counter()
        computed = dict(zip(missing, outcome.predictions))
        self.store.set_many(list(zip(self._keys(outcome.model["version"], list(computed)), computed.values())))
        predictions = [value if value is not None else computed[rows[index]] for index, value in enumerate(found)]
        cache_ms = (lookup_s + time.perf_counter() - resumed) * 1e3
        return PredictOutcome(predictions, outcome.model, [("cache", cache_ms, f"hit {hits}/{size}"),
                                                           *outcome.timings])

    def describe(self) -> dict:
        return self.backend.describe()

    def readiness(self) -> tuple[bool, dict[str, str]]:
        # The cache is optional by design, so it never makes the process unready.
        return self.backend.readiness()


def with_cache(backend: Any, settings: Mapping[str, Any], placement: str, clock: Clock = time.monotonic) -> Any:
    """`backend` behind a `CachingBackend` when the settings ask for one here, else itself.

    `placement` is "monolith" or "gateway"; the gateway caches only with CACHE_PLACEMENT=gateway.
    """
    mode = cache_mode(settings)
    if mode == "none" or (placement == "gateway" and settings.get("CACHE_PLACEMENT", "gateway") != "gateway"):
        return backend
    # The threshold decides `uncertain`: two deployments sharing a Redis with different
    # thresholds must not share answers. The gateway assumes postprocess runs with its setting.
    namespace = f"t{float(settings['CONFIDENCE_THRESHOLD'])!r}"
    return CachingBackend(backend, make_store(settings, placement, clock=clock), placement,
                          float(settings["CACHE_VERSION_REFRESH_MS"]) / 1e3, namespace, clock)


# --- inside the inference service ----------------------------------------------------------------

class CachedClassifier:
    """A classifier whose probabilities are cached per feature row (CACHE_PLACEMENT=inference).

    The key is the model version and the exact bytes of the float64 row, so only bit-identical
    features share an answer. Rows are computed independently of the rows around them (see
    `Classifier._softmax_regression`), so computing the misses alone gives the same bits.
    """

    placement = "inference"

    def __init__(self, classifier: Any, version: str, store: LocalStore | RedisStore):
        self.classifier = classifier
        self.store = store
        self.prefix = f"{KEY_PREFIX}:proba:{version}:".encode()

    def __getattr__(self, name: str) -> Any:
        # Everything but predict_proba (n_features, estimator...) is the wrapped classifier's.
        return getattr(self.classifier, name)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        if features.ndim != 2 or features.shape[1] != self.classifier.n_features or not len(features):
            return self.classifier.predict_proba(features)  # its own error for a wrong shape
        features = np.ascontiguousarray(features, dtype=float)
        keys = [self.prefix + row.tobytes() for row in features]
        found = self.store.get_many(keys)
        size = len(keys)
        if found is None:
            metrics.CACHE_LOOKUPS.inc((self.placement, "skipped"), size)
            probabilities = self.classifier.predict_proba(features)
            self.store.set_many(list(zip(keys, (row.tobytes() for row in probabilities))))
            return probabilities
        missing = [index for index, value in enumerate(found) if value is None]
        hits = size - len(missing)
        if hits:
            metrics.CACHE_LOOKUPS.inc((self.placement, "hit"), hits)
        if missing:
            metrics.CACHE_LOOKUPS.inc((self.placement, "miss"), len(missing))
            computed = self.classifier.predict_proba(features[missing])
            self.store.set_many([(keys[index], row.tobytes()) for index, row in zip(missing, computed)])
            if not hits:
                return computed
            width = computed.shape[1]
        else:
            width = len(found[0]) // 8
        probabilities = np.empty((size, width))
        for index, value in enumerate(found):
            if value is not None:
                probabilities[index] = np.frombuffer(value, dtype=float)
        if missing:
            probabilities[missing] = computed
        return probabilities


def cached_classifier(classifier: Any, version: str, settings: Mapping[str, Any]) -> Any:
    """The inference service's classifier, cached when CACHE is on with CACHE_PLACEMENT=inference."""
    if cache_mode(settings) == "none" or settings.get("CACHE_PLACEMENT") != "inference":
        return classifier
    # Publishes this process's cache counters into the metrics directory the gateway scrapes.
    metrics.start_flusher()
    store = make_store(settings, "inference", encode=bytes, decode=bytes)
    return CachedClassifier(classifier, version, store)

