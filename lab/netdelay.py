"""Simulated network distance between services (`HOP_DELAY_MS`), by real traffic control when possible.

On one machine every gateway -> stage call crosses loopback in microseconds, so microservices look
cheaper than they would be across nodes or zones. `HOP_DELAY_MS` adds a round trip to every hop:
about 0 within one node, 0.5 ms within a zone, 2 ms across zones.

What a student learns here:
- **A socket belongs to the network namespace it was created in.** The launcher binds the HTTP
  listening socket in the host's namespace and passes it to gunicorn by file descriptor; gunicorn
  itself, and every stage service, run in a private network namespace. The load generator still
  reaches the entry point (the socket lives where it was made), while the gateway -> stage traffic
  is the only traffic on the private namespace's own loopback.
- **netem delays packets on their way out of an interface.** On loopback a packet leaves once, so
  `tc qdisc add dev lo root netem delay D/2` delays request and response each by D/2: D more per
  round trip, i.e. per gRPC call. Only that namespace's `lo` is touched, never the host's.
- **A namespace lives as long as something holds it.** Nothing is named (`ip netns add` would leave
  a mount behind if we were killed): a supervised holder, `unshare --net sleep infinity`, creates
  the namespace, and the other processes join it with `nsenter --no-fork --net=/proc/<holder>/ns/net`.
  Both tools set up the namespace and then *exec* the program (they fork only for a PID namespace),
  so the pid the supervisor knows is the server's own, and signals, CPU pinning and PR_SET_PDEATHSIG
  carry over. When the last process in it exits, even after a `kill -9` of the launcher, the kernel frees
  the namespace: nothing to clean up.
- **A fallback must say it is one.** Without root, `tc`/`nsenter`, or the netem qdisc in the kernel
  (tried for real, in a throwaway namespace), the gateway's gRPC client sleeps `HOP_DELAY_MS` before
  each call instead (`microservices.channels`). That adds the same latency but no real network
  behaviour (no packets held in flight, retries pay it once), so the method used is recorded on the
  deployment (`deployment.hop_delay`) and belongs in every report.

`HOP_DELAY_METHOD` picks: `auto` (netem when it works, else sleep), `netem` (fail if it does not
work), `sleep` (always the fallback, e.g. to compare the two).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab.supervisor import ManagedProcess, ProcessSpec, Supervisor
from servinglab.config import Settings

METHODS = ("auto", "netem", "sleep")
# Round trip added per hop, in milliseconds (README: "Simulated network distance").
PRESETS_MS = {"same-node": 0.0, "same-zone": 0.5, "cross-zone": 2.0}
TOOLS = ("unshare", "nsenter", "ip", "tc")
# netem's default queue is 1000 packets; with a delay, packets in flight = rate x delay, and a full
# queue drops them, which would turn a latency experiment into a loss experiment.
NETEM_LIMIT_PACKETS = 100_000
COMMAND_TIMEOUT_S = 10.0


class HopDelayError(RuntimeError):
    """HOP_DELAY_METHOD=netem was asked for and cannot be provided, or a setting is invalid."""


@dataclass(frozen=True)
class HopDelay:
    """How a deployment's hops are delayed: what a results file should record."""

    ms: float = 0.0  # configured round trip added per hop
    method: str = "none"  # "netem", "sleep" (in-process fallback) or "none"
    detail: str = "no hop delay configured"

    def env(self) -> dict[str, str]:
        """What every process is told: the method actually used (the gateway sleeps only for "sleep")."""
        return {"LAB_HOP_DELAY_METHOD": self.method}

    def as_dict(self) -> dict[str, Any]:
        return {"ms": self.ms, "method": self.method, "detail": self.detail}


def parse_settings(settings: Settings) -> tuple[float, str]:
    """(delay in ms, requested method), validated (that HOP_DELAY_MS is a number, by `Settings`)."""
    delay_ms = settings.hop_delay_ms
    if delay_ms < 0 or not math.isfinite(delay_ms):
        raise HopDelayError(f"LAB_HOP_DELAY_MS must be a finite number >= 0, not {delay_ms}")
    method = (settings.hop_delay_method or "auto").lower()
    if method not in METHODS:
        raise HopDelayError(
            f"LAB_HOP_DELAY_METHOD must be one of {', '.join(METHODS)}, not {method!r}"
        )
    return delay_ms, method


def netem_args(delay_ms: float) -> list[str]:
    """`tc` arguments that add `delay_ms` per round trip on loopback: half of it each way."""
    one_way_us = round(delay_ms * 1000 / 2)
    return [
        "qdisc",
        "add",
        "dev",
        "lo",
        "root",
        "netem",
        "delay",
        f"{one_way_us}us",
        "limit",
        str(NETEM_LIMIT_PACKETS),
    ]


