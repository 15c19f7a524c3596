"""Run one architecture as containers: one per role, on its own bridge network, limited like a pod.

    python -m lab.containers run --arch microservices --port 8000   # until Ctrl-C (make run-docker)
    python -m lab.containers clean                                   # remove what a killed run left

    with deploy("microservices", cpus=[0]) as deployment:            # what TARGET=docker does
        requests.post(deployment.url + "/v1/predict", json=...)

Every architecture of lab/architectures.py is wired from that table, as `lab.launch` wires
processes: the gRPC services first (in the table's order, so a chained stage starts after the
one it calls), then the HTTP entry point, which alone publishes its port, on 127.0.0.1 only.
Containers reach each other by name on a user-defined bridge network created for the run, so
every gRPC hop crosses a veth pair and the bridge, as it crosses a node's network between pods,
and not loopback.

What each container gets, as the Kubernetes manifests give each pod (k8s/base/shared,
k8s/components/bench):
- CPU: the cpuset of the budget (`--cpuset-cpus`, SUT_CPUS: the very CPUs the local target pins
  its processes to) and a CFS quota (`--cpus`) equal to the budget, a Kubernetes CPU limit. All
  the containers of one architecture share the cpuset, so together they can never use more than
  the budget, exactly the local target's rule; the quota caps each one at it too.
- memory: a hard limit per role (`MEMORY_LIMITS_MIB`, the manifests' limits), no swap;
- security: user 10001 (the image's), a read-only root file system with only the writable paths
  the manifests mount (an in-memory /tmp for every role, the metrics directory for the HTTP
  roles), every capability dropped, no privilege escalation.

Cleanup: every container and the network carry the label `io.servinglab.run=<id>`; leaving the
`deploy` block (normally, by an exception, or by Ctrl-C/SIGTERM, which are held back until the
cleanup is done) stops the containers (SIGTERM, then SIGKILL after the grace period), saves their
logs, and removes them and the network. `clean` removes anything a killed run left.

One module on purpose: deploying, running and cleaning up share one lifecycle (the run label, the
network, the signals held back until cleanup is done); split up, the cleanup guarantee would
span files.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.architectures import ARCHITECTURES, HTTP_APPS, TOPOLOGIES
from servinglab import config
from servinglab.config import DEFAULT_GRPC_PORTS

LABEL_RUN = "io.servinglab.run"
LABEL_ROLE = "io.servinglab.role"
LABEL_ARCHITECTURE = "io.servinglab.architecture"
HTTP_PORT = 8000
# Hard memory limit per role, as the manifests set them (the monolith: components/bench, which
# holds the two gunicorn workers the benchmark runs; the rest: k8s/base). A gateway that runs
# preprocess and postprocess in process (split) holds the model, so it gets the monolith's.
MEMORY_LIMITS_MIB = {
    "monolith": 512,
    "gateway": 256,
    "preprocess": 320,
    "inference": 320,
    "postprocess": 320,
}
MODEL_HOLDING_GATEWAY_MIB = MEMORY_LIMITS_MIB["monolith"]
# The manifests' writable paths: /tmp an in-memory emptyDir of 32 MiB for every role
# (k8s/base/shared/restricted-pod.yaml), the metrics directory one of 16 MiB for the HTTP roles.
TMP_MOUNT = {"/tmp": "rw,noexec,nosuid,nodev,size=32m,mode=1777"}
METRICS_MOUNT = {
    "/var/lib/servinglab/metrics": "rw,noexec,nosuid,nodev,size=16m,uid=10001,gid=10001,mode=0700"
}
USER = "10001:10001"
READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0
LOG_TAIL_LINES = 20


class ContainerError(RuntimeError):
    """The architecture cannot run in containers here; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """What every container of one architecture gets (see the module docstring)."""

    cpus: float  # CFS quota of each container, in CPUs (docker --cpus)
    cpuset: str | None  # the CPUs they share (docker --cpuset-cpus); None: any
    memory_mib: Mapping[str, int] = field(default_factory=lambda: dict(MEMORY_LIMITS_MIB))

    @classmethod
    def for_budget(cls, cpus: list[int] | None, cpu_limit: float | None = None) -> Limits:
        quota = cpu_limit if cpu_limit is not None else float(len(cpus) if cpus else 1)
        return cls(quota, ",".join(map(str, cpus)) if cpus else None)

    def memory_for(self, role: str, architecture: str) -> int:
        if (
            role == "gateway"
            and TOPOLOGIES[architecture].entry_settings.get("GATEWAY_MODE") == "split"
        ):
            return MODEL_HOLDING_GATEWAY_MIB
        return self.memory_mib[role]

    def describe(self, architecture: str, roles: list[str]) -> dict[str, Any]:
        return {
            "cpu_quota_cpus_per_container": self.cpus,
            "cpuset": self.cpuset,
            "memory_limit_mib": {role: self.memory_for(role, architecture) for role in roles},
            "swap": "none",
            "user": USER,
            "read_only_rootfs": True,
            "writable": {
                "all roles": "/tmp (tmpfs 32m)",
                "HTTP roles": "/var/lib/servinglab/metrics (tmpfs 16m)",
            },
            "capabilities": "all dropped, no-new-privileges",
            "network": "one user-defined bridge per run; entry port published on 127.0.0.1 only",
        }


