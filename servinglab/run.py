"""`make run ARCH=...`: start an architecture in the foreground until Ctrl-C or SIGTERM.

Signal handlers are installed explicitly: a process started in the background by a
non-interactive shell inherits SIGINT as *ignored*, and we still want Ctrl-C and `kill -INT`
to stop every child.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from servinglab.launch import ARCHITECTURES, launch
from servinglab.supervisor import StartupError


class Stop(KeyboardInterrupt):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHITECTURES, default="monolith")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def on_signal(signum, _frame):
        stop_requested.set()
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        with launch(args.arch, port=args.port, host=args.host) as deployment:
            pids = deployment.supervisor.pids()
            print(f"{args.arch} ready in {time.monotonic() - started:.1f}s at {deployment.url} "
                  f"({len(pids)} processes). Try:\n"
                  f"  curl -s {deployment.url}/v1/predict -H 'Content-Type: application/json' "
                  f"-d '{json.dumps({'instances': [EXAMPLE]})}'\n"
                  "Press Ctrl-C to stop.", flush=True)
            # The flag, not only the exception: a signal landing in Popen's fork hooks is swallowed.
            while not stop_requested.is_set():
                exited = deployment.supervisor.exited()
                if exited:
                    print(f"{exited[0].name} exited unexpectedly (code {exited[0].popen.returncode}); stopping",
                          file=sys.stderr)
                    return 1
                stop_requested.wait(0.5)
            raise Stop("signal")
    except Stop as reason:
        print(f"received {reason}; stopped every process", flush=True)
        return 0
    except StartupError as error:
        print(f"start-up failed: {error}", file=sys.stderr)
        return 1


EXAMPLE = {"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0, "flipper_length_mm": 230.0,
           "body_mass_g": 5800.0, "sex": "male", "year": 2009}

if __name__ == "__main__":
    sys.exit(main())
