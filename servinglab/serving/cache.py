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

Kinds. `local` is an LRU with TTL per worker process, `redis` is shared by every process and
never a single point of failure; both are in `servinglab.serving.stores`.

Placement (microservices): `gateway` wraps the gateway's backend (whole predictions, no hop
when all hit); `inference` wraps the classifier inside the inference service
(`cached_classifier`), keyed by version and the exact bytes of each feature row, so preprocess and
postprocess are still called. Its counters reach the gateway's /metrics through the shared
metrics directory.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from math import isnan
from typing import Any, cast

import numpy as np

from servinglab.config import Settings
from servinglab.contract import Backend, PredictOutcome, model_summary
from servinglab.problems import Problem
from servinglab.schema import CATEGORICAL_NAMES, NUMERIC_NAMES
from servinglab.serving import metrics
from servinglab.serving.stores import MODES, Clock, LocalStore, RedisStore, make_store
from servinglab.validation import RawBatch

PLACEMENTS = ("gateway", "inference")
# Bump when the canonical form or the stored value format changes: old entries then never match.
KEY_PREFIX = "servinglab:1"


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
    return RawBatch(
        {name: [column[i] for i in indexes] for name, column in batch.columns.items()}, len(indexes)
    )


def cache_mode(settings: Settings) -> str:
    """The configured mode, checked, so a typo stops start-up instead of silently not caching."""
    mode = settings.cache or "none"
    if mode not in MODES:
        raise ValueError(f"LAB_CACHE must be one of {', '.join(MODES)}, got {mode!r}")
    placement = settings.cache_placement or "gateway"
    if placement not in PLACEMENTS:
        raise ValueError(
            f"LAB_CACHE_PLACEMENT must be one of {', '.join(PLACEMENTS)}, got {placement!r}"
        )
    return mode


# --- in front of a backend (monolith, gateway) ---------------------------------------------------


class CachingBackend:
    """A `Backend` that answers cached instances itself and sends only the misses on."""

    def __init__(
        self,
        backend: Backend,
        store: LocalStore | RedisStore,
        placement: str,
        version_refresh_s: float,
        namespace: str = "",
        clock: Clock = time.monotonic,
    ):
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
            self._learn(model_summary(self.backend.describe()))
        except Problem:
            return None
        return self.model

    def _keys(self, version: str, rows: Sequence[str]) -> list[str]:
        return [prediction_key(self.namespace, version, row) for row in rows]

    def _count(self, hits: int, misses: int, skipped: int) -> None:
        for result, count in (("hit", hits), ("miss", misses), ("skipped", skipped)):
            if count:
                metrics.CACHE_LOOKUPS.inc((self.placement, result), count)

    def _computed(
        self, batch: RawBatch, rows: list[str], spent: float, desc: str
    ) -> PredictOutcome:
        """Everything from the pipeline (cache unusable or answers would mix versions); stored."""
        outcome = self.backend.predict(batch)
        self._learn(outcome.model)
        resumed = time.perf_counter()
        unique = dict(zip(rows, outcome.predictions))
        self.store.set_many(
            list(zip(self._keys(outcome.model["version"], list(unique)), unique.values()))
        )
        spent += time.perf_counter() - resumed
        return PredictOutcome(
            outcome.predictions, outcome.model, [("cache", spent * 1e3, desc), *outcome.timings]
        )

    def predict(self, batch: RawBatch) -> PredictOutcome:
        started = time.perf_counter()
        size = batch.size
        rows = canonical_rows(batch)
        model = self.current_model()
        found = None if model is None else self.store.get_many(self._keys(model["version"], rows))
        if model is None or found is None:
            self._count(0, 0, size)
            return self._computed(
                batch, rows, time.perf_counter() - started, f"hit 0/{size} unavailable"
            )
        # First position of each distinct missing row: a bird sent twice is computed once.
        missing: dict[str, int] = {}
        for index, value in enumerate(found):
            if value is None and rows[index] not in missing:
                missing[rows[index]] = index
        hits = size - sum(1 for value in found if value is None)
        self._count(hits, size - hits, 0)
        if not missing:
            return PredictOutcome(
                cast(list[dict], list(found)),
                model,
                [("cache", (time.perf_counter() - started) * 1e3, f"hit {size}/{size}")],
            )
        lookup_s = time.perf_counter() - started
        outcome = self.backend.predict(subset(batch, list(missing.values())))
        self._learn(outcome.model)
        if hits and outcome.model["version"] != model["version"]:
            # The model changed between the lookup and the pipeline call: the hits belong to the
            # previous version, so the whole request is computed again by one version.
            return self._computed(batch, rows, lookup_s, f"hit 0/{size} version-changed")
        resumed = time.perf_counter()
        computed = dict(zip(missing, outcome.predictions))
        self.store.set_many(
            list(zip(self._keys(outcome.model["version"], list(computed)), computed.values()))
        )
        predictions = [
            value if value is not None else computed[rows[index]]
            for index, value in enumerate(found)
        ]
        cache_ms = (lookup_s + time.perf_counter() - resumed) * 1e3
        return PredictOutcome(
            predictions,
            outcome.model,
            [("cache", cache_ms, f"hit {hits}/{size}"), *outcome.timings],
        )

    def describe(self) -> dict:
        return self.backend.describe()

    def readiness(self) -> tuple[bool, dict[str, str]]:
        # The cache is optional by design, so it never makes the process unready.
        return self.backend.readiness()


def with_cache(
    backend: Backend, settings: Settings, placement: str, clock: Clock = time.monotonic
) -> Backend:
    """`backend` behind a `CachingBackend` when the settings ask for one here, else itself.

    `placement` is "monolith" or "gateway"; the gateway caches only with CACHE_PLACEMENT=gateway.
    """
    mode = cache_mode(settings)
    if mode == "none" or (placement == "gateway" and settings.cache_placement != "gateway"):
        return backend
    # The threshold decides `uncertain`: two deployments sharing a Redis with different
    # thresholds must not share answers. The gateway assumes postprocess runs with its setting.
    namespace = f"t{settings.confidence_threshold!r}"
    return CachingBackend(
        backend,
        make_store(settings, placement, clock=clock),
        placement,
        settings.cache_version_refresh_ms / 1e3,
        namespace,
        clock,
    )


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
        if (
            features.ndim != 2
            or features.shape[1] != self.classifier.n_features
            or not len(features)
        ):
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
            self.store.set_many(
                [(keys[index], row.tobytes()) for index, row in zip(missing, computed)]
            )
            if not hits:
                return computed
            width = computed.shape[1]
        else:
            width = len(cast(bytes, found[0])) // 8
        probabilities = np.empty((size, width))
        for index, value in enumerate(found):
            if value is not None:
                probabilities[index] = np.frombuffer(value, dtype=float)
        if missing:
            probabilities[missing] = computed
        return probabilities


def cached_classifier(classifier: Any, version: str, settings: Settings) -> Any:
    """The inference service's classifier, cached when CACHE is on with CACHE_PLACEMENT=inference."""
    if cache_mode(settings) == "none" or settings.cache_placement != "inference":
        return classifier
    # Publishes this process's cache counters into the metrics directory the gateway scrapes.
    metrics.start_flusher()
    store = make_store(settings, "inference", encode=bytes, decode=bytes)
    return CachedClassifier(classifier, version, store)
