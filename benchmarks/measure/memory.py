"""Memory of every process of a deployment: RSS, PSS and USS, summed without counting twice.

RSS counts every page a process maps, so pages shared between processes (a model loaded before
gunicorn forks its workers, the interpreter's libraries) are counted once per process and a sum of
RSS overstates what a deployment holds. PSS (proportional set size) charges each shared page to
its sharers in equal parts, so the PSS of the processes of a deployment adds up to the memory it
occupies; USS (unique set size: private pages) is what stopping one process would free.

Figures come from the kernel's `/proc/<pid>/smaps_rollup` (one read per process, Linux 4.14+), or
psutil's `memory_full_info` where that file is missing. A caveat of PSS: pages of shared
libraries are also divided with processes outside the deployment that map the same files (other
Python processes of this virtualenv), so a deployment's PSS is, if anything, slightly low;
anonymous memory, where a model lives, is shared only between a process and its forks.

    snapshot = deployment_memory(deployment.supervisor)
    snapshot.total.pss_mib, snapshot.by_group()["gunicorn-monolith"].pss_mib

    # A whole deployment at rest: started, every gunicorn worker loaded, warmed up, sampled.
    snapshot = measure_deployment("monolith", settings={"HTTP_WORKERS": 4}, preload=True)
    pss_by_role("microservices", settings={...})  # {"gateway": MiB, "inference": MiB, ...}
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from lab.launch import Deployment, launch
from lab.run import EXAMPLE
from lab.supervisor import Supervisor
from servinglab import config

MIB = 1 << 20
# Linux 4.14+; elsewhere psutil reads the full smaps (slower) or the platform's own figures.
HAVE_ROLLUP = Path("/proc/self/smaps_rollup").exists()
# smaps_rollup fields (kB) -> Memory attribute; USS is the sum of the two private ones.
_ROLLUP_FIELDS = {
    "Rss": "rss",
    "Pss": "pss",
    "Pss_Anon": "pss_anon",
    "Pss_File": "pss_file",
    "Private_Clean": "private_clean",
    "Private_Dirty": "private_dirty",
    "Swap": "swap",
}


class MemoryReadError(RuntimeError):
    """A process's memory could not be read (it exited, or its /proc entry is not ours)."""


@dataclass(frozen=True)
class Memory:
    """Memory figures in bytes; adding two adds every figure (PSS adds up, RSS overcounts)."""

    rss: int = 0
    pss: int = 0
    uss: int = 0
    pss_anon: int = 0  # heap, numpy arrays, a model: shared only with forks
    pss_file: int = 0  # code and libraries mapped from files
    swap: int = 0

    def __add__(self, other: Memory) -> Memory:
        return Memory(
            self.rss + other.rss,
            self.pss + other.pss,
            self.uss + other.uss,
            self.pss_anon + other.pss_anon,
            self.pss_file + other.pss_file,
            self.swap + other.swap,
        )

    @property
    def rss_mib(self) -> float:
        return self.rss / MIB

    @property
    def pss_mib(self) -> float:
        return self.pss / MIB

    @property
    def uss_mib(self) -> float:
        return self.uss / MIB

    def as_dict(self) -> dict[str, float]:
        """MiB, rounded: for results files."""
        return {
            "rss_mib": round(self.rss / MIB, 2),
            "pss_mib": round(self.pss / MIB, 2),
            "uss_mib": round(self.uss / MIB, 2),
            "pss_anon_mib": round(self.pss_anon / MIB, 2),
            "pss_file_mib": round(self.pss_file / MIB, 2),
            "swap_mib": round(self.swap / MIB, 2),
        }


def _from_rollup(text: str) -> Memory:
    values = dict.fromkeys(_ROLLUP_FIELDS.values(), 0)
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        attribute = _ROLLUP_FIELDS.get(key)
        if attribute is not None:
            values[attribute] = int(rest.split()[0]) * 1024
    return Memory(
        rss=values["rss"],
        pss=values["pss"],
        uss=values["private_clean"] + values["private_dirty"],
        pss_anon=values["pss_anon"],
        pss_file=values["pss_file"],
        swap=values["swap"],
    )


def read_memory(pid: int) -> Memory:
    """RSS, PSS and USS of one process, from smaps_rollup (or psutil where it is missing)."""
    if HAVE_ROLLUP:
        try:
            return _from_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
        except (FileNotFoundError, ProcessLookupError):
            raise MemoryReadError(f"process {pid} has exited") from None
        except PermissionError as error:
            raise MemoryReadError(f"cannot read the memory of process {pid}: {error}") from None
    try:
        info = psutil.Process(pid).memory_full_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied) as error:
        raise MemoryReadError(f"cannot read the memory of process {pid}: {error}") from None
    return Memory(
        rss=info.rss,
        pss=getattr(info, "pss", info.uss),
        uss=info.uss,
        swap=getattr(info, "swap", 0),
    )


@dataclass(frozen=True)
class ProcessMemory:
    """One process: `group` is the supervised process it belongs to (a gunicorn master and its
    workers share the master's group), `name` the process itself."""

    group: str
    name: str
    pid: int
    memory: Memory

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "name": self.name, "pid": self.pid, **self.memory.as_dict()}


@dataclass(frozen=True)
class MemorySnapshot:
    """Every process of a deployment at one moment."""

    processes: tuple[ProcessMemory, ...]
    taken_at: float = field(default_factory=time.time)

    @property
    def total(self) -> Memory:
        """The deployment: PSS adds up to what it holds; RSS counts shared pages per process."""
        return sum((process.memory for process in self.processes), Memory())

    def by_group(self) -> dict[str, Memory]:
        """Per supervised process (a gunicorn master with its workers, one gRPC service)."""
        groups: dict[str, Memory] = {}
        for process in self.processes:
            groups[process.group] = groups.get(process.group, Memory()) + process.memory
        return groups

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "total": self.total.as_dict(),
            "groups": {name: memory.as_dict() for name, memory in self.by_group().items()},
            "processes": [process.as_dict() for process in self.processes],
        }


