"""The gateway's version loop against two model versions answering in turn, as during a rollout."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import grpc
import pytest

from microservices.calls import StageFailure, VersionTracker


class AlternatingReplicas:
    """Inference replicas of different versions behind round robin: each call goes to the next."""

    def __init__(self, *versions: str):
        self.turns = itertools.cycle(versions)
        self.calls = 0

    def infer(self, features, version, alternatives):
        self.calls += 1
        served = next(self.turns)
        if version != served and served not in alternatives:
            raise StageFailure(
                "inference", grpc.StatusCode.FAILED_PRECONDITION, "other version", served
            )
        used = features if version == served else alternatives[served]
        assert used == f"features-for-{served}", "a replica scored features of another version"
        return SimpleNamespace(model=SimpleNamespace(version=served), used=used)


def preprocess_for(default: str):
    requested = []

    def preprocess(version: str):
        version = version or default
        requested.append(version)
        return f"features-for-{version}", version

    return preprocess, requested


@pytest.mark.parametrize(
    "first_served, first_request_cost",
    [("v1", 1), ("v2", 2)],
    ids=["first-call-on-the-default", "first-call-on-the-other"],
)
def test_round_robin_over_two_versions_is_repaired_in_one_step(first_served, first_request_cost):
    replicas = AlternatingReplicas(*(("v2", "v1") if first_served == "v2" else ("v1", "v2")))
    tracker = VersionTracker()
    preprocess, requested = preprocess_for("v1")
    calls_per_request, preprocessing_per_request = [], []
    for _ in range(20):
        calls, preprocessed = replicas.calls, len(requested)
        features, scored, _ = tracker.run(preprocess, replicas.infer)
        assert features == scored.used == f"features-for-{scored.model.version}"
        calls_per_request.append(replicas.calls - calls)
        preprocessing_per_request.append(len(requested) - preprocessed)
    # Strict alternation sends every request's first call to the version it did not preprocess
    # for (after the first, which may be lucky): exactly one refused call and one repair each,
    # never a third call or a third preprocessing, whatever the loop's retry budget.
    expected = [first_request_cost] + [2] * 19
    assert calls_per_request == expected
    assert preprocessing_per_request == expected
    assert set(requested) == {"v1", "v2"}


def test_a_single_version_needs_no_alternatives():
    replicas = AlternatingReplicas("v2")
    tracker = VersionTracker()
    preprocess, requested = preprocess_for("v1")
    tracker.run(preprocess, replicas.infer)
    tracker.run(preprocess, replicas.infer)
    # One repair for the first request; the second starts from the version learnt.
    assert requested == ["v1", "v2", "v2"]


def test_versions_changing_on_every_call_end_in_a_skew_failure():
    replicas = AlternatingReplicas("v1", "v2", "v3", "v4", "v5")
    tracker = VersionTracker()
    preprocess, _ = preprocess_for("v0")
    with pytest.raises(StageFailure) as failure:
        tracker.run(preprocess, replicas.infer)
    assert failure.value.code == grpc.StatusCode.FAILED_PRECONDITION
