"""Start a set of server processes, wait until they are ready, and always stop all of them.

Used by `make run`, the benchmark, the demo and the tests, so every way of running an
architecture starts and stops it the same way. Guarantees:
- each child gets its own session (a terminal's Ctrl-C reaches only us, and we stop children in
  order) and is told to die with us (PR_SET_PDEATHSIG), so even `kill -9` of the supervisor
  leaves no orphans;
- a Ctrl-C or SIGTERM that lands while a child is being started is raised once the child is on
  the list, so the stop that follows stops it too;
- stop() sends SIGTERM, waits for the grace period, then SIGKILLs the child's whole process group,
  and reaps everything;
- readiness is polled with a deadline; a child that exits while we wait fails fast with the tail
  of its log;
- what happens when a child exits on its own is `lab.watchdog`'s: a restart policy, applied by a
  watchdog, and the foreground loop that turns Ctrl-C and SIGTERM into an orderly stop. A
  process that stops while we are stopping (`Supervisor.stopping`) is never restarted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PR_SET_PDEATHSIG = 1
POLL_INTERVAL_S = 0.05
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StartupError(RuntimeError):
    """A process exited or did not become ready in time."""


@dataclass
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    pass_fds: tuple[int, ...] = ()
    # Returns True once the process is ready; polled until the deadline.
    ready: Callable[[], bool] | None = None


@dataclass
class ManagedProcess:
    spec: ProcessSpec
    popen: subprocess.Popen
    log_path: Path | None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(output went to the terminal)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _child_setup(cpus: frozenset[int] | None) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        # Runs in the child between fork and exec: only async-signal-safe work here.
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


@contextlib.contextmanager
def _stop_signals_deferred():
    """Hold off SIGINT/SIGTERM handlers while the main thread forks a child and records it.

    A handler raising inside Popen (Ctrl-C is a KeyboardInterrupt; `lab.watchdog` raises its own)
    would lose the child Popen had just forked: it never returns it, so stop() would never stop
    it. A signal that arrives meanwhile is raised again once the child is on the list. Masking the
    signals would not do: any other thread can take one, and Python then runs the handler in the
    main thread all the same.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs handlers in the main thread only: none can raise here
        return
    arrived: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda received, _frame: arrived.append(received))
        for signum in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for received in arrived:  # the first whose handler raises ends the loop
            signal.raise_signal(received)


def http_ready(url: str, timeout_s: float = 0.5) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return check


def file_ready(path: Path) -> Callable[[], bool]:
    return path.exists


class Supervisor:
    def __init__(
        self,
        log_dir: Path | None = None,
        cpus: Iterable[int] | None = None,
        base_env: dict[str, str] | None = None,
    ):
        self.stopping = False  # set by stop(): from then on an exit is expected, never restarted
        self.log_dir = log_dir
        self.cpus = frozenset(cpus) if cpus else None
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.processes: list[ManagedProcess] = []
        # Put before every argv started from now on, e.g. `nsenter --net=...` to start servers in a
        # network namespace (lab.netdelay). It must exec the program, not fork and wait, so
        # the pid, signals, CPU pinning and PR_SET_PDEATHSIG all still reach the program itself.
        self.argv_prefix: tuple[str, ...] = ()

    def start(self, spec: ProcessSpec) -> ManagedProcess:
        env = {**self.base_env, **spec.env}
        log_path = None
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{spec.name}.log"
            output = log_path.open("ab")
        try:
            with _stop_signals_deferred():
                popen = subprocess.Popen(
                    [*self.argv_prefix, *spec.argv],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT if output else None,
                    pass_fds=spec.pass_fds,
                    start_new_session=True,
                    preexec_fn=_child_setup(self.cpus),
                )
                managed = ManagedProcess(spec, popen, log_path)
                self.processes.append(managed)
        finally:
            if output:
                output.close()
        return managed

    def wait_ready(self, processes: Sequence[ManagedProcess], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        pending = [p for p in processes if p.spec.ready is not None]
        while pending:
            for process in list(pending):
                if process.popen.poll() is not None:
                    raise StartupError(
                        f"{process.name} exited with code {process.popen.returncode} "
                        f"before it was ready:\n{process.log_tail()}"
                    )
                ready = process.spec.ready
                if ready is None or ready():
                    pending.remove(process)
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(p.name for p in pending)
                raise StartupError(
                    f"not ready after {timeout_s:.0f}s: {names}\n{pending[0].log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def exited(self) -> list[ManagedProcess]:
        return [p for p in self.processes if p.popen.poll() is not None]

    def pids(self) -> list[int]:
        """Every live process we are responsible for, children of children included."""
        pids = []
        for process in self.processes:
            try:
                parent = psutil.Process(process.pid)
                pids.append(parent.pid)
                pids.extend(child.pid for child in parent.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return pids

    def stop_one(self, process: ManagedProcess, grace_s: float = 10.0) -> int:
        """Gracefully stop one child (SIGTERM, then SIGKILL after `grace_s`), forget it, return its code."""
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.popen.wait()
        if process in self.processes:
            self.processes.remove(process)
        return code

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM in reverse start order (entry point first), then SIGKILL whatever is left."""
        self.stopping = True
        live = [p for p in reversed(self.processes) if p.popen.poll() is None]
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(deadline - time.monotonic(), 0.0))
        for process in self.processes:
            # The group catches workers whose master died without taking them along.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.popen.wait()
        self.processes.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def describe_exit(code: int | None) -> str:
    """ "exit code 3", "killed by SIGKILL": how a process ended, from its Popen return code."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
