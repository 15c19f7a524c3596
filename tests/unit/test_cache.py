"""Unit tests for the prediction cache (`servinglab.serving.cache`) and the cache workload
(`benchmarks.measure.workload`).

The backends here are the real in-process pipeline; only time is faked (an explicit clock), so TTL,
version refresh and the circuit breaker are tested without waiting.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from benchmarks.measure.workload import BLOCK, Workload, build_bodies
from monolith.app import InProcessBackend
from servinglab import config
from servinglab.model.pipeline import Postprocessor
from servinglab.serving import metrics
from servinglab.serving.cache import (
    CachedClassifier,
    CachingBackend,
    canonical_row,
    canonical_rows,
    prediction_key,
    with_cache,
)
from servinglab.serving.stores import BREAKER_OPEN_S, LocalStore, RedisStore, make_store
from servinglab.validation import validate_instances, validate_predict_request


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingBackend(InProcessBackend):
    """The real in-process pipeline, remembering which rows it was asked to compute."""

    def __init__(self, pipeline):
        super().__init__(pipeline)
        self.calls: list[list[str]] = []

    def predict(self, batch):
        self.calls.append(canonical_rows(batch))
        return super().predict(batch)


def key_of(record: dict, version: str = "v1") -> str:
    return prediction_key("", version, canonical_row(validate_instances([record]).columns, 0))


def settings(**overrides):
    return config.load(environ={}, overrides=overrides)


def counter(metric, *labels) -> float:
    return metric.values.get(labels, 0.0)


# --- keys ----------------------------------------------------------------------------------------


def test_equal_instances_share_a_key_whatever_their_spelling(held_out):
    record = next(r for r in held_out if r["body_mass_g"] is not None and r["sex"] is not None)
    reordered = dict(reversed(list(record.items())))
    retyped = {**record, "year": float(record["year"]), "body_mass_g": int(record["body_mass_g"])}
    if record["body_mass_g"] != int(record["body_mass_g"]):
        retyped["body_mass_g"] = record["body_mass_g"]
    text_roundtrip = json.loads(json.dumps(record, indent=2, sort_keys=True))
    keys = {key_of(r) for r in (record, reordered, retyped, text_roundtrip)}
    assert len(keys) == 1
    # -0.0 and 0.0 are the same measurement to the model.
    assert key_of({**record, "bill_depth_mm": -0.0}) == key_of({**record, "bill_depth_mm": 0})


def test_different_instances_or_versions_never_share_a_key(held_out):
    record = next(
        r for r in held_out if r["bill_length_mm"] is not None and r["island"] is not None
    )
    base = key_of(record)
    assert key_of({**record, "bill_length_mm": record["bill_length_mm"] + 1e-9}) != base
    assert key_of({**record, "bill_length_mm": None}) != base
    assert key_of({**record, "island": None}) != base
    assert key_of(record, version="v2") != base
    assert len({key_of(r) for r in held_out}) == len(
        {json.dumps(r, sort_keys=True) for r in held_out}
    )


# --- local store ---------------------------------------------------------------------------------


def test_local_store_evicts_the_least_recently_used_beyond_its_size():
    store = LocalStore(max_size=2, ttl_s=60)
    store.set_many([("a", 1), ("b", 2)])
    assert store.get_many(["a"]) == [1]  # a is now more recent than b
    store.set_many([("c", 3)])
    assert store.get_many(["a", "b", "c"]) == [1, None, 3]
    assert len(store) == 2


def test_local_store_forgets_entries_after_their_ttl():
    clock = Clock()
    store = LocalStore(max_size=10, ttl_s=5, clock=clock)
    store.set_many([("a", 1)])
    clock.now += 4.9
    assert store.get_many(["a"]) == [1]
    clock.now += 0.2
    assert store.get_many(["a"]) == [None]
    assert len(store) == 0


# --- the caching backend -------------------------------------------------------------------------


def test_only_misses_reach_the_pipeline_and_answers_merge_in_order(pipeline, held_out):
    backend = RecordingBackend(pipeline)
    cached = CachingBackend(backend, LocalStore(100, 60), "test", version_refresh_s=60)
    a, b, c, d = held_out[:4]
    first = cached.predict(validate_instances([a, b]))
    assert backend.calls == [canonical_rows(validate_instances([a, b]))]
    assert first.timings[0][0] == "cache" and first.timings[0][2] == "hit 0/2"

    request = [c, a, d, b, c]  # c twice: computed once
    outcome = cached.predict(validate_instances(request))
    assert backend.calls[1] == canonical_rows(validate_instances([c, d]))
    assert outcome.predictions == pipeline.predict(validate_instances(request))
    assert outcome.model["version"] == pipeline.metadata["version"]
    assert outcome.timings[0][2] == "hit 2/5"
    assert [name for name, *_ in outcome.timings] == ["cache", "pre", "infer", "post"]


def test_a_request_of_hits_never_calls_the_pipeline(pipeline, held_out):
    backend = RecordingBackend(pipeline)
    cached = CachingBackend(backend, LocalStore(100, 60), "test", version_refresh_s=60)
    request = validate_instances(held_out[:10])
    cached.predict(request)
    hits_before = counter(metrics.CACHE_LOOKUPS, "test", "hit")
    outcome = cached.predict(request)
    assert len(backend.calls) == 1
    assert outcome.predictions == pipeline.predict(request)
    assert outcome.timings == [("cache", outcome.timings[0][1], "hit 10/10")]
    assert counter(metrics.CACHE_LOOKUPS, "test", "hit") - hits_before == 10


class Rollout:
    """A backend that can switch model version, as a gateway sees inference being redeployed."""

    def __init__(self, backend):
        self.current = backend

    def predict(self, batch):
        return self.current.predict(batch)

    def describe(self):
        return self.current.describe()

    def readiness(self):
        return self.current.readiness()


def test_a_new_model_version_never_gets_the_old_versions_answers(pipeline, held_out):
    clock = Clock()
    old = RecordingBackend(pipeline)
    # A real second version: other label, and a threshold that flips `uncertain` for most birds.
    second = dataclasses.replace(
        pipeline,
        postprocess=Postprocessor(pipeline.postprocess.classes, 0.999),
        metadata={**pipeline.metadata, "version": "second"},
    )
    new = RecordingBackend(second)
    rollout = Rollout(old)
    cached = CachingBackend(
        rollout, LocalStore(100, 600), "test", version_refresh_s=1.0, clock=clock
    )
    request = validate_instances(held_out[:6])
    assert cached.predict(request).model["version"] == pipeline.metadata["version"]
    assert pipeline.predict(request) != second.predict(request)

    rollout.current = new
    # Within the refresh interval an all-hit request is still answered by the old version,
    # consistently labelled: the documented staleness bound.
    clock.now += 0.5
    stale = cached.predict(request)
    assert stale.model["version"] == pipeline.metadata["version"] and new.calls == []
    # A request with a miss learns the new version from the answer and recomputes it whole, so
    # one response never mixes versions.
    mixed = validate_instances(held_out[:7])
    answer = cached.predict(mixed)
    assert answer.model["version"] == "second"
    assert answer.predictions == second.predict(mixed)
    assert answer.timings[0][2] == "hit 0/7 version-changed"
    # From now on the old entries are unreachable: all hits, all from the new version.
    again = cached.predict(request)
    assert again.predictions == second.predict(request) and again.timings[0][2] == "hit 6/6"


def test_the_version_is_refreshed_when_every_request_hits(pipeline, held_out):
    clock = Clock()
    second = dataclasses.replace(
        pipeline,
        postprocess=Postprocessor(pipeline.postprocess.classes, 0.999),
        metadata={**pipeline.metadata, "version": "second"},
    )
    rollout = Rollout(InProcessBackend(pipeline))
    cached = CachingBackend(
        rollout, LocalStore(100, 600), "test", version_refresh_s=1.0, clock=clock
    )
    request = validate_instances(held_out[:3])
    cached.predict(request)
    rollout.current = InProcessBackend(second)
    clock.now += 1.0  # the refresh interval has passed: Describe, then a miss under the new version
    answer = cached.predict(request)
    assert answer.model["version"] == "second" and answer.timings[0][2] == "hit 0/3"
    assert answer.predictions == second.predict(request)


def test_a_dead_redis_costs_one_attempt_per_breaker_interval(pipeline, held_out, tmp_path):
    clock = Clock()
    url = f"unix://{tmp_path / 'nobody-listens.sock'}"
    store = make_store(settings(CACHE="redis", CACHE_URL=url), "breaker-test", clock=clock)
    assert isinstance(store, RedisStore)
    cached = CachingBackend(
        InProcessBackend(pipeline), store, "breaker-test", version_refresh_s=60, clock=clock
    )
    request = validate_instances(held_out[:4])
    for _ in range(5):
        outcome = cached.predict(request)
        assert outcome.predictions == pipeline.predict(request)
        assert outcome.timings[0][2] == "hit 0/4 unavailable"
    assert counter(metrics.CACHE_ERRORS, "breaker-test", "get") == 1
    assert counter(metrics.CACHE_LOOKUPS, "breaker-test", "skipped") == 20
    clock.now += BREAKER_OPEN_S
    cached.predict(request)
    assert counter(metrics.CACHE_ERRORS, "breaker-test", "get") == 2


def test_with_cache_wraps_only_where_configured(pipeline):
    backend = InProcessBackend(pipeline)
    assert with_cache(backend, settings(), "monolith") is backend
    assert isinstance(with_cache(backend, settings(CACHE="local"), "monolith"), CachingBackend)
    assert isinstance(with_cache(backend, settings(CACHE="local"), "gateway"), CachingBackend)
    assert (
        with_cache(backend, settings(CACHE="local", CACHE_PLACEMENT="inference"), "gateway")
        is backend
    )
    with pytest.raises(ValueError, match="LAB_CACHE"):
        with_cache(backend, settings(CACHE="memcached"), "monolith")
    with pytest.raises(RuntimeError, match="LAB_CACHE_URL"):
        with_cache(backend, settings(CACHE="redis"), "monolith")


# --- inference placement -------------------------------------------------------------------------


def test_cached_classifier_gives_the_same_bits_and_computes_only_new_rows(pipeline, held_out):
    features = pipeline.preprocess(validate_instances(held_out[:20]))
    cached = CachedClassifier(pipeline.classifier, "v1", LocalStore(100, 60))
    assert cached.n_features == pipeline.classifier.n_features
    first = cached.predict_proba(features[:8])
    assert np.array_equal(first, pipeline.classifier.predict_proba(features[:8]))
    misses = counter(metrics.CACHE_LOOKUPS, "inference", "miss")
    hits = counter(metrics.CACHE_LOOKUPS, "inference", "hit")
    mixed = features[[12, 3, 0, 15, 7]]
    assert np.array_equal(cached.predict_proba(mixed), pipeline.classifier.predict_proba(mixed))
    assert counter(metrics.CACHE_LOOKUPS, "inference", "hit") - hits == 3
    assert counter(metrics.CACHE_LOOKUPS, "inference", "miss") - misses == 2
    assert np.array_equal(cached.predict_proba(features[:3]), first[:3])
    with pytest.raises(ValueError):
        cached.predict_proba(features[:, :3])


# --- workload ------------------------------------------------------------------------------------


def repeat_share(bodies: list[bytes]) -> tuple[float, int]:
    """Share of bodies whose bird (as the server's cache sees it) was sent before; distinct birds."""
    seen: set[str] = set()
    repeats = 0
    for body in bodies:
        batch = validate_predict_request(json.loads(body), 1)
        key = canonical_row(batch.columns, 0)
        repeats += key in seen
        seen.add(key)
    return repeats / len(bodies), len(seen)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_workload_repeat_share_is_the_cache_rate(held_out, rate):
    # Tolerance 2/n: the planner makes the running share exact at every block boundary, short by
    # at most the first request (it has nothing to repeat) and by floor() rounding, so the error
    # is at most 1/n. A sampler right only on average would fail it: a binomial draw over 2000
    # requests at rate 0.5 has a standard deviation of 1.1%, i.e. 22/n.
    count = 20 * BLOCK
    share, distinct = repeat_share(build_bodies(held_out, rate, count, seed=11))
    assert abs(share - rate) <= 2 / count
    assert distinct == count - round(share * count)


def test_workload_shares_rise_with_the_rate_and_repeat_popular_inputs_most(held_out):
    shares = [
        repeat_share(build_bodies(held_out, rate, 1000, seed=5))[0]
        for rate in (0.0, 0.25, 0.5, 0.75)
    ]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] > 0.7
    bodies = build_bodies(held_out, 0.8, 5000, seed=5)
    counts: dict[bytes, int] = {}
    for body in bodies:
        counts[body] = counts.get(body, 0) + 1
    ranked = sorted(counts.values(), reverse=True)
    # Zipf s=1.1: the favourite is asked for far more often than a typical repeated input.
    repeated = [n for n in ranked if n > 1]
    assert ranked[0] > 10 * repeated[len(repeated) // 2]


def test_workload_is_deterministic_and_seeds_make_disjoint_new_inputs(held_out):
    assert build_bodies(held_out, 0.5, 600, seed=3) == build_bodies(held_out, 0.5, 600, seed=3)
    assert build_bodies(held_out, 0.5, 600, seed=3) != build_bodies(held_out, 0.5, 600, seed=4)
    # Seed 0 starts from the plain records; any other seed never sends one of seed 0's inputs.
    a = set(build_bodies(held_out, 0.0, 1000, seed=0))
    b = set(build_bodies(held_out, 0.0, 1000, seed=1))
    assert len(a) == len(b) == 1000 and not a & b
    workload = Workload(held_out, 0.3, seed=2)
    workload.take(1000)
    assert workload.sent == 1000 and workload.repeats == 300
