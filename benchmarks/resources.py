"""Sample CPU time and resident memory of every process of the system under test.

A background thread walks the supervisor's process trees (gunicorn forks workers, so the set
changes) a few times a second. CPU is cumulative per process, so a window's CPU-seconds are the
difference of two interpolated totals; peak RSS is the highest sample seen.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass

import psutil

from servinglab.supervisor import Supervisor

SAMPLE_INTERVAL_S = 0.2


@dataclass
class ProcessUsage:
    name: str
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0


class ResourceSampler:
    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor
        self.usage: dict[int, ProcessUsage] = {}
        self.first_cpu: dict[int, float] = {}
        self.times: list[float] = []
        self.totals: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)

    def _processes(self) -> list[tuple[str, psutil.Process]]:
        found = []
        for managed in list(self.supervisor.processes):
            try:
                root = psutil.Process(managed.pid)
                found.append((managed.name, root))
                for index, child in enumerate(root.children(recursive=True)):
                    found.append((f"{managed.name}/worker-{index + 1}", child))
            except psutil.NoSuchProcess:
                continue
        return found

    def sample(self) -> None:
        now = time.time()
        for name, process in self._processes():
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu = times.user + times.system
                    rss_mb = process.memory_info().rss / (1 << 20)
            except psutil.NoSuchProcess:
                continue
            usage = self.usage.setdefault(process.pid, ProcessUsage(name))
            # CPU spent before the first sample (imports, model loading) is start-up, not load.
            base = self.first_cpu.setdefault(process.pid, cpu)
            usage.cpu_seconds = cpu - base
            usage.peak_rss_mb = max(usage.peak_rss_mb, rss_mb)
        self.times.append(now)
        self.totals.append(sum(u.cpu_seconds for u in self.usage.values()))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def __enter__(self) -> "ResourceSampler":
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
        return [{"name": u.name, "cpu_seconds": round(u.cpu_seconds, 3), "peak_rss_mb": round(u.peak_rss_mb, 1)}
                for u in sorted(self.usage.values(), key=lambda u: u.name)]
