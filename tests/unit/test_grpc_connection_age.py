"""The stage servers' maximum connection age: the setting reaches a real gRPC server and acts.

On Kubernetes each gateway channel resolves a stage's headless Service once and keeps its
connections; only a connection that ends makes it resolve again and find pods the autoscaler
added. `LAB_GRPC_MAX_CONNECTION_AGE_MS` (set in k8s/base/microservices/kustomization.yaml, off by
default) makes the servers end them. These tests follow it from the setting to the options the
factory gives `grpc.server`, and then to a real server that closes an aged connection.
"""

from __future__ import annotations

import queue

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microservices import grpc_server
from microservices.postprocess.server import create_server
from servinglab import config

AGE_KEY = "grpc.max_connection_age_ms"
GRACE_KEY = "grpc.max_connection_age_grace_ms"


def test_off_by_default():
    options = dict(grpc_server.server_options(config.load(environ={})))
    assert AGE_KEY not in options and GRACE_KEY not in options


def test_the_setting_becomes_the_age_and_the_drain_time_the_grace():
    environ = {"LAB_GRPC_MAX_CONNECTION_AGE_MS": "30000", "LAB_GRPC_GRACE_S": "5"}
    settings = config.load(environ=environ)
    options = dict(grpc_server.server_options(settings))
    assert options[AGE_KEY] == 30000
    assert options[GRACE_KEY] == 5000
    # The options the servers had before are still there.
    assert options["grpc.so_reuseport"] == 0
    assert options["grpc.max_receive_message_length"] == settings.grpc_max_message_bytes


def test_the_stage_factory_passes_the_options_to_grpc(monkeypatch):
    passed: list[dict] = []
    real_server = grpc.server

    def recording_server(*args, **kwargs):
        passed.append(kwargs)
        return real_server(*args, **kwargs)

    monkeypatch.setattr(grpc_server.grpc, "server", recording_server)
    overrides = {"GRPC_MAX_CONNECTION_AGE_MS": 1234, "GRPC_GRACE_S": 0.5}
    settings = config.load(environ={}, overrides=overrides)
    server, _port, _health = create_server("127.0.0.1:0", settings)
    server.stop(None)
    (kwargs,) = passed
    options = dict(kwargs["options"])
    assert options[AGE_KEY] == 1234 and options[GRACE_KEY] == 500


def _next_state(states: queue.Queue, wanted: grpc.ChannelConnectivity) -> None:
    """Consume connectivity states until `wanted`; fail if the channel never gets there."""
    while True:
        try:
            state = states.get(timeout=15)
        except queue.Empty:
            pytest.fail(f"the channel never became {wanted.name}")
        if state == wanted:
            return


def test_a_real_stage_server_ends_an_aged_connection_and_the_client_reconnects():
    overrides = {"GRPC_MAX_CONNECTION_AGE_MS": 200, "GRPC_GRACE_S": 0.1}
    settings = config.load(environ={}, overrides=overrides)
    server, port, _health = create_server("127.0.0.1:0", settings)
    server.start()
    states: queue.Queue = queue.Queue()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            channel.subscribe(states.put, try_to_connect=True)
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="servinglab.v1.Postprocess")
            assert health.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
            _next_state(states, grpc.ChannelConnectivity.READY)
            # The server's GOAWAY at the age limit drops the connection: the channel goes idle
            # (nothing else would: no client or server idle timeout is anywhere near).
            _next_state(states, grpc.ChannelConnectivity.IDLE)
            # ...and the next call simply opens a new connection.
            assert health.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
            _next_state(states, grpc.ChannelConnectivity.READY)
    finally:
        server.stop(None)
