"""`make demo ARCH=...`: an architecture plus Locust's web UI, for live load in the classroom.

Students open the Locust page, choose users and spawn rate, and watch latency and throughput
move while the instructor switches model profiles or architectures. Both processes stop on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import socket
import sys

from benchmarks.runner import LOCUSTFILE
from lab.launch import ARCHITECTURES, launch
from lab.supervisor import (
    ProcessSpec,
    StopSignals,
    Supervisor,
    http_ready,
    python_module,
    run_in_foreground,
)


def _free_port() -> int:
    # Locust cannot report a port it picked itself, so port 0 is resolved here (a demo, not a test).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHITECTURES, default="monolith")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--locust-port", type=int, default=8089)
    parser.add_argument("--profile", default="linear")
    args = parser.parse_args(argv)

    def serve(stop: StopSignals) -> int:
        with Supervisor() as loadgen, \
                launch(args.arch, port=args.port, settings={"MODEL_PROFILE": args.profile}) as deployment:
            locust_port = args.locust_port or _free_port()
            ui = f"http://127.0.0.1:{locust_port}"
            argv_locust = python_module("locust", "-f", str(LOCUSTFILE), "--host", deployment.url,
                                        "--web-host", "127.0.0.1", "--web-port", str(locust_port))
            loadgen.wait_ready([loadgen.start(ProcessSpec("locust-ui", argv_locust, ready=http_ready(ui)))])
            print(f"{args.arch} ({args.profile}) serving at {deployment.url}\n"
                  f"Locust web UI at {ui}  (set users and spawn rate there, then Start)\n"
                  "Press Ctrl-C to stop both.", flush=True)
            return stop.serve(deployment.supervisor, loadgen)

    return run_in_foreground(serve)

if __name__ == "__main__":
    sys.exit(main())
