"""scripts/kind.sh, checked where no cluster runs: its smoke test, and the overlay it applies.

`kind.sh deploy` ends with a smoke test: one POST /v1/predict whose raw answer must contain
SMOKE_EXPECT. Both halves are pinned here against the trained model of every profile the rendered
manifests serve (the image trains the same models from the same data and seed): the body is
`make run`'s example bird, the in-process pipeline gives that bird the species the script
expects, the real app's answer contains the expected text (and an answer for another species does
not), and the script's own `smoke_test` passes against a real server and fails against a wrong
answer. The overlay deploy generates is rendered, with a BENCH_CPU_SPLIT too, and validated
strictly; test_k8s.py checks the overlay rendered without a split.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_k8s import (
    KIND_SCRIPT,
    _validate,
    kubectl,
    of_kind,
    run_kind_script,
    server,
    settings_of,
)

from lab.run import EXAMPLE
from monolith.app import create_app as create_monolith
from servinglab.model.artifact import load_artifact
from servinglab.model.pipeline import ServingPipeline
from servinglab.validation import validate_predict_request

SCRIPT = KIND_SCRIPT.read_text()


def script_constant(name: str) -> str:
    """A single-quoted constant of kind.sh, as bash sees it."""
    found = re.search(rf"^{name}='([^']*)'$", SCRIPT, re.MULTILINE)
    assert found, f"kind.sh has no {name}='...' line"
    return found.group(1)


SMOKE_BODY = script_constant("SMOKE_BODY")
SMOKE_EXPECT = script_constant("SMOKE_EXPECT")


def render_for_kind(tmp_path: Path, arch: str, env: str, **extra: str) -> tuple[Path, list[dict]]:
    """`kind.sh render`: the generated overlay's directory and the manifest deploy would apply."""
    kubectl()
    result = run_kind_script(
        "render",
        tmp_path,
        ARCH=arch,
        K8S_ENV=env,
        IMAGE_TAG="kind-script-test",
        KIND_DEPLOY_DIR=str(tmp_path / "deploy"),
        **extra,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = Path(re.search(r"rendered (\S+)", result.stdout).group(1))
    rendered = rendered if rendered.is_absolute() else KIND_SCRIPT.parents[1] / rendered
    assert rendered.is_relative_to(tmp_path)
    return rendered.parent, [doc for doc in yaml.safe_load_all(rendered.read_text()) if doc]


@pytest.fixture(scope="module")
def served_profiles(tmp_path_factory) -> set[str]:
    """LAB_MODEL_PROFILE of every server kind-deploy starts, in every architecture and env."""
    profiles = set()
    for arch in ("monolith", "microservices"):
        for env in ("dev", "prod", "bench"):
            _, docs = render_for_kind(tmp_path_factory.mktemp("profiles"), arch, env)
            for deployment in of_kind(docs, "Deployment"):
                profiles.add(settings_of(docs, server(deployment))["MODEL_PROFILE"])
    return profiles


# --- the smoke request ----------------------------------------------------------------------------


def test_the_smoke_body_is_make_runs_example_bird():
    assert json.loads(SMOKE_BODY) == {"instances": [EXAMPLE]}


def test_the_trained_model_gives_the_smoke_bird_the_species_the_script_expects(
    served_profiles, models_root
):
    expected = json.loads("{" + SMOKE_EXPECT + "}")
    assert list(expected) == ["species"], "the smoke test checks the species"
    assert served_profiles, "no server in the rendered manifests"
    for profile in served_profiles:
        pipeline = ServingPipeline.from_artifact(load_artifact(models_root, profile))
        batch = validate_predict_request(json.loads(SMOKE_BODY), 1)
        (prediction,) = pipeline.predict(batch)
        assert prediction["species"] == expected["species"], profile
        assert not prediction["uncertain"], f"{profile}: a borderline bird makes a flaky smoke test"


def test_the_real_answer_contains_the_expected_text_and_another_species_does_not(
    served_profiles, models_root, held_out
):
    for profile in served_profiles:
        app = create_monolith({"MODEL_DIR": str(models_root), "MODEL_PROFILE": profile})
        client = app.test_client()
        # The script matches the raw bytes curl printed, so compare the raw body, not parsed JSON.
        answer = client.post(
            "/v1/predict", data=SMOKE_BODY, content_type="application/json"
        ).get_data(as_text=True)
        assert SMOKE_EXPECT in answer, answer
        other = next(
            record
            for record in held_out
            if client.post("/v1/predict", json={"instances": [record]}).get_json()["predictions"][
                0
            ]["species"]
            != json.loads("{" + SMOKE_EXPECT + "}")["species"]
        )
        wrong = client.post("/v1/predict", json={"instances": [other]}).get_data(as_text=True)
        assert SMOKE_EXPECT not in wrong, "the expected text must tell the species apart"


def run_smoke_test(url: str, expect: str | None = None) -> subprocess.CompletedProcess:
    """kind.sh's own `smoke_test` function (and what it uses), run by bash against `url`;
    `expect` replaces SMOKE_EXPECT."""
    definitions = [
        line for line in SCRIPT.splitlines() if line.startswith(("SMOKE_BODY=", "SMOKE_EXPECT="))
    ]
    for function in ("say", "die"):
        definitions.append(re.search(rf"^{function}\(\) .*$", SCRIPT, re.MULTILINE).group(0))
    definitions.append(re.search(r"^smoke_test\(\) \{\n.*?^\}$", SCRIPT, re.M | re.S).group(0))
    if expect is not None:
        definitions.append('SMOKE_EXPECT="$2"')
    program = "\n".join([*definitions, 'smoke_test "$1"'])
    return subprocess.run(
        [shutil.which("bash"), "-c", program, "smoke", url, expect or ""],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_the_scripts_smoke_test_passes_on_a_real_server(monolith):
    result = run_smoke_test(monolith.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke test passed" in result.stdout and SMOKE_EXPECT in result.stdout


@pytest.mark.integration
def test_the_scripts_smoke_test_fails_when_the_answer_is_another_species(monolith):
    result = run_smoke_test(monolith.url, expect='"species":"Adelie"')
    assert result.returncode == 1
    assert "unexpected answer" in result.stderr and '"species":"Gentoo"' in result.stderr


# --- the overlay deploy applies -----------------------------------------------------------------


def test_the_generated_overlay_with_a_cpu_split_renders_and_validates_strictly(tmp_path):
    split = {"gateway": "250m", "preprocess": "250m", "inference": "300m", "postprocess": "200m"}
    overlay, docs = render_for_kind(
        tmp_path,
        "microservices",
        "bench",
        BENCH_CPU_SPLIT=",".join(f"{pod}={cpu}" for pod, cpu in split.items()),
    )
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    # Relative paths (kustomize takes no others) that lead back into this checkout.
    (base,) = kustomization["resources"]
    (component,) = kustomization["components"]
    root = KIND_SCRIPT.parents[1]
    assert (overlay / base).resolve() == root / "k8s" / "overlays" / "microservices" / "bench"
    assert (overlay / component).resolve() == root / "k8s" / "components" / "kind"
    assert kustomization["images"] == [{"name": "servinglab", "newTag": "kind-script-test"}]
    assert len(kustomization["patches"]) == len(split)
    cpus = {
        deployment["metadata"]["name"]: server(deployment)["resources"]
        for deployment in of_kind(docs, "Deployment")
    }
    assert {name: r["limits"]["cpu"] for name, r in cpus.items()} == split
    result = _validate(overlay / "rendered.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.findall(r"passed for resource (\S+) against version", output)
    assert len(passed) == len(docs), f"not every resource was validated:\n{output}"
