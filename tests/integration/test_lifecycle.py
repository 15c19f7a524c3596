"""Processes start, refuse bad artifacts, stop completely on SIGTERM and SIGINT, and restart when they crash.

The restart tests run `python -m lab.run` (what `make run` runs) as a real process tree and
kill its children with SIGKILL, as a user would from another terminal.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import requests
from helpers import wait_for_exact_tree

from lab.architectures import TOPOLOGIES, stage_module
from monolith.app import create_app as create_monolith
from servinglab import config
from servinglab.model.artifact import ArtifactError, resolve_model_dir

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BIRD = {
    "island": "Biscoe",
    "bill_length_mm": 48.6,
    "bill_depth_mm": 16.0,
    "flipper_length_mm": 230.0,
    "body_mass_g": 5800.0,
    "sex": "male",
    "year": 2009,
}
STAGES = ("preprocess", "inference", "postprocess")


def expected_roles(architecture: str, env: dict[str, str]) -> Counter[str]:
    """What `make run` starts for `architecture`: the gunicorn master and its workers, and one
    process per gRPC service, nothing else."""
    return Counter(
        {
            "gunicorn": 1 + config.load(environ=env).http_workers,
            **{stage_module(service): 1 for service in TOPOLOGIES[architecture].services},
        }
    )


# Every architecture on SIGTERM (what Kubernetes and systemd send), and Ctrl-C on the two main ones.
@pytest.mark.parametrize(
    "architecture, stop_signal",
    [
        ("monolith", signal.SIGTERM),
        ("monolith", signal.SIGINT),
        ("microservices", signal.SIGTERM),
        ("microservices", signal.SIGINT),
        ("split", signal.SIGTERM),
        ("chained", signal.SIGTERM),
    ],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else value,
)
def test_run_stops_every_process(architecture, stop_signal, models_root, watch_output):
    env = {**os.environ, "LAB_MODEL_DIR": str(models_root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.run", "--arch", architecture, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        watch_output(process).wait_for("ready in", timeout_s=120)
        children = wait_for_exact_tree(process.pid, expected_roles(architecture, env))
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
        _gone, alive = psutil.wait_procs(children, timeout=15)
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
    result = subprocess.run(
        [sys.executable, "-m", "lab.run", "--arch", "monolith", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1
    assert "make train" in result.stdout + result.stderr


def test_generated_code_is_fresh(tmp_path):
    """The committed contract and the generated modules in use must not drift apart."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = ROOT / "microservices" / "generated"
    fresh = tmp_path / "microservices" / "generated"
    names = sorted(p.relative_to(fresh) for p in fresh.rglob("*.py*"))
    assert names == sorted(
        p.relative_to(generated) for p in generated.rglob("*.py*") if "__pycache__" not in p.parts
    )
    for name in names:
        assert (fresh / name).read_text() == (generated / name).read_text(), (
            f"{name} is stale: run make protos"
        )


# --- restart policy (make run) ---------------------------------------------------------------------


