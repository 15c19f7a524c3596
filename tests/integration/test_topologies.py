"""The split and chained topologies: timings, readiness, gRPC health, deadlines, faults, rollouts.

Answers and client errors are compared with the monolith's in test_parity.py, and `make run`
stopping every process of each topology is in test_lifecycle.py. Here: what is particular to
each topology, on real processes started by `launch`, except where a test needs a stage to be
too slow or missing, which in-process servers (as in test_grpc.py) set up exactly.
"""

from __future__ import annotations

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers import closed_port

from benchmarks.measure import servertiming
from lab.launch import launch
from microservices.convert import batch_to_proto
from microservices.gateway.app import create_app as create_gateway
from microservices.generated.servinglab.v1 import pipeline_pb2 as pb
from microservices.generated.servinglab.v1 import pipeline_pb2_grpc as pb_grpc
from microservices.inference.server import create_server as inference_server
from microservices.postprocess.server import create_server as postprocess_server
from microservices.preprocess.server import create_server as preprocess_server
from servinglab import config
from servinglab.model.artifact import load_artifact, set_current
from servinglab.model.pipeline import ServingPipeline
from servinglab.validation import validate_instances

pytestmark = pytest.mark.integration
CHAIN_SERVICE = "servinglab.v1.Chain"
BUDGET_MS = 1000
# How long a client waits for any answer: the request budget plus a wide margin for HTTP and
# scheduling on a busy 2-core machine. Not a speed check: a gateway that waited on a dead stage
# without a deadline would never answer, and the client's timeout turns that into a failure.
CLIENT_TIMEOUT_S = BUDGET_MS / 1e3 + 10.0

# Server-Timing entries each topology must send, besides `validate` and `total`: a stage's compute
# under its name, and a `hop-` entry for every stage reached over gRPC.
EXPECTED_TIMINGS = {
    "split": ["pre", "infer", "hop-infer", "post"],
    "chained": ["pre", "hop-pre", "infer", "hop-infer", "post", "hop-post"],
}


@pytest.fixture(params=["split", "chained"])
def topology(request):
    return request.getfixturevalue(request.param)


# --- the session's running deployments ----------------------------------------------------------


def test_server_timing_has_every_stage_and_hop(topology, http, held_out):
    response = http.post(topology.url + "/v1/predict", json={"instances": held_out[:5]})
    assert response.status_code == 200, response.text
    # Every entry of these responses carries a duration: one without would be missing here.
    timings = servertiming.durations(response.headers["Server-Timing"])
    assert list(timings) == ["validate", *EXPECTED_TIMINGS[topology.architecture], "total"]
    assert all(value >= 0 for value in timings.values())
    # The parts were measured inside the whole, so they cannot add up to more than it.
    assert sum(value for name, value in timings.items() if name != "total") <= timings["total"]


def test_readyz_checks_exactly_the_services_the_topology_uses(topology, http):
    response = http.get(topology.url + "/readyz")
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    if topology.architecture == "split":
        assert checks["inference"] == "SERVING"
        assert set(checks) == {"inference", "model"}  # model: the in-process stages' artifact
    else:
        assert checks == {"preprocess": "SERVING", "inference": "SERVING", "postprocess": "SERVING"}


def test_model_description_comes_from_inference(topology, http, artifact):
    response = http.get(topology.url + "/v1/model")
    assert response.status_code == 200
    assert response.json()["version"] == artifact.metadata["version"]


def _health(address: str, service: str):
    with grpc.insecure_channel(address) as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                .status
            )
        except grpc.RpcError as error:
            return error.code()


def test_chain_is_served_reflected_and_healthy_only_where_a_next_stage_is_set(
    chained, microservices
):
    address = {service: replicas[0].address for service, replicas in chained.replicas.items()}
    serving = health_pb2.HealthCheckResponse.SERVING
    assert _health(address["preprocess"], CHAIN_SERVICE) == serving
    assert _health(address["inference"], CHAIN_SERVICE) == serving
    # postprocess ends the chain with its plain Decide; the orchestrated stages chain nothing.
    assert _health(address["postprocess"], CHAIN_SERVICE) == grpc.StatusCode.NOT_FOUND
    assert (
        _health(microservices.replicas["preprocess"][0].address, CHAIN_SERVICE)
        == grpc.StatusCode.NOT_FOUND
    )
    with grpc.insecure_channel(address["preprocess"]) as channel:
        responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {
            service.name
            for response in responses
            for service in response.list_services_response.service
        }
    assert {CHAIN_SERVICE, "servinglab.v1.Preprocess", "grpc.health.v1.Health"} <= names


