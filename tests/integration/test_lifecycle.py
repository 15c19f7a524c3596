"""Processes start, refuse bad artifacts, and stop completely on SIGTERM and SIGINT."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from monolith.app import create_app as create_monolith
from servinglab.model.artifact import ArtifactError, resolve_model_dir

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("architecture", ["monolith", "microservices"])
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_every_process(architecture, stop_signal, models_root, watch_output):
    env = {**os.environ, "LAB_MODEL_DIR": str(models_root)}
    process = subprocess.Popen([sys.executable, "-m", "lab.run", "--arch", architecture, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        watch_output(process).wait_for("ready in", timeout_s=90)
        children = psutil.Process(process.pid).children(recursive=True)
        expected = 4 if architecture == "monolith" else 7  # gunicorn master + 2 workers (+ 3 stages)
        assert len(children) >= expected - 1
        process.send_signal(stop_signal)
        assert process.wait(timeout=30) == 0
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
    finally:
        if process.poll() is None:
            process.kill()


def test_tampered_artifact_is_refused(models_root, tmp_path):
    version_dir = resolve_model_dir(models_root, "linear")
    copy = tmp_path / version_dir.name
    shutil.copytree(version_dir, copy)
    with (copy / "model.skops").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        create_monolith({"MODEL_DIR": str(copy)})


def test_run_reports_a_failed_start(tmp_path):
    env = {**os.environ, "LAB_MODEL_DIR": str(tmp_path / "nothing-here")}
    result = subprocess.run([sys.executable, "-m", "lab.run", "--arch", "monolith", "--port", "0"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 1
    assert "make train" in result.stdout + result.stderr


def test_generated_code_is_fresh(tmp_path):
    """The committed contract and the generated modules in use must not drift apart."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)], check=True,
                   capture_output=True)
    generated = ROOT / "microservices" / "generated"
    fresh = tmp_path / "microservices" / "generated"
    names = sorted(p.relative_to(fresh) for p in fresh.rglob("*.py*"))
    assert names == sorted(p.relative_to(generated) for p in generated.rglob("*.py*") if "__pycache__" not in p.parts)
    for name in names:
        assert (fresh / name).read_text() == (generated / name).read_text(), f"{name} is stale: run make protos"