class LabRun:
    """`python -m lab.run` in the background, its output watched, its process tree inspected."""

    def __init__(
        self, watch_output, architecture: str, *args: str, env: dict[str, str] | None = None
    ):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lab.run", "--arch", architecture, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.output = watch_output(self.process)
        line = self.output.wait_for("ready in", timeout_s=120)
        self.url = re.search(r"at (http://\S+)", line).group(1)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def pid_of(self, module: str) -> int:
        """The direct child running `module` (a gunicorn master, not one of its workers)."""
        for child in psutil.Process(self.process.pid).children():
            try:
                if module in " ".join(child.cmdline()):
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        raise AssertionError(f"no child runs {module}")

    def entry_pids(self) -> set[int]:
        """The gunicorn master and its workers."""
        master = psutil.Process(self.pid_of("gunicorn"))
        return {master.pid, *(child.pid for child in master.children())}

    def predict(self) -> requests.Response:
        return requests.post(self.url + "/v1/predict", json={"instances": [BIRD]}, timeout=10)

    def poll(self, condition, what: str, timeout_s: float = 90.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            assert self.process.poll() is None, (
                f"lab.run exited while waiting for {what}:\n{''.join(self.output.seen)}"
            )
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; output:\n{''.join(self.output.seen)}")

    def stop(self) -> None:
        children = self.children()
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
        self.output.wait_for(
            "stopped every process"
        )  # the last line: everything before it is in `seen`

    def close(self) -> None:
        if self.process.poll() is None:
            for child in self.children():
                child.kill()
            self.process.kill()


def _answers(run: LabRun, status: int):
    try:
        response = run.predict()
    except requests.RequestException:
        return None
    return response if response.status_code == status else None


def test_make_run_restarts_each_killed_stage_and_the_gateway_recovers_by_itself(
    models_root, watch_output
):
    run = LabRun(watch_output, "microservices", env={"LAB_MODEL_DIR": str(models_root)})
    try:
        gateway = run.entry_pids()
        assert run.predict().status_code == 200
        for stage in STAGES:
            victim = run.pid_of(f"microservices.{stage}")
            os.kill(victim, signal.SIGKILL)
            seen = {"predict": None, "readyz": None}

            def degraded(seen=seen, stage=stage):
                response = _answers(run, 503)
                if response is not None:
                    seen["predict"] = response
                    ready = requests.get(run.url + "/readyz", timeout=10)
                    # Only the killed stage may be down. Each gateway worker reconnects to the
                    # stage killed before on its own backoff, so a worker that has not yet is
                    # polled past rather than read as a wrong report.
                    down = {
                        n for n, status in ready.json()["checks"].items() if status != "SERVING"
                    }
                    if ready.status_code == 503 and down == {stage}:
                        seen["readyz"] = ready.json()
                return seen["predict"] is not None and seen["readyz"] is not None

            run.poll(degraded, f"503s and /readyz naming only {stage} while it is down")
            assert seen["predict"].headers["Content-Type"].startswith("application/problem+json")
            assert seen["predict"].json()["status"] == 503
            run.output.wait_for(f"{stage} (pid {victim}) killed by SIGKILL")
            run.output.wait_for(f"{stage} restarted")
            run.poll(lambda: _answers(run, 200), f"answers again after {stage} restarted")
            run.poll(
                lambda: requests.get(run.url + "/readyz", timeout=10).status_code == 200,
                f"/readyz 200 after {stage} restarted",
            )
            assert run.pid_of(f"microservices.{stage}") != victim
            assert run.entry_pids() == gateway  # the gateway recovered without a restart of its own
        run.stop()
    finally:
        run.close()


@pytest.mark.parametrize("architecture", ["monolith", "microservices"])
def test_make_run_restarts_the_whole_architecture_when_the_gunicorn_master_dies(
    architecture, models_root, watch_output
):
    run = LabRun(watch_output, architecture, env={"LAB_MODEL_DIR": str(models_root)})
    try:
        before = {child.pid for child in run.children()}
        os.kill(run.pid_of("gunicorn"), signal.SIGKILL)
        run.output.wait_for("to start it again in order")
        run.output.wait_for(f"{architecture} ready again at {run.url}")
        run.poll(lambda: _answers(run, 200), "answers on the same URL")
        assert not before & {child.pid for child in run.children()}  # every process is new
        run.stop()
    finally:
        run.close()


def test_a_stage_crashing_at_start_up_backs_off_with_growing_delays(
    models_root, tmp_path, watch_output
):
    shutil.copytree(models_root / "linear", tmp_path / "linear")
    current = tmp_path / "linear" / "CURRENT"
    served = current.read_text()
    run = LabRun(
        watch_output,
        "microservices",
        env={"LAB_MODEL_DIR": str(tmp_path), "LAB_RESTART_BACKOFF_S": "0.2"},
    )
    try:
        current.write_text(
            "linear-does-not-exist\n"
        )  # a bad rollout: every new inference process dies
        os.kill(run.pid_of("microservices.inference"), signal.SIGKILL)
        run.output.wait_for("restart #4", timeout_s=180)
        exits = [
            line
            for line in run.output.seen
            if re.search(r"inference \(pid \d+\) .*restart #", line)
        ]
        delays = [float(re.search(r"restart #\d+ in ([\d.]+) s", line).group(1)) for line in exits]
        assert len(delays) == 4 and delays == sorted(delays) and delays[0] < delays[-1], exits
        assert all("exit code" in line and "before it was ready" in line for line in exits[1:]), (
            exits
        )
        assert run.predict().status_code == 503  # still down, and the gateway still answers
        current.write_text(served)  # the fix: the next attempt starts
        run.output.wait_for("inference ready again", timeout_s=180)
        run.poll(lambda: _answers(run, 200), "answers after the crash loop ended")
        # A stop while a restart is pending (the backoff has not reset: it is seconds now), then
        # everything goes and nothing is started again.
        victim = run.pid_of("microservices.inference")
        os.kill(victim, signal.SIGKILL)
        run.output.wait_for(f"inference (pid {victim}) killed by SIGKILL")
        run.stop()
        assert (
            "inference restarted"
            not in "".join(run.output.seen).rsplit(f"(pid {victim}) killed", 1)[1]
        )
    finally:
        run.close()


def test_the_never_policy_still_fails_fast(models_root, watch_output):
    run = LabRun(
        watch_output, "microservices", "--restart", "never", env={"LAB_MODEL_DIR": str(models_root)}
    )
    try:
        children = run.children()
        os.kill(run.pid_of("microservices.inference"), signal.SIGKILL)
        assert run.process.wait(timeout=60) == 1
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
        run.output.wait_for("inference exited unexpectedly (killed by SIGKILL); stopping")
    finally:
        run.close()


@pytest.mark.parametrize("how", [["--restart", "sometimes"], []])
def test_an_unknown_restart_policy_fails_at_start_with_the_allowed_values(how):
    env = {**os.environ, "LAB_RESTART_POLICY": "sometimes"}
    result = subprocess.run(
        [sys.executable, "-m", "lab.run", "--port", "0", *how],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown restart policy 'sometimes'; choose one of: always, never" in result.stderr
