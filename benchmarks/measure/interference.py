"""Did other work share the benchmark's CPUs? Per-CPU busy time minus what our own processes used.

A benchmark pins the system under test to SUT_CPUS and Locust to LOADGEN_CPUS, but nothing stops
another program (a test suite, a build, a browser) from running there too, and a VM's hypervisor
can take the CPU away (steal time). Either makes a step slower than the servers are. Here:

- `read_cpu_times` parses ``/proc/stat`` (per-CPU ticks: user, nice, system, idle, iowait, irq,
  softirq, steal, ...); busy = user + nice + system + irq + softirq (guest time is already in
  user and nice), steal apart;
- `own_cpu_seconds` adds up what a set of process trees used, reaped children included (Locust
  exits at the end of its step and its CPU moves into its parent's counters);
- `StepWatch` takes both before and after a step: the CPU time the SUT CPUs were busy beyond the
  SUT's own processes, and the load generator's CPUs beyond Locust and this harness, as a share
  of those CPUs' time, and their steal. This harness (the bench's own process and its sampler
  threads) is not pinned; where it ran is unknown, so its CPU comes off the load generator's
  remainder first, then the SUT's: the benefit of the doubt goes to the run;
- a step is **disturbed** when others took more than `DISTURBED_PERCENT` of either group's CPUs,
  or steal took more than `STEAL_PERCENT`;
- `idle_check` samples the CPUs for about a second before a run: `make bench` warns when they
  are already busy.

Only the local target runs its servers as our own processes; in containers or on kind the SUT
is not our process tree and this accounting does not apply.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.measure.resources import CpuSeries, ProcessSampler

PROC_STAT = Path("/proc/stat")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
DISTURBED_PERCENT = 5.0  # others' share of a CPU group above which a step is disturbed
STEAL_PERCENT = 5.0  # hypervisor steal above which a step is disturbed
IDLE_CHECK_SECONDS = 1.0

BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")
FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class CpuTimes:
    """One CPU's cumulative time in seconds, from one ``/proc/stat`` line."""

    busy: float
    steal: float
    total: float  # every field but guest (counted in user already): the CPU's wall time


def read_cpu_times(text: str) -> dict[int, CpuTimes]:
    """Per-CPU times from the text of ``/proc/stat`` (the ``cpuN`` lines; not the ``cpu`` sum)."""
    found = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = dict(zip(FIELDS, (int(value) for value in rest.split()), strict=False))
        seconds = {key: ticks.get(key, 0) / TICKS_PER_SECOND for key in FIELDS}
        found[int(name[3:])] = CpuTimes(
            sum(seconds[key] for key in BUSY_FIELDS), seconds["steal"], sum(seconds.values())
        )
    return found


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _seconds(processes: Iterable[psutil.Process]) -> float:
    """CPU-seconds of `processes`, with the children each has reaped."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def own_cpu_seconds(sut_pids: Iterable[int]) -> tuple[float, float]:
    """(CPU-seconds of the SUT's process trees, of this harness: this process, its reaped
    children and every live descendant outside the SUT trees)."""
    sut: dict[int, psutil.Process] = {}
    for pid in sut_pids:
        try:
            sut.update((member.pid, member) for member in _tree(psutil.Process(pid)))
        except psutil.NoSuchProcess:
            continue
    harness = [member for member in _tree(psutil.Process()) if member.pid not in sut]
    return _seconds(sut.values()), _seconds(harness)


@dataclass(frozen=True)
class Snapshot:
    """Everything one side of a step needs: the CPUs' times and our own processes' CPU."""

    cpus: Mapping[int, CpuTimes]
    sut_seconds: float
    harness_seconds: float


def snapshot(sut_pids: Iterable[int], stat_path: Path = PROC_STAT) -> Snapshot:
    sut, harness = own_cpu_seconds(sut_pids)
    return Snapshot(read_cpu_times(stat_path.read_text()), sut, harness)


@dataclass(frozen=True)
class Interference:
    """What others took of the benchmark's CPUs during one step (results.json ``interference``):
    percentages of the group's CPU time (100 = every CPU of the group, the whole step)."""

    sut_others_percent: float
    loadgen_others_percent: float
    steal_percent: float
    disturbed: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _group(before: Snapshot, after: Snapshot, cpus: Sequence[int]) -> tuple[float, float, float]:
    """(busy, steal, wall) CPU-seconds of a group of CPUs between two snapshots."""
    busy = steal = wall = 0.0
    for cpu in cpus:
        if cpu in before.cpus and cpu in after.cpus:
            busy += after.cpus[cpu].busy - before.cpus[cpu].busy
            steal += after.cpus[cpu].steal - before.cpus[cpu].steal
            wall += after.cpus[cpu].total - before.cpus[cpu].total
    return busy, steal, wall


def _percent(part: float, whole: float) -> float:
    return round(100.0 * max(part, 0.0) / whole, 1) if whole > 0 else 0.0


