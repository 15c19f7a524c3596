"""What every stage service shares: server construction, health, reflection, graceful stop.

Each service module stays small: it defines a servicer and calls `create_server` / `serve`.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from microservices.channels import message_size_options, server_credentials
from microservices.generated.servinglab.v1 import pipeline_pb2
from servinglab import config as lab_config
from servinglab.config import Settings
from servinglab.serving.shutdown import StopSignal

log = logging.getLogger(__name__)


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    """The channel arguments every stage server is built with."""
    options = [
        *message_size_options(settings),
        # Off unless asked for: two servers silently sharing a fixed port would split its traffic.
        # The launcher asks for it so a replica's replacement can listen before the old one leaves.
        ("grpc.so_reuseport", 1 if settings.grpc_reuseport else 0),
    ]
    age_ms = settings.grpc_max_connection_age_ms
    if age_ms > 0:
        # A client keeps one connection, so it never sees pods added after it resolved the name.
        # Past this age (+-10% jitter) the server sends GOAWAY; the client re-resolves (a headless
        # Service's name gives every ready pod) and reconnects, and calls already running on the
        # old connection get GRPC_GRACE_S to finish, as on SIGTERM.
        grace_ms = int(settings.grpc_grace_s * 1000)
        options += [
            ("grpc.max_connection_age_ms", age_ms),
            ("grpc.max_connection_age_grace_ms", grace_ms),
        ]
    return options


def create_server(
    service_name: str,
    register: Callable[[grpc.Server], None],
    address: str,
    settings: Settings | None = None,
    extra_services: Sequence[tuple[str, Callable[[grpc.Server], None]]] = (),
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Build a started-ready (not yet started) server; returns the bound port, 0 means pick one.

    `extra_services` are (service name in pipeline.proto, register) pairs the stage serves beside
    its own, such as its `Chain` link: each is reflected and reported by health like the stage's.
    """
    settings = settings or lab_config.load()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_threads),
        options=server_options(settings),
        # The bounded queue: beyond this, RESOURCE_EXHAUSTED at once rather than a growing backlog.
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
    )
    register(server)
    for _, register_extra in extra_services:
        register_extra(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    full_names = [
        pipeline_pb2.DESCRIPTOR.services_by_name[name].full_name
        for name in (service_name, *(name for name, _ in extra_services))
    ]
    reflection.enable_server_reflection(
        (
            *full_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    credentials = server_credentials(settings)
    port = (
        server.add_secure_port(address, credentials)
        if credentials
        else server.add_insecure_port(address)
    )
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    for name in ("", *full_names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer


def _write_port_file(path: str, port: int) -> None:
    # Written atomically: the supervisor polls for the file and must never read half a number.
    target = Path(path)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(f"{port}\n")
    temporary.replace(target)


def serve(
    stage: str, build: Callable[[str, Settings], tuple[grpc.Server, int, health.HealthServicer]]
) -> None:
    """Run a stage until SIGTERM/SIGINT, then drain in-flight RPCs for GRPC_GRACE_S seconds."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {stage} %(levelname)s %(message)s")
    settings = lab_config.load()
    address = settings.grpc_bind or f"127.0.0.1:{lab_config.DEFAULT_GRPC_PORTS[stage]}"
    server, port, health_servicer = build(address, settings)
    # Everything loaded so far (grpc, scikit-learn, the model) lives as long as the server: frozen,
    # a full garbage collection no longer walks it, which cost a request ~100 ms every so often
    # (see servinglab/serving/gunicorn_conf.py).
    gc.freeze()
    stop = StopSignal()
    server.start()
    if settings.port_file:
        _write_port_file(settings.port_file, port)
    log.info("serving %s on port %d (pid %d)", stage, port, os.getpid())
    log.info("received %s, draining", stop.wait())
    # Tell health checkers first so load balancers stop sending, then drain.
    health_servicer.enter_graceful_shutdown()
    server.stop(settings.grpc_grace_s).wait()
    log.info("stopped")