@dataclass
class RoleContainer:
    role: str
    name: str
    container: Any  # docker.models.containers.Container
    port: int

    @property
    def address(self) -> str:
        return f"{self.name}:{self.port}"


@dataclass
class ContainerDeployment:
    architecture: str
    image: str
    run_id: str
    network: str
    url: str
    port: int
    limits: Limits
    roles: list[RoleContainer] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # what a caller adds about the run

    @property
    def containers(self) -> list:
        return [role.container for role in self.roles]

    def container(self, role: str):
        return next(r.container for r in self.roles if r.role == role)

    def describe(self) -> dict[str, Any]:
        """For results.json and the report: what ran and under which limits."""
        return {
            "image": self.image,
            "network": self.network,
            "containers": {r.role: r.name for r in self.roles},
            "limits": self.limits.describe(self.architecture, [r.role for r in self.roles]),
            **self.notes,
        }


def _client():
    from lab import images

    available, reason = images.engine_available()
    if not available:
        raise ContainerError(reason)
    return images.docker_client()


def check_port(port: int) -> None:
    """Refuse a host port that something already listens on, before any container starts."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise ContainerError(
                f"port {port} on 127.0.0.1 is already taken ({error.strerror}); stop "
                f"what listens there or choose another with PORT=..."
            ) from None


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _logs(container) -> str:
    try:
        return container.logs().decode(errors="replace")
    except Exception:  # a removed container has no logs; nothing to add
        return ""


def _status(container) -> tuple[str, int | None]:
    try:
        container.reload()
    except Exception:  # gone: treat as exited
        return "removed", None
    return container.status, container.attrs.get("State", {}).get("ExitCode")


def _wait_ready(
    deployment: ContainerDeployment,
    timeout_s: float,
    progress: Callable[[str], None],
    settle_s: float,
) -> None:
    """Poll /readyz until it has answered 200 for `settle_s` in a row.

    One 200 comes from one gateway worker. Another worker that asked while a stage was still
    starting holds its channel in reconnect backoff (capped at GRPC_RECONNECT_MAX_BACKOFF_MS) and
    answers 503 until the backoff ends; the stages are up from the first 200 on, so once 200s
    have lasted longer than that cap every worker has reconnected.
    """
    from lab.supervisor import http_ready

    ready = http_ready(deployment.url + "/readyz", timeout_s=1.0)
    deadline = time.monotonic() + timeout_s
    ready_since: float | None = None
    while True:
        if ready():
            if ready_since is None:
                ready_since = time.monotonic()
            if time.monotonic() - ready_since >= settle_s:
                return
        else:
            ready_since = None
        for role in deployment.roles:
            status, code = _status(role.container)
            if status not in ("running", "created"):
                tail = _tail(_logs(role.container))
                if tail:
                    progress(tail)
                last = tail.splitlines()[-1] if tail else "no output"
                raise ContainerError(
                    f"the {role.role} container exited (status {status}, code {code}) "
                    f"before {deployment.architecture} was ready: {last}"
                )
        if time.monotonic() > deadline:
            raise ContainerError(
                f"{deployment.url}/readyz did not answer 200 within {timeout_s:.0f} s; "
                "the containers' logs are saved with the run"
            )
        time.sleep(0.25)


def _run_container(
    client,
    image: str,
    role: str,
    name: str,
    network: str,
    env: dict[str, str],
    limits: Limits,
    architecture: str,
    run_id: str,
    port: int | None,
    publish: bool,
) -> Any:
    import docker.errors

    memory = limits.memory_for(role, architecture) * (1 << 20)
    mounts = {**TMP_MOUNT, **(METRICS_MOUNT if role in HTTP_APPS else {})}
    options: dict[str, Any] = dict(
        name=name,
        command=[role],
        environment=env,
        network=network,
        detach=True,
        labels={LABEL_RUN: run_id, LABEL_ROLE: role, LABEL_ARCHITECTURE: architecture},
        nano_cpus=int(limits.cpus * 1e9),
        mem_limit=memory,
        memswap_limit=memory,
        read_only=True,
        tmpfs=mounts,
        user=USER,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        pids_limit=512,
        stop_signal="SIGTERM",
    )
    if limits.cpuset:
        options["cpuset_cpus"] = limits.cpuset
    if publish:
        options["ports"] = {f"{HTTP_PORT}/tcp": ("127.0.0.1", port or None)}
    try:
        return client.containers.run(image, **options)
    except docker.errors.APIError as error:
        explanation = " ".join(str(error.explanation or error).split())
        if "port is already allocated" in explanation or "address already in use" in explanation:
            raise ContainerError(
                f"port {port} on 127.0.0.1 is already taken ({explanation}); choose "
                "another with PORT=..."
            ) from None
        raise ContainerError(
            f"the engine refused to start the {role} container: {explanation}"
        ) from None


def teardown(
    client,
    run_id: str,
    log_dir: Path | None = None,
    grace_s: float = STOP_GRACE_S,
    known: list | None = None,
) -> list[str]:
    """Stop (SIGTERM, SIGKILL after `grace_s`), save the logs of, and remove every container and
    network of one run; returns the names removed. Never raises for one that is already gone."""
    import docker.errors

    removed: list[str] = []
    try:
        containers = client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
    except docker.errors.DockerException:
        containers = list(known or [])
    threads = [
        threading.Thread(target=_stop_quietly, args=(c, grace_s), daemon=True) for c in containers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(grace_s + 30)
    for container in containers:
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / f"{container.name}.log").write_text(_logs(container))
        try:
            container.remove(force=True)
            removed.append(container.name)
        except docker.errors.NotFound:
            removed.append(container.name)
        except docker.errors.DockerException:
            pass
    try:
        networks = client.networks.list(filters={"label": f"{LABEL_RUN}={run_id}"})
    except docker.errors.DockerException:
        networks = []
    for network in networks:
        try:
            network.remove()
            removed.append(network.name)
        except docker.errors.DockerException:
            pass
    return removed


def _stop_quietly(container, grace_s: float) -> None:
    with contextlib.suppress(Exception):  # removal below forces it anyway
        container.stop(timeout=int(grace_s))


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while cleaning up: a second Ctrl-C then cannot leave containers
    behind; it is delivered (and stops the program) as soon as the cleanup is done."""
    held = {signal.SIGINT, signal.SIGTERM}
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def image_present(client, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


@contextmanager
def deploy(
    architecture: str,
    image: str | None = None,
    *,
    cpus: list[int] | None = None,
    cpu_limit: float | None = None,
    settings: Mapping[str, Any] | None = None,
    port: int | None = None,
    log_dir: Path | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    stop_grace_s: float = STOP_GRACE_S,
    client=None,
    progress: Callable[[str], None] = print,
) -> Iterator[ContainerDeployment]:
    """Start `architecture` from `image` (default: the image of this tree, `make image`), wait
    until its /readyz answers 200, yield it; remove everything on the way out."""
    if architecture not in TOPOLOGIES:
        raise ContainerError(
            f"unknown architecture {architecture!r}; containers run {', '.join(ARCHITECTURES)}"
        )
    client = client or _client()
    if image is None:
        from lab import images

        image = images.image_ref()
    if not image_present(client, image):
        raise ContainerError(
            f"the image {image} is not in the engine; build it with `make image` "
            "(or pass IMAGE=<an image you have>)"
        )
    if port:
        check_port(port)
    topology = TOPOLOGIES[architecture]
    limits = Limits.for_budget(cpus, cpu_limit)
    run_id = uuid.uuid4().hex[:10]
    prefix = f"servinglab-{architecture}-{run_id}"
    env = {
        "TMPDIR": "/tmp",
        **{f"LAB_{key}": str(value) for key, value in (settings or {}).items()},
    }
    started: list = []
    try:
        network = client.networks.create(prefix, driver="bridge", labels={LABEL_RUN: run_id})
        deployment = ContainerDeployment(architecture, image, run_id, network.name, "", 0, limits)
        names = {service: f"{prefix}-{service}" for service in topology.services}
        for service in topology.services:
            service_env = dict(env)
            for setting, upstream in topology.service_upstreams.get(service, {}).items():
                service_env[f"LAB_{setting}"] = f"{names[upstream]}:{DEFAULT_GRPC_PORTS[upstream]}"
            container = _run_container(
                client,
                image,
                service,
                names[service],
                network.name,
                service_env,
                limits,
                architecture,
                run_id,
                None,
                publish=False,
            )
            started.append(container)
            deployment.roles.append(
                RoleContainer(service, names[service], container, DEFAULT_GRPC_PORTS[service])
            )
        entry_env = dict(env)
        for setting, upstream in topology.entry_upstreams.items():
            entry_env[f"LAB_{setting}"] = f"{names[upstream]}:{DEFAULT_GRPC_PORTS[upstream]}"
        entry_env.update(
            {f"LAB_{key}": str(value) for key, value in topology.entry_settings.items()}
        )
        entry_name = f"{prefix}-{topology.entry}"
        entry = _run_container(
            client,
            image,
            topology.entry,
            entry_name,
            network.name,
            entry_env,
            limits,
            architecture,
            run_id,
            port,
            publish=True,
        )
        started.append(entry)
        deployment.roles.append(RoleContainer(topology.entry, entry_name, entry, HTTP_PORT))
        entry.reload()
        host_port = int(entry.ports[f"{HTTP_PORT}/tcp"][0]["HostPort"])
        deployment.port, deployment.url = host_port, f"http://127.0.0.1:{host_port}"
        # What the containers were given (`env`), not this shell's LAB_* variables.
        backoff_ms = config.load(env).grpc_reconnect_max_backoff_ms
        settle_s = 1.5 * backoff_ms / 1e3 if topology.services else 0.0
        _wait_ready(deployment, ready_timeout_s, progress, settle_s)
        yield deployment
    finally:
        with _signals_held():
            teardown(client, run_id, log_dir, stop_grace_s, started)


def clean(client=None, run_id: str | None = None) -> list[str]:
    """Remove the containers and networks of one run, or of every servinglab run."""
    import docker.errors

    client = client or _client()
    label = f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN
    runs = {
        c.labels.get(LABEL_RUN) for c in client.containers.list(all=True, filters={"label": label})
    }
    with contextlib.suppress(docker.errors.DockerException):
        runs |= {
            n.attrs.get("Labels", {}).get(LABEL_RUN)
            for n in client.networks.list(filters={"label": label})
        }
    removed: list[str] = []
    for run in sorted(r for r in runs if r):
        removed += teardown(client, run, grace_s=2)
    return removed


def leftovers(client=None) -> list[str]:
    """Names of servinglab containers and networks that exist right now (tests: nothing left)."""
    client = client or _client()
    names = [c.name for c in client.containers.list(all=True, filters={"label": LABEL_RUN})]
    return names + [n.name for n in client.networks.list(filters={"label": LABEL_RUN})]


def parse_cpus(text: str) -> list[int]:
    """ "0", "0,2" or "0-3" -> CPU numbers."""
    cpus: list[int] = []
    for part in text.replace(" ", "").split(","):
        low, _, high = part.partition("-")
        if low:
            cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def main(argv: list[str] | None = None) -> int:
    from lab.watchdog import StopRequested, StopSignals

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve one architecture in containers until Ctrl-C")
    run.add_argument("--arch", default="monolith", help=f"one of {', '.join(ARCHITECTURES)}")
    run.add_argument(
        "--port", type=int, default=8000, help="host port on 127.0.0.1 (0: any free one)"
    )
    run.add_argument(
        "--image", default=None, help="image to run (default: this tree's, `make image`)"
    )
    run.add_argument(
        "--cpus", default=None, help="cpuset shared by the containers, e.g. 0 or 0-1 (default: any)"
    )
    run.add_argument("--profile", default=None, help="model profile (LAB_MODEL_PROFILE)")
    sub.add_parser("clean", help="remove every container and network a servinglab run left behind")
    args = parser.parse_args(argv)
    try:
        if args.command == "clean":
            removed = clean()
            print(
                f"[containers] removed {len(removed)}: {', '.join(removed) or 'nothing was left'}"
            )
            return 0
        if args.arch not in TOPOLOGIES:
            raise ContainerError(
                f"unknown architecture {args.arch!r}; containers run {', '.join(ARCHITECTURES)}"
            )
        settings = {"MODEL_PROFILE": args.profile} if args.profile else {}
        stop = StopSignals()
        with deploy(
            args.arch,
            args.image,
            cpus=parse_cpus(args.cpus) if args.cpus else None,
            settings=settings,
            port=args.port or None,
        ) as deployment:
            roles = ", ".join(f"{r.role} ({r.name})" for r in deployment.roles)
            print(
                f"[containers] {args.arch} ready at {deployment.url}: {roles}; Ctrl-C stops and removes them",
                flush=True,
            )
            while True:
                if stop.requested.wait(1.0):
                    stop.check()
                for role in deployment.roles:
                    status, code = _status(role.container)
                    if status != "running":
                        raise ContainerError(
                            f"the {role.role} container stopped (status {status}, code {code})"
                        )
    except StopRequested:
        print("\n[containers] stopped and removed every container", file=sys.stderr)
        return 130
    except ContainerError as error:
        print(f"[containers] {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
