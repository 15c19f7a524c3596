"""Restart policy and watchdog, on real (tiny) processes and a clock the test moves; a Ctrl-C
that lands while a child is being started."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from lab.supervisor import ProcessSpec, Supervisor, describe_exit
from lab.watchdog import NEVER, RestartPolicy, Watchdog

EXIT_3 = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


class Clock:
    """Starts at the real monotonic time (processes carry theirs), then moves only when told."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def supervisor():
    with Supervisor() as running:
        yield running


def test_an_unknown_policy_names_the_allowed_values():
    with pytest.raises(
        ValueError, match="unknown restart policy 'sometimes'; choose one of: always, never"
    ):
        RestartPolicy("sometimes")
    with pytest.raises(ValueError, match="backoff"):
        RestartPolicy("always", backoff_s=5, max_backoff_s=1)


def test_the_backoff_doubles_up_to_its_cap():
    policy = RestartPolicy("always", backoff_s=0.5, max_backoff_s=4)
    assert [policy.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert not NEVER.restarts and policy.restarts


def test_exits_are_described_by_code_or_signal():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"


def test_a_process_that_keeps_crashing_is_restarted_with_growing_delays(supervisor):
    clock, lines = Clock(), []
    watchdog = Watchdog(
        supervisor,
        RestartPolicy("always", backoff_s=0.5, max_backoff_s=30, reset_after_s=30),
        log=lines.append,
        clock=clock,
    )
    supervisor.start(ProcessSpec("crasher", EXIT_3))
    delays = []
    for _ in range(4):
        supervisor.processes[0].popen.wait()
        assert watchdog.poll() is None
        exit_line = lines[-1]
        delays.append(float(exit_line.rsplit(" in ", 1)[1].split()[0]))
        assert "exit code 3" in exit_line and supervisor.processes == []
        clock.now += delays[-1] - 0.01
        watchdog.poll()
        assert supervisor.processes == []  # not yet due
        clock.now += 0.01
        watchdog.poll()
        assert len(supervisor.processes) == 1 and "crasher restarted" in lines[-1]
        clock.now += 0.1
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert [entry["restart"] for entry in watchdog.history if entry["event"] == "exit"] == [
        1,
        2,
        3,
        4,
    ]


def test_the_backoff_resets_once_a_process_stayed_up(supervisor):
    clock, lines = Clock(), []
    watchdog = Watchdog(
        supervisor,
        RestartPolicy("always", backoff_s=1, max_backoff_s=30, reset_after_s=10),
        log=lines.append,
        clock=clock,
    )
    for _ in range(3):  # three quick crashes: 1, 2, 4 s
        process = (
            supervisor.start(ProcessSpec("sleeper", SLEEPER))
            if not supervisor.processes
            else supervisor.processes[0]
        )
        watchdog.poll()
        process.popen.kill()
        process.popen.wait()
        watchdog.poll()
        clock.now += 60  # due, but the 60 s count from the exit: the replacement starts now
        watchdog.poll()
    assert "restart #3 in 4.0 s" in "\n".join(lines)
    clock.now += 11  # the replacement has been up longer than reset_after_s
    process = supervisor.processes[0]
    process.popen.kill()
    process.popen.wait()
    watchdog.poll()
    assert "restart #1 in 1.0 s" in lines[-1] and "killed by SIGKILL" in lines[-1]


def test_the_readiness_of_a_replacement_is_reported(supervisor, tmp_path):
    clock, lines = Clock(), []
    marker = tmp_path / "ready"
    spec = ProcessSpec("stage", SLEEPER, ready=marker.exists)
    watchdog = Watchdog(
        supervisor, RestartPolicy("always", backoff_s=0), log=lines.append, clock=clock
    )
    process = supervisor.start(spec)
    watchdog.poll()
    process.popen.kill()
    process.popen.wait()
    watchdog.poll()
    watchdog.poll()
    assert watchdog.pending() == ["stage"]
    marker.touch()
    clock.now += 2.5
    watchdog.poll()
    assert "stage ready again" in lines[-1] and "2.5 s after it went down" in lines[-1]
    assert watchdog.pending() == []


def test_never_hands_the_exit_back_and_a_stopping_supervisor_restarts_nothing(supervisor):
    process = supervisor.start(ProcessSpec("crasher", EXIT_3))
    process.popen.wait()
    assert Watchdog(supervisor, NEVER, log=lambda _: None).poll() is process
    always = Watchdog(supervisor, RestartPolicy("always", backoff_s=0), log=lambda _: None)
    supervisor.stop()
    supervisor.start(ProcessSpec("crasher", EXIT_3)).popen.wait()
    assert always.poll() is None and always.history == []


def test_respawn_none_hands_the_exit_back_to_the_caller(supervisor):
    entry = supervisor.start(ProcessSpec("gunicorn-gateway", EXIT_3))
    entry.popen.wait()
    watchdog = Watchdog(
        supervisor, RestartPolicy("always"), respawn=lambda process: None, log=lambda _: None
    )
    assert watchdog.poll() is entry


# Starts children while another thread sends SIGINT at a random moment of each start, as Ctrl-C
# does; prints how many starts the signal interrupted and how many children nobody tracks.
CTRL_C_DURING_STARTS = """
import os, random, signal, sys, threading, time
import psutil
from lab.supervisor import ProcessSpec, Supervisor
from lab.watchdog import StopRequested, StopSignals

StopSignals()
supervisor = Supervisor()
fire = threading.Event()

def shoot():
    while True:
        fire.wait()
        fire.clear()
        time.sleep(random.uniform(0, 0.003))
        os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=shoot, daemon=True).start()
interrupted_starts = 0
for index in range(int(sys.argv[1])):
    returned = False
    try:
        fire.set()
        supervisor.start(ProcessSpec(f"sleeper{index}", ["sleep", "60"]))
        returned = True
        while True:
            time.sleep(0.001)
    except StopRequested:
        interrupted_starts += not returned
tracked = {process.pid for process in supervisor.processes}
untracked = [child for child in psutil.Process().children() if child.pid not in tracked]
print(len(tracked), interrupted_starts, len(untracked))
for child in untracked:
    child.kill()
supervisor.stop(grace_s=1)
"""


def test_a_ctrl_c_during_a_start_leaves_the_child_tracked():
    """Popen raising the signal's exception lost the child it had forked (239 of 300 here)."""
    starts = 200
    result = subprocess.run(
        [sys.executable, "-c", CTRL_C_DURING_STARTS, str(starts)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    tracked, interrupted_starts, untracked = map(int, result.stdout.split())
    assert interrupted_starts > 0  # the signal did land inside starts
    assert (tracked, untracked) == (starts, 0)
