"""TLS on the gRPC hops: `make certs` output works end to end, and plaintext is refused."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lab.certs import generate
from lab.launch import launch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_microservices(models_root, tmp_path_factory):
    certs = tmp_path_factory.mktemp("certs")
    generate(certs)
    with launch(
        "microservices",
        settings={"MODEL_DIR": models_root, "HTTP_WORKERS": 1, "GRPC_TLS_DIR": certs},
        replicas={"inference": 2},
        log_dir=tmp_path_factory.mktemp("tls-logs"),
    ) as deployment:
        yield deployment


def test_predictions_over_tls_equal_the_monolith(tls_microservices, monolith, held_out, http):
    body = {"instances": held_out[:50]}
    over_tls = http.post(tls_microservices.url + "/v1/predict", json=body, timeout=10)
    in_process = http.post(monolith.url + "/v1/predict", json=body, timeout=10)
    assert over_tls.status_code == 200
    assert over_tls.json()["predictions"] == in_process.json()["predictions"]
    assert http.get(tls_microservices.url + "/readyz", timeout=10).json()["status"] == "ready"


def test_plaintext_clients_are_refused(tls_microservices):
    address = tls_microservices.replicas["preprocess"][0].address
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as failure:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
