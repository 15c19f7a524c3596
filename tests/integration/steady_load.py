"""A small closed-loop load for reliability tests: a few threads posting predictions while faults happen.

Every answer is kept (start time, latency, status, content type, body), so a test can check
*every* response, not a sample. Locust drives the benchmarks and `make chaos`; here, threads are
enough and keep each test's assertions next to the traffic they judge.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests


def eventually(observe, accept, what: str, timeout_s: float = 30.0, interval_s: float = 0.1):
    """Poll `observe()` until `accept(value)` holds and return the value; fail naming `what`.

    For states that converge (a reconnecting channel, a restarted process): assert the state is
    reached within a generous deadline, never that it is reached fast. The failure message
    carries the last value observed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = observe()
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}: {value!r}")
        time.sleep(interval_s)


@dataclass
class Answer:
    started: float
    latency_s: float
    status: int  # 0: no HTTP answer (connection refused or reset)
    content_type: str
    body: dict | None
    instance_index: int


@dataclass
class SteadyLoad:
    url: str
    instances: list[dict]
    threads: int = 4
    timeout_s: float = 10.0
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.threads)
        ]

    def _run(self, worker: int) -> None:
        session = requests.Session()
        index = worker
        while not self._stop.is_set():
            position = index % len(self.instances)
            index += self.threads
            started = time.monotonic()
            try:
                response = session.post(
                    self.url + "/v1/predict",
                    json={"instances": [self.instances[position]]},
                    timeout=self.timeout_s,
                )
                status, content_type = (
                    response.status_code,
                    response.headers.get("Content-Type", ""),
                )
                body = response.json() if "json" in content_type else None
            except requests.RequestException:
                status, content_type, body = 0, "", None
                session = requests.Session()
            with self._lock:
                self.answers.append(
                    Answer(
                        started, time.monotonic() - started, status, content_type, body, position
                    )
                )

    def __enter__(self) -> SteadyLoad:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout_s + 5)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def wait_for(self, predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
        """Poll the answers so far until `predicate(answers)` holds; no fixed sleeps."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                snapshot = list(self.answers)
            if predicate(snapshot):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")

    def wait_for_more(self, extra: int, timeout_s: float = 30.0) -> None:
        target = self.count() + extra
        self.wait_for(lambda answers: len(answers) >= target, timeout_s, f"{extra} more answers")
