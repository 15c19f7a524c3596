"""Unit tests for the adaptive micro-batcher (`servinglab.serving.batching`), with real threads.

Batch formation is made deterministic without sleeping: a gated model holds a call open until
the test has queued what it wants (`MicroBatcher.wait_until_queued`), so which requests share a
call is decided by the policy alone. A request that finds the model idle runs at once in its own
thread, so the first, gated, call of a test is always such a lone call. Every answer is compared
bit for bit with the same rows computed alone, for all three model profiles.
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from servinglab import config
from servinglab.config import DEFAULTS
from servinglab.model.artifact import load_artifact
from servinglab.model.pipeline import ServingPipeline
from servinglab.serving import metrics
from servinglab.serving.batching import BatchInfo, MicroBatcher, from_settings
from servinglab.validation import validate_instances

PROFILES = ("linear", "forest", "boosting")
# Only ever reached when something is broken; a passing test waits for events, not for this.
WAIT_S = 10.0
# Long enough that a request held back for company would time out instead of passing.
FOREVER_MS = 60_000.0


@pytest.fixture(autouse=True, scope="module")
def single_threaded_math():
    # As every server runs (launch.SINGLE_THREADED_MATH): the boosting profile's OpenMP threads
    # only spin against each other on a shared 2-core machine, and a row's bits do not depend on it.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def profiles(models_root) -> dict[str, ServingPipeline]:
    return {
        profile: ServingPipeline.from_artifact(load_artifact(models_root, profile))
        for profile in PROFILES
    }


@pytest.fixture(scope="module")
def rows(held_out) -> list[dict]:
    """Held-out birds, plus the same birds with fields missing (imputed values, unknown slots)."""
    gaps = [{**record, "sex": None, "body_mass_g": None} for record in held_out[:30]]
    gaps += [
        {**record, "island": None, "bill_depth_mm": None, "year": None}
        for record in held_out[30:60]
    ]
    return [*held_out, *gaps]


@pytest.fixture(scope="module")
def linear(profiles) -> ServingPipeline:
    return profiles["linear"]


@pytest.fixture(scope="module")
def features(linear, rows) -> np.ndarray:
    return linear.preprocess(validate_instances(rows))


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


class GatedModel:
    """A model whose first `gated_calls` calls each block until `open(call)`; records every call's rows."""

    def __init__(self, predict, gated_calls: int = 1):
        self.predict = predict
        self.calls: list[int] = []
        self.entered = [threading.Event() for _ in range(gated_calls)]
        self.gates = [threading.Event() for _ in range(gated_calls)]
        self._lock = threading.Lock()
        self._limited = threading.local()

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if not getattr(self._limited, "done", False):
            # OpenMP thread limits are per thread: the batcher's worker needs its own.
            threadpool_limits(limits=1)
            self._limited.done = True
        with self._lock:
            self.calls.append(len(features))
            call = len(self.calls) - 1
        if call < len(self.gates):
            self.entered[call].set()
            assert self.gates[call].wait(WAIT_S), f"the test never opened the gate of call {call}"
        return self.predict(features)

    def open(self, call: int = 0) -> None:
        self.gates[call].set()


def start_busy(batcher: MicroBatcher, model: GatedModel, pool, features: np.ndarray):
    """Submit one request and wait until the model is busy with it (held at the first gate)."""
    future = pool.submit(batcher.submit, features)
    assert model.entered[0].wait(WAIT_S)
    return future


def enqueue(
    batcher: MicroBatcher, pool, matrices: list[np.ndarray], already_queued: int = 0
) -> list:
    """Submit from separate threads, one after another, each queued before the next is sent."""
    futures = []
    for index, matrix in enumerate(matrices):
        futures.append(pool.submit(batcher.submit, matrix))
        assert batcher.wait_until_queued(already_queued + index + 1, WAIT_S)
    return futures


def alone(predict, matrix: np.ndarray) -> np.ndarray:
    return predict(matrix.copy())


