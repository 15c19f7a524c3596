"""The CPU budget of each benchmarked overlay pair: equal for both architectures, fixed in bench.

The lab compares a monolith and microservices at the same budget; on Kubernetes the budget is
what the pods request and may use, times how many pods run. Each environment (dev, prod, bench)
is rendered for both architectures with `kubectl kustomize` and the CPU summed, at the autoscalers'
floor and at their ceiling. bench, what `make kind-bench` measures, must also keep the budget
still: requests = limits, replicas pinned, and a ResourceQuota equal to the sum. The split of
the microservices' budget between their pods is a stated choice, checked against where it is
stated, and the BENCH_CPU_SPLIT knob of scripts/kind.sh is exercised.
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
K8S = ROOT / "k8s"
KIND_SCRIPT = ROOT / "scripts" / "kind.sh"
BENCH = K8S / "components" / "bench" / "kustomization.yaml"
ENVIRONMENTS = ("dev", "prod", "bench")
ARCHS = ("monolith", "microservices")


def cpu(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def render(path: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed, so the overlays cannot be rendered")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def overlays() -> dict[tuple[str, str], list[dict]]:
    return {
        (arch, env): render(K8S / "overlays" / arch / env) for arch in ARCHS for env in ENVIRONMENTS
    }


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def pods(docs: list[dict], at: str) -> dict[str, tuple[int, dict]]:
    """{deployment: (replicas, resources of its one container)} with the autoscalers at `at`
    ("minReplicas" or "maxReplicas"); a Deployment without an autoscaler counts its replicas."""
    hpas = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]
        for hpa in of_kind(docs, "HorizontalPodAutoscaler")
    }
    out = {}
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        replicas = hpas[name][at] if name in hpas else deployment["spec"].get("replicas", 1)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        out[name] = (replicas, container["resources"])
    return out


def budget(docs: list[dict], at: str = "minReplicas") -> dict[str, float]:
    """Total CPU requested and CPU limit of a rendering."""
    return {
        section: round(
            sum(
                replicas * cpu(resources[section]["cpu"])
                for replicas, resources in pods(docs, at).values()
            ),
            6,
        )
        for section in ("requests", "limits")
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("at", ["minReplicas", "maxReplicas"])
def test_both_architectures_get_the_same_cpu_budget(overlays, env, at):
    monolith = budget(overlays["monolith", env], at)
    microservices = budget(overlays["microservices", env], at)
    assert monolith == microservices, f"{env} at {at}: {monolith} vs microservices {microservices}"
    assert monolith["requests"] > 0


def test_the_budget_comparison_sees_an_unequal_pair(overlays):
    """The sums are real: give the dev monolith less CPU, as it once had, and they differ."""
    docs = json.loads(json.dumps(overlays["monolith", "dev"]))
    (deployment,) = of_kind(docs, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "100m"
    assert budget(docs) != budget(overlays["microservices", "dev"])


@pytest.mark.parametrize("arch", ARCHS)
def test_bench_keeps_the_budget_still(overlays, arch):
    docs = overlays[arch, "bench"]
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"], hpa["metadata"]["name"]
    for name, (_, resources) in pods(docs, "minReplicas").items():
        assert resources["requests"] == resources["limits"], f"{name}: requests = limits"
    for deployment in of_kind(docs, "Deployment"):
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0, (
            "a surge pod would not fit in the quota"
        )
    (quota,) = of_kind(docs, "ResourceQuota")
    total = budget(docs)
    assert cpu(quota["spec"]["hard"]["requests.cpu"]) == total["requests"], "quota = budget"
    assert cpu(quota["spec"]["hard"]["limits.cpu"]) == total["limits"]
    (namespace,) = of_kind(docs, "Namespace")
    assert quota["metadata"]["namespace"] == namespace["metadata"]["name"], "binds this namespace"


def test_dev_and_prod_have_no_quota(overlays):
    for arch in ARCHS:
        for env in ("dev", "prod"):
            assert not of_kind(overlays[arch, env], "ResourceQuota"), f"{arch}/{env}"


def stated_split() -> dict[str, str]:
    """The split as k8s/components/bench states it: `gateway 400m + preprocess 200m ...`."""
    stated = r"^#\s+microservices:\s+(.+?)\s+=\s+\S+ CPU$"
    line = re.search(stated, BENCH.read_text(), re.MULTILINE).group(1)
    return dict(re.findall(r"(\w+) (\d+m)", line))


def test_the_split_between_the_microservices_is_the_one_stated(overlays):
    stated = stated_split()
    assert set(stated) == {"gateway", "preprocess", "inference", "postprocess"}
    rendered = {
        name: resources["requests"]["cpu"]
        for name, (_, resources) in pods(overlays["microservices", "bench"], "minReplicas").items()
    }
    assert rendered == stated
    assert len(set(stated.values())) > 1, "the split is a choice, not an accident of equal shares"
    readme = (K8S / "README.md").read_text()
    for name, share in stated.items():
        assert re.search(rf"\b{name}\b[^|\n]*\|\s*{share}\b", readme), (
            f"k8s/README.md must state {name}'s {share}"
        )


def test_the_recorded_cluster_answers_of_the_sampler_test_are_the_bench_pods(overlays):
    """tests/fixtures/kind/pods-bench.json (used by tests/unit/test_kind_sampler.py) has the
    requests of the bench manifests, so the sampler is tested on the budget kind-bench runs."""
    fixture = ROOT / "tests" / "fixtures" / "kind" / "pods-bench.json"
    recorded = json.loads(fixture.read_text())["items"]
    by_app = {
        pod["metadata"]["labels"]["app.kubernetes.io/name"]: pod["spec"]["containers"][0][
            "resources"
        ]
        for pod in recorded
    }
    rendered = {
        name: resources
        for name, (_, resources) in pods(overlays["microservices", "bench"], "minReplicas").items()
    }
    assert by_app == rendered


def kind_render(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    environ = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "PY": sys.executable,
        "ARCH": "microservices",
        "K8S_ENV": "bench",
        "IMAGE_TAG": "split-test",
        "KIND_DEPLOY_DIR": str(tmp_path / "deploy"),
        **env,
    }
    return subprocess.run(
        [shutil.which("bash"), str(KIND_SCRIPT), "render"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=ROOT,
    )


def test_the_split_is_a_knob_of_kind_bench(tmp_path):
    split = {"gateway": "250m", "preprocess": "250m", "inference": "300m", "postprocess": "200m"}
    result = kind_render(tmp_path, BENCH_CPU_SPLIT=",".join(f"{k}={v}" for k, v in split.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    path = ROOT / re.search(r"rendered (\S+)", result.stdout).group(1)
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    resources = {name: r for name, (_, r) in pods(docs, "minReplicas").items()}
    assert {name: r["requests"]["cpu"] for name, r in resources.items()} == split
    assert all(r["requests"] == r["limits"] for r in resources.values())


@pytest.mark.parametrize(
    "split,why",
    [
        ("gateway=500m,preprocess=200m,inference=200m,postprocess=200m", "add up to 1.1"),
        ("gateway=100m,preprocess=200m,inference=200m,postprocess=200m", "add up to 0.7"),
        ("gatewy=400m,preprocess=200m,inference=200m,postprocess=200m", "no pod 'gatewy'"),
        ("gateway=lots", "not a CPU quantity"),
    ],
)
def test_a_split_that_breaks_the_budget_is_refused(tmp_path, split, why):
    result = kind_render(tmp_path, BENCH_CPU_SPLIT=split)
    assert result.returncode != 0
    assert why in result.stderr, result.stderr


def test_the_split_knob_is_for_bench_only(tmp_path):
    result = kind_render(tmp_path, K8S_ENV="prod", BENCH_CPU_SPLIT="gateway=400m")
    assert result.returncode != 0 and "bench" in result.stderr


def test_kind_bench_deploys_the_bench_overlays_before_it_measures():
    script = KIND_SCRIPT.read_text()
    bench = script[script.index("cmd_bench() {") :]
    bench = bench[: bench.index("\n}\n")]
    deploy = bench.index('deploy_overlay "$arch" bench')
    measure = re.search(r'"\$PY" -m benchmarks\.\w+', bench).start()
    assert deploy < measure, "kind-bench measures the bench overlays, whatever was deployed before"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^kind-bench:.*\n\t.*scripts/kind\.sh bench\n", makefile, re.MULTILINE)


def test_the_offline_path_is_documented():
    readme = (K8S / "README.md").read_text()
    offline = readme[readme.index("## Offline") :]
    for needed in (
        "docker save",
        "docker load",
        "KIND_NODE_IMAGE=",
        "METRICS_SERVER_IMAGE=",
        "goes\non",
        "vendor/metrics-server/",
    ):
        assert needed.replace("\n", " ") in offline.replace("\n", " "), needed
