"""servinglab.serving.shutdown: a stop signal that the kernel hands to another thread still ends
the main thread's wait (a bare Event.wait() slept through it: a stage kept serving after SIGTERM)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The signal goes to a helper thread, once the main thread is asleep inside `wait()`: Python's
# handler can then run only if the wait returns to the interpreter by itself.
SCRIPT = textwrap.dedent("""
    import signal, threading, time
    from servinglab.serving.shutdown import StopSignal

    stop = StopSignal()
    waiting = threading.Event()
    main_task = f"/proc/self/task/{threading.get_native_id()}/stat"

    def asleep() -> bool:
        with open(main_task) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "S"

    def signal_this_thread():
        waiting.wait()
        deadline = time.monotonic() + 10
        while not asleep() and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(threading.get_ident(), signal.{name})

    threading.Thread(target=signal_this_thread, daemon=True).start()
    waiting.set()
    print(stop.wait(), flush=True)
""")


def _caught(name: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("{name}", name)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def test_a_sigterm_delivered_to_another_thread_ends_the_wait():
    assert _caught("SIGTERM") == "SIGTERM"


def test_sigint_stops_too_and_is_named():
    assert _caught("SIGINT") == "SIGINT"
