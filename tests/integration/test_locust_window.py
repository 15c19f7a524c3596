"""A fixed-length Locust run measures its whole length, counted from the moment every user has
spawned: Locust's own --run-time counts from before spawning, and on a busy CPU spawning ate most
of a 1 s bench step (0-5 requests recorded, a rate made up from them)."""

from __future__ import annotations

import pytest

from benchmarks.measure import loadgen
from lab.launch import launch
from lab.supervisor import Supervisor

pytestmark = pytest.mark.integration


def test_a_step_measures_for_as_long_as_asked_after_spawning(tmp_path, models_root):
    seconds = 1.0
    records = loadgen.write_records(tmp_path / "locust")
    supervisor = Supervisor(log_dir=tmp_path / "logs")
    try:
        with launch(
            "monolith", settings={"MODEL_DIR": models_root}, log_dir=tmp_path / "sut"
        ) as sut:
            samples = loadgen.run_locust(
                supervisor, "locust-step", sut.url, 8, 5.0, seconds, tmp_path / "step", records
            )
    finally:
        supervisor.stop(grace_s=2)
    # Spawning took some time after Locust started, so a window of `seconds` from the start of
    # the run (the old behaviour) is always shorter than asked. (A whole number of seconds: a
    # fractional one was rounded up by Locust before, so it could not tell old from new.)
    assert samples.seconds >= seconds, samples.seconds
    assert samples.requests, "the step recorded no request"
    assert all(
        samples.started_at <= started <= samples.stopped_at for started, _, _ in samples.requests
    )
    assert supervisor.processes == [], "Locust ended by itself and was reaped"
