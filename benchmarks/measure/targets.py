"""Where the system under test runs during `make bench`: local processes, Docker, or kind.

`open_target(...)` starts or finds one architecture and yields a `Target`: the URL to load, a
sampler of its CPU and memory, and, where the platform defines it, the budget to price. The
bench's ladder, Locust and report are the same for every target. The experiment knobs
(`benchmarks/knobs.py`) reach the servers here: as launch settings and arguments locally, as
`LAB_<NAME>` variables in containers; on kind the deployed manifests decide, so knobs that change
the servers are refused there.

- local (default): processes started by the supervisor, pinned to SUT_CPUS (`taskset`-like).
- docker: one container per role from the project image (`make image`; built if missing), on
  a private bridge network, limited like pods: the `SUT_CPUS` cpuset shared by all of them and a
  CFS quota of the budget each, a memory limit per role, read-only root, non-root; figures from
  the Docker stats API (benchmarks/measure/docker_target.py, lab/containers.py).
- kind: architectures already deployed (`make kind-bench` deploys k8s/overlays/<arch>/bench),
  reached through their NodePorts; CPU and memory from metrics-server; the budget is the sum of
  the pods' requests, read before the load and again at every step, and any change is reported
  (printed, and in results.json under the architecture's `applied.budget_changes`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import knobs
from benchmarks.measure import docker_target
from benchmarks.measure.resources import (
    CpuSeries,
    MetricsServerSampler,
    ProcessSampler,
    parse_quantity,
)
from lab.launch import launch
from lab.supervisor import http_ready

TARGETS = ("local", "docker", "kind")
READY_TIMEOUT_S = 120.0


class TargetUnavailable(RuntimeError):
    """The chosen target cannot run here; the message says what is missing."""


@dataclass
class Target:
    url: str
    sampler: CpuSeries
    budget: dict | None = None  # {"sut_vcpus", "sut_memory_gib"} when the platform sets it
    details: dict = field(default_factory=dict)  # what the deployment reports about itself


def check(config) -> str:
    """Fail fast, before any work, when the target's prerequisites are missing."""
    if config.target not in TARGETS:
        raise TargetUnavailable(
            f"unknown TARGET={config.target!r}; choose one of {', '.join(TARGETS)}"
        )
    try:
        knobs.check_target(config.knobs, config.target)
    except knobs.KnobError as problem:
        raise TargetUnavailable(str(problem)) from None
    if config.target == "local":
        return "local processes"
    if config.target == "docker":  # docker_target.py: engine, architectures, image
        try:
            return docker_target.check(config)
        except docker_target.DockerTargetError as problem:
            raise TargetUnavailable(str(problem)) from None
    if not shutil.which("kubectl"):
        raise TargetUnavailable(
            "TARGET=kind needs kubectl on PATH (https://kubernetes.io/docs/tasks/tools/)"
        )
    missing = [a for a in config.archs if a not in config.endpoints or a not in config.namespaces]
    if missing:
        raise TargetUnavailable(
            f"TARGET=kind needs --endpoint and --namespace for {', '.join(missing)} "
            "(`make kind-bench` passes them)"
        )
    probe = subprocess.run(
        [*kubectl(config), "get", "--raw", "/apis/metrics.k8s.io/v1beta1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        raise TargetUnavailable(
            f"metrics-server does not answer on context {config.kube_context!r}: "
            f"{probe.stderr.strip()} (run `make kind-up`)"
        )
    return f"kind context {config.kube_context}"


def kubectl(config) -> list[str]:
    return ["kubectl", "--context", config.kube_context]


def _wait_ready(url: str, alive=lambda: True) -> None:
    ready = http_ready(url + "/readyz")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready():
        if time.monotonic() > deadline or not alive():
            raise TargetUnavailable(
                f"{url}/readyz did not answer 200 within {READY_TIMEOUT_S:.0f}s"
            )
        time.sleep(0.2)


@contextmanager
def _local(config, architecture: str, log_dir: Path) -> Iterator[Target]:
    settings = {
        "MODEL_DIR": config.models.resolve(),
        "MODEL_PROFILE": config.profile,
        **knobs.settings_for(config.knobs, architecture),
        **config.extra_settings,
    }
    extra = knobs.launch_kwargs_for(config.knobs, architecture)
    with (
        launch(
            architecture, settings=settings, cpus=config.sut_cpus, log_dir=log_dir, **extra
        ) as deployment,
        ProcessSampler(deployment.supervisor) as sampler,
    ):
        # Read defensively: a checkout whose launcher does not report it records null.
        method = getattr(deployment, "hop_delay_method", None)
        yield Target(deployment.url, sampler, details={"hop_delay_method": method})


@contextmanager
def _docker(config, architecture: str, log_dir: Path) -> Iterator[Target]:
    """One container per role (lab/containers.py), CPU and memory from the Docker stats API."""
    settings = {**knobs.settings_for(config.knobs, architecture), **config.extra_settings}
    try:
        with docker_target.deploy(config, architecture, log_dir, settings) as (deployment, sampler):
            yield Target(deployment.url, sampler, details={"docker": deployment.describe()})
    except docker_target.DockerTargetError as problem:
        raise TargetUnavailable(str(problem)) from None


def run_settings(config) -> dict:
    """What the report lists among the run's settings for this target (the docker limits)."""
    return docker_target.run_settings(config) if config.target == "docker" else {}


def pod_requests(config, namespace: str) -> dict:
    """The running pods' summed CPU and memory requests: what the cluster reserves for them."""
    listing = subprocess.run(
        [*kubectl(config), "-n", namespace, "get", "pods", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    cpu = memory = 0.0
    for pod in json.loads(listing.stdout)["items"]:
        if pod.get("status", {}).get("phase") != "Running":
            continue
        for container in pod["spec"]["containers"]:
            requests = container.get("resources", {}).get("requests", {})
            cpu += parse_quantity(requests.get("cpu", "0"))
            memory += parse_quantity(requests.get("memory", "0"))
    if cpu <= 0:
        raise TargetUnavailable(
            f"no running pod in {namespace} declares a CPU request: nothing to price"
        )
    return {"sut_vcpus": round(cpu, 3), "sut_memory_gib": round(memory / (1 << 30), 3)}


class KindSampler(MetricsServerSampler):
    """metrics-server's figures for a namespace, and the pods' requests re-read at every step.

    The budget priced is the pods' requests before the load. An autoscaler that scales out, a
    rollout, or a pod that restarts elsewhere changes what the cluster reserves while the ladder
    runs, and the price would silently describe another budget; so every step re-reads the
    requests (each step's summary makes one `cpu_between` call) and records each change
    in `details["budget_changes"]` with a warning on stderr. With k8s/components/bench (pinned
    replicas, requests = limits, a quota) there should be none.
    """

    def __init__(self, config, namespace: str, budget: dict, details: dict, warn=None):
        super().__init__(kubectl(config), namespace)
        self.config = config
        self.budget = budget
        self.details = details
        details.setdefault("budget_checks", 0)
        details.setdefault("budget_changes", [])
        self.warn = warn or (lambda message: print(message, file=sys.stderr, flush=True))

    def check_budget(self) -> dict | None:
        """Re-read the pods' requests; record and report a change. None when they cannot be read."""
        self.details["budget_checks"] += 1
        check = self.details["budget_checks"]
        try:
            current = pod_requests(self.config, self.namespace)
        except (
            TargetUnavailable,
            subprocess.SubprocessError,
            OSError,
            ValueError,
            KeyError,
        ) as problem:
            error = str(problem) or type(problem).__name__
            self.details["budget_changes"].append(
                {"check": check, "from": self.budget, "to": None, "error": error}
            )
            self.warn(
                f"[kind] {self.namespace}: could not re-read the pods' requests "
                f"(check {check}): {error}"
            )
            return None
        if current != self.budget:
            self.details["budget_changes"].append(
                {"check": check, "from": self.budget, "to": current}
            )
            self.warn(
                f"[kind] {self.namespace}: the pods' requests changed during the run "
                f"(check {check}): {self.budget} -> {current}; the report prices the budget "
                "read before the load"
            )
            self.budget = current
        return current

    def cpu_between(self, start: float, stop: float) -> float:
        self.check_budget()
        return super().cpu_between(start, stop)


@contextmanager
def _kind(config, architecture: str, log_dir: Path) -> Iterator[Target]:
    url = config.endpoints[architecture].rstrip("/")
    namespace = config.namespaces[architecture]
    _wait_ready(url)
    budget = pod_requests(config, namespace)
    details: dict = {}
    with KindSampler(config, namespace, budget, details) as sampler:
        yield Target(url, sampler, budget, details)


def open_target(config, architecture: str, log_dir: Path):
    return {"local": _local, "docker": _docker, "kind": _kind}[config.target](
        config, architecture, log_dir
    )