def process_memory(
    roots: Iterable[tuple[str, int]] | Mapping[str, int], children: bool = True
) -> MemorySnapshot:
    """Memory of each (name, pid) in `roots` and, with `children`, of every descendant (named
    `<name>/child-<n>`). A process that exits while being read is left out: the snapshot is of
    the processes alive at that moment."""
    pairs = roots.items() if isinstance(roots, Mapping) else roots
    found: list[ProcessMemory] = []
    for group, pid in pairs:
        tree: list[tuple[str, int]] = [(group, pid)]
        if children:
            try:
                descendants = psutil.Process(pid).children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            tree += [(f"{group}/child-{i + 1}", child.pid) for i, child in enumerate(descendants)]
        for name, member in tree:
            try:
                found.append(ProcessMemory(group, name, member, read_memory(member)))
            except MemoryReadError:
                continue
    return MemorySnapshot(tuple(found))


def deployment_memory(supervisor: Supervisor) -> MemorySnapshot:
    """Every process a supervisor started and their descendants (gunicorn's workers)."""
    return process_memory([(managed.name, managed.pid) for managed in supervisor.processes])


# "gunicorn-monolith" -> monolith, "inference-1" -> inference: a supervised process is one replica
# of its role (a gunicorn master with its workers is one pod).
_FIGURES = ("rss", "pss", "uss", "pss_anon", "pss_file", "swap")
_ROLE = re.compile(r"^(?:gunicorn-)?(?P<role>.+?)(?:-\d+)?$")


def role_of(group: str) -> str:
    match = _ROLE.match(group)
    return match.group("role") if match else group


def per_replica(snapshot: MemorySnapshot) -> dict[str, Memory]:
    """Each role's memory per replica: the mean over its supervised processes (and their
    children), as a Kubernetes memory request per pod would be sized."""
    totals: dict[str, Memory] = {}
    counts: dict[str, int] = {}
    for group, memory in snapshot.by_group().items():
        role = role_of(group)
        totals[role] = totals.get(role, Memory()) + memory
        counts[role] = counts.get(role, 0) + 1
    return {
        role: Memory(*(int(getattr(memory, name) / counts[role]) for name in _FIGURES))
        for role, memory in totals.items()
    }


def wait_for_workers(
    deployment: Deployment, count: int, timeout_s: float, check_stop: Callable[[], None]
) -> list[int]:
    """Poll until the HTTP entry runs `count` workers that have all loaded the app (their
    `post_worker_init` marker): /readyz answers as soon as the first one has."""
    ready_dir = deployment.run_dir / "ready"
    deadline = time.monotonic() + timeout_s
    while True:
        workers = deployment.entry_workers()
        if len(workers) == count and all((ready_dir / str(pid)).exists() for pid in workers):
            return workers
        check_stop()
        if deployment.entry.popen.poll() is not None:
            raise RuntimeError(f"{deployment.entry.name} exited while its workers started")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{deployment.entry.name}: {len(workers)} of {count} workers loaded after "
                f"{timeout_s:.0f} s"
            )
        time.sleep(0.1)


def warm_up(url: str, requests_count: int, timeout_s: float = 120.0) -> None:
    """`requests_count` answered predictions, each on a new connection so that the kernel spreads
    them over the workers: memory is sampled after serving, as it would be in service. A request
    shed as overloaded (503, a busy machine) is sent again, until `timeout_s`."""
    body = {"instances": [EXAMPLE]}
    answered = 0
    deadline = time.monotonic() + timeout_s
    while answered < requests_count:
        response = requests.post(f"{url}/v1/predict", json=body, timeout=30)
        if response.status_code == 200:
            answered += 1
        elif response.status_code != 503 or time.monotonic() > deadline:
            raise RuntimeError(
                f"warm-up request answered {response.status_code}: {response.text[:200]}"
            )
        else:
            time.sleep(0.2)  # shed: give the workers a moment, as Retry-After asks


def measure_deployment(
    architecture: str,
    *,
    settings: Mapping[str, Any] | None = None,
    cpus: Iterable[int] | None = None,
    log_dir: Path | None = None,
    replicas: Mapping[str, int] | None = None,
    preload: bool = False,
    warmup_requests: int = 20,
    check_stop: Callable[[], None] = lambda: None,
    ready_timeout_s: float = 180.0,
) -> MemorySnapshot:
    """Start `architecture`, wait until every gunicorn worker has loaded the app, serve
    `warmup_requests`, and sample the memory of every process; everything is stopped after.
    `preload`: gunicorn loads the app (and the model) once in its master before forking the
    workers, which then share those pages copy-on-write."""
    workers = config.load(overrides=settings).http_workers
    with launch(
        architecture,
        settings={**(settings or {}), "HTTP_PRELOAD": preload},
        cpus=cpus,
        log_dir=log_dir,
        replicas=replicas,
        ready_timeout_s=ready_timeout_s,
    ) as deployment:
        wait_for_workers(deployment, workers, ready_timeout_s, check_stop)
        warm_up(deployment.url, warmup_requests)
        check_stop()
        return deployment_memory(deployment.supervisor)


def pss_by_role(architecture: str, **options: Any) -> dict[str, float]:
    """PSS in MiB per replica of each role of `architecture` (options: as `measure_deployment`)."""
    snapshot = measure_deployment(architecture, **options)
    return {role: round(memory.pss_mib, 1) for role, memory in per_replica(snapshot).items()}
