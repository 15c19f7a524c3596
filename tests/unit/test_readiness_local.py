"""Gateway readiness: the local endpoint Kubernetes probes, the deep /readyz, and the stage gauge.

The gateway here is the real Flask app (microservices.gateway.app) in front of a real postprocess
server started in-process and two stage addresses where nothing listens. /readyz keeps its deep
check (every stage's gRPC health, naming the one that is down); /readyz/local answers for this
process alone, whatever the stages say; every deep check sets lab_stage_up{stage=...}.
"""

from __future__ import annotations

import json
import re

import pytest
from grpc_health.v1 import health_pb2
from helpers import closed_port

from microservices.gateway.app import create_app as create_gateway
from microservices.postprocess.server import create_server as postprocess_server
from monolith.app import create_app as create_monolith
from servinglab import config
from servinglab.serving import metrics


@pytest.fixture
def postprocess(monkeypatch):
    monkeypatch.delenv("LAB_METRICS_DIR", raising=False)  # /metrics shows this process's values
    server, port, health = postprocess_server("127.0.0.1:0", config.load(environ={}))
    server.start()
    yield port, health
    server.stop(None)


@pytest.fixture
def gateway(postprocess):
    port, _ = postprocess
    app = create_gateway(
        {
            "PREPROCESS_ADDR": f"127.0.0.1:{closed_port()}",
            "INFERENCE_ADDR": f"127.0.0.1:{closed_port()}",
            "POSTPROCESS_ADDR": f"127.0.0.1:{port}",
            "READY_CHECK_TIMEOUT_MS": 1000,
        }
    )
    return app.test_client()


def stage_up(client) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    found = re.findall(r'^lab_stage_up\{stage="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {stage: float(value) for stage, value in found}


def test_deep_readyz_still_names_the_stage_that_is_down(gateway):
    deep = gateway.get("/readyz")
    assert deep.status_code == 503
    checks = deep.get_json()["checks"]
    assert checks["postprocess"] == "SERVING"
    assert checks["preprocess"].startswith("unreachable")
    assert checks["inference"].startswith("unreachable")


def test_local_readiness_does_not_depend_on_the_stages(gateway, postprocess):
    _, health = postprocess
    local = gateway.get("/readyz/local")
    assert local.status_code == 200 and local.get_json() == {"status": "ready"}
    health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert gateway.get("/readyz").get_json()["checks"]["postprocess"] == "NOT_SERVING"
    assert gateway.get("/readyz/local").status_code == 200


def test_every_deep_check_sets_the_stage_gauge_and_the_local_check_does_not(gateway, postprocess):
    _, health = postprocess
    gateway.get("/readyz")
    assert stage_up(gateway) == {"preprocess": 0.0, "inference": 0.0, "postprocess": 1.0}
    health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    gateway.get("/readyz/local")
    assert stage_up(gateway)["postprocess"] == 1.0, "the local check asked the stage"
    gateway.get("/readyz")
    assert stage_up(gateway)["postprocess"] == 0.0
    health.set("", health_pb2.HealthCheckResponse.SERVING)
    gateway.get("/readyz")
    assert stage_up(gateway)["postprocess"] == 1.0


def test_the_monolith_serves_local_readiness_too(models_root):
    client = create_monolith({"MODEL_DIR": str(models_root)}).test_client()
    assert client.get("/readyz/local").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_across_worker_processes_the_gauge_is_the_latest_check_not_a_sum(tmp_path, monkeypatch):
    """gunicorn workers each write a snapshot; a counter sums them, the stage gauge must not."""
    monkeypatch.setenv("LAB_METRICS_DIR", str(tmp_path))
    monkeypatch.setattr(metrics.STAGE_UP, "values", {})  # this process has checked nothing
    (tmp_path / "101.json").write_text(json.dumps({"lab_stage_up": {"inference": [1.0, 1000.0]}}))
    (tmp_path / "102.json").write_text(json.dumps({"lab_stage_up": {"inference": [0.0, 2000.0]}}))
    (tmp_path / "103.json").write_text(json.dumps({"lab_stage_up": {"inference": [1.0, 1500.0]}}))
    text = metrics.exposition()[0].decode()
    lines = re.findall(r"^lab_stage_up\{.*$", text, re.MULTILINE)
    assert lines == ['lab_stage_up{stage="inference"} 0']
    assert "# TYPE lab_stage_up gauge" in text
