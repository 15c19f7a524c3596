"""`make bench TARGET=docker`: each architecture as containers (lab/containers.py), measured
through the engine's stats API.

`benchmarks.measure.targets` calls this module for the docker target:
- `check(config)` before any work: an engine answers, every architecture is one the containers
  can wire (all of lab/architectures.py), and the image exists; without IMAGE=, the image of this
  tree is built (`make image`, warm in seconds) and pinned in `config.image`, so every run of the
  benchmark uses the same image even when the tree changes meanwhile;
- `deploy(config, architecture, log_dir)`: the containers, limited like pods (the SUT_CPUS cpuset
  and a CFS quota of the budget, a memory limit per role, read-only root, non-root), with their
  CPU-seconds and memory from the engine's stats stream (`EngineStatsSampler`); removed on the
  way out;
- `run_settings(config)`: what the report lists under the run's settings (image, limits).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.measure.resources import CpuSeries, Usage
from lab import containers, images
from lab.architectures import ARCHITECTURES

FIRST_SAMPLE_TIMEOUT_S = 10.0
HOST_POLL_S = 0.25


def userland_proxies(port: int) -> dict[str, Any]:
    """{name: psutil.Process} of the engine's `docker-proxy` processes that forward host `port`
    (none when the engine runs elsewhere, as with Docker Desktop, or without the userland proxy)."""
    import psutil

    found = {}
    for process in psutil.process_iter(["name", "cmdline"]):
        command = process.info.get("cmdline") or []
        if process.info.get("name") == "docker-proxy" and "-host-port" in command:
            index = command.index("-host-port")
            if index + 1 < len(command) and command[index + 1] == str(port):
                try:
                    process.cpu_times()  # the engine's process: readable as root only
                except psutil.Error:
                    continue
                found[f"docker-proxy:{port}/pid-{process.pid}"] = process
    return found


class DockerTargetError(RuntimeError):
    """TARGET=docker cannot run here; the message says why and what to do."""


def _log(message: str) -> None:
    print(message, flush=True)


def check(config) -> str:
    unsupported = [arch for arch in config.archs if arch not in ARCHITECTURES]
    if unsupported:
        raise DockerTargetError(
            f"TARGET=docker runs {', '.join(ARCHITECTURES)}, not {', '.join(unsupported)}"
        )
    available, detail = images.engine_available()
    if not available:
        raise DockerTargetError(f"TARGET=docker needs a Docker engine: {detail}")
    client = images.docker_client()
    if config.image:
        if not containers.image_present(client, config.image):
            raise DockerTargetError(
                f"IMAGE={config.image} is not in the engine; build it with `make image` "
                "or leave IMAGE unset to build this tree's"
            )
    else:
        ref = images.image_ref()
        if not containers.image_present(client, ref):
            _log(
                f"[bench] the image {ref} of this tree is not built yet: building it (`make image`)"
            )
            try:
                images.build_images(progress=_quiet_build_progress)
            except images.ImageError as error:
                raise DockerTargetError(str(error)) from None
        config.image = ref
    return f"{detail}, image {config.image}"


def _quiet_build_progress(message: str) -> None:
    """Build progress without every step header: the first lines and anything that is not a step."""
    if not message.startswith("[images] Step "):
        _log(message)


def run_settings(config) -> dict[str, Any]:
    limits = containers.Limits.for_budget(config.sut_cpus)
    return {
        "docker_image": config.image,
        "docker_cpu_limit": f"--cpus {limits.cpus:g} (CFS quota) per container, all of an architecture "
        f"sharing --cpuset-cpus {limits.cpuset}",
        "docker_memory_limit_mib": dict(containers.MEMORY_LIMITS_MIB),
        "docker_security": "user 10001, read-only root file system (tmpfs /tmp; HTTP roles: tmpfs "
        "/var/lib/servinglab/metrics), all capabilities dropped, no-new-privileges",
        "docker_network": "one user-defined bridge per architecture run; entry port on 127.0.0.1",
    }


class EngineStatsSampler(CpuSeries):
    """CPU-seconds and memory of containers, from the engine's stats API (`docker stats`).

    The engine samples each container's cgroup about once a second, and a non-streaming stats
    request waits for the next sample (about a second per container and call: polling four
    containers every 0.5 s would give one reading every 4 s). So each container's stats are
    *streamed*, one thread per container, and every reading is kept with the time it arrived; a
    step's CPU is the sum over containers of their CPU-seconds interpolated at the step's start
    and end. CPU spent before a container's first reading (imports, loading the model) is
    start-up, not load, as for local processes. Memory is the cgroup's usage minus inactive page
    cache, as `docker stats` shows it.

    `host_processes` are processes outside every container that work for them, polled with
    psutil: the engine's userland proxy (`docker-proxy`) that carries each request from the
    published port on 127.0.0.1 into the entry container. Its CPU is part of what running in
    containers costs (about a quarter of the monolith's own CPU per request here), and no
    container's stats include it.
    """

    def __init__(self, containers_: list, host_processes: dict[str, Any] | None = None):
        super().__init__()
        self.containers = containers_
        self.host_processes = host_processes or {}
        self.readings: dict[str, tuple[list[float], list[float]]] = {
            name: ([], []) for name in [*(c.name for c in containers_), *self.host_processes]
        }
        self._lock = threading.Lock()
        self._streams = [
            threading.Thread(target=self._follow, args=(c,), daemon=True, name=f"stats-{c.name}")
            for c in containers_
        ]
        if self.host_processes:
            self._streams.append(
                threading.Thread(target=self._poll_host, daemon=True, name="stats-host")
            )

    def _record(self, name: str, when: float, cpu_seconds: float, memory_mb: float) -> None:
        with self._lock:
            times, totals = self.readings[name]
            times.append(when)
            totals.append(cpu_seconds)
            usage = self.usage.setdefault(name, Usage(name))
            usage.cpu_seconds = totals[-1] - totals[0]
            usage.peak_rss_mb = max(usage.peak_rss_mb, memory_mb)

    def _poll_host(self) -> None:
        import psutil

        while True:
            for name, process in self.host_processes.items():
                try:
                    with process.oneshot():
                        times = process.cpu_times()
                        rss_mb = process.memory_info().rss / (1 << 20)
                except psutil.Error:
                    continue
                self._record(name, time.time(), times.user + times.system, rss_mb)
            if self._stop.wait(HOST_POLL_S):
                return

    def _follow(self, container) -> None:
        try:
            for stats in container.stats(stream=True, decode=True):
                now = time.time()
                cpu = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage")
                if not cpu or not stats.get("memory_stats"):
                    continue  # the first frame of a stream, or of a stopping container, is empty
                memory = stats["memory_stats"]
                page_cache = memory.get("stats", {})
                inactive = page_cache.get("total_inactive_file", page_cache.get("inactive_file", 0))
                used_mb = max(memory.get("usage", 0) - inactive, 0) / (1 << 20)
                self._record(container.name, now, cpu / 1e9, used_mb)
                if self._stop.is_set():
                    return
        except Exception:  # the container went away: its readings end here
            return

    def __enter__(self):
        for thread in self._streams:
            thread.start()
        deadline = time.monotonic() + FIRST_SAMPLE_TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                if all(times for times, _ in self.readings.values()):
                    break
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()  # each stream ends at its next reading, or when its container is removed

    def sample(self) -> None:  # the readings arrive by themselves, from the streams
        return None

    def total_cpu_at(self, when: float) -> float:
        """Cumulative CPU-seconds of every container at wall time `when`, each interpolated."""
        total = 0.0
        with self._lock:
            for times, totals in self.readings.values():
                if not times:
                    continue
                index = bisect.bisect_left(times, when)
                if index <= 0:
                    value = totals[0]
                elif index >= len(times):
                    value = totals[-1]
                else:
                    t0, t1, c0, c1 = (
                        times[index - 1],
                        times[index],
                        totals[index - 1],
                        totals[index],
                    )
                    value = c0 + (c1 - c0) * (when - t0) / (t1 - t0) if t1 > t0 else c1
                total += value - totals[0]
        return total


@contextmanager
def deploy(config, architecture: str, log_dir: Path, settings: dict[str, Any]) -> Iterator[tuple]:
    """(deployment, sampler) for one architecture run; everything removed on the way out."""
    settings = {"MODEL_PROFILE": config.profile, **settings}
    try:
        with containers.deploy(
            architecture,
            config.image,
            cpus=config.sut_cpus,
            settings=settings,
            log_dir=log_dir,
            progress=_log,
        ) as deployment:
            # The sampler polls from its own thread: give it its own client (connection pool).
            client = images.docker_client()
            polled = [client.containers.get(c.id) for c in deployment.containers]
            proxies = userland_proxies(deployment.port)
            deployment.notes["userland_proxy"] = (
                f"docker-proxy for port {deployment.port} counted in the CPU"
                if proxies
                else "no docker-proxy process on this host (a remote engine, or --userland-proxy=false): "
                "only the containers' CPU is counted"
            )
            with EngineStatsSampler(polled, proxies) as sampler:
                yield deployment, sampler
    except containers.ContainerError as error:
        raise DockerTargetError(str(error)) from None
