"""Fuzz both running architectures with Schemathesis, generated from the `/openapi.json` they serve.

Requests come from two Schemathesis sources, both driven by the served document:

* a corpus of `POST /v1/predict` cases, about half in Schemathesis' *negative* mode (bodies that
  break the schema on purpose: wrong types, out-of-range numbers, unknown fields, too many or no
  instances...), generated once, derandomized, and sent to both architectures. Generating is
  most of the cost, so it is paid once, and the two architectures' answers to each request can be
  compared. Its size follows the Hypothesis profile (tests/conftest.py): a quick corpus by
  default, the full one with HYPOTHESIS_PROFILE=ci;
* Schemathesis' coverage phase, run against each architecture by its engine: boundary values,
  missing or mistyped bodies, and unsupported methods on every operation.

Each response must honour the error contract (never a 5xx; every non-2xx an RFC 9457
`application/problem+json` whose `status` is the HTTP status) and Schemathesis' own checks
(response schemas, negative data rejected, positive data accepted). Afterwards the gunicorn
workers that were serving before must still be the ones serving, and the server must be ready.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psutil
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.engine import events, from_schema

from servinglab.problems import PROBLEM_CONTENT_TYPE, TYPE_PREFIX

pytestmark = pytest.mark.integration

FUZZED = ("monolith", "microservices")

# Cases per generation mode, in multiples of the active Hypothesis profile's max_examples (loaded
# by tests/conftest.py from HYPOTHESIS_PROFILE): 900 + 1100 under `ci` (100), 270 + 330 under the
# default `dev` (30).
PROFILE = settings.get_profile(settings.get_current_profile_name())
POSITIVE_CASES = 9 * PROFILE.max_examples
NEGATIVE_CASES = 11 * PROFILE.max_examples
# How the API refuses a request that breaks its schema; Schemathesis' default list has no 413/415.
REJECTION_STATUSES = [400, 413, 415, 422]
SEED = 20240611


def _config(**phases: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "continue-on-failure": True,
            # Derandomized and without an example database: the same requests on every run.
            "generation": {"deterministic": True, "database": "none"},
            "phases": {name: {"enabled": enabled} for name, enabled in phases.items()},
            "checks": {"negative_data_rejection": {"expected-statuses": REJECTION_STATUSES}},
        }
    )


def contract_violation(status: int, headers: dict[str, list[str]], body: bytes) -> str | None:
    """What is wrong with one response under the API's error contract, or None."""
    if status >= 500:
        return f"server error {status}: {body[:200]!r}"
    if status < 300:
        return None
    content_type = {name.lower(): values for name, values in headers.items()}.get(
        "content-type", [""]
    )[0]
    if content_type != PROBLEM_CONTENT_TYPE:
        return f"{status} with content type {content_type!r}, not a problem"
    try:
        problem = json.loads(body)
    except ValueError:
        return f"{status} problem that is not JSON: {body[:200]!r}"
    if not isinstance(problem, dict):
        return f"{status} problem that is not a JSON object: {body[:200]!r}"
    missing = {"type", "title", "status", "detail"} - set(problem)
    if missing:
        return f"{status} problem without {sorted(missing)}"
    if problem["status"] != status or not str(problem["type"]).startswith(TYPE_PREFIX):
        return f"{status} problem saying status={problem['status']!r} type={problem['type']!r}"
    return None


@dataclass
class Tally:
    """What one architecture answered; filled by the check below, so engine and corpus share it."""

    case_ids: set[str] = field(default_factory=set)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    violations: list[str] = field(default_factory=list)


# Keyed by the deployment's host:port: the check is global to Schemathesis, the tallies are not.
TALLIES: dict[str, Tally] = {}


@schemathesis.check
def servinglab_problem_contract(ctx, response, case):
    """Count every response and hold it to the error contract (see `contract_violation`)."""
    tally = TALLIES.get(urlsplit(response.request.url).netloc)
    if tally is None:
        return
    # Schemathesis may run checks again on a response it replays; a case is one request.
    if case.id not in tally.case_ids:
        tally.case_ids.add(case.id)
        tally.statuses[(case.operation.label, response.status_code)] += 1
    problem = contract_violation(response.status_code, response.headers, response.content)
    if problem:
        tally.violations.append(f"{case.method} {case.path}: {problem}")
        raise AssertionError(problem)


def _generate(operation, mode: GenerationMode, count: int) -> list:
    cases = []

    # Only the generate phase: this collects inputs, it is not a test that could fail and shrink.
    # Derandomized: the same corpus for the same code (Hypothesis also draws constants it finds in
    # the project's modules, such as the API's limits, so a change there changes the corpus).
    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def collect(case):
        cases.append(case)

    collect()
    return cases


@pytest.fixture(scope="module")
def corpus(monolith, microservices) -> list:
    documents = [
        requests.get(d.url + "/openapi.json", timeout=10).json() for d in (monolith, microservices)
    ]
    assert documents[0] == documents[1], "the architectures publish different API documents"
    schema = schemathesis.openapi.from_url(monolith.url + "/openapi.json", config=_config())
    predict = next(
        result.ok() for result in schema.get_all_operations() if result.ok().path == "/v1/predict"
    )
    started = time.perf_counter()
    cases = _generate(predict, GenerationMode.POSITIVE, POSITIVE_CASES) + _generate(
        predict, GenerationMode.NEGATIVE, NEGATIVE_CASES
    )
    print(f"\ngenerated {len(cases)} cases in {time.perf_counter() - started:.1f} s")
    return cases


