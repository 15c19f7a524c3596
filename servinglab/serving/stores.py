"""Where the prediction cache keeps its entries: `LocalStore` or `RedisStore` (`CACHE=...`).

`local` is an LRU with TTL in each worker process (no sharing; a worker must see an input once
before it hits). `redis` is shared by every process: one MGET per request, one pipelined SET
(with EX) for its misses. Redis is never a single point of failure: an error or timeout
(`CACHE_TIMEOUT_MS`) makes the request compute as if uncached, and a circuit breaker then skips
Redis for `BREAKER_OPEN_S`, so a dead Redis costs one failed call per second per process, not
one per request. Failures are counted (`lab_cache_errors_total`) and logged once per outage.

Both stores hold opaque values under string or bytes keys; what is cached, and under which key,
is `servinglab.serving.cache`'s business.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from servinglab.config import Settings
from servinglab.serving import metrics

log = logging.getLogger(__name__)

MODES = ("none", "local", "redis")
# How long the breaker keeps a failing Redis out of the request path before trying it again.
BREAKER_OPEN_S = 1.0

Clock = Callable[[], float]


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

    def __init__(
        self,
        url: str,
        ttl_s: float,
        timeout_ms: float,
        placement: str,
        encode: Callable[[Any], bytes],
        decode: Callable[[bytes], Any],
        clock: Clock = time.monotonic,
    ):
        self.url = url
        self.ttl_s = int(ttl_s)
        self.timeout_s = float(timeout_ms) / 1e3
        self.placement = placement
        self.encode, self.decode = encode, decode
        self.clock = clock
        self.open_until = 0.0  # the breaker is open (Redis skipped) until this clock reading
        self.failing = False  # within an outage: log its start once, and its end
        self._client: Any = None  # a redis.Redis, made in the process that uses it
        self._client_pid = 0

    def client(self):
        # redis is imported only where CACHE=redis: the other modes do not pay for the import.
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Created in the process that uses it: a connection must not be shared across a fork.
        if self._client is None or self._client_pid != os.getpid():
            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                # redis-py retries failed calls 3 times by default: that would triple the
                # cost of a dead Redis that the breaker exists to bound.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
            self._client_pid = os.getpid()
        return self._client

    def available(self) -> bool:
        return self.clock() >= self.open_until

    def _failed(self, operation: str, error: Exception) -> None:
        metrics.CACHE_ERRORS.inc((self.placement, operation))
        self.open_until = self.clock() + BREAKER_OPEN_S
        if not self.failing:
            self.failing = True
            log.warning(
                "cache unavailable (%s %s: %s); computing without it, retrying every %.0f s",
                operation,
                self.url,
                error,
                BREAKER_OPEN_S,
            )

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


def make_store(
    settings: Settings,
    placement: str,
    encode: Callable[[Any], bytes] = _json_bytes,
    decode: Callable[[bytes], Any] = json.loads,
    clock: Clock = time.monotonic,
) -> LocalStore | RedisStore:
    mode = settings.cache
    if mode == "local":
        return LocalStore(settings.cache_size, settings.cache_ttl_s, clock)
    if mode == "redis":
        if not settings.cache_url:
            raise RuntimeError(
                "LAB_CACHE=redis needs LAB_CACHE_URL (redis://host:port/0 or unix:///path); "
                "lab.launch starts a Redis and sets it when it is unset"
            )
        return RedisStore(
            settings.cache_url,
            settings.cache_ttl_s,
            settings.cache_timeout_ms,
            placement,
            encode,
            decode,
            clock,
        )
    raise ValueError(f"LAB_CACHE must be one of {', '.join(MODES)}, got {mode!r}")