def interference(
    before: Snapshot,
    after: Snapshot,
    sut_cpus: Sequence[int],
    loadgen_cpus: Sequence[int],
    disturbed_percent: float = DISTURBED_PERCENT,
    steal_percent: float = STEAL_PERCENT,
) -> Interference:
    """What other work took of the SUT's and the load generator's CPUs between two snapshots.

    CPUs in both groups (an overlapping configuration) count once, with the SUT's."""
    loadgen_only = [cpu for cpu in loadgen_cpus if cpu not in sut_cpus]
    sut_busy, sut_steal, sut_wall = _group(before, after, sut_cpus)
    lg_busy, lg_steal, lg_wall = _group(before, after, loadgen_only)
    sut_own = after.sut_seconds - before.sut_seconds
    harness = after.harness_seconds - before.harness_seconds
    lg_others = lg_busy - harness
    # Harness time the load generator's CPUs cannot account for ran on the SUT's.
    sut_others = sut_busy - sut_own - max(-lg_others, 0.0)
    steal = _percent(sut_steal + lg_steal, sut_wall + lg_wall)
    sut_percent, lg_percent = _percent(sut_others, sut_wall), _percent(lg_others, lg_wall)
    return Interference(
        sut_others_percent=sut_percent,
        loadgen_others_percent=lg_percent,
        steal_percent=steal,
        disturbed=max(sut_percent, lg_percent) > disturbed_percent or steal > steal_percent,
    )


def local_sut_pids(sampler: CpuSeries) -> list[int] | None:
    """The SUT's root pids when it runs as our own processes (the local target), else None."""
    if not isinstance(sampler, ProcessSampler) or not available():
        return None
    return [managed.pid for managed in sampler.supervisor.processes]


class StepWatch:
    """``with StepWatch(...) as watch: <run the step>``, then ``watch.result`` (None when
    `sut_pids` is None: the SUT is not our processes, nothing to subtract)."""

    def __init__(
        self,
        sut_cpus: Sequence[int],
        loadgen_cpus: Sequence[int],
        sut_pids: Iterable[int] | None,
        stat_path: Path = PROC_STAT,
    ):
        self.sut_cpus, self.loadgen_cpus = list(sut_cpus), list(loadgen_cpus)
        self.sut_pids = None if sut_pids is None else list(sut_pids)
        self.stat_path = stat_path
        self.result: Interference | None = None
        self._before: Snapshot | None = None

    def __enter__(self) -> StepWatch:
        if self.sut_pids is not None:
            self._before = snapshot(self.sut_pids, self.stat_path)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._before is not None and self.sut_pids is not None and exc_info[0] is None:
            after = snapshot(self.sut_pids, self.stat_path)
            self.result = interference(self._before, after, self.sut_cpus, self.loadgen_cpus)


def available(stat_path: Path = PROC_STAT) -> bool:
    """Whether this machine has per-CPU times to read (Linux)."""
    try:
        return bool(read_cpu_times(stat_path.read_text()))
    except OSError:
        return False


def idle_check(
    sut_cpus: Sequence[int],
    loadgen_cpus: Sequence[int],
    seconds: float = IDLE_CHECK_SECONDS,
    stat_path: Path = PROC_STAT,
) -> Interference:
    """Sample the CPUs for `seconds` before anything of ours runs on them."""
    before = snapshot((), stat_path)
    time.sleep(seconds)  # a measurement interval, not a wait for anything
    return interference(before, snapshot((), stat_path), sut_cpus, loadgen_cpus)


def disturbed_warning(
    check: Interference, sut_cpus: Sequence[int], loadgen_cpus: Sequence[int]
) -> str:
    """The warning `make bench` prints before it starts when `check` found the CPUs busy."""
    return (
        f"warning: the benchmark's CPUs are already busy with other work (SUT CPUs "
        f"{list(sut_cpus)}: {check.sut_others_percent:g}% busy, load-generator CPUs "
        f"{list(loadgen_cpus)}: {check.loadgen_others_percent:g}%, steal "
        f"{check.steal_percent:g}%); steps will be flagged as disturbed and the capacities will "
        f"read low. Stop the other work, or expect a disturbed run."
    )


def step_note(result: Interference | None) -> str:
    """What a step's progress line adds when the step was disturbed."""
    if result is None or not result.disturbed:
        return ""
    return (
        f", DISTURBED (others {result.sut_others_percent:g}% of SUT CPUs, "
        f"{result.loadgen_others_percent:g}% of load-generator CPUs, steal {result.steal_percent:g}%)"
    )


def run_record(before_run: Interference | None) -> dict[str, Any]:
    """results.json ``run.interference``: the thresholds and the check before the run."""
    return {
        "disturbed_percent": DISTURBED_PERCENT,
        "steal_percent": STEAL_PERCENT,
        "before_run": None if before_run is None else before_run.as_dict(),
    }


def before_run_check(
    target: str, sut_cpus: Sequence[int], loadgen_cpus: Sequence[int]
) -> Interference | None:
    """`idle_check` of a local run's CPUs (None elsewhere, or without /proc/stat)."""
    if target != "local" or not available():
        return None
    return idle_check(sut_cpus, loadgen_cpus)
