"""The kind target's budget: the pods' requests, re-read at every step of the ladder.

`benchmarks.measure.targets` talks to the cluster only through `kubectl`. Here `kubectl` is a fake
executable on PATH that answers with Kubernetes API answers kept in tests/fixtures/kind/ (the
pods of the microservices bench deployment, the same after a scale-out, during a rollout, and
metrics-server's pod metrics), and logs every call; the test switches which answer it gives,
as the cluster would change under a running benchmark. Nothing of servinglab is faked.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.measure import targets

ANSWERS = Path(__file__).resolve().parents[1] / "fixtures" / "kind"
NAMESPACE = "servinglab-microservices"
CONTEXT = "kind-servinglab"

FAKE_KUBECTL = f"""#!{sys.executable}
# A stand-in for kubectl: answers `get pods -o json` and `get --raw .../pods` from files.
import json, os, sys
from pathlib import Path
state = Path(os.environ["FAKE_KUBECTL_STATE"])
with open(state / "calls.log", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
answer = (state / "pods").read_text().strip()
if answer == "unreachable":
    sys.stderr.write("The connection to the server 127.0.0.1:6443 was refused\\n")
    sys.exit(1)
args = sys.argv[1:]
if "--raw" in args:
    sys.stdout.write(Path("{ANSWERS}", "pod-metrics.json").read_text())
elif args[-4:] == ["get", "pods", "-o", "json"]:
    sys.stdout.write(Path("{ANSWERS}", answer).read_text())
else:
    sys.stderr.write("fake kubectl: unexpected call " + " ".join(args) + "\\n")
    sys.exit(2)
"""


class FakeCluster:
    def __init__(self, state: Path):
        self.state = state

    def answer(self, name: str) -> None:
        """What `kubectl get pods` answers from now on: a file of ANSWERS, or 'unreachable'."""
        (self.state / "pods").write_text(name)

    def calls(self) -> list[list[str]]:
        log = self.state / "calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def cluster(tmp_path, monkeypatch) -> FakeCluster:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_STATE", str(tmp_path))
    fake_cluster = FakeCluster(tmp_path)
    fake_cluster.answer("pods-bench.json")
    return fake_cluster


CONFIG = SimpleNamespace(kube_context=CONTEXT)
GIB = 1 << 30


def test_the_budget_is_the_running_pods_requests(cluster):
    budget = targets.pod_requests(CONFIG, NAMESPACE)
    assert budget == {"sut_vcpus": 1.0, "sut_memory_gib": round((256 + 3 * 320) / 1024, 3)}
    (call,) = cluster.calls()
    assert call == ["--context", CONTEXT, "-n", NAMESPACE, "get", "pods", "-o", "json"]


def test_pending_pods_reserve_nothing_yet(cluster):
    cluster.answer("pods-scaled.json")  # one more inference pod Running, one gateway pod Pending
    assert targets.pod_requests(CONFIG, NAMESPACE)["sut_vcpus"] == 1.2


def test_the_sampler_re_reads_the_requests_at_every_step_and_reports_each_change(cluster):
    budget = targets.pod_requests(CONFIG, NAMESPACE)
    details: dict = {}
    warnings: list[str] = []
    sampler = targets.KindSampler(CONFIG, NAMESPACE, budget, details, warn=warnings.append)
    before = len(cluster.calls())

    sampler.cpu_between(0.0, 1.0)  # step 1: nothing moved
    assert details == {"budget_checks": 1, "budget_changes": []} and warnings == []

    cluster.answer("pods-scaled.json")  # the HPA scaled inference out
    sampler.cpu_between(1.0, 2.0)  # step 2
    scaled = {"sut_vcpus": 1.2, "sut_memory_gib": round((256 + 4 * 320) / 1024, 3)}
    assert details["budget_changes"] == [{"check": 2, "from": budget, "to": scaled}]
    assert len(warnings) == 1 and NAMESPACE in warnings[0] and "1.2" in warnings[0]

    sampler.cpu_between(2.0, 3.0)  # step 3: still scaled out, so nothing new to report
    assert len(details["budget_changes"]) == 1 and len(warnings) == 1

    cluster.answer("pods-rolling.json")  # a rollout: the new preprocess pod is not Running yet
    sampler.cpu_between(3.0, 4.0)  # step 4
    assert details["budget_changes"][-1]["from"] == scaled
    assert details["budget_changes"][-1]["to"]["sut_vcpus"] == 0.8

    get_pods = [
        call for call in cluster.calls()[before:] if call[-4:] == ["get", "pods", "-o", "json"]
    ]
    assert len(get_pods) == details["budget_checks"] == 4, "one re-read per step"
    assert budget == {"sut_vcpus": 1.0, "sut_memory_gib": round((256 + 3 * 320) / 1024, 3)}, (
        "the budget read before the load, the one priced, is kept as it was"
    )


def test_an_unreadable_cluster_is_recorded_not_fatal(cluster):
    budget = targets.pod_requests(CONFIG, NAMESPACE)
    details: dict = {}
    warnings: list[str] = []
    sampler = targets.KindSampler(CONFIG, NAMESPACE, budget, details, warn=warnings.append)
    cluster.answer("unreachable")
    assert sampler.cpu_between(0.0, 1.0) == 0.0
    (change,) = details["budget_changes"]
    assert change["to"] is None and change["from"] == budget and "error" in change
    assert warnings and "could not re-read" in warnings[0]
    cluster.answer("pods-bench.json")
    sampler.cpu_between(1.0, 2.0)
    assert len(details["budget_changes"]) == 1, "back to the same budget: nothing changed"


def test_metrics_server_usage_is_integrated_per_pod(cluster):
    """The CPU series the same sampler keeps, from metrics-server's answer (a rate per pod)."""
    sampler = targets.KindSampler(CONFIG, NAMESPACE, {}, {}, warn=lambda _message: None)
    first = sampler.read()
    assert set(first) == {
        "gateway-6d9f7c5b8d-x2k4p",
        "preprocess-7b5c9d8f6-q8w3z",
        "inference-5f8d6c7b9-m4n7r",
        "postprocess-8c7d5b6f4-t6y2u",
    }
    assert all(
        cpu == 0.0 and memory == pytest.approx(201432 / 1024) for _, cpu, memory in first.values()
    )
    raw = [call for call in cluster.calls() if "--raw" in call]
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods"
    assert raw == [["--context", CONTEXT, "get", "--raw", path]]
