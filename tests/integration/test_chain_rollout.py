"""A model rollout of the chained topology with replicas, under load, on real processes.

In the chained topology the gateway sends one call to preprocess, which calls inference itself:
keeping features and model on one version is the preprocess link's job (`microservices.chain`,
through `VersionTracker`). While inference's replicas are replaced by the new version, the
preprocess replicas still hold the old artifact and must repair every refused call by
preprocessing again for the version inference serves. Every answer must equal, exactly, what the
version it names computes in process: never the features of one version scored by the other.
"""

from __future__ import annotations

import time

import pytest
from steady_load import (
    WITHOUT_SHEDDING,
    SteadyLoad,
    assert_each_answer_is_one_version,
    version_references,
)

from lab.launch import launch
from servinglab.model.artifact import set_current

pytestmark = pytest.mark.integration


def test_chained_rollout_with_replicas_never_mixes_versions(two_versions, held_out, tmp_path):
    root, v1, v2 = two_versions
    instances = held_out[:40]
    expected = version_references(root, (v1, v2), instances)
    assert any(
        expected[v1][i]["probabilities"] != expected[v2][i]["probabilities"]
        for i in range(len(instances))
    ), "the two versions must disagree somewhere, or a mix could not be seen"
    set_current(root / "linear", v1)  # as the fixture left it, whatever an earlier test rolled out
    with (
        launch(
            "chained",
            settings={
                "MODEL_DIR": root,
                "HTTP_WORKERS": 2,
                "REQUEST_BUDGET_MS": 1000,
                **WITHOUT_SHEDDING,
            },
            replicas={"inference": 2, "preprocess": 2},
            log_dir=tmp_path,
        ) as deployment,
        SteadyLoad(deployment.url, instances) as load,
    ):
        load.wait_for_more(20)
        set_current(root / "linear", v2)
        # Inference first: for a while its replicas serve both versions behind one channel, then
        # only v2, while both preprocess replicas still preprocess for v1 by default.
        deployment.rolling_restart("inference")
        inference_moved = time.monotonic()  # every v1 inference process has exited by now
        load.wait_for_more(20)
        preprocess_moving = time.monotonic()
        deployment.rolling_restart("preprocess")
        load.wait_for_more(20)
    assert_each_answer_is_one_version(load, expected, (v1, v2))
    # Started after inference moved and before preprocess did, so answered through preprocess
    # replicas loaded with v1: each is v2's own answer (checked above), so the links preprocessed
    # again for v2. That is the repair path; without it these would be errors.
    repaired = [a for a in load.answers if inference_moved <= a.started < preprocess_moving]
    assert len(repaired) >= 10 and {a.body["model"]["version"] for a in repaired} == {v2}
    assert {a.body["model"]["version"] for a in load.answers if a.started > inference_moved} == {v2}
