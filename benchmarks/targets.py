"""Where the system under test runs during `make bench`: local processes, Docker, or kind.

`open_target(...)` starts or finds one architecture and yields a `Target`: the URL to load, a
sampler of its CPU and memory, and, where the platform defines it, the budget to price. The
runner's ladder, Locust and report are the same for every target. The experiment knobs
(`benchmarks/knobs.py`) reach the servers here: as launch settings and arguments locally, as
`LAB_<NAME>` variables in containers; on kind the deployed manifests decide, so knobs that change
the servers are refused there.

- local (default): processes started by the supervisor, pinned to SUT_CPUS (`taskset`-like).
- docker: one container per process role from the project image (`make kind-load` or
  `python -m lab.images build` builds it), all sharing the `SUT_CPUS` cpuset and a
  `nano_cpus` limit of the budget each, on a private network; figures from the Docker stats API.
- kind: architectures already deployed (`make kind-deploy`), reached through their NodePorts;
  CPU and memory from metrics-server; the budget is the sum of the pods' requests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import knobs
from benchmarks.resources import (
    CpuSeries,
    DockerStatsSampler,
    MetricsServerSampler,
    ProcessSampler,
    parse_quantity,
)
from lab import images
from servinglab.config import DEFAULT_GRPC_PORTS
from lab.launch import STAGE_SERVICES, launch
from lab.supervisor import http_ready

TARGETS = ("local", "docker", "kind")
DOCKER_ARCHITECTURES = ("monolith", "microservices")  # the roles _docker knows how to wire
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
    try:
        knobs.check_target(config.knobs, config.target)
    except knobs.KnobError as problem:
        raise TargetUnavailable(str(problem)) from None
    if config.target == "docker":
        unsupported = [arch for arch in config.archs if arch not in DOCKER_ARCHITECTURES]
        if unsupported:
            raise TargetUnavailable(f"TARGET=docker runs {' and '.join(DOCKER_ARCHITECTURES)} only, not "
                                    f"{', '.join(unsupported)}; use TARGET=local")
    if config.target == "local":
        return "local processes"
    if config.target == "docker":
        available, detail = images.engine_available()
        if not available:
            raise TargetUnavailable(f"TARGET=docker needs a Docker engine: {detail}")
        return detail
    if not shutil.which("kubectl"):
        raise TargetUnavailable("TARGET=kind needs kubectl on PATH (https://kubernetes.io/docs/tasks/tools/)")
    missing = [a for a in config.archs if a not in config.endpoints or a not in config.namespaces]
    if missing:
        raise TargetUnavailable(f"TARGET=kind needs --endpoint and --namespace for {', '.join(missing)} "
                                "(`make kind-bench` passes them)")
    probe = subprocess.run([*kubectl(config), "get", "--raw", "/apis/metrics.k8s.io/v1beta1"],
                           check=False, capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        raise TargetUnavailable(f"metrics-server does not answer on context {config.kube_context!r}: "
                                f"{probe.stderr.strip()} (run `make kind-up`)")
    return f"kind context {config.kube_context}"


def kubectl(config) -> list[str]:
    return ["kubectl", "--context", config.kube_context]


def _wait_ready(url: str, alive=lambda: True) -> None:
    ready = http_ready(url + "/readyz")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready():
        if time.monotonic() > deadline or not alive():
            raise TargetUnavailable(f"{url}/readyz did not answer 200 within {READY_TIMEOUT_S:.0f}s")
        time.sleep(0.2)


@contextmanager
def _local(config, architecture: str, log_dir: Path) -> Iterator[Target]:
    settings = {"MODEL_DIR": config.models.resolve(), "MODEL_PROFILE": config.profile,
                **knobs.settings_for(config.knobs, architecture), **config.extra_settings}
    extra = knobs.launch_kwargs_for(config.knobs, architecture)
    with launch(architecture, settings=settings, cpus=config.sut_cpus, log_dir=log_dir, **extra) as deployment, \
            ProcessSampler(deployment.supervisor) as sampler:
        # Read defensively: a checkout whose launcher does not report it records null.
        method = getattr(deployment, "hop_delay_method", None)
        yield Target(deployment.url, sampler, details={"hop_delay_method": method})


@contextmanager
def _docker(config, architecture: str, log_dir: Path) -> Iterator[Target]:
    client = images.docker_client()
    image = config.image or images.image_ref()
    prefix = f"servinglab-{architecture}-{uuid.uuid4().hex[:8]}"
    network = client.networks.create(prefix)
    settings = {**knobs.settings_for(config.knobs, architecture), **config.extra_settings}
    env = {"LAB_MODEL_PROFILE": config.profile, **{f"LAB_{key}": str(value) for key, value in settings.items()}}
    limits = {"cpuset_cpus": ",".join(map(str, config.sut_cpus)), "nano_cpus": int(len(config.sut_cpus) * 1e9),
              "network": network.name, "detach": True}
    containers = []
    try:
        entry_env = dict(env)
        if architecture == "microservices":
            for stage in STAGE_SERVICES:
                name = f"{prefix}-{stage}"
                containers.append(client.containers.run(image, [stage], name=name, environment=env, **limits))
                entry_env[f"LAB_{stage.upper()}_ADDR"] = f"{name}:{DEFAULT_GRPC_PORTS[stage]}"
        role = "gateway" if architecture == "microservices" else "monolith"
        entry = client.containers.run(image, [role], name=f"{prefix}-{role}", environment=entry_env,
                                      ports={"8000/tcp": ("127.0.0.1", None)}, **limits)
        containers.append(entry)
        entry.reload()
        url = f"http://127.0.0.1:{entry.ports['8000/tcp'][0]['HostPort']}"

        def alive() -> bool:
            entry.reload()
            return entry.status == "running"

        _wait_ready(url, alive)
        with DockerStatsSampler(containers) as sampler:
            yield Target(url, sampler)
    finally:
        log_dir.mkdir(parents=True, exist_ok=True)
        for container in containers:
            try:
                (log_dir / f"{container.name}.log").write_bytes(container.logs())
                container.stop(timeout=15)
                container.remove()
            except Exception:  # noqa: BLE001, S112 - cleanup must reach every container
                continue
        network.remove()


def pod_requests(config, namespace: str) -> dict:
    """The running pods' summed CPU and memory requests: what the cluster reserves for them."""
    listing = subprocess.run([*kubectl(config), "-n", namespace, "get", "pods", "-o", "json"],
                             capture_output=True, text=True, timeout=30, check=True)
    cpu = memory = 0.0
    for pod in json.loads(listing.stdout)["items"]:
        if pod.get("status", {}).get("phase") != "Running":
            continue
        for container in pod["spec"]["containers"]:
            requests = container.get("resources", {}).get("requests", {})
            cpu += parse_quantity(requests.get("cpu", "0"))
            memory += parse_quantity(requests.get("memory", "0"))
    if cpu <= 0:
        raise TargetUnavailable(f"no running pod in {namespace} declares a CPU request: nothing to price")
    return {"sut_vcpus": round(cpu, 3), "sut_memory_gib": round(memory / (1 << 30), 3)}


@contextmanager
def _kind(config, architecture: str, log_dir: Path) -> Iterator[Target]:
    url = config.endpoints[architecture].rstrip("/")
    namespace = config.namespaces[architecture]
    _wait_ready(url)
    with MetricsServerSampler(kubectl(config), namespace) as sampler:
        yield Target(url, sampler, pod_requests(config, namespace))


def open_target(config, architecture: str, log_dir: Path):
    return {"local": _local, "docker": _docker, "kind": _kind}[config.target](config, architecture, log_dir)
