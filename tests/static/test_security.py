"""No secrets in the repository or the image's build context; servers bind loopback by default.

The bind checks start the real servers (gunicorn with its real configuration, each gRPC stage)
and read the addresses their processes listen on from the kernel, not from the source.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lab.architectures import HTTP_APPS, STAGE_SERVICES, stage_module
from servinglab import config

ROOT = Path(__file__).resolve().parents[2]
SECRET_PATTERNS = [
    re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    re.compile(rb"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(rb"(?i)(?:password|secret|token)\s*[:=]\s*['\"][^'\"]{8,}['\"]"),
]


def _tracked_files() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def test_no_tracked_file_contains_a_secret():
    offenders = []
    for path in _tracked_files():
        if path.is_file() and path.suffix not in {".png", ".ipynb"}:
            content = path.read_bytes()
            offenders += [
                f"{path.relative_to(ROOT)}: {p.pattern!r}"
                for p in SECRET_PATTERNS
                if p.search(content)
            ]
    assert offenders == []


def test_generated_keys_stay_out_of_git_and_images():
    assert "certs/" in (ROOT / ".gitignore").read_text().split()
    allowed = [
        line[1:]
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert not any(entry.startswith("certs") for entry in allowed)


# --- what the servers really bind -----------------------------------------------------------------

HTTP_ROLE = "monolith"  # the gateway runs under the same gunicorn configuration
LISTEN = "0A"  # TCP state in /proc/<pid>/net/tcp


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on.

    Read from /proc/<pid>/net, the tables of the process's own network namespace (psutil reads
    those of ours, and would see nothing of a server started in a private one), matched by inode
    against the process's file descriptors.
    """
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != LISTEN or fields[9] not in inodes:
                continue
            address_hex, port_hex = fields[1].split(":")
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            raw = bytes.fromhex(address_hex)
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            address = ipaddress.ip_address(words)
            # gRPC listens on an IPv6 socket even for an IPv4 address: ::ffff:127.0.0.1 is 127.0.0.1.
            address = getattr(address, "ipv4_mapped", None) or address
            found.add((str(address), int(port_hex, 16)))
    return found


def listening_tree(pid: int) -> set[tuple[str, int]]:
    """What a process and its children (gunicorn's workers share the master's socket) listen on."""
    pids = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    return set().union(*(listening(each) for each in pids))


def server_commands(stages: tuple[str, ...]) -> dict[str, list[str]]:
    """The HTTP role under gunicorn's real configuration and gRPC `stages`, as `make run` runs them."""
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:servinglab.serving.gunicorn_conf",
        HTTP_APPS[HTTP_ROLE],
    ]
    return {
        HTTP_ROLE: gunicorn,
        **{stage: [sys.executable, "-m", stage_module(stage)] for stage in stages},
    }


def start_servers(
    tmp_path: Path,
    models_root: Path,
    settings: dict[str, str],
    stages: tuple[str, ...] = STAGE_SERVICES,
    prefix: tuple[str, ...] = (),
) -> dict[str, tuple[subprocess.Popen, Path]]:
    """gunicorn and `stages` with `settings` (and no other bind setting), each announcing when it
    has bound: gunicorn's worker by its ready marker, a stage by its port file."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("LAB_HTTP_BIND", "LAB_GRPC_BIND", "LAB_PORT_FILE")
    }
    environment.update(
        {
            "LAB_MODEL_DIR": str(models_root.resolve()),
            "LAB_HTTP_WORKERS": "1",
            "LAB_WORKER_READY_DIR": str(tmp_path / "ready"),
            "OMP_NUM_THREADS": "1",
            # Nothing is in flight when they are stopped: no need to wait out a drain.
            "LAB_GRPC_GRACE_S": "0",
            "LAB_HTTP_GRACEFUL_TIMEOUT_S": "1",
            **settings,
        }
    )
    (tmp_path / "ready").mkdir()
    started = {}
    try:
        for role, argv in server_commands(stages).items():
            marker = tmp_path / "ready" if role == HTTP_ROLE else tmp_path / f"{role}.port"
            env = (
                environment if role == HTTP_ROLE else {**environment, "LAB_PORT_FILE": str(marker)}
            )
            log = (tmp_path / f"{role}.log").open("w")
            process = subprocess.Popen(
                [*prefix, *argv], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
            started[role] = (process, marker)
        deadline = time.monotonic() + 120
        for role, (process, marker) in started.items():
            while not (any(marker.iterdir()) if marker.is_dir() else marker.exists()):
                assert process.poll() is None, (
                    f"{role} exited: {(tmp_path / f'{role}.log').read_text()[-2000:]}"
                )
                assert time.monotonic() < deadline, f"{role} never became ready"
                time.sleep(0.1)
    except BaseException:
        stop_servers(started)
        raise
    return started


def stop_servers(started: dict[str, tuple[subprocess.Popen, Path]]) -> None:
    for process, _ in started.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process, _ in started.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_bind_defaults_are_loopback():
    assert config.DEFAULTS["HTTP_BIND"].startswith("127.0.0.1:")
    # None: each stage then binds 127.0.0.1 on its own default port (what the next test checks).
    assert config.DEFAULTS["GRPC_BIND"] is None


@pytest.mark.integration
def test_servers_bind_the_addresses_their_settings_name(tmp_path, models_root):
    """Another loopback address than the default, so a server ignoring its setting shows. One
    stage is enough: every stage binds through the same `microservices.grpc_server.serve`."""
    started = start_servers(
        tmp_path,
        models_root,
        {"LAB_HTTP_BIND": "127.0.0.2:0", "LAB_GRPC_BIND": "127.0.0.3:0"},
        stages=("postprocess",),
    )
    try:
        http_process, _ = started[HTTP_ROLE]
        [(address, port)] = listening_tree(http_process.pid)
        assert address == "127.0.0.2" and port > 0
        process, port_file = started["postprocess"]
        assert listening_tree(process.pid) == {("127.0.0.3", int(port_file.read_text()))}
    finally:
        stop_servers(started)


def private_network_prefix() -> tuple[str, ...]:
    """A command prefix that runs a program in a fresh network namespace, or a skip if none can
    be made here: there the default ports (8000, 50051-50053) are free whatever else runs."""
    unshare = shutil.which("unshare")
    if not unshare:
        pytest.skip(
            "unshare (util-linux) is not installed: cannot start servers on their default ports in private"
        )
    prefix = (
        (unshare, "--net", "--")
        if os.geteuid() == 0
        else (unshare, "--map-root-user", "--net", "--")
    )
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(
            f"no private network namespace here ({probe.stderr.strip()}): default ports may be taken"
        )
    return prefix


@pytest.mark.integration
def test_servers_bind_loopback_by_default(tmp_path, models_root):
    """With no bind setting at all, every server listens on 127.0.0.1 only, on its default port."""
    started = start_servers(tmp_path, models_root, {}, prefix=private_network_prefix())
    try:
        http_process, _ = started[HTTP_ROLE]
        host, _, port = config.Settings().http_bind.rpartition(":")
        assert listening_tree(http_process.pid) == {("127.0.0.1", int(port))}
        assert host == "127.0.0.1"
        for stage in STAGE_SERVICES:
            process, port_file = started[stage]
            expected = {("127.0.0.1", config.DEFAULT_GRPC_PORTS[stage])}
            assert listening_tree(process.pid) == expected, stage
            assert int(port_file.read_text()) == config.DEFAULT_GRPC_PORTS[stage]
    finally:
        stop_servers(started)
