"""The stage services as gRPC servers: health, reflection, errors, deadlines, missing upstreams.

Servers here are created in-process with `create_server(...)` on port 0, the way the grpc
examples test themselves; the gateway is exercised through its Flask app against them.
"""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers import closed_port

from microservices.gateway.app import create_app as create_gateway
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.inference.server import create_server as inference_server
from microservices.postprocess.server import create_server as postprocess_server
from microservices.preprocess.server import create_server as preprocess_server
from servinglab import config

pytestmark = pytest.mark.integration

SERVICES = {
    "preprocess": (preprocess_server, "servinglab.v1.Preprocess"),
    "inference": (inference_server, "servinglab.v1.Inference"),
    "postprocess": (postprocess_server, "servinglab.v1.Postprocess"),
}


def start(stage: str, models_root):
    factory, _ = SERVICES[stage]
    settings = config.load(overrides={"MODEL_DIR": str(models_root)})
    server, port, _health = factory("127.0.0.1:0", settings)
    server.start()
    return server, port


@pytest.fixture(scope="module")
def stage_servers(models_root):
    servers = {stage: start(stage, models_root) for stage in SERVICES}
    yield {stage: port for stage, (_, port) in servers.items()}
    for server, _ in servers.values():
        server.stop(None)


@pytest.mark.parametrize("stage", SERVICES)
def test_health_reports_serving_for_server_and_service(stage, stage_servers):
    with grpc.insecure_channel(f"127.0.0.1:{stage_servers[stage]}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICES[stage][1]):
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=2)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("stage", SERVICES)
def test_reflection_lists_the_stage_service(stage, stage_servers):
    with grpc.insecure_channel(f"127.0.0.1:{stage_servers[stage]}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=2
        )
        names = {
            service.name
            for response in responses
            for service in response.list_services_response.service
        }
    assert {SERVICES[stage][1], "grpc.health.v1.Health"} <= names


def test_bad_messages_are_invalid_argument(stage_servers):
    with grpc.insecure_channel(f"127.0.0.1:{stage_servers['inference']}") as channel:
        stub = pb_grpc.InferenceStub(channel)
        with pytest.raises(grpc.RpcError) as wrong_shape:
            stub.Predict(
                pb.InferenceRequest(features=pb.Matrix(rows=1, cols=2, values=[1.0, 2.0])),
                timeout=2,
            )
        assert wrong_shape.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as version:
            stub.Predict(
                pb.InferenceRequest(features=pb.Matrix(rows=0, cols=11), expected_version="other"),
                timeout=2,
            )
        assert version.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with grpc.insecure_channel(f"127.0.0.1:{stage_servers['preprocess']}") as channel:
        stub = pb_grpc.PreprocessStub(channel)
        ragged = pb.RawInstances(count=2, island=["Dream"])
        with pytest.raises(grpc.RpcError) as bad:
            stub.Transform(pb.PreprocessRequest(instances=ragged), timeout=2)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _gateway(ports: dict[str, int], **overrides):
    settings = {f"{stage.upper()}_ADDR": f"127.0.0.1:{port}" for stage, port in ports.items()}
    return create_gateway({**settings, **overrides}).test_client()


def test_gateway_answers_503_when_a_stage_is_down(stage_servers, held_out):
    ports = {**stage_servers, "postprocess": closed_port()}
    client = _gateway(ports, REQUEST_BUDGET_MS=2000)
    response = client.post("/v1/predict", json={"instances": held_out[:1]})
    assert response.status_code == 503
    assert response.json["type"] == "urn:servinglab:problem:stage-unavailable"
    assert "postprocess" in response.json["detail"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["postprocess"].startswith("unreachable")
    assert ready.json["checks"]["preprocess"] == "SERVING"


def test_gateway_answers_504_when_a_stage_is_too_slow(stage_servers, held_out):
    # Too slow by construction, not by the speed of this machine: the gateway's client sleeps
    # HOP_DELAY_MS (the in-process fallback of the hop delay) before every call, twice the whole
    # request budget, so no call can start with any of the budget left.
    client = _gateway(
        stage_servers, REQUEST_BUDGET_MS=100, HOP_DELAY_MS=200, HOP_DELAY_METHOD="sleep"
    )
    response = client.post("/v1/predict", json={"instances": held_out[:1]})
    assert response.status_code == 504
    assert response.json["type"] == "urn:servinglab:problem:stage-timeout"
    assert response.json["detail"].endswith("did not answer within its 100 ms deadline.")


def test_gateway_refuses_to_start_without_stage_addresses():
    with pytest.raises(RuntimeError) as missing:
        create_gateway({"PREPROCESS_ADDR": "127.0.0.1:1"})
    assert "LAB_INFERENCE_ADDR" in str(missing.value) and "LAB_POSTPROCESS_ADDR" in str(
        missing.value
    )