def test_each_hop_passes_on_the_remaining_deadline(chained, held_out):
    # Called directly with a 1 s deadline: a stage that did not pass it on would give the next one
    # its own fallback budget (REQUEST_BUDGET_MS, 2 s by default) instead of what it had left.
    request = pb.PreprocessRequest(instances=batch_to_proto(validate_instances(held_out[:3])))
    with grpc.insecure_channel(chained.replicas["preprocess"][0].address) as channel:
        response = pb_grpc.ChainStub(channel).Transform(request, timeout=1.0)
    budgets = {timing.stage: timing.budget_ms for timing in response.timings}
    # Not strictly decreasing: gRPC sends a deadline as a timeout that "may round up" (to ~10 ms
    # near 1 s, seen here), so each hop can see a little more than its caller had left.
    assert 0 < budgets["preprocess"] <= 1000 + 20
    assert 0 < budgets["inference"] <= budgets["preprocess"] + 20
    assert [timing.stage for timing in response.timings] == [
        "preprocess",
        "inference",
        "postprocess",
    ]


# --- in-process servers: a missing or too slow stage ---------------------------------------------


def _serve(factory, models_root, **overrides):
    settings = config.load(overrides={"MODEL_DIR": str(models_root), **overrides})
    server, port, _health_servicer = factory("127.0.0.1:0", settings)
    server.start()
    return server, f"127.0.0.1:{port}"


def _in_process_chain(models_root, profile: str, postprocess_address: str):
    """inference -> `postprocess_address`, preprocess -> inference; returns the servers and preprocess."""
    inference, inference_address = _serve(
        inference_server, models_root, MODEL_PROFILE=profile, NEXT_ADDR=postprocess_address
    )
    preprocess, preprocess_address = _serve(
        preprocess_server, models_root, MODEL_PROFILE=profile, NEXT_ADDR=inference_address
    )
    return [inference, preprocess], preprocess_address


def test_chained_names_the_missing_stage_however_deep_it_is(models_root, held_out):
    servers, preprocess_address = _in_process_chain(
        models_root, "linear", f"127.0.0.1:{closed_port()}"
    )
    try:
        client = create_gateway(
            {
                "GATEWAY_MODE": "chained",
                "PREPROCESS_ADDR": preprocess_address,
                "REQUEST_BUDGET_MS": 2000,
            }
        ).test_client()
        response = client.post("/v1/predict", json={"instances": held_out[:1]})
        # 503, not 504: the refused connection is reported as such, not waited out to the deadline.
        assert response.status_code == 503
        assert response.json["type"] == "urn:servinglab:problem:stage-unavailable"
        assert response.json["detail"].startswith(
            "The postprocess stage is not available: unavailable"
        )
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json["checks"]["preprocess"] == ready.json["checks"]["inference"] == "SERVING"
        assert ready.json["checks"]["postprocess"].startswith("unreachable")
    finally:
        for server in servers:
            server.stop(None)


def test_chained_answers_504_when_the_chain_is_too_slow(models_root, held_out):
    postprocess, postprocess_address = _serve(postprocess_server, models_root)
    # Too slow by construction, not by the speed of this machine: inference's client sleeps
    # HOP_DELAY_MS (the in-process fallback of the hop delay) before calling postprocess, twice
    # the gateway's whole budget, so the last hop of the chain cannot be reached in time.
    inference, inference_address = _serve(
        inference_server,
        models_root,
        NEXT_ADDR=postprocess_address,
        HOP_DELAY_MS=200,
        HOP_DELAY_METHOD="sleep",
    )
    preprocess, preprocess_address = _serve(
        preprocess_server, models_root, NEXT_ADDR=inference_address
    )
    try:
        client = create_gateway(
            {
                "GATEWAY_MODE": "chained",
                "PREPROCESS_ADDR": preprocess_address,
                "REQUEST_BUDGET_MS": 100,
            }
        ).test_client()
        response = client.post("/v1/predict", json={"instances": held_out[:1]})
        assert response.status_code == 504
        assert response.json["type"] == "urn:servinglab:problem:stage-timeout"
    finally:
        for server in (preprocess, inference, postprocess):
            server.stop(None)


