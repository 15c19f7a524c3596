"""Sample CPU time and memory of the system under test, wherever it runs.

Every sampler keeps a series of (wall time, cumulative CPU-seconds of the whole SUT) and, per
process or container or pod, its CPU-seconds and peak memory. A step's CPU is the difference of
two interpolated totals. Subclasses only say how to read one sample:
- `ProcessSampler`: psutil over the supervisor's process trees (gunicorn forks workers);
- `EngineStatsSampler` (`benchmarks.measure.docker_target`): the Docker engine's streamed stats;
- `MetricsServerSampler`: Kubernetes metrics-server, whose CPU figure is a rate averaged over its
  resolution window (15 s by default), so per-step CPU on kind is coarser than locally.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import threading
import time
from dataclasses import dataclass

import psutil

from lab.supervisor import Supervisor


@dataclass
class Usage:
    name: str
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0


class CpuSeries:
    interval_s = 0.2

    def __init__(self) -> None:
        self.usage: dict[str, Usage] = {}
        self.first_cpu: dict[str, float] = {}
        self.times: list[float] = []
        self.totals: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"{type(self).__name__}", daemon=True
        )

    def read(self) -> dict[str, tuple[str, float, float]]:
        """{key: (display name, cumulative CPU-seconds, memory MB)} for every live unit."""
        raise NotImplementedError

    def sample(self) -> None:
        now = time.time()
        for key, (name, cpu, memory_mb) in self.read().items():
            usage = self.usage.setdefault(key, Usage(name))
            # CPU spent before a unit's first sample (imports, model loading) is start-up, not load.
            base = self.first_cpu.setdefault(key, cpu)
            usage.cpu_seconds = max(usage.cpu_seconds, cpu - base)
            usage.peak_rss_mb = max(usage.peak_rss_mb, memory_mb)
        self.times.append(now)
        self.totals.append(sum(u.cpu_seconds for u in self.usage.values()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def total_cpu_at(self, when: float) -> float:
        """Cumulative SUT CPU-seconds at wall time `when`, linearly interpolated."""
        if not self.times:
            return 0.0
        index = bisect.bisect_left(self.times, when)
        if index <= 0:
            return self.totals[0]
        if index >= len(self.times):
            return self.totals[-1]
        t0, t1 = self.times[index - 1], self.times[index]
        c0, c1 = self.totals[index - 1], self.totals[index]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0) if t1 > t0 else c1

    def cpu_between(self, start: float, stop: float) -> float:
        return max(self.total_cpu_at(stop) - self.total_cpu_at(start), 0.0)

    def processes(self) -> list[dict]:
        return [
            {
                "name": u.name,
                "cpu_seconds": round(u.cpu_seconds, 3),
                "peak_rss_mb": round(u.peak_rss_mb, 1),
            }
            for u in sorted(self.usage.values(), key=lambda u: u.name)
        ]


class ProcessSampler(CpuSeries):
    def __init__(self, supervisor: Supervisor):
        super().__init__()
        self.supervisor = supervisor

    def read(self) -> dict[str, tuple[str, float, float]]:
        found = {}
        for managed in list(self.supervisor.processes):
            try:
                root = psutil.Process(managed.pid)
                tree = [(managed.name, root)] + [
                    (f"{managed.name}/worker-{i + 1}", child)
                    for i, child in enumerate(root.children(recursive=True))
                ]
            except psutil.NoSuchProcess:
                continue
            for name, process in tree:
                try:
                    with process.oneshot():
                        times = process.cpu_times()
                        cpu = times.user + times.system
                        rss_mb = process.memory_info().rss / (1 << 20)
                except psutil.NoSuchProcess:
                    continue
                found[str(process.pid)] = (name, cpu, rss_mb)
        return found


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity ("250m", "1", "123456n", "512Mi", "1Gi", "2e3") as a plain number."""
    suffixes = {
        "n": 1e-9,
        "u": 1e-6,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 1 << 10,
        "Mi": 1 << 20,
        "Gi": 1 << 30,
        "Ti": 1 << 40,
    }
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


class MetricsServerSampler(CpuSeries):
    interval_s = 5.0

    def __init__(self, kubectl: list[str], namespace: str):
        super().__init__()
        self.kubectl = kubectl
        self.namespace = namespace
        self.cumulative: dict[str, float] = {}
        self.last_poll: float | None = None

    def read(self) -> dict[str, tuple[str, float, float]]:
        raw = subprocess.run(
            [
                *self.kubectl,
                "get",
                "--raw",
                f"/apis/metrics.k8s.io/v1beta1/namespaces/{self.namespace}/pods",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        now = time.time()
        elapsed = now - self.last_poll if self.last_poll is not None else 0.0
        self.last_poll = now
        if raw.returncode != 0:
            return {}
        found = {}
        for pod in json.loads(raw.stdout).get("items", []):
            name = pod["metadata"]["name"]
            cores = sum(parse_quantity(c["usage"]["cpu"]) for c in pod.get("containers", []))
            memory = sum(parse_quantity(c["usage"]["memory"]) for c in pod.get("containers", []))
            # metrics-server reports a rate: integrate it over the time since the last poll.
            self.cumulative[name] = self.cumulative.get(name, 0.0) + cores * elapsed
            found[name] = (name, self.cumulative[name], memory / (1 << 20))
        return found