def _failure(result: subprocess.CompletedProcess) -> str:
    return (result.stderr or result.stdout or "").strip() or f"exit code {result.returncode}"


def probe_netem() -> str | None:
    """None if netem works here, else why not. Tried for real in a throwaway namespace, which the
    kernel frees as soon as the command exits; the host's own interfaces are never touched."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (install util-linux and iproute2)"
    script = "ip link set lo up && tc " + " ".join(netem_args(1.0))
    try:
        result = subprocess.run(
            ["unshare", "--net", "--", "sh", "-c", script],
            check=False,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not try netem: {error}"
    if result.returncode != 0:
        hint = " (network namespaces and tc need root)" if os.geteuid() != 0 else ""
        return f"netem unavailable: {_failure(result)}{hint}"
    return None


def netns_id(pid: int | str) -> str:
    """The network namespace of a process, e.g. 'net:[4026531833]'."""
    return os.readlink(f"/proc/{pid}/ns/net")


class PrivateNetwork:
    """A network namespace that lives exactly as long as the processes in it, held by a supervised
    `unshare --net sleep infinity` so it never outlives the deployment."""

    def __init__(self, supervisor: Supervisor, timeout_s: float):
        self.host_netns = netns_id("self")
        self.holder: ManagedProcess = supervisor.start(
            ProcessSpec(
                "netns-holder", ["unshare", "--net", "--", "sleep", "infinity"], ready=self._entered
            )
        )
        supervisor.wait_ready([self.holder], timeout_s)

    def _entered(self) -> bool:
        try:
            return netns_id(self.holder.pid) != self.host_netns
        except OSError:
            return False

    @property
    def path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    @property
    def netns(self) -> str:
        return netns_id(self.holder.pid)

    def enter_argv(self) -> tuple[str, ...]:
        """Prefix that starts a program inside the namespace (nsenter execs it: same pid)."""
        return ("nsenter", "--no-fork", f"--net={self.path}", "--")

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        """Run a short command inside the namespace. The namespace is opened once and checked not
        to be the host's, so a holder that died (and a reused pid) can never redirect the command
        to the host's interfaces."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if os.fstat(fd).st_ino == os.stat("/proc/self/ns/net").st_ino:
                raise HopDelayError("refusing to run in the host's network namespace")
            return subprocess.run(
                ["nsenter", "--no-fork", f"--net=/proc/self/fd/{fd}", "--", *argv],
                pass_fds=(fd,),
                check=False,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(fd)

    def check(self, argv: Sequence[str]) -> str:
        result = self.run(argv)
        if result.returncode != 0:
            raise HopDelayError(
                f"`{' '.join(argv)}` failed in the private namespace: {_failure(result)}"
            )
        return result.stdout


def add_netem(network: PrivateNetwork, delay_ms: float) -> None:
    network.check(["tc", *netem_args(delay_ms)])


def start_hop_delay(
    supervisor: Supervisor, settings: Settings, has_hops: bool, timeout_s: float = 30.0
) -> HopDelay:
    """Decide how hops are delayed and set it up before any server starts.

    With netem, every process the supervisor starts from now on runs inside the private namespace
    (`supervisor.argv_prefix`); stopping the supervisor stops the holder with the rest.
    """
    delay_ms, method = parse_settings(settings)
    if delay_ms == 0:
        return HopDelay()
    if not has_hops:
        return HopDelay(delay_ms, "none", "no hops: every stage runs in one process")
    sleep_detail = (
        f"in-process fallback, not real network delay: the gRPC client sleeps {delay_ms:g} ms "
        f"before each call"
    )
    if method == "sleep":
        return HopDelay(delay_ms, "sleep", f"{sleep_detail} (forced by HOP_DELAY_METHOD=sleep)")
    reason = probe_netem()
    if reason is not None:
        if method == "netem":
            raise HopDelayError(f"HOP_DELAY_METHOD=netem, but {reason}")
        return HopDelay(delay_ms, "sleep", f"{sleep_detail} ({reason})")
    network = PrivateNetwork(supervisor, timeout_s)
    network.check(["ip", "link", "set", "lo", "up"])
    add_netem(network, delay_ms)
    supervisor.argv_prefix = network.enter_argv()
    return HopDelay(
        delay_ms,
        "netem",
        (
            f"tc netem on the loopback of a private network namespace ({network.netns}) holding every "
            f"server: {delay_ms / 2:g} ms each way, {delay_ms:g} ms added per round trip"
        ),
    )