@pytest.mark.parametrize(
    "mode, needed, not_needed",
    [
        ("split", "LAB_INFERENCE_ADDR", "LAB_PREPROCESS_ADDR"),
        ("chained", "LAB_PREPROCESS_ADDR", "LAB_INFERENCE_ADDR"),
    ],
)
def test_each_gateway_mode_requires_exactly_the_addresses_it_calls(mode, needed, not_needed):
    with pytest.raises(RuntimeError) as missing:
        create_gateway({"GATEWAY_MODE": mode})
    assert needed in str(missing.value) and mode in str(missing.value)
    assert not_needed not in str(missing.value) and "LAB_POSTPROCESS_ADDR" not in str(missing.value)


def test_an_unknown_gateway_mode_stops_start_up():
    with pytest.raises(RuntimeError, match="orchestrated, split, chained"):
        create_gateway({"GATEWAY_MODE": "mesh", "PREPROCESS_ADDR": "127.0.0.1:1"})


# --- own deployments: faults, rollouts, stopping ------------------------------------------------


def _settings(models, **extra):
    return {"MODEL_DIR": models, "HTTP_WORKERS": 1, "REQUEST_BUDGET_MS": BUDGET_MS, **extra}


def _assert_stage_down(deployment, stage: str, instance: dict) -> dict:
    response = requests.post(
        deployment.url + "/v1/predict", json={"instances": [instance]}, timeout=CLIENT_TIMEOUT_S
    )
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["type"] == "urn:servinglab:problem:stage-unavailable"
    assert response.json()["detail"].startswith(f"The {stage} stage is not available")
    ready = requests.get(deployment.url + "/readyz", timeout=CLIENT_TIMEOUT_S)
    assert ready.status_code == 503
    assert ready.json()["checks"][stage].startswith("unreachable")
    return ready.json()["checks"]


@pytest.mark.parametrize("architecture", ["split", "chained"])
def test_a_killed_stage_gives_a_503_problem_not_a_hang(
    architecture, models_root, held_out, tmp_path
):
    with launch(architecture, settings=_settings(models_root), log_dir=tmp_path) as deployment:
        assert (
            requests.post(
                deployment.url + "/v1/predict", json={"instances": held_out[:1]}
            ).status_code
            == 200
        )
        if architecture == "chained":
            # Two hops away from the gateway: relayed back through inference and preprocess.
            deployment.kill("postprocess")
            _assert_stage_down(deployment, "postprocess", held_out[0])
        deployment.kill("inference")
        checks = _assert_stage_down(deployment, "inference", held_out[0])
        if architecture == "chained":
            assert checks["postprocess"].startswith("not checked")


@pytest.mark.parametrize("architecture", ["split", "chained"])
def test_after_inference_moves_to_a_new_version_features_follow_it(
    architecture, two_versions, held_out, tmp_path
):
    root, v1, v2 = two_versions
    instances = held_out[:20]
    expected = {
        version: ServingPipeline.from_artifact(load_artifact(root / "linear" / version)).predict(
            validate_instances(instances)
        )
        for version in (v1, v2)
    }
    assert expected[v1] != expected[v2]
    set_current(root / "linear", v1)  # as the fixture left it, whatever an earlier test rolled out
    with launch(architecture, settings=_settings(root), log_dir=tmp_path) as deployment:
        first = requests.post(deployment.url + "/v1/predict", json={"instances": instances}).json()
        set_current(root / "linear", v2)
        # Only inference moves: the preprocessing left on v1 (in the gateway, or the preprocess
        # service) must notice and preprocess for v2, never let v2 score v1 features.
        deployment.restart_replica("inference")
        second = requests.post(deployment.url + "/v1/predict", json={"instances": instances}).json()
    assert first["model"]["version"] == v1 and second["model"]["version"] == v2
    # Exactly each version's own pipeline: features and model of one version, never a mix.
    assert first["predictions"] == expected[v1] and second["predictions"] == expected[v2]
