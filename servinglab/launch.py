"""Start a whole architecture as real processes through the supervisor.

    with launch("microservices", port=0) as deployment:
        requests.post(deployment.url + "/v1/predict", json=...)

Ports: the HTTP entry point listens on a socket the launcher binds itself and hands to gunicorn
(`--bind fd://N`), so port 0 works with no race; gRPC services bind port 0 and report the port
they got through a file. Parallel runs therefore never collide unless the user picks a port.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servinglab.supervisor import ProcessSpec, Supervisor, file_ready, http_ready, python_module

ARCHITECTURES = ("monolith", "microservices")
STAGE_SERVICES = ("preprocess", "inference", "postprocess")
APP_TARGETS = {
    "monolith": "monolith.app:create_app()",
    "microservices": "microservices.gateway.app:create_app()",
}

# One BLAS/OpenMP thread per process: every server here is one of several processes sharing a
# fixed CPU budget, and a thread pool per process would only add contention on tiny matrices.
SINGLE_THREADED_MATH = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Deployment:
    architecture: str
    url: str
    port: int
    supervisor: Supervisor
    run_dir: Path


def _settings_env(settings: Mapping[str, Any] | None) -> dict[str, str]:
    return {f"LAB_{key}": str(value) for key, value in (settings or {}).items()}


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this. gunicorn sets it on sockets it binds itself but not on one
    # handed over with fd://, and without it Nagle holds the body gunicorn writes after the
    # headers until the client's delayed ACK: tens of milliseconds on every response.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _gunicorn_spec(name: str, app_target: str, sock: socket.socket, url: str, env: dict[str, str]) -> ProcessSpec:
    argv = python_module("gunicorn", "--config", "python:servinglab.gunicorn_conf",
                         "--bind", f"fd://{sock.fileno()}", app_target)
    return ProcessSpec(name, argv, env, pass_fds=(sock.fileno(),), ready=http_ready(url + "/readyz"))


@contextmanager
def launch(
    architecture: str,
    port: int = 0,
    host: str = "127.0.0.1",
    settings: Mapping[str, Any] | None = None,
    cpus: Iterable[int] | None = None,
    log_dir: Path | None = None,
    ready_timeout_s: float = 90.0,
) -> Iterator[Deployment]:
    """Start `architecture`, yield once /readyz answers 200, stop everything on exit."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    run_dir = Path(tempfile.mkdtemp(prefix=f"servinglab-{architecture}-"))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    common_env = {
        **SINGLE_THREADED_MATH,
        **_settings_env(settings),
        "LAB_METRICS_DIR": str(metrics_dir),
        "PYTHONUNBUFFERED": "1",
    }
    # Absolute, so children started in another working directory serve the same artifact.
    model_dir = common_env.get("LAB_MODEL_DIR") or os.environ.get("LAB_MODEL_DIR", "models")
    common_env["LAB_MODEL_DIR"] = str(Path(model_dir).resolve())
    supervisor = Supervisor(log_dir=log_dir, cpus=cpus)
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    url = f"http://{host}:{actual_port}"
    try:
        entry_env = dict(common_env)
        if architecture == "microservices":
            stages = []
            for stage in STAGE_SERVICES:
                port_file = run_dir / f"{stage}.port"
                env = {**common_env, "LAB_GRPC_BIND": f"{host}:0", "LAB_PORT_FILE": str(port_file)}
                stages.append(supervisor.start(ProcessSpec(stage, python_module(f"microservices.{stage}"), env,
                                                           ready=file_ready(port_file))))
            supervisor.wait_ready(stages, ready_timeout_s)
            for stage in STAGE_SERVICES:
                stage_port = int((run_dir / f"{stage}.port").read_text())
                entry_env[f"LAB_{stage.upper()}_ADDR"] = f"{host}:{stage_port}"
        name = "gunicorn-" + ("gateway" if architecture == "microservices" else "monolith")
        entry = supervisor.start(_gunicorn_spec(name, APP_TARGETS[architecture], sock, url, entry_env))
        # gunicorn has its own copy of the listening socket now; ours would only keep the port busy.
        sock.close()
        supervisor.wait_ready([entry], ready_timeout_s)
        yield Deployment(architecture, url, actual_port, supervisor, run_dir)
    finally:
        sock.close()
        supervisor.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
