"""The light layers stay light: the pipeline, the contract and the settings import no web or RPC
framework, and the contract no scikit-learn, so a stage service, a tool or a notebook can use them
without pulling in Flask or gRPC (and the gateway can speak the contract without scikit-learn).

Each check imports the modules in a fresh interpreter: in this one, other tests have long since
imported everything.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("flask", "werkzeug", "grpc")
MODEL_MODULES = sorted(
    f"servinglab.model.{path.stem}"
    for path in (ROOT / "servinglab" / "model").glob("*.py")
    if path.stem != "__init__"
)


def loaded_after_importing(*modules: str) -> set[str]:
    """Top-level packages in sys.modules of a new interpreter after importing `modules`."""
    code = (
        "import json, sys\n"
        + "".join(f"import {module}\n" for module in modules)
        + "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def test_every_model_module_is_checked():
    assert {
        "servinglab.model.pipeline",
        "servinglab.model.versions",
        "servinglab.model.artifact",
    } <= set(MODEL_MODULES)


@pytest.mark.parametrize(
    "modules",
    [
        ("servinglab.contract",),
        ("servinglab.config",),
        tuple(MODEL_MODULES),
        ("servinglab.schema", "servinglab.validation", "servinglab.problems"),
        # The cache wraps backends of both architectures and the inference service's classifier.
        ("servinglab.serving.cache", "servinglab.serving.stores", "servinglab.serving.batching"),
    ],
    ids=["contract", "config", "model", "schema", "cache"],
)
def test_no_web_or_rpc_framework_is_imported(modules):
    loaded = loaded_after_importing(*modules)
    assert not loaded & set(FRAMEWORKS), (
        f"{', '.join(modules)} imported {sorted(loaded & set(FRAMEWORKS))}"
    )


def test_the_contract_and_the_settings_need_no_scikit_learn():
    loaded = loaded_after_importing("servinglab.contract", "servinglab.config")
    assert "sklearn" not in loaded and "numpy" not in loaded


def imported_packages(path: Path) -> set[str]:
    """Top-level packages that the module at `path` imports, anywhere in it (deferred ones too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", ["servinglab", "monolith", "microservices"])
def test_nothing_that_serves_imports_the_lab_machinery(package):
    """`lab` (launcher, supervisor, images) stands above the servers: it may import them, never
    the reverse, or a stage service would pull in the whole lab."""
    modules = [path for path in (ROOT / package).rglob("*.py") if "generated" not in path.parts]
    assert modules
    offenders = [
        str(path.relative_to(ROOT)) for path in modules if "lab" in imported_packages(path)
    ]
    assert offenders == []