def gunicorn_workers(deployment) -> set[int]:
    master = next(p for p in deployment.supervisor.processes if p.name.startswith("gunicorn"))
    return {child.pid for child in psutil.Process(master.pid).children()}


def requests_served(url: str) -> float:
    """The app's own count of requests answered, from its Prometheus counter."""
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("lab_http_requests_total{")
    )


@dataclass
class FuzzRun:
    tally: Tally
    answers: list[tuple[int, bytes]]  # per corpus case, in corpus order
    check_failures: list[str]
    served: float
    elapsed_s: float
    workers: tuple[set[int], set[int]]
    processes: tuple[set[int], set[int]]
    readiness: int


def fuzz(deployment, corpus: list) -> FuzzRun:
    workers_before, processes_before = (
        gunicorn_workers(deployment),
        set(deployment.supervisor.pids()),
    )
    served_before = requests_served(deployment.url)
    tally = TALLIES[urlsplit(deployment.url).netloc] = Tally()
    answers, check_failures = [], []
    started = time.perf_counter()

    with requests.Session() as session:
        for case in corpus:
            response = case.call(base_url=deployment.url, session=session, timeout=30)
            answers.append((response.status_code, response.content))
            try:
                # Schemathesis' checks plus ours (registered above), which also counts the request.
                case.validate_response(response)
            except (
                BaseExceptionGroup
            ) as failures:  # Schemathesis' FailureGroup: collected, asserted on below
                check_failures.append(
                    f"{case.method} {case.path} -> {response.status_code}: {failures}"[:500]
                )

    schema = schemathesis.openapi.from_url(
        deployment.url + "/openapi.json",
        config=_config(examples=False, coverage=True, fuzzing=False, stateful=False),
    )
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for checks in event.recorder.checks.values():
                check_failures.extend(
                    f"coverage {event.recorder.label}: {check.name}: "
                    f"{check.failure_info.failure.title}"
                    for check in checks
                    if check.failure_info
                )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            check_failures.append(f"schemathesis error: {event}"[:500])
    elapsed_s = time.perf_counter() - started

    # Other workers publish their counters about once a second; wait for them to catch up (the
    # deadline is generous for a busy machine: the loop ends as soon as they have).
    deadline = time.monotonic() + 30
    served = requests_served(deployment.url) - served_before
    while served < len(tally.case_ids) and time.monotonic() < deadline:
        time.sleep(0.2)
        served = requests_served(deployment.url) - served_before
    readiness = requests.get(deployment.url + "/readyz", timeout=10).status_code
    return FuzzRun(
        tally,
        answers,
        check_failures,
        served,
        elapsed_s,
        (workers_before, gunicorn_workers(deployment)),
        (processes_before, set(deployment.supervisor.pids())),
        readiness,
    )


@pytest.fixture(scope="module")
def fuzz_runs() -> dict[str, FuzzRun]:
    return {}


def _run(architecture: str, request, corpus, fuzz_runs) -> FuzzRun:
    # Each architecture is fuzzed once per module, whichever test asks first.
    if architecture not in fuzz_runs:
        fuzz_runs[architecture] = fuzz(request.getfixturevalue(architecture), corpus)
    return fuzz_runs[architecture]


@pytest.mark.parametrize("architecture", FUZZED)
def test_fuzzing_finds_no_errors_and_kills_no_workers(architecture, request, corpus, fuzz_runs):
    run = _run(architecture, request, corpus, fuzz_runs)
    counted = len(run.tally.case_ids)
    statuses = collections.Counter(
        status for (_, status), n in run.tally.statuses.items() for _ in range(n)
    )
    print(
        f"\n{architecture}: {counted} requests in {run.elapsed_s:.1f} s, statuses {dict(sorted(statuses.items()))}"
    )

    # Every corpus case, and the coverage phase's own requests on top.
    assert counted > len(corpus) == POSITIVE_CASES + NEGATIVE_CASES
    # The server saw them too (its counter also includes a few requests of our own).
    assert run.served >= counted
    # Bad input was really sent and refused, and good input accepted.
    assert (
        statuses[200] > 0
        and statuses[422] > 0
        and statuses[400] + statuses[413] + statuses[415] > 0
    )
    assert run.tally.violations == []
    assert run.check_failures == []
    assert run.workers[0] and run.workers[1] == run.workers[0], (
        "a gunicorn worker died or was replaced"
    )
    assert run.processes[1] == run.processes[0]
    assert run.readiness == 200


def test_fuzzed_requests_get_identical_answers_from_both_architectures(request, corpus, fuzz_runs):
    runs = [_run(architecture, request, corpus, fuzz_runs) for architecture in FUZZED]
    differing = [
        (index, a, b)
        for index, (a, b) in enumerate(zip(runs[0].answers, runs[1].answers))
        if a != b
    ]
    assert len(runs[0].answers) == len(corpus) == len(runs[1].answers)
    assert differing == [], f"{len(differing)} differ, first: {differing[0] if differing else None}"
