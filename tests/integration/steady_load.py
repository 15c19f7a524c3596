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

from servinglab.model.artifact import load_artifact
from servinglab.model.pipeline import ServingPipeline
from servinglab.validation import validate_predict_request


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
    # A request unanswered after this is recorded with status 0, like a refused connection.
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


# Model rollouts under load (tests of the monolith and of the orchestrated and chained topologies).

# A rollout test asks whether the restart lost or mixed anything. On CPUs that other work keeps busy
# (a parallel test run), a request can wait longer than HTTP_MAX_QUEUE_MS for a worker and be shed
# with a 503 "overloaded", as designed (tests of shedding check that): load, not the rollout. So
# rollouts run without shedding: a request waits for its worker instead.
WITHOUT_SHEDDING = {"HTTP_MAX_QUEUE_MS": 0}


def version_references(models_dir, versions, instances):
    """What each version answers for each instance, computed in process by the shared pipeline."""
    expected = {}
    for version in versions:
        pipeline = ServingPipeline.from_artifact(load_artifact(models_dir / "linear" / version))
        expected[version] = [
            pipeline.predict(validate_predict_request({"instances": [i]}, 1))[0] for i in instances
        ]
    return expected


def describe_answers(load: SteadyLoad, answers: list[Answer], shown: int = 5) -> str:
    """The first few answers, when each started after the load's first and what came back."""
    first = load.answers[0].started if load.answers else 0.0
    lines = [
        f"{len(answers)} of {len(load.answers)} answers were not a 200; the first {shown}:",
        *(
            f"  at {answer.started - first:.3f} s: status {answer.status} after "
            f"{answer.latency_s * 1e3:.0f} ms: {answer.body}"
            for answer in answers[:shown]
        ),
    ]
    return "\n".join(lines)


def assert_each_answer_is_one_version(load: SteadyLoad, expected, versions):
    """Every answer a 200, every version seen, each equal to the pipeline of the version it names."""
    refused = [answer for answer in load.answers if answer.status != 200]
    assert not refused, describe_answers(load, refused)
    seen = {a.body["model"]["version"] for a in load.answers}
    assert seen == set(versions), f"versions seen: {seen}"
    for answer in load.answers:
        version = answer.body["model"]["version"]
        # Equal to the pure pipeline of the version it names: features and model of one version.
        assert answer.body["predictions"][0] == expected[version][answer.instance_index]
