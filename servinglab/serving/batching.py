"""Adaptive micro-batching: many threads' small model calls become one call on their stacked rows.

A server thread hands its feature matrix to `MicroBatcher.submit` and blocks; one background
worker stacks the queued matrices (at most `max_batch_size` rows), calls the model once and gives
every caller its own rows back. The model's per-call overhead is then paid once per batch instead
of once per request, which is what makes the slower profiles (a forest walks every tree once per
call) cheaper under concurrency.

The policy, and why it is adaptive:

* A request that finds the model idle and nobody queued runs at once, in its own thread: there is
  no company to wait for, and handing it to the worker would cost two thread wake-ups (measured
  20-40 us, and over 100 us while other processes kept both cores busy) for nothing. Requests that
  arrive while the model is busy queue up, and the worker takes them together as soon as it is
  free ("natural" batching).
* Only while load is evident, i.e. at least two requests piled up behind the previous model
  call (they arrive faster than the model answers), does the worker hold a batch open for more
  company, and only until the batch has `max_batch_size` rows, or every thread that could submit
  (`max_callers`, the server's thread count) is queued, or the oldest queued request has waited
  `max_wait_ms`. A call that ends with one request or none waiting switches the waiting off: an
  occasional overlap at low load costs the newcomer only the rest of the call in front of it.

A fixed wait (always hold the first request `max_wait_ms`) would charge every request at low load
for batching that cannot happen; pure natural batching never waits, so under load it may dispatch
a batch of one a few microseconds before its company arrives. The rule above costs nothing when
idle and bounds the extra latency under load by `max_wait_ms`. One model call runs at a time,
whoever makes it, so a batch never competes with a lone call for the GIL.

Under the GIL, requests can only pile up behind a model call that lets other threads run: the
forest and boosting profiles release it while walking trees, so they batch; the linear model
answers in ~10 us without releasing it, so with it nearly every call serves one request.

Rows are computed by `servinglab.model.pipeline.Classifier`, whose answer for a row does not depend on
the other rows in the call, so batching never changes a prediction (tests hold this bit for bit).
The worker thread starts lazily in the process that submits (gunicorn forks workers after the app
is created, and threads do not survive fork) and is a daemon; a queued caller waits at most
`timeout_s`.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, cast

import numpy as np

from servinglab.config import Settings
from servinglab.serving import metrics


class BatchInfo(NamedTuple):
    """What a caller learns about the model call that answered it."""

    requests: int  # requests whose rows went into that call
    rows: int  # rows in that call
    queued: bool  # False: the model was idle, so the call ran at once in the caller's thread
    queue_wait_s: float  # this request's time from submit to the start of that call
    # Formed under load, when the worker holds a batch open for company (for whatever is left of
    # max_wait_ms); False means it went with whoever was there the moment the model was free.
    lingered: bool


class _Request:
    __slots__ = ("done", "enqueued", "error", "features", "info", "result", "rows")

    def __init__(self, features: np.ndarray):
        self.features = features
        self.rows = features.shape[0]
        self.enqueued = time.perf_counter()
        # A bare lock, held until the worker releases it, is the cheapest one-shot signal
        # between two threads (an Event builds a Condition and a waiter lock on every wait).
        self.done = threading.Lock()
        self.done.acquire()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.info: BatchInfo | None = None


class MicroBatcher:
    """Thread-safe front of one model function; see the module docstring for the policy."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        n_features: int | None = None,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_callers: int | None = None,
        timeout_s: float = 30.0,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_callers is not None and max_callers < 1:
            raise ValueError(f"max_callers must be at least 1, got {max_callers}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.predict = predict
        self.n_features = n_features
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1e3
        self.max_callers = max_callers
        self.timeout_s = timeout_s
        self._reset()
        # A batcher built before gunicorn forks must not carry the parent's queue, locks (possibly
        # held by a parent thread at the fork) or worker (which the child does not have) over.
        os.register_at_fork(after_in_child=functools.partial(_reset_after_fork, weakref.ref(self)))

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the worker waits on this
        self._changed = threading.Condition(self._lock)  # observers (tests) wait on this
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._busy = False  # a model call is running, in the worker or in a caller
        self._linger = False  # the load signal: requests piled up behind the last call
        self._observers = 0
        self._worker: threading.Thread | None = None

    # --- callers ---------------------------------------------------------------------------------

    def submit(
        self, features: np.ndarray, timeout_s: float | None = None
    ) -> tuple[np.ndarray, BatchInfo]:
        """This matrix's model output (its own rows, in order) and how its batch was formed.

        Raises what the model raised for the batch, ValueError for a malformed matrix (checked
        here, so one bad request cannot fail the batch it would have joined), and TimeoutError
        after `timeout_s` (default: the batcher's) queued without an answer.
        """
        if features.ndim != 2 or (
            self.n_features is not None and features.shape[1] != self.n_features
        ):
            raise ValueError(
                f"expected a matrix with {self.n_features} columns, got shape {features.shape}"
            )
        if self._worker is None:
            self._start_worker()
        with self._lock:
            alone = not self._busy and not self._queue
            if alone:
                self._busy = True
            else:
                request = _Request(features)
                self._queue.append(request)
                self._queued_rows += request.rows
                if not self._busy:
                    self._work.notify()  # when busy, whoever finishes the call wakes the worker
                if self._observers:
                    self._changed.notify_all()
        if alone:
            return self._run_alone(features)
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if not request.done.acquire(timeout=max(timeout_s, 0.0)):
            self._abandon(request, timeout_s)
        if request.error is not None:
            # The same exception object goes to every caller of the failed batch.
            raise request.error
        return cast(np.ndarray, request.result), cast(BatchInfo, request.info)

    def _run_alone(self, features: np.ndarray) -> tuple[np.ndarray, BatchInfo]:
        rows = features.shape[0]
        try:
            output = self.predict(features)
        finally:
            self._record((0.0,), rows)
            self._finish_call()
        return output, BatchInfo(1, rows, False, 0.0, False)

    def _abandon(self, request: _Request, timeout_s: float) -> None:
        with self._lock:
            if request.done.acquire(blocking=False):
                return  # answered between the timeout and taking the lock
            try:
                self._queue.remove(request)  # still queued: do not spend model time on it
                self._queued_rows -= request.rows
            except ValueError:
                pass  # already in a running batch; its rows are computed and dropped
        raise TimeoutError(f"no answer from the micro-batcher within {timeout_s * 1e3:g} ms")

    def wait_until_queued(self, requests: int, timeout_s: float) -> bool:
        """Block until at least `requests` requests wait for a batch (for tests and diagnostics)."""
        with self._lock:
            self._observers += 1
            try:
                return self._changed.wait_for(lambda: len(self._queue) >= requests, timeout_s)
            finally:
                self._observers -= 1

    # --- worker ----------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._serve, name="micro-batcher", daemon=True
                )
                self._worker.start()

    def _serve(self) -> None:
        while True:
            batch, rows, lingered = self._next_batch()
            self._run(batch, rows, lingered)

    def _next_batch(self) -> tuple[list[_Request], int, bool]:
        lingered = False
        with self._lock:
            while True:
                while self._busy or not self._queue:
                    self._work.wait()
                if (
                    not self._linger
                    or self._queued_rows >= self.max_batch_size
                    or (self.max_callers is not None and len(self._queue) >= self.max_callers)
                ):
                    break
                lingered = True
                # Measured from the oldest request's arrival, so time it already spent queued
                # behind the previous call counts against max_wait.
                remaining = self._queue[0].enqueued + self.max_wait_s - time.perf_counter()
                if remaining <= 0:
                    break
                self._work.wait(remaining)
            # First come, first served: a request that would overflow the batch waits for the
            # next one rather than being overtaken; one larger than max_batch_size runs alone.
            batch: list[_Request] = []
            rows = 0
            while self._queue and rows < self.max_batch_size:
                if batch and rows + self._queue[0].rows > self.max_batch_size:
                    break
                request = self._queue.popleft()
                batch.append(request)
                rows += request.rows
            self._queued_rows -= rows
            self._busy = True
        return batch, rows, lingered

    def _run(self, batch: list[_Request], rows: int, lingered: bool) -> None:
        started = time.perf_counter()
        output: np.ndarray | None = None
        error: BaseException | None = None
        try:
            features = (
                batch[0].features
                if len(batch) == 1
                else np.concatenate([r.features for r in batch])
            )
            output = self.predict(features)
            if len(output) != rows:
                raise RuntimeError(f"the model returned {len(output)} rows for {rows}")
        except Exception as exc:
            error = exc
        waits = [started - request.enqueued for request in batch]
        self._record(waits, rows)
        # Before any caller is released: one that submits again at once must find the model free
        # (and not look like a request that piled up behind this call).
        self._finish_call()
        offset = 0
        for request, waited in zip(batch, waits):
            if error is None:
                assert output is not None
                request.result = output[offset : offset + request.rows]
                offset += request.rows
            else:
                request.error = error
            request.info = BatchInfo(len(batch), rows, True, waited, lingered)
            request.done.release()

    # --- both ------------------------------------------------------------------------------------

    def _record(self, waits, rows: int) -> None:
        # Called only while this call holds `_busy`, so one thread at a time writes these series;
        # and before callers are released, so a caller holding its answer finds its batch here.
        metrics.BATCH_REQUESTS.observe((), len(waits))
        metrics.BATCH_ROWS.observe((), rows)
        for waited in waits:
            metrics.BATCH_QUEUE_SECONDS.observe((), waited)

    def _finish_call(self) -> None:
        with self._lock:
            self._busy = False
            self._linger = len(self._queue) > 1
            if self._queue:
                self._work.notify()


def _reset_after_fork(reference: weakref.ref) -> None:
    batcher = reference()
    if batcher is not None:
        batcher._reset()


def from_settings(
    predict: Callable[[np.ndarray], np.ndarray],
    n_features: int | None,
    settings: Settings,
    max_callers: int | None,
) -> MicroBatcher | None:
    """The batcher `LAB_BATCHING` asks for, or None when batching is off."""
    if not settings.batching:
        return None
    return MicroBatcher(
        predict,
        n_features,
        max_batch_size=settings.batch_max_size,
        max_wait_ms=settings.batch_max_wait_ms,
        max_callers=max_callers,
        timeout_s=settings.batch_timeout_ms / 1e3,
    )
