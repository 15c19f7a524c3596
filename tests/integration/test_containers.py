"""The project image and TARGET=docker against a real Docker engine.

The image is built once per session the way `make image` builds it (offline: wheelhouse on the
host, the pinned base or a local Debian one), then every architecture runs in containers (one per
role, on its own bridge network, limited like a pod) and must: start and answer, give the very
answers the local processes give on the parity set, run as a non-root user on a read-only root,
drain on SIGTERM, and leave nothing behind on success, on failure and on Ctrl-C; `make bench
TARGET=docker` must run a short ladder and clean up. Everything skips, saying why, when no engine
answers (`.ci/run` starts one when it can) or when no base image can be had.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import requests
from test_parity import edge_cases

from lab import base_image, containers, image_build, images, wheelhouse
from lab.architectures import ARCHITECTURES, HTTP_APPS, TOPOLOGIES
from lab.run import EXAMPLE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BAD_REQUESTS = [{"instances": []}, {"instances": [{"island": "Atlantis"}]}, {"rows": []}]


@pytest.fixture(scope="session")
def engine():
    available, reason = images.engine_available()
    if not available:
        pytest.skip(f"no Docker engine answers, so no container test can run: {reason}")
    return images.docker_client()


@pytest.fixture(scope="session")
def base(engine) -> str:
    try:
        return base_image.resolve_base(engine, os.environ.get("BASE_IMAGE") or None, progress=print)
    except base_image.BaseImageError as problem:
        pytest.skip(f"no base image can be had here, so the image cannot be built: {problem}")


@pytest.fixture(scope="session")
def built(engine, base) -> tuple[str, list[str]]:
    """The image of this tree, built as `make image` builds it; (reference, build output)."""
    output: list[str] = []
    ref = images.build_images(progress=output.append)[0]
    return ref, output


@pytest.fixture(scope="session")
def image(built) -> str:
    return built[0]


@pytest.fixture
def nothing_left(engine):
    """Every servinglab container and network that exists before the test, and a check after it
    that the test added none."""
    before = set(containers.leftovers(engine))
    yield before
    assert set(containers.leftovers(engine)) <= before, "a container or network was left behind"


@pytest.fixture(scope="module", params=ARCHITECTURES)
def in_containers(request, image, tmp_path_factory):
    """Each architecture in containers, one at a time, on CPU 0 as the benchmark runs it."""
    with containers.deploy(
        request.param,
        image,
        cpus=[0],
        log_dir=tmp_path_factory.mktemp("container-logs"),
        progress=print,
    ) as deployment:
        yield deployment


def test_the_build_is_offline_and_prints_the_image_size(built, engine):
    ref, output = built
    assert any(
        line.startswith(f"[images] built {ref}: ") and " MB (base " in line for line in output
    ), output[-5:]
    summary = image_build.last_build()
    assert summary and summary["ref"] == ref and summary["size_bytes"] > 0
    labels = engine.images.get(ref).labels
    assert labels["org.opencontainers.image.revision"]


def test_every_role_starts_and_answers(in_containers, http, held_out):
    topology = TOPOLOGIES[in_containers.architecture]
    assert [r.role for r in in_containers.roles] == [*topology.services, topology.entry]
    for role in in_containers.roles:
        role.container.reload()
        assert role.container.status == "running", role.name
    # The gateway's /readyz asks every stage for its gRPC health: all roles answer.
    assert http.get(in_containers.url + "/readyz", timeout=10).status_code == 200
    response = http.post(
        in_containers.url + "/v1/predict", json={"instances": held_out[:3]}, timeout=10
    )
    assert response.status_code == 200 and len(response.json()["predictions"]) == 3
    timing = response.headers["Server-Timing"]
    assert ("hop-" in timing) == bool(topology.services), timing


def test_answers_are_identical_to_the_local_processes(in_containers, monolith, http, held_out):
    """The parity set of tests/integration/test_parity.py, through containers and through local
    processes: the same predictions to the last bit, and the same errors."""
    instances = held_out + edge_cases(held_out, 300)
    local = http.post(
        monolith.url + "/v1/predict", json={"instances": instances}, timeout=30
    ).json()
    contained = http.post(
        in_containers.url + "/v1/predict", json={"instances": instances}, timeout=30
    ).json()
    assert contained["predictions"] == local["predictions"]
    # The image trains its own model with the same data, seed and libraries; its version differs
    # from the host's only because the fingerprint includes the Python patch release.
    assert {k: v for k, v in contained["model"].items() if k != "version"} == {
        k: v for k, v in local["model"].items() if k != "version"
    }
    for body in BAD_REQUESTS:
        theirs = http.post(monolith.url + "/v1/predict", json=body, timeout=10)
        ours = http.post(in_containers.url + "/v1/predict", json=body, timeout=10)
        assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())


def test_every_container_is_unprivileged_read_only_and_limited(in_containers, engine):
    for role in in_containers.roles:
        container = role.container
        assert container.exec_run(["id", "-u"]).output.decode().strip() == "10001", role.name
        denied = container.exec_run(["sh", "-c", "touch /opt/servinglab/x"])
        assert denied.exit_code != 0 and b"Read-only file system" in denied.output, role.name
        assert container.exec_run(["sh", "-c", "touch /tmp/x && rm /tmp/x"]).exit_code == 0
        if role.role in HTTP_APPS:
            writable = container.exec_run(["sh", "-c", "touch /var/lib/servinglab/metrics/x"])
            assert writable.exit_code == 0, writable.output
        host = container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        limit = in_containers.limits.memory_for(role.role, in_containers.architecture)
        assert host["Memory"] == limit << 20 and host["MemorySwap"] == limit << 20
        assert host["NanoCpus"] == 1_000_000_000 and host["CpusetCpus"] == "0"
        ports = container.attrs["NetworkSettings"]["Ports"] or {}
        published = [binding for bindings in ports.values() if bindings for binding in bindings]
        if role.role == TOPOLOGIES[in_containers.architecture].entry:
            assert published and all(binding["HostIp"] == "127.0.0.1" for binding in published)
        else:
            assert not published, f"{role.name} publishes {published}: only the entry point may"
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [in_containers.network]


RECORD = EXAMPLE  # make run's example bird


def _keep_asking(
    url: str, seen: list[int], started: threading.Event, done: threading.Event
) -> None:
    """Requests one after another until the server is gone; the status of each (0: refused)."""
    with requests.Session() as session:
        while not done.is_set():
            try:
                seen.append(
                    session.post(
                        url + "/v1/predict", json={"instances": [RECORD]}, timeout=10
                    ).status_code
                )
            except requests.RequestException:
                seen.append(0)
                if started.is_set():
                    return
            started.set()


def test_sigterm_drains_every_role(image, tmp_path, nothing_left):
    """SIGTERM (docker stop, the kubelet) reaches each server as PID 1, which drains and exits 0."""
    with containers.deploy("microservices", image, log_dir=tmp_path, progress=print) as deployment:
        seen: list[int] = []
        started, done = threading.Event(), threading.Event()
        asker = threading.Thread(
            target=_keep_asking, args=(deployment.url, seen, started, done), daemon=True
        )
        asker.start()
        assert started.wait(30), "no request was answered"
        for role in ("inference", "gateway", "preprocess", "postprocess"):
            container = deployment.container(role)
            container.kill(signal="SIGTERM")
            status = container.wait(timeout=60)
            assert status["StatusCode"] == 0, (
                f"{role} exited {status} after SIGTERM: {container.logs()[-2000:]}"
            )
        done.set()
        asker.join(30)
    # 200 before the stops; after a stage stops, the gateway's problem+json 503 (unavailable) or 504
    # (its deadline passed while the stage's address stopped answering); refused once the gateway
    # is gone. Never a 500, never a broken answer.
    assert seen and seen[0] == 200 and set(seen) <= {200, 503, 504, 0}, seen


def test_a_role_that_fails_to_start_is_reported_and_everything_removed(
    image, tmp_path, nothing_left
):
    failing = containers.deploy(
        "monolith",
        image,
        settings={"MODEL_PROFILE": "no-such-profile"},
        log_dir=tmp_path,
        ready_timeout_s=120,
        progress=print,
    )
    with (
        pytest.raises(
            containers.ContainerError, match=r"container exited.*before monolith was ready"
        ),
        failing,
    ):
        pytest.fail("a monolith without a model became ready")
    assert list(tmp_path.glob("*.log")), "the failed container's log is kept"


def _lab(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_ctrl_c_stops_and_removes_every_container(image, watch_output, nothing_left):
    process = _lab(
        "lab.containers", "run", "--arch", "microservices", "--port", "0", "--image", image
    )
    try:
        watch_output(process).wait_for("ready at", timeout_s=180)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            process.kill()


def test_a_port_already_taken_is_one_line_and_starts_nothing(image, nothing_left):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "lab.containers", "run", "--port", str(port), "--image", image],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and f"port {port} on 127.0.0.1 is already taken" in lines[0]
        and "PORT=" in lines[0]
    )


SHORT_BENCH = {
    "TARGET": "docker",
    "QUICK": "1",
    "STEP_SECONDS": "1",
    "PROBE_SECONDS": "1",
    "REPS": "1",
    "ARCHS": "monolith microservices",
}


def test_bench_on_docker_runs_a_short_ladder_and_cleans_up(image, tmp_path, nothing_left):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **SHORT_BENCH, "IMAGE": image, "LABEL": "docker-test"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads(next(tmp_path.glob("*-docker-test/results.json")).read_text())
    run = document["run"]
    assert run["target"] == "docker"
    limits = run["settings"]["docker_cpu_limit"]
    assert "--cpus 1" in limits and "--cpuset-cpus 0" in limits
    assert run["settings"]["docker_image"] == image
    for architecture, entry in document["architectures"].items():
        assert entry["levels"], architecture
        assert sum(level["cpu_seconds"] for level in entry["levels"]) > 0, (
            "CPU from the engine's stats"
        )
        names = [process["name"] for process in entry["processes"]]
        roles = [n for n in names if n.startswith(f"servinglab-{architecture}-")]
        assert len(roles) == len(TOPOLOGIES[architecture].services) + 1, names
        # Besides the containers: the engine's userland proxy of the published port, when it runs here.
        assert all(n.startswith("docker-proxy:") for n in set(names) - set(roles)), names
        assert "userland_proxy" in entry["applied"]["docker"]
        assert entry["applied"]["docker"]["limits"]["read_only_rootfs"] is True
    report = next(tmp_path.glob("*-docker-test/report.md")).read_text()
    assert "docker" in report and "docker_cpu_limit" in report


def test_ctrl_c_during_a_docker_bench_removes_every_container(
    image, tmp_path, watch_output, nothing_left
):
    process = _lab("benchmarks.bench", "--out", str(tmp_path), env={**SHORT_BENCH, "IMAGE": image})
    try:
        watch_output(process).wait_for("closed-loop", timeout_s=300)  # containers up, load running
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            process.kill()


def _copy_context(destination: Path) -> None:
    from docker.utils.build import exclude_paths

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for relative in exclude_paths(str(ROOT), patterns, dockerfile="docker/Dockerfile"):
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, destination / relative)
    shutil.copy2(ROOT / ".dockerignore", destination / ".dockerignore")


def test_a_code_edit_rebuilds_the_project_layer_but_never_retrains(engine, image, tmp_path):
    """The build context of this tree with a changed project wheel (what any code edit gives):
    the training step must come from the cache, the project install must not."""
    context = tmp_path / "context"
    _copy_context(context)
    wheel = next((context / "build" / "image" / "project").glob("servinglab-*.whl"))
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.writestr("servinglab/_an_edit.py", "EDITED = True\n")
    log = tmp_path / "build.log"
    ref = "servinglab-test:code-edit"
    try:
        image_build.build(
            engine, ref, {}, progress=lambda _: None, context=context, wheels=False, log_path=log
        )
        lines = log.read_text().splitlines()

        def cached(step_text: str) -> bool:
            index = next(
                i for i, line in enumerate(lines) if line.startswith("Step ") and step_text in line
            )
            following = next(
                i
                for i, line in enumerate(lines[index + 1 :], index + 1)
                if line.startswith("Step ")
            )
            return any("Using cache" in line for line in lines[index + 1 : following])

        assert cached("servinglab.model.training"), "a code edit retrained the models"
        assert not cached("--target /opt/servinglab/app"), "the edited project was not reinstalled"
    finally:
        engine.images.remove(ref, force=True)


def test_a_failing_build_shows_the_failing_step_and_its_log_tail(engine, base, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo "the step says why it fails" && exit 3\n'
    )
    output: list[str] = []
    with pytest.raises(image_build.BuildError) as failure:
        image_build.build(
            engine,
            "servinglab-test:fails",
            {},
            progress=output.append,
            base=base,
            context=tmp_path,
            dockerfile="Dockerfile",
            wheels=False,
            log_path=tmp_path / "b.log",
        )
    message = str(failure.value)
    assert "\n" not in message
    assert (
        "failed at Step 3/3 : RUN echo" in message
        and "exited with code 3" in message
        and "make image" in message
    )
    assert any("the step says why it fails" in line for line in output), output
    assert not engine.images.list(name="servinglab-test")


def test_a_base_that_cannot_be_had_is_one_line_and_non_zero(engine):
    result = subprocess.run(
        [sys.executable, "-m", "lab.images", "build"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BASE_IMAGE": "servinglab-absent:0"},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "servinglab-absent:0" in lines[0] and "cannot be pulled" in lines[0]
    ), result.stderr
    assert "docker load" in lines[0]


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("debootstrap"),
    reason="making a local base needs root and debootstrap",
)
def test_a_local_base_that_cannot_be_made_is_reported_and_leaves_nothing(engine):
    scratch_before = set(Path("/var/tmp").glob("servinglab-base-*"))
    output: list[str] = []
    with pytest.raises(
        base_image.BaseImageError,
        match=r"debootstrap of Debian bookworm from "
        r"http://127\.0\.0\.1:9/debian failed.*DEBIAN_MIRROR",
    ):
        base_image.make_local_base(
            engine,
            "servinglab-base:unreachable-test",
            progress=output.append,
            mirror="http://127.0.0.1:9/debian",
        )
    assert not base_image.present(engine, "servinglab-base:unreachable-test")
    assert set(Path("/var/tmp").glob("servinglab-base-*")) == scratch_before


def test_the_wheelhouse_holds_serving_dependencies_only(image):
    serving = {
        wheel.name.split("-")[0].lower()
        for wheel in (wheelhouse.OUT / "wheels" / "serving").glob("*.whl")
    }
    assert {"flask", "gunicorn", "grpcio", "scikit_learn", "numpy", "skops"} <= serving
    assert not serving & {
        "locust",
        "matplotlib",
        "docker",
        "pytest",
        "pandas",
        "psutil",
        "grpcio_tools",
    }