# --- The classifier: a row's answer does not depend on its batch -----------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_a_rows_probabilities_are_bit_identical_alone_and_in_any_batch(profiles, rows, profile):
    pipeline = profiles[profile]
    matrix = pipeline.preprocess(validate_instances(rows))
    # Beyond preprocessed rows too: any real-valued row, at scales the schema would allow.
    noise = np.random.default_rng(3).normal(0.0, 3.0, (40, matrix.shape[1]))
    matrix = np.vstack([matrix, matrix[:40] + noise])
    predict = pipeline.classifier.predict_proba
    singles = np.vstack([predict(matrix[i : i + 1].copy()) for i in range(len(matrix))])
    checked = 0
    for size in (2, 3, 5, 8, 9, 16, 32, 33, 64, len(matrix)):
        # Every row at several positions within a batch: SIMD lanes and blocking depend on both.
        for start in range(0, len(matrix) - size + 1, max(1, size // 2 + 7)):
            batch = np.ascontiguousarray(matrix[start : start + size])
            np.testing.assert_array_equal(
                predict(batch),
                singles[start : start + size],
                err_msg=f"{profile}: batch of {size} at row {start}",
            )
            checked += 1
    assert checked > 50


# --- Formation of batches ------------------------------------------------------------------------


def test_a_lone_request_goes_at_once_whatever_max_wait(linear, features):
    batcher = MicroBatcher(
        linear.classifier.predict_proba,
        linear.classifier.n_features,
        max_wait_ms=FOREVER_MS,
        timeout_s=5.0,
    )
    result, info = batcher.submit(features[:1])
    # It ran at once in this thread; a request that had waited for company would have timed out.
    assert (info.requests, info.rows, info.queued, info.lingered) == (1, 1, False, False)
    np.testing.assert_array_equal(result, alone(linear.classifier.predict_proba, features[:1]))


def test_requests_arriving_while_the_model_is_busy_share_the_next_call(linear, features, pool):
    model = GatedModel(linear.classifier.predict_proba)
    batcher = MicroBatcher(model, linear.classifier.n_features, max_wait_ms=0)
    first = start_busy(batcher, model, pool, features[:1])
    queued = enqueue(batcher, pool, [features[i : i + 1] for i in (1, 2, 3)])
    model.open()
    answers = [future.result(WAIT_S) for future in [first, *queued]]
    assert model.calls == [1, 3]
    assert [(info.requests, info.queued) for _, info in answers] == [
        (1, False),
        (3, True),
        (3, True),
        (3, True),
    ]
    for index, (result, _) in zip((0, 1, 2, 3), answers):
        np.testing.assert_array_equal(
            result, alone(linear.classifier.predict_proba, features[index : index + 1])
        )


def test_one_request_behind_a_busy_model_is_not_held_for_company(linear, features, pool):
    model = GatedModel(linear.classifier.predict_proba)
    batcher = MicroBatcher(
        model, linear.classifier.n_features, max_wait_ms=FOREVER_MS, timeout_s=5.0
    )
    first = start_busy(batcher, model, pool, features[:1])
    behind = enqueue(batcher, pool, [features[1:2]])
    model.open()
    first.result(WAIT_S)
    # An occasional overlap is no sign of load: it goes as soon as the model is free, instead of
    # waiting out the 60 s max_wait (which would time out at 5 s).
    _, info = behind[0].result(WAIT_S)
    assert (info.requests, info.queued, info.lingered) == (1, True, False)
    assert model.calls == [1, 1]


def test_under_load_a_batch_is_held_open_until_full_and_a_later_lone_request_is_not(
    linear, features, pool
):
    model = GatedModel(linear.classifier.predict_proba)
    batcher = MicroBatcher(
        model,
        linear.classifier.n_features,
        max_batch_size=4,
        max_wait_ms=FOREVER_MS,
        timeout_s=WAIT_S,
    )
    first = start_busy(batcher, model, pool, features[:1])
    piled_up = enqueue(batcher, pool, [features[1:2], features[2:3]])
    model.open()
    first.result(WAIT_S)
    # Two requests piled up behind one call, so the batcher waits for more company: only
    # reaching max_batch_size (or the 60 s max_wait) lets this batch go.
    company = [pool.submit(batcher.submit, features[i : i + 1]) for i in (3, 4)]
    infos = [future.result(WAIT_S)[1] for future in [*piled_up, *company]]
    assert model.calls == [1, 4]
    # Whether the worker had to linger or found all four already queued depends on scheduling.
    assert all(info.requests == 4 for info in infos)
    # Nobody was waiting when that call ended: the next request runs alone, at once.
    _, info = batcher.submit(features[5:6], timeout_s=5.0)
    assert (info.requests, info.queued, info.lingered) == (1, False, False)
    assert model.calls == [1, 4, 1]


def test_waiting_for_company_stops_when_every_possible_caller_is_queued(linear, features, pool):
    model = GatedModel(linear.classifier.predict_proba)
    batcher = MicroBatcher(
        model, linear.classifier.n_features, max_wait_ms=FOREVER_MS, max_callers=3, timeout_s=WAIT_S
    )
    first = start_busy(batcher, model, pool, features[:1])
    piled_up = enqueue(batcher, pool, [features[1:2], features[2:3]])
    model.open()
    first.result(WAIT_S)
    company = [pool.submit(batcher.submit, features[3:4])]
    infos = [future.result(WAIT_S)[1] for future in [*piled_up, *company]]
    assert model.calls == [1, 3]
    assert all(info.requests == 3 for info in infos)


def test_max_wait_bounds_the_wait_for_company(linear, features, pool):
    model = GatedModel(linear.classifier.predict_proba)
    batcher = MicroBatcher(model, linear.classifier.n_features, max_wait_ms=20, timeout_s=WAIT_S)
    first = start_busy(batcher, model, pool, features[:1])
    piled_up = enqueue(batcher, pool, [features[1:2], features[2:3]])
    model.open()
    first.result(WAIT_S)
    # No more company comes: the held batch leaves once its oldest request has waited 20 ms
    # (waiting for the batch to fill would have hit the 10 s timeout instead).
    infos = [future.result(WAIT_S)[1] for future in piled_up]
    assert all((info.requests, info.lingered) == (2, True) for info in infos)
    assert model.calls == [1, 2]


def test_batches_respect_max_size_and_arrival_order(linear, features, pool):
    model = GatedModel(linear.classifier.predict_proba)
    batcher = MicroBatcher(model, linear.classifier.n_features, max_batch_size=4, max_wait_ms=0)
    first = start_busy(batcher, model, pool, features[:1])
    sizes = [1, 1, 1, 1, 1, 1, 3, 2, 2, 1, 4]
    offsets = np.cumsum([1, *sizes])
    matrices = [features[start : start + size] for start, size in zip(offsets, sizes)]
    queued = enqueue(batcher, pool, matrices)
    model.open()
    answers = [future.result(WAIT_S) for future in queued]
    first.result(WAIT_S)
    # First come, first served: 3 then 2 would make 5, so the 2 starts the next batch.
    assert model.calls == [1, 4, 2, 3, 4, 1, 4]
    assert all(info.rows <= 4 for _, info in answers)
    for matrix, (result, _) in zip(matrices, answers):
        np.testing.assert_array_equal(result, alone(linear.classifier.predict_proba, matrix))


def test_a_request_larger_than_max_size_runs_alone(linear, features, pool):
    lone = MicroBatcher(
        linear.classifier.predict_proba, linear.classifier.n_features, max_batch_size=4
    )
    result, info = lone.submit(features[:10])
    assert (info.requests, info.rows) == (1, 10)
    np.testing.assert_array_equal(result, alone(linear.classifier.predict_proba, features[:10]))
    model = GatedModel(linear.classifier.predict_proba)
    batcher = MicroBatcher(model, linear.classifier.n_features, max_batch_size=4, max_wait_ms=0)
    first = start_busy(batcher, model, pool, features[:1])
    matrices = [features[1:2], features[2:12], features[12:13]]
    queued = enqueue(batcher, pool, matrices)
    model.open()
    answers = [future.result(WAIT_S) for future in [first, *queued]]
    assert model.calls == [1, 1, 10, 1]
    for matrix, (result, _) in zip(matrices, answers[1:]):
        np.testing.assert_array_equal(result, alone(linear.classifier.predict_proba, matrix))


# --- Concurrency, per profile ----------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_concurrent_callers_each_get_their_own_rows_bit_for_bit(profiles, rows, profile, pool):
    pipeline = profiles[profile]
    matrix = pipeline.preprocess(validate_instances(rows))
    predict = pipeline.classifier.predict_proba
    model = GatedModel(predict)
    batcher = MicroBatcher(
        model, pipeline.classifier.n_features, max_batch_size=8, max_wait_ms=1.0, timeout_s=WAIT_S
    )
    rng = np.random.default_rng(11)
    callers, per_caller = 8, 12
    work = [
        [
            (int(start), int(size))
            for start, size in zip(
                rng.integers(0, len(matrix) - 3, per_caller), rng.integers(1, 4, per_caller)
            )
        ]
        for _ in range(callers)
    ]

    def caller(requests):
        return [
            (start, size, *batcher.submit(matrix[start : start + size])) for start, size in requests
        ]

    # The first call is held until every other caller has queued its first request, so at least
    # one batch of several requests forms; after that the callers run free.
    blocker = start_busy(batcher, model, pool, matrix[:1])
    running = [pool.submit(caller, requests) for requests in work]
    assert batcher.wait_until_queued(callers, WAIT_S)
    model.open()
    blocker.result(WAIT_S)
    answers = [answer for future in running for answer in future.result(WAIT_S * 3)]
    assert len(answers) == callers * per_caller
    for start, size, result, _ in answers:
        np.testing.assert_array_equal(
            result,
            alone(predict, matrix[start : start + size]),
            err_msg=f"{profile}: rows {start}..{start + size - 1}",
        )
    infos: list[BatchInfo] = [info for *_, info in answers]
    assert max(info.requests for info in infos) > 1
    assert all(info.rows <= 8 for info in infos)
    assert sum(model.calls) == 1 + sum(size for _, size, *_ in answers)


# --- Failures --------------------------------------------------------------------------------------


def test_model_errors_reach_exactly_the_callers_of_that_batch(linear, features, pool):
    def fragile(matrix):
        if np.isnan(matrix).any():
            raise ArithmeticError("poisoned row")
        return linear.classifier.predict_proba(matrix)

    model = GatedModel(fragile)
    batcher = MicroBatcher(model, linear.classifier.n_features, max_batch_size=2, max_wait_ms=0)
    poisoned = features[2:3].copy()
    poisoned[0, 0] = np.nan
    first = start_busy(batcher, model, pool, features[:1])
    same_batch = enqueue(batcher, pool, [features[1:2], poisoned])
    next_batch = enqueue(batcher, pool, [features[3:4], features[4:5]], already_queued=2)
    model.open()
    first.result(WAIT_S)
    errors = []
    for future in same_batch:
        with pytest.raises(ArithmeticError, match="poisoned row") as caught:
            future.result(WAIT_S)
        errors.append(caught.value)
    assert errors[0] is errors[1]
    for future, index in zip(next_batch, (3, 4)):
        result, info = future.result(WAIT_S)
        assert info.requests == 2
        np.testing.assert_array_equal(
            result, alone(linear.classifier.predict_proba, features[index : index + 1])
        )
    # The worker went on to the next batch after the failed one.
    assert model.calls == [1, 2, 2]


def test_a_malformed_matrix_is_refused_before_it_can_join_a_batch(linear):
    model = GatedModel(linear.classifier.predict_proba, gated_calls=0)
    batcher = MicroBatcher(model, linear.classifier.n_features)
    n_features = linear.classifier.n_features
    for shape in [(1, n_features - 1), (n_features,), (2, n_features + 1)]:
        with pytest.raises(ValueError, match=f"expected a matrix with {n_features} columns"):
            batcher.submit(np.zeros(shape))
    assert model.calls == []


def test_queued_callers_time_out_instead_of_hanging_and_abandoned_requests_are_not_computed(
    linear, features, pool
):
    model = GatedModel(linear.classifier.predict_proba, gated_calls=2)
    batcher = MicroBatcher(model, linear.classifier.n_features, max_wait_ms=0, timeout_s=0.2)
    lone = start_busy(batcher, model, pool, features[:1])
    stuck = enqueue(batcher, pool, [features[1:2]])
    model.open(0)
    lone.result(WAIT_S)
    # The worker is now stuck in the second call, on the request queued above, which times out...
    assert model.entered[1].wait(WAIT_S)
    with pytest.raises(TimeoutError, match="200 ms"):
        stuck[0].result(WAIT_S)
    # ...as does one queued behind it, which leaves the queue.
    with pytest.raises(TimeoutError, match="200 ms"):
        batcher.submit(features[2:3])
    assert not batcher.wait_until_queued(1, 0.0)
    model.open(1)
    result, _ = batcher.submit(features[3:4], timeout_s=WAIT_S)
    np.testing.assert_array_equal(result, alone(linear.classifier.predict_proba, features[3:4]))
    assert model.calls == [1, 1, 1]  # the request that left the queue never reached the model


# --- Threads and processes -------------------------------------------------------------------------


def test_the_worker_is_a_daemon_started_on_first_use(linear, features, pool):
    # The batcher's worker is the thread its queued requests are computed in; the model records it.
    predict = linear.classifier.predict_proba
    threads: list[threading.Thread] = []

    def recording(matrix: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread())
        return predict(matrix)

    model = GatedModel(recording)
    batcher = MicroBatcher(model, linear.classifier.n_features, max_wait_ms=0, timeout_s=5.0)
    # Every thread alive once the batcher exists: its worker, if construction started one, is
    # among them (gunicorn builds the app before it forks, and a thread does not survive a fork).
    at_construction = set(threading.enumerate())
    first = start_busy(batcher, model, pool, features[:1])
    queued = enqueue(batcher, pool, [features[1:2]])
    model.open()
    assert first.result(WAIT_S)[1].queued is False and queued[0].result(WAIT_S)[1].queued is True
    lone_caller, worker = threads
    assert worker is not lone_caller  # the queued request was computed by the worker...
    assert worker not in at_construction  # ...started by the first use, not by the constructor
    assert worker.daemon and worker.is_alive()  # a daemon: it never holds a process up at exit


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_worker(linear, features, pool):
    # What gunicorn does: the parent has used the batcher (and its worker thread), the child
    # inherits the object but none of the parent's threads.
    predict = linear.classifier.predict_proba
    model = GatedModel(predict)
    batcher = MicroBatcher(model, linear.classifier.n_features, max_wait_ms=0, timeout_s=5.0)
    first = start_busy(batcher, model, pool, features[:1])
    queued = enqueue(batcher, pool, [features[1:2]])
    model.open()
    assert first.result(WAIT_S)[1].queued is False and queued[0].result(WAIT_S)[1].queued is True
    pid = os.fork()
    if pid == 0:
        signal.alarm(int(WAIT_S))  # a child stuck on a lock inherited from the fork dies, not hangs
        code = 3  # the child must never return into pytest, whatever happens
        try:
            model.__init__(predict)
            results: dict[str, tuple] = {}
            lone = threading.Thread(
                target=lambda: results.setdefault("lone", batcher.submit(features[:1]))
            )
            lone.start()
            assert model.entered[0].wait(WAIT_S)
            waiting = threading.Thread(
                target=lambda: results.setdefault("queued", batcher.submit(features[1:2]))
            )
            waiting.start()
            assert batcher.wait_until_queued(1, WAIT_S)
            model.open()
            lone.join()
            waiting.join()
            # The queued request could only be answered by a worker thread of the child's own.
            served = results["queued"][1].queued and np.array_equal(
                results["queued"][0], predict(features[1:2])
            )
            code = 0 if served else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- Metrics and settings --------------------------------------------------------------------------


def _histogram(metric: metrics.Histogram) -> tuple[float, float]:
    row = metric.values.get((), [0.0] * (len(metric.buckets) + 2))
    return sum(row[:-1]), row[-1]


def test_batch_sizes_and_queue_waits_are_recorded(linear, features, pool):
    model = GatedModel(linear.classifier.predict_proba)
    batcher = MicroBatcher(model, linear.classifier.n_features, max_wait_ms=0)
    before = {
        metric.name: _histogram(metric)
        for metric in (metrics.BATCH_REQUESTS, metrics.BATCH_ROWS, metrics.BATCH_QUEUE_SECONDS)
    }
    first = start_busy(batcher, model, pool, features[:1])
    queued = enqueue(batcher, pool, [features[1:3], features[3:4], features[4:5]])
    model.open()
    for future in (first, *queued):
        future.result(WAIT_S)

    def delta(metric):
        count, total = _histogram(metric)
        return count - before[metric.name][0], total - before[metric.name][1]

    assert delta(metrics.BATCH_REQUESTS) == (2, 4)  # calls of 1 and 3 requests
    assert delta(metrics.BATCH_ROWS) == (2, 5)  # 1 row, then 2 + 1 + 1
    count, waited = delta(metrics.BATCH_QUEUE_SECONDS)
    assert count == 4 and waited > 0
    body, _ = metrics.exposition()
    assert b'lab_batch_requests_bucket{le="4"}' in body


@pytest.mark.parametrize(
    "value,expected",
    [
        (True, True),
        (False, False),
        ("on", True),
        ("off", False),
        ("True", True),
        ("false", False),
        (1, True),
        (0, False),
        ("1", True),
        ("", False),
        (None, False),
    ],
)
def test_batching_flag_accepts_the_usual_spellings(value, expected):
    assert config.load(environ={}, overrides={"BATCHING": value}).batching is expected


def test_batching_flag_rejects_anything_else():
    with pytest.raises(ValueError, match="LAB_BATCHING"):
        config.load(environ={}, overrides={"BATCHING": "sometimes"})


def test_settings_build_a_batcher_only_when_batching_is_on(linear):
    predict, n_features = linear.classifier.predict_proba, linear.classifier.n_features
    assert DEFAULTS["BATCHING"] is False
    assert from_settings(predict, n_features, config.Settings(), max_callers=4) is None
    batcher = from_settings(
        predict,
        n_features,
        config.load(
            environ={},
            overrides={
                "BATCHING": "on",
                "BATCH_MAX_SIZE": 16,
                "BATCH_MAX_WAIT_MS": 3,
                "BATCH_TIMEOUT_MS": 500,
            },
        ),
        max_callers=4,
    )
    assert (batcher.max_batch_size, batcher.max_wait_s, batcher.max_callers, batcher.timeout_s) == (
        16,
        0.003,
        4,
        0.5,
    )
