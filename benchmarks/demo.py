"""`make demo ARCH=...`: an architecture plus Locust's web UI, for live load in the classroom.

Students open the Locust page, choose users and spawn rate, and watch latency and throughput
move while the instructor switches model profiles or architectures. Both processes stop on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import socket
import sys

from benchmarks.measure.loadgen import LOCUSTFILE
from lab.launch import ARCHITECTURES
from lab.run import keep_serving, restart_policy
from lab.supervisor import ProcessSpec, Supervisor, http_ready, python_module
from lab.watchdog import StopSignals, run_in_foreground


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
    parser.add_argument(
        "--restart",
        metavar="POLICY",
        default=None,
        help="restart policy: always or never (default: LAB_RESTART_POLICY, else always)",
    )
    args = parser.parse_args(argv)
    try:
        policy = restart_policy(args.restart)
    except ValueError as error:
        parser.error(f"{error} (--restart or LAB_RESTART_POLICY)")

    def serve(stop: StopSignals) -> int:
        # Crashed processes are restarted (lab.run.keep_serving); a whole restart comes back on the
        # same port, so Locust's --host stays right and only the first start launches Locust.
        with Supervisor() as loadgen:
            return keep_serving(
                stop,
                args.arch,
                policy,
                port=args.port,
                settings={"MODEL_PROFILE": args.profile},
                on_ready=lambda deployment, generation: on_ready(loadgen, deployment, generation),
                others=[loadgen],
            )

    def on_ready(loadgen: Supervisor, deployment, generation: int) -> None:
        if generation == 0:  # a restart comes back on the same port: Locust's --host stays right
            start_ui(loadgen, deployment)

    def start_ui(loadgen: Supervisor, deployment) -> None:
        locust_port = args.locust_port or _free_port()
        ui = f"http://127.0.0.1:{locust_port}"
        argv_locust = python_module(
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--host",
            deployment.url,
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(locust_port),
        )
        loadgen.wait_ready(
            [loadgen.start(ProcessSpec("locust-ui", argv_locust, ready=http_ready(ui)))]
        )
        print(
            f"{args.arch} ({args.profile}) serving at {deployment.url}\n"
            f"Locust web UI at {ui}  (set users and spawn rate there, then Start)\n"
            "Press Ctrl-C to stop both.",
            flush=True,
        )

    return run_in_foreground(serve)


if __name__ == "__main__":
    sys.exit(main())
