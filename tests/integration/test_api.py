"""The public HTTP contract, checked against both running architectures."""

from __future__ import annotations

import pytest

from servinglab.validation import validate_instances

pytestmark = pytest.mark.integration

STAGES = {"monolith": ["validate", "pre", "infer", "post", "total"],
          "microservices": ["validate", "pre", "hop-pre", "infer", "hop-infer", "post", "hop-post", "total"]}


def test_predict_returns_one_prediction_per_instance_in_order(deployment, http, held_out, pipeline):
    instances = held_out[:25]
    response = http.post(deployment.url + "/v1/predict", json={"instances": instances})
    assert response.status_code == 200
    body = response.json()
    assert [p["species"] for p in body["predictions"]] == [
        p["species"] for p in pipeline.predict(validate_instances(instances))
    ]
    first = body["predictions"][0]
    assert set(first) == {"species", "probabilities", "confidence", "uncertain"}
    assert set(first["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert first["confidence"] == max(first["probabilities"].values())
    assert body["model"] == {"name": "penguins-species", "version": pipeline.metadata["version"], "profile": "linear"}


def test_server_timing_names_every_stage(deployment, http, held_out):
    response = http.post(deployment.url + "/v1/predict", json={"instances": held_out[:1]})
    entries = [part.split(";dur=") for part in response.headers["Server-Timing"].split(", ")]
    assert [name for name, _ in entries] == STAGES[deployment.architecture]
    durations = {name: float(value) for name, value in entries}
    assert all(value >= 0 for value in durations.values())
    assert durations["total"] >= durations["pre"] + durations["infer"] + durations["post"]


def test_model_endpoint_publishes_metadata_schema_and_limits(deployment, http, artifact):
    body = http.get(deployment.url + "/v1/model").json()
    assert body["version"] == artifact.metadata["version"]
    assert body["metrics"]["held_out"]["accuracy"] == artifact.metadata["metrics"]["held_out"]["accuracy"]
    assert body["data"]["sha256"] == artifact.metadata["data"]["sha256"]
    assert set(body["input_schema"]["required"]) == {"island", "sex", "bill_length_mm", "bill_depth_mm",
                                                     "flipper_length_mm", "body_mass_g", "year"}
    assert body["limits"] == {"max_instances": 1000, "max_body_bytes": 1 << 20}


def test_health_and_readiness(deployment, http):
    assert http.get(deployment.url + "/healthz").json() == {"status": "ok"}
    ready = http.get(deployment.url + "/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    if deployment.architecture == "microservices":
        assert checks == {"preprocess": "SERVING", "inference": "SERVING", "postprocess": "SERVING"}
    else:
        assert checks["model"].startswith("loaded ")


def test_metrics_count_requests_across_workers(deployment, http, held_out):
    for _ in range(20):
        http.post(deployment.url + "/v1/predict", json={"instances": held_out[:2]})
    text = http.get(deployment.url + "/metrics").text
    counted = [line for line in text.splitlines()
               if line.startswith('lab_http_requests_total{route="/v1/predict",method="POST",status="200"}')]
    assert len(counted) == 1 and float(counted[0].split()[-1]) >= 20
    assert 'lab_stage_duration_seconds_bucket{stage="infer",le="+Inf"}' in text
    if deployment.architecture == "microservices":
        assert 'lab_stage_duration_seconds_count{stage="hop-pre"}' in text
