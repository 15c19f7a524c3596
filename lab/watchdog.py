"""What happens when a supervised process exits on its own, and how a foreground command stops.

- `RestartPolicy`: `never` stops everything (the benchmark, `make chaos`, the tests: a crash must
  fail the run); `always` starts the process again with exponential backoff, like Kubernetes'
  restartPolicy Always and its CrashLoopBackOff (`make run`, `make demo`).
- `Watchdog` applies a policy to the processes of one `lab.supervisor.Supervisor`; a process that
  stops while the supervisor is stopping is never restarted.
- `StopSignals` and `run_in_foreground` turn Ctrl-C and SIGTERM into `StopRequested`, so every
  foreground command (`make run`, `make bench`, `make chaos`, ...) stops all it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lab.supervisor import (
    ManagedProcess,
    ProcessSpec,
    StartupError,
    Supervisor,
    describe_exit,
)

RESTART_POLICIES = ("always", "never")
WATCH_INTERVAL_S = 0.1  # how often a foreground command looks for exited processes


@dataclass(frozen=True)
class RestartPolicy:
    """What to do when a process exits on its own.

    `never`: nothing; the caller stops everything (fail fast). `always`: start it again after a
    delay that doubles with every consecutive restart, from `backoff_s` up to `max_backoff_s`,
    and starts again from `backoff_s` once the process has stayed up `reset_after_s` (Kubernetes:
    10 s doubling to 5 min, reset after 10 min; shorter here, for a lab on one machine). A process
    that crashes at start-up is therefore retried with growing delays, not spun on.
    """

    name: str = "never"
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    reset_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.name not in RESTART_POLICIES:
            raise ValueError(
                f"unknown restart policy {self.name!r}; choose one of: {', '.join(RESTART_POLICIES)}"
            )
        if self.backoff_s < 0 or self.max_backoff_s < self.backoff_s or self.reset_after_s < 0:
            raise ValueError(
                f"restart backoff must satisfy 0 <= backoff ({self.backoff_s}) <= max backoff "
                f"({self.max_backoff_s}), and the reset time ({self.reset_after_s}) must be >= 0"
            )

    @property
    def restarts(self) -> bool:
        return self.name == "always"

    def delay(self, restarts_so_far: int) -> float:
        """Seconds to wait before restart number `restarts_so_far + 1` of a crash loop."""
        return min(self.backoff_s * 2 ** min(restarts_so_far, 32), self.max_backoff_s)


NEVER = RestartPolicy("never")


def _log(message: str) -> None:
    print(f"[supervisor] {message}", file=sys.stderr, flush=True)


@dataclass
class _Slot:
    """One supervised process across its restarts."""

    process: ManagedProcess
    started: float
    restarts: int = 0  # consecutive ones: reset once the process stays up a while
    spec: ProcessSpec | None = None  # what to start when a restart is due
    due: float | None = None  # when the pending restart starts
    down_since: float | None = None  # the last exit, until the replacement is ready
    ready_was_seen: bool = True


class Watchdog:
    """Applies a `RestartPolicy` to the processes of one supervisor; the caller calls `poll()` often.

    `respawn(process)` gives the spec to start in place of an exited process (default: the same
    spec) or None when restarting that process alone is not enough (e.g. the HTTP entry point: the
    caller then restarts the whole architecture). `on_restart(old, new)` is told of every
    replacement, so whoever holds the old handle (a Deployment's replica) can update it.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        policy: RestartPolicy = NEVER,
        respawn: Callable[[ManagedProcess], ProcessSpec | None] | None = None,
        on_restart: Callable[[ManagedProcess, ManagedProcess], None] | None = None,
        log: Callable[[str], None] = _log,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.supervisor = supervisor
        self.policy = policy
        self.respawn = respawn or (lambda process: process.spec)
        self.on_restart = on_restart
        self.log = log
        self.clock = clock
        self.slots: dict[str, _Slot] = {}
        self.history: list[dict] = []  # every exit and restart, for whoever wants to report them

    def _slot(self, process: ManagedProcess, now: float) -> _Slot:
        slot = self.slots.get(process.name)
        if slot is None:
            slot = self.slots[process.name] = _Slot(process, min(now, process.started_at))
        elif slot.process is not process and slot.due is None:
            # Someone else replaced it (a rolling restart, make chaos): follow the new process.
            slot.process, slot.ready_was_seen, slot.down_since = process, True, None
            slot.started = min(now, process.started_at)
        return slot

    def poll(self) -> ManagedProcess | None:
        """Handle what happened since the last call; return an exited process this policy does not restart."""
        if self.supervisor.stopping:
            return None
        now = self.clock()
        for process in list(self.supervisor.processes):
            slot = self._slot(process, now)
            code = process.popen.poll()
            if code is None:
                if not slot.ready_was_seen and (process.spec.ready is None or process.spec.ready()):
                    slot.ready_was_seen = True
                    self.log(
                        f"{process.name} ready again (pid {process.pid}), "
                        f"{now - (slot.down_since or slot.started):.1f} s after it went down"
                    )
                    self.history.append(
                        {"event": "ready", "name": process.name, "pid": process.pid, "at": now}
                    )
                    slot.down_since = None
                continue
            spec = self.respawn(process) if self.policy.restarts else None
            if spec is None:
                return process
            uptime = now - slot.started
            if uptime >= self.policy.reset_after_s:
                slot.restarts = 0
            delay = self.policy.delay(slot.restarts)
            slot.restarts += 1
            slot.spec, slot.due = spec, now + delay
            if (
                slot.down_since is None
            ):  # the first exit of a crash loop: down until a replacement is ready
                slot.down_since = now
            when = "before it was ready" if not slot.ready_was_seen else f"after {uptime:.1f} s up"
            self.log(
                f"{process.name} (pid {process.pid}) {describe_exit(code)} {when}; "
                f"restart #{slot.restarts} in {delay:.1f} s"
            )
            self.history.append(
                {
                    "event": "exit",
                    "name": process.name,
                    "pid": process.pid,
                    "code": code,
                    "at": now,
                    "delay_s": delay,
                    "restart": slot.restarts,
                }
            )
            self.supervisor.processes.remove(process)
            # Anything the process left in its group goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        for name, slot in self.slots.items():
            if slot.due is not None and slot.spec is not None and now >= slot.due:
                old, slot.due = slot.process, None
                new = self.supervisor.start(slot.spec)
                slot.process, slot.started, slot.ready_was_seen = new, self.clock(), False
                self.log(f"{name} restarted (pid {new.pid}, restart #{slot.restarts})")
                self.history.append(
                    {
                        "event": "restart",
                        "name": name,
                        "pid": new.pid,
                        "at": slot.started,
                        "restart": slot.restarts,
                    }
                )
                if self.on_restart is not None:
                    self.on_restart(old, new)
        return None

    def pending(self) -> list[str]:
        """Names of processes that are down, waiting for their restart or for readiness."""
        return [
            name
            for name, slot in self.slots.items()
            if slot.due is not None or not slot.ready_was_seen
        ]


class StopRequested(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived. A BaseException, so no library's `except Exception` eats it."""


class StopSignals:
    """Turn SIGINT and SIGTERM into `StopRequested`, for commands that run in the foreground.

    Handlers are installed explicitly because a process started in the background by a
    non-interactive shell inherits SIGINT as *ignored*. The handler also sets a flag: an exception
    raised while Python runs fork hooks (every Popen) is printed and dropped, so long waits call
    `check()` at safe points.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.requested.set()
        raise StopRequested(signal.Signals(signum).name)

    def check(self) -> None:
        if self.requested.is_set():
            raise StopRequested("stop requested")

    def serve(self, *supervisors: Supervisor) -> int:
        """Wait until a signal (raises StopRequested) or until any process exits (returns 1)."""
        exited = self.watch(*(Watchdog(supervisor, NEVER) for supervisor in supervisors))
        print(
            f"{exited.name} exited unexpectedly ({describe_exit(exited.popen.returncode)}); stopping",
            file=sys.stderr,
            flush=True,
        )
        return 1

    def watch(self, *watchdogs: Watchdog) -> ManagedProcess:
        """Poll the watchdogs until a signal (raises StopRequested) or an exit none of them handles (returned)."""
        while True:
            for watchdog in watchdogs:
                self.check()  # before anything is (re)started: a stop always wins
                exited = watchdog.poll()
                if exited is not None:
                    return exited
            if self.requested.wait(WATCH_INTERVAL_S):
                self.check()


def run_in_foreground(body: Callable[[StopSignals], int]) -> int:
    """Exit code of a foreground command: `body`'s own, 0 after Ctrl-C/SIGTERM, 1 if start-up failed."""
    stop = StopSignals()
    try:
        return body(stop)
    except StopRequested as reason:
        print(f"received {reason}; stopped every process", flush=True)
        return 0
    except StartupError as error:
        print(f"start-up failed: {error}", file=sys.stderr)
        return 1
