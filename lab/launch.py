"""Start a whole architecture as real processes through the supervisor.

    with launch("microservices", port=0, replicas={"inference": 2}) as deployment:
        requests.post(deployment.url + "/v1/predict", json=...)
        deployment.rolling_restart("inference")

Ports: the HTTP entry point listens on a socket the launcher binds itself and hands to gunicorn
(`--bind fd://N`), so port 0 works with no race; gRPC services bind port 0 and report the port
they got through a file. Parallel runs therefore never collide unless the user picks a port. A
restarted replica binds the port it had before, because the gateway balances over a fixed list
of addresses (as a Kubernetes headless Service's would be, only static).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from lab.architectures import ARCHITECTURES, STAGE_SERVICES, TOPOLOGIES, Topology, stage_module
from lab.netdelay import HopDelay, start_hop_delay
from lab.redis import redis_server
from lab.supervisor import (
    ManagedProcess,
    ProcessSpec,
    Supervisor,
    file_ready,
    http_ready,
    python_module,
)
from servinglab import config

__all__ = ["ARCHITECTURES", "STAGE_SERVICES", "TOPOLOGIES", "Deployment", "Replica", "launch"]

# One BLAS/OpenMP thread per process: every server here is one of several processes sharing a
# fixed CPU budget, and a thread pool per process would only add contention on tiny matrices.
SINGLE_THREADED_MATH = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Replica:
    service: str
    index: int
    port: int
    process: ManagedProcess
    spec: ProcessSpec
    port_file: Path
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Deployment:
    architecture: str
    url: str
    port: int
    supervisor: Supervisor
    run_dir: Path
    entry: ManagedProcess  # the gunicorn master of the HTTP entry point
    replicas: dict[str, list[Replica]] = field(default_factory=dict)
    ready_timeout_s: float = 90.0
    hop_delay: HopDelay = field(default_factory=HopDelay)  # HOP_DELAY_MS and how it was applied
    # The cache's Redis server when launch started one (CACHE=redis, no CACHE_URL): chaos kills it.
    redis: ManagedProcess | None = None

    @property
    def hop_delay_method(self) -> str:
        """ "netem" (real), "sleep" (in-process fallback) or "none": for results files."""
        return self.hop_delay.method

    # --- faults and rollouts (make chaos, the reliability tests) ---------------------------------

    def kill(self, service: str, index: int = 0, signum: int = signal.SIGKILL) -> None:
        """Crash a replica without warning: no drain, in-flight calls fail."""
        os.kill(self.replicas[service][index].process.pid, signum)

    def stop_replica(self, service: str, index: int = 0, grace_s: float = 10.0) -> int:
        """SIGTERM: the replica reports NOT_SERVING, drains in-flight RPCs, then exits."""
        replica = self.replicas[service][index]
        return self.supervisor.stop_one(replica.process, grace_s)

    def start_replica(
        self, service: str, index: int = 0, env: Mapping[str, str] | None = None
    ) -> Replica:
        """Start a replica again after it stopped or crashed, on the port it had."""
        replica = self.replicas[service][index]
        if replica.process.popen.poll() is None:
            raise RuntimeError(f"{service}[{index}] is still running")
        self.supervisor.processes[:] = [
            p for p in self.supervisor.processes if p is not replica.process
        ]
        return self._start_process(replica, env)

    def _start_process(self, replica: Replica, env: Mapping[str, str] | None) -> Replica:
        replica.port_file.unlink(missing_ok=True)
        spec_env = {**replica.spec.env, "LAB_GRPC_BIND": replica.address, **(env or {})}
        replica.spec = ProcessSpec(
            replica.spec.name, replica.spec.argv, spec_env, ready=file_ready(replica.port_file)
        )
        replica.process = self.supervisor.start(replica.spec)
        self.supervisor.wait_ready([replica.process], self.ready_timeout_s)
        return replica

    def restart_replica(
        self, service: str, index: int = 0, env: Mapping[str, str] | None = None
    ) -> Replica:
        """Replace one replica without a gap: start the new process, then drain the old one.

        Both listen on the same port (SO_REUSEPORT), so while the old one drains, clients that it
        sends away (HTTP/2 GOAWAY) reconnect at once and land on the new one: no refused
        connection, no reconnect backoff, nothing lost (Kubernetes' maxSurge=1, on one port).
        """
        replica = self.replicas[service][index]
        old = replica.process
        clients = _client_connections(replica.port, old.pid)
        self._start_process(replica, env)
        self.supervisor.stop_one(old)
        # "Listening" is not "in use": wait, as a readiness gate, until the clients the old
        # process had are connected to the new one before the caller touches the next replica.
        deadline = time.monotonic() + self.ready_timeout_s
        while (
            _client_connections(replica.port, replica.process.pid) < clients
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        return replica

    def rolling_restart(self, service: str, env: Mapping[str, str] | None = None) -> None:
        """One replica at a time, each back and ready before the next goes down."""
        for index in range(len(self.replicas[service])):
            self.restart_replica(service, index, env)

    def entry_workers(self) -> list[int]:
        """PIDs of the gunicorn workers behind the HTTP entry point."""
        try:
            return sorted(child.pid for child in psutil.Process(self.entry.pid).children())
        except psutil.NoSuchProcess:
            return []

    def reload_workers(self) -> None:
        """Replace every gunicorn worker, one at a time, each new one serving before an old one goes.

        Not SIGHUP: gunicorn then stops the old workers as soon as it has *forked* the new ones,
        so while the new ones load the app (and the model) nobody accepts connections and
        requests hang (measured here: about 20 s on a busy 2-core machine). Instead, TTIN adds a
        worker, its `post_worker_init` marker says the app is loaded, and TTOU retires the
        oldest, gracefully. New workers load whatever model CURRENT names by then.
        """
        ready_dir = self.run_dir / "ready"
        for old in self.entry_workers():
            before = set(self.entry_workers())
            os.kill(self.entry.pid, signal.SIGTTIN)
            self._wait_entry(
                lambda before=before: any(
                    (ready_dir / str(pid)).exists() for pid in set(self.entry_workers()) - before
                ),
                "a new worker to load the app",
            )
            os.kill(self.entry.pid, signal.SIGTTOU)
            self._wait_entry(
                lambda old=old: old not in self.entry_workers(), f"worker {old} to drain and exit"
            )

    def _wait_entry(self, condition, what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while not condition():
            if self.entry.popen.poll() is not None:
                raise RuntimeError(f"gunicorn exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)


def _client_connections(port: int, pid: int) -> int:
    """Established connections the process `pid` holds on its listening `port`.

    Read from /proc/<pid>/net, which shows the process's own network namespace (psutil reads
    ours, and sees nothing of a replica running in the hop-delay namespace). Sockets are matched
    by inode, because during a replacement the old and new process share the port.
    """
    try:
        inodes = {
            os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
        }
    except OSError:
        return 0
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # fields: sl, local address, remote address, state (01 = ESTABLISHED), ..., inode (9)
            if (
                fields[3] == "01"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
                and fields[9] in inodes
            ):
                count += 1
    return count


def _settings_env(settings: Mapping[str, Any] | None) -> dict[str, str]:
    return {f"LAB_{key}": str(value) for key, value in (settings or {}).items()}


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this. gunicorn sets it on sockets it binds itself but not on one
    # handed over with fd://, and without it Nagle holds the body gunicorn writes after the
    # headers until the client's delayed ACK: tens of milliseconds on every response.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _gunicorn_spec(
    name: str, app_target: str, sock: socket.socket, url: str, env: dict[str, str]
) -> ProcessSpec:
    argv = python_module(
        "gunicorn",
        "--config",
        "python:servinglab.serving.gunicorn_conf",
        "--bind",
        f"fd://{sock.fileno()}",
        app_target,
    )
    return ProcessSpec(
        name, argv, env, pass_fds=(sock.fileno(),), ready=http_ready(url + "/readyz")
    )


def _start_services(
    topology: Topology,
    supervisor: Supervisor,
    run_dir: Path,
    host: str,
    common_env: dict[str, str],
    replicas: Mapping[str, int],
    ready_timeout_s: float,
) -> dict[str, list[Replica]]:
    """Start every service's replicas, each as soon as the addresses it needs are known.

    A stage spends its first ~2 s importing scikit-learn, so stages that need nothing from each
    other (all of them, when the gateway orchestrates) start together; a chained stage waits
    only for the stage it calls, whose port it must be given.
    """
    started: dict[str, list[Replica]] = {}
    pending: dict[str, list[tuple[ProcessSpec, Path, ManagedProcess]]] = {}

    def wait_for_pending() -> None:
        supervisor.wait_ready(
            [process for batch in pending.values() for _, _, process in batch], ready_timeout_s
        )
        for service, batch in pending.items():
            started[service] = [
                Replica(service, index, int(port_file.read_text()), process, spec, port_file, host)
                for index, (spec, port_file, process) in enumerate(batch)
            ]
        pending.clear()

    for service in topology.services:
        count = int(replicas.get(service, 1))
        if count < 1:
            raise ValueError(f"{service} needs at least one replica, not {count}")
        upstreams = topology.service_upstreams.get(service, {})
        if any(other in pending for other in upstreams.values()):
            wait_for_pending()
        upstream_env = {
            f"LAB_{setting}": ",".join(r.address for r in started[other])
            for setting, other in upstreams.items()
        }
        batch = pending[service] = []
        for index in range(count):
            name = service if count == 1 else f"{service}-{index}"
            port_file = run_dir / f"{name}.port"
            env = {
                **common_env,
                **upstream_env,
                "LAB_GRPC_BIND": f"{host}:0",
                "LAB_PORT_FILE": str(port_file),
                "LAB_GRPC_REUSEPORT": "true",
            }
            spec = ProcessSpec(
                name, python_module(stage_module(service)), env, ready=file_ready(port_file)
            )
            batch.append((spec, port_file, supervisor.start(spec)))
    wait_for_pending()
    return started


def _start_cache(
    supervisor: Supervisor,
    run_dir: Path,
    settings: config.Settings,
    common_env: dict[str, str],
    ready_timeout_s: float,
) -> ManagedProcess | None:
    """CACHE=redis with no CACHE_URL: a private Redis, answering PING before any server starts."""
    if settings.cache != "redis" or settings.cache_url:
        return None
    spec, cache_url = redis_server(run_dir, settings.cache_redis_maxmemory_mb)
    process = supervisor.start(spec)
    supervisor.wait_ready([process], ready_timeout_s)
    common_env["LAB_CACHE_URL"] = cache_url  # every process: whichever placement caches needs it
    return process


@contextmanager
def launch(
    architecture: str,
    port: int = 0,
    host: str = "127.0.0.1",
    settings: Mapping[str, Any] | None = None,
    cpus: Iterable[int] | None = None,
    log_dir: Path | None = None,
    ready_timeout_s: float = 90.0,
    replicas: Mapping[str, int] | None = None,
) -> Iterator[Deployment]:
    """Start `architecture`, yield once /readyz answers 200, stop everything on exit."""
    if architecture not in TOPOLOGIES:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    topology = TOPOLOGIES[architecture]
    unknown = sorted(set(replicas or {}) - set(topology.services))
    if unknown:
        raise ValueError(
            f"{architecture} has no service(s) {', '.join(unknown)} to replicate; "
            f"it has: {', '.join(topology.services) or 'none'}"
        )
    run_dir = Path(tempfile.mkdtemp(prefix=f"servinglab-{architecture}-"))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    common_env = {
        **SINGLE_THREADED_MATH,
        **_settings_env(settings),
        "LAB_METRICS_DIR": str(metrics_dir),
        "PYTHONUNBUFFERED": "1",
    }
    # Absolute, so children started in another working directory serve the same artifact.
    model_dir = common_env.get("LAB_MODEL_DIR") or os.environ.get("LAB_MODEL_DIR", "models")
    common_env["LAB_MODEL_DIR"] = str(Path(model_dir).resolve())
    supervisor = Supervisor(log_dir=log_dir, cpus=cpus)
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    url = f"http://{host}:{actual_port}"
    try:
        # What the children will see, parsed here too: a bad value stops the launch before any
        # process starts, and the launcher's own decisions read the same values.
        parsed = config.load(overrides=settings)
        # Before any server: with netem, every process from here on starts in a private namespace.
        hop_delay = start_hop_delay(supervisor, parsed, bool(topology.services), ready_timeout_s)
        common_env.update(hop_delay.env())
        redis = _start_cache(supervisor, run_dir, parsed, common_env, ready_timeout_s)
        started = _start_services(
            topology, supervisor, run_dir, host, common_env, replicas or {}, ready_timeout_s
        )
        entry_env = {
            **common_env,
            **_settings_env(topology.entry_settings),
            "LAB_WORKER_READY_DIR": str(run_dir / "ready"),
        }
        (run_dir / "ready").mkdir()
        for setting, service in topology.entry_upstreams.items():
            entry_env[f"LAB_{setting}"] = ",".join(replica.address for replica in started[service])
        name = "gunicorn-" + topology.entry
        entry = supervisor.start(_gunicorn_spec(name, topology.app, sock, url, entry_env))
        # gunicorn has its own copy of the listening socket now; ours would only keep the port busy.
        sock.close()
        supervisor.wait_ready([entry], ready_timeout_s)
        yield Deployment(
            architecture,
            url,
            actual_port,
            supervisor,
            run_dir,
            entry,
            started,
            ready_timeout_s,
            hop_delay=hop_delay,
            redis=redis,
        )
    finally:
        sock.close()
        supervisor.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
