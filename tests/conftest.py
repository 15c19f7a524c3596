"""Shared fixtures: the trained artifact, held-out data, and real running architectures.

Running servers are session-scoped: starting the microservices costs a few seconds of imports,
and every integration test only reads from them. Tests that kill or restart processes start their
own deployment instead.
"""

from __future__ import annotations

import importlib
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from hypothesis import settings as hypothesis_settings
from xdist.scheduler import LoadFileScheduling

from lab.launch import launch
from servinglab.model import data
from servinglab.model.artifact import load_artifact, set_current
from servinglab.model.pipeline import ServingPipeline
from servinglab.model.training import train

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

# Property and fuzz tests draw their example counts from a profile: `dev` keeps `make test` within
# its budget on a 2-core machine; `ci` (HYPOTHESIS_PROFILE=ci, set by .ci/run, which has 90
# minutes) runs Hypothesis's full default count. A test's own @settings(max_examples=...) wins.
hypothesis_settings.register_profile("dev", max_examples=30)
hypothesis_settings.register_profile("ci", max_examples=100)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Before any test module imports grpc (they do, to call the stages): the microservices package
# switches gRPC's fork handlers off, which the suite's every subprocess.Popen needs (see its
# docstring).
importlib.import_module("microservices")

# `make test` runs the suite on two pytest-xdist workers (`--dist loadfile`): each test module is
# one unit of work, so its module fixtures are set up once, on one worker. Modules that read the
# same session-scoped benchmark run (tests/integration/conftest.py) form one unit, so that run is
# made once. Units are handed out slowest first, so neither worker is left alone with a long one at
# the end; a module missing from SLOWEST_FIRST only costs balance, never correctness.
# (xdist's own `xdist_group` marks cannot do this: with pytest 9 the test id they rewrite is no
# longer the one pytest reports, so every marked test ends up a unit of its own.)
SHARES_A_UNIT_WITH = {"tests/integration/test_notebook.py": "tests/integration/test_bench.py"}
SLOWEST_FIRST = tuple(
    f"tests/integration/{name}.py"
    for name in (
        "test_bench",
        "test_scenarios",
        "test_chaos_run",
        "test_scenario_ship",
        "test_containers",
        "test_lifecycle",
        "test_reliability",
        "test_scenario_memory",
        "test_worker_spread",
        "test_fuzz",
        "test_cache_integration",
        "test_topologies",
        "test_hop_delay",
        "test_chain_rollout",
    )
)


def work_unit(nodeid: str) -> str:
    """The unit of work of a test, by its id: its module, or the module it shares a run with."""
    module = nodeid.split("::", 1)[0]
    return SHARES_A_UNIT_WITH.get(module, module)


class WorkUnitScheduling(LoadFileScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadfile":
        return None  # another --dist asked for: xdist's own scheduler
    return WorkUnitScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The order units are handed out in (with --no-loadscope-reorder): every worker collects the
    # same, so every worker sorts the same.
    rank = {module: position for position, module in enumerate(SLOWEST_FIRST)}

    def order(indexed: tuple[int, pytest.Item]) -> tuple[int, int]:
        index, item = indexed
        return rank.get(work_unit(item.nodeid), len(rank)), index

    items[:] = [item for _, item in sorted(enumerate(items), key=order)]


@pytest.fixture(scope="session")
def models_root() -> Path:
    if not (MODELS / "linear" / "CURRENT").exists():
        pytest.fail("no trained model: run the tests through `make test`, which trains one first")
    return MODELS


@pytest.fixture(scope="session")
def artifact(models_root):
    return load_artifact(models_root, "linear")


@pytest.fixture(scope="session")
def pipeline(artifact) -> ServingPipeline:
    return ServingPipeline.from_artifact(artifact)


@pytest.fixture(scope="module")
def two_versions(models_root, tmp_path_factory):
    """A models root holding the served linear version (v1, CURRENT) and a retrained one (v2).

    Another seed draws another stratified split: a different scaler and model, so a mix of v1
    preprocessing and v2 weights would produce probabilities matching neither version. One per
    test module, because rollout tests move CURRENT.
    """
    root = tmp_path_factory.mktemp("two-versions")
    shutil.copytree(models_root / "linear", root / "linear")
    v1 = (root / "linear" / "CURRENT").read_text().strip()
    v2 = train("linear", 43, root).name
    assert v2 != v1
    set_current(root / "linear", v1)
    return root, v1, v2


@pytest.fixture(scope="session")
def held_out() -> list[dict]:
    return data.held_out_records()


@pytest.fixture(scope="session")
def monolith(models_root, tmp_path_factory):
    with launch(
        "monolith",
        settings={"MODEL_DIR": models_root, "HTTP_WORKERS": 2},
        log_dir=tmp_path_factory.mktemp("monolith-logs"),
    ) as deployment:
        yield deployment


@pytest.fixture(scope="session")
def microservices(models_root, tmp_path_factory):
    with launch(
        "microservices",
        settings={"MODEL_DIR": models_root, "HTTP_WORKERS": 2},
        log_dir=tmp_path_factory.mktemp("microservices-logs"),
    ) as deployment:
        yield deployment


@pytest.fixture(scope="session")
def split(models_root, tmp_path_factory):
    with launch(
        "split",
        settings={"MODEL_DIR": models_root, "HTTP_WORKERS": 2},
        log_dir=tmp_path_factory.mktemp("split-logs"),
    ) as deployment:
        yield deployment


@pytest.fixture(scope="session")
def chained(models_root, tmp_path_factory):
    with launch(
        "chained",
        settings={"MODEL_DIR": models_root, "HTTP_WORKERS": 2},
        log_dir=tmp_path_factory.mktemp("chained-logs"),
    ) as deployment:
        yield deployment


@pytest.fixture(params=["monolith", "microservices"])
def deployment(request):
    """Run a test once against each architecture."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def http() -> requests.Session:
    with requests.Session() as session:
        yield session


class OutputWatcher:
    """Reads a child's combined output in a thread, so waiting for a line never lags behind it."""

    def __init__(self, process: subprocess.Popen):
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(process,), daemon=True).start()

    def _pump(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.put(line)

    def wait_for(self, needle: str, timeout_s: float = 120.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"never printed {needle!r}; output was:\n{''.join(self.seen)}")


@pytest.fixture
def watch_output():
    return OutputWatcher
