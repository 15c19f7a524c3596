"""`make run ARCH=...`: start an architecture in the foreground until Ctrl-C or SIGTERM.

Like an orchestrator, it restarts what crashes (restart policy `always`, the default here;
`--restart never` or LAB_RESTART_POLICY=never fails fast instead):
- a gRPC stage (or the cache's Redis) that exits is started again alone, on the port it had, with
  exponential backoff (lab.watchdog.RestartPolicy); meanwhile the gateway answers 503 problem
  bodies, `/readyz` names the stage, and once it is back the gateway reconnects by itself within
  about a second (GRPC_RECONNECT_MAX_BACKOFF_MS), without a restart of its own;
- when the HTTP entry point (the gunicorn master of the monolith or of the gateway) or anything
  else exits, the whole architecture is stopped and started again in order, on the same port.
A start-up that fails the first time is reported and not retried: nothing was ever up to restore.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lab.launch import ARCHITECTURES, Deployment, launch
from lab.supervisor import (
    ManagedProcess,
    ProcessSpec,
    StartupError,
    Supervisor,
    describe_exit,
    file_ready,
)
from lab.watchdog import RESTART_POLICIES, RestartPolicy, StopSignals, Watchdog, run_in_foreground
from servinglab import config


def restart_policy(name: str | None = None) -> RestartPolicy:
    """The policy named `name` (else LAB_RESTART_POLICY) with the LAB_RESTART_* backoff settings.

    Raises ValueError, naming the allowed values, for an unknown policy.
    """
    settings = config.load()
    return RestartPolicy(
        name or settings.restart_policy,
        settings.restart_backoff_s,
        settings.restart_max_backoff_s,
        settings.restart_reset_s,
    )


def stage_watchdog(deployment: Deployment, policy: RestartPolicy) -> Watchdog:
    """A watchdog that restarts a stage replica (or Redis) alone, and nothing else."""

    def replica_of(process: ManagedProcess):
        for replicas in deployment.replicas.values():
            for replica in replicas:
                if replica.process is process:
                    return replica
        return None

    def respawn(process: ManagedProcess) -> ProcessSpec | None:
        replica = replica_of(process)
        if replica is not None:
            # The gateway balances over a fixed list of addresses: come back on the same port.
            replica.port_file.unlink(missing_ok=True)
            return ProcessSpec(
                replica.spec.name,
                replica.spec.argv,
                {**replica.spec.env, "LAB_GRPC_BIND": replica.address},
                ready=file_ready(replica.port_file),
            )
        if process is deployment.redis:
            return process.spec  # same unix socket; the cache comes back empty
        return None  # the HTTP entry point or a helper: restart the whole architecture

    def on_restart(old: ManagedProcess, new: ManagedProcess) -> None:
        replica = replica_of(old)
        if replica is not None:
            replica.process, replica.spec = new, new.spec
        elif old is deployment.redis:
            deployment.redis = new

    return Watchdog(deployment.supervisor, policy, respawn, on_restart)


def keep_serving(
    stop: StopSignals,
    architecture: str,
    policy: RestartPolicy,
    *,
    port: int = 8000,
    host: str = "127.0.0.1",
    settings: Mapping[str, Any] | None = None,
    on_ready: Callable[[Deployment, int], None] | None = None,
    others: Sequence[Supervisor] = (),
) -> int:
    """Serve `architecture` until a stop signal, restarting under `policy`; 1 when a crash stops it.

    `on_ready(deployment, generation)` runs each time the architecture is up (generation 0 first,
    then 1, 2, ... after whole restarts). `others` are supervisors of companions (the demo's
    Locust), watched with the same policy, each process restarted alone.
    """
    companions = [Watchdog(supervisor, policy) for supervisor in others]
    generation = restarts = 0
    while True:
        stop.check()
        up_since = time.monotonic()
        try:
            with launch(architecture, port=port, host=host, settings=settings) as deployment:
                port = deployment.port  # port 0 the first time: come back on the port we got
                up_since = time.monotonic()
                if on_ready is not None:
                    on_ready(deployment, generation)
                exited = stop.watch(stage_watchdog(deployment, policy), *companions)
                reason = (
                    f"{exited.name} (pid {exited.pid}) {describe_exit(exited.popen.returncode)}"
                )
                if not policy.restarts:
                    print(
                        f"{exited.name} exited unexpectedly ({describe_exit(exited.popen.returncode)}); "
                        "stopping (restart policy never)",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
                print(
                    f"[supervisor] {reason}: stopping the whole {architecture} to start it again in order",
                    file=sys.stderr,
                    flush=True,
                )
        except (StartupError, OSError) as error:
            if generation == 0:
                raise  # the first start failed: report it, nothing was ever up to restore
            reason = f"{architecture} did not start again: {str(error).splitlines()[0]}"
            print(f"[supervisor] {reason}", file=sys.stderr, flush=True)
        if time.monotonic() - up_since >= policy.reset_after_s:
            restarts = 0
        delay = policy.delay(restarts)
        restarts += 1
        generation += 1
        print(
            f"[supervisor] restarting {architecture} (whole restart #{restarts}) in {delay:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        if stop.requested.wait(delay):
            stop.check()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHITECTURES, default="monolith")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--restart",
        metavar="POLICY",
        default=None,
        help=f"restart policy: {' or '.join(RESTART_POLICIES)} "
        "(default: LAB_RESTART_POLICY, else always)",
    )
    args = parser.parse_args(argv)
    try:
        policy = restart_policy(args.restart)
    except ValueError as error:
        parser.error(f"{error} (--restart or LAB_RESTART_POLICY)")

    started = time.monotonic()

    def ready(deployment: Deployment, generation: int) -> None:
        pids = deployment.supervisor.pids()
        if generation:
            print(
                f"{args.arch} ready again at {deployment.url} ({len(pids)} processes)", flush=True
            )
            return
        print(
            f"{args.arch} ready in {time.monotonic() - started:.1f}s at {deployment.url} "
            f"({len(pids)} processes; restart policy {policy.name}). Try:\n"
            f"  curl -s {deployment.url}/v1/predict -H 'Content-Type: application/json' "
            f"-d '{json.dumps({'instances': [EXAMPLE]})}'\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )

    return run_in_foreground(
        lambda stop: keep_serving(
            stop, args.arch, policy, port=args.port, host=args.host, on_ready=ready
        )
    )


EXAMPLE = {
    "island": "Biscoe",
    "bill_length_mm": 48.6,
    "bill_depth_mm": 16.0,
    "flipper_length_mm": 230.0,
    "body_mass_g": 5800.0,
    "sex": "male",
    "year": 2009,
}

if __name__ == "__main__":
    sys.exit(main())
