#!/usr/bin/env bash
# servinglab on a local kind cluster: scripts/kind.sh up|load|deploy|bench|netpol|render|logs|down
# (behind `make kind-up`, `kind-load`, `kind-deploy ARCH=...`, `kind-bench`, `kind-down`).
#
#   up      create the cluster ($KIND_CONFIG) and install the vendored metrics-server (no download)
#   load    build the image with the docker SDK (lab.images) and load it into the node
#   deploy  apply k8s/overlays/$ARCH/$K8S_ENV plus k8s/components/kind with this tree's image tag,
#           wait for the rollout, then smoke-test POST /v1/predict through the NodePort
#   bench   deploy k8s/overlays/<arch>/bench for each of $ARCHS, then run the Locust benchmark
#   netpol  show the NetworkPolicies at work: a pod outside the gateway cannot reach a stage
#   render  write what deploy would apply to build/kind-deploy/ (needs no cluster)
#   logs    export cluster logs to reports/kind-logs/ (also done automatically on any failure)
#   down    delete the cluster
#
# Environment: ARCH, K8S_ENV=dev|prod|bench, ARCHS; KIND_CONFIG (k8s/kind/cluster-two-nodes.yaml
# for two nodes), KIND_NODE_IMAGE (another node image), METRICS_SERVER_IMAGE (a pre-loaded one,
# offline), BENCH_CPU_SPLIT (the CPU of each microservices pod in bench), IMAGE_TAG (deploy this
# tag instead of the tree's), KIND_DEPLOY_DIR (instead of build/kind-deploy). k8s/README.md has more.
#
# Written for bash 3.2 too (macOS): no associative arrays, no mapfile. Every kubectl call names
# the kind context explicitly, so this script never touches any other cluster you have.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-servinglab}
CONTEXT="kind-${CLUSTER}"
KIND_CONFIG=${KIND_CONFIG:-k8s/kind/cluster.yaml}
# Empty: the node image pinned (by digest) in $KIND_CONFIG. Set: `kind create cluster --image`,
# which replaces it on every node, e.g. with a tag you `docker load`-ed on an offline machine.
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}
KIND_VERSION=v0.31.0
# Vendored, version-pinned and applied from this checkout: kind-up downloads no manifest.
METRICS_SERVER_DIR=k8s/vendor/metrics-server
METRICS_SERVER_MANIFEST=components-v0.8.1.yaml
# Empty: the image pinned (tag and digest) in $METRICS_SERVER_DIR. Set: load this image from the
# local Docker into the node and run metrics-server with it (offline; k8s/README.md).
METRICS_SERVER_IMAGE=${METRICS_SERVER_IMAGE:-}
METRICS_SERVER_TIMEOUT=${METRICS_SERVER_TIMEOUT:-120s}
PY=${PY:-.venv/bin/python}
ARCH=${ARCH:-monolith}
K8S_ENV=${K8S_ENV:-dev}
ARCHS=${ARCHS:-monolith microservices}
BENCH_CPU_SPLIT=${BENCH_CPU_SPLIT:-}
IMAGE_TAG=${IMAGE_TAG:-}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-240s}
LOG_ROOT=reports/kind-logs
# Where deploy writes the overlay it generates and the manifest it applies (git-ignored).
DEPLOY_DIR=${KIND_DEPLOY_DIR:-build/kind-deploy}
STAGES="preprocess inference postprocess"
# One Gentoo penguin (lab/run.py's example): the smoke test checks the answer, not just 200.
SMOKE_BODY='{"instances":[{"island":"Biscoe","bill_length_mm":48.6,"bill_depth_mm":16.0,"flipper_length_mm":230.0,"body_mass_g":5800.0,"sex":"male","year":2009}]}'
SMOKE_EXPECT='"species":"Gentoo"'

say() { echo "[kind] $*"; }
die() { echo "[kind] error: $*" >&2; exit 1; }
kc() { kubectl --context "$CONTEXT" "$@"; }

# --- prerequisites: each command checks only what it uses, and names everything missing --------

install_hint() {
  case "$1" in
    docker) echo "Docker Desktop, Docker Engine or colima: https://docs.docker.com/get-docker/" ;;
    kind) echo "kind ${KIND_VERSION}: https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
    kubectl) echo "kubectl: https://kubernetes.io/docs/tasks/tools/" ;;
    curl) echo "curl, from your package manager" ;;
  esac
}

need_tools() {
  local missing=0 tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "[kind] missing: ${tool} (install $(install_hint "$tool"))" >&2
      missing=1
    fi
  done
  [ "$missing" -eq 0 ] || die "install the tools above, then run this again"
}

need_engine() {
  docker info >/dev/null 2>&1 || die "the docker CLI is installed but no Docker engine answers: start Docker Desktop, \`sudo systemctl start docker\` or \`colima start\`"
}

need_venv() {
  [ -x "$PY" ] || die "no virtualenv at ${PY}: run \`make bootstrap\` first"
}

cluster_exists() {
  kind get clusters 2>/dev/null | grep -qx "$CLUSTER"
}

need_cluster() {
  cluster_exists || die "no kind cluster named ${CLUSTER}: run \`make kind-up\` first"
}

check_arch() {
  case "$1" in
    monolith | microservices) ;;
    *) die "ARCH must be monolith or microservices, not '$1'" ;;
  esac
}

check_env() {
  case "$1" in
    dev | prod | bench) ;;
    *) die "K8S_ENV must be dev, prod or bench, not '$1'" ;;
  esac
}

check_split() {
  [ -z "$BENCH_CPU_SPLIT" ] || [ "$1" = bench ] ||
    die "BENCH_CPU_SPLIT is the split of the bench budget (K8S_ENV=bench, make kind-bench), not of ${1}"
}

namespace_of() { echo "servinglab-$1"; }

node_port_of() {
  case "$1" in
    monolith) echo 30080 ;;      # k8s/components/kind
    microservices) echo 30081 ;; # k8s/components/kind
  esac
}

stage_port() {
  case "$1" in
    preprocess) echo 50051 ;; # k8s/base/microservices/preprocess.yaml
    inference) echo 50052 ;;
    postprocess) echo 50053 ;;
  esac
}

# --- failure handling: once past the prerequisites, any failure exports the cluster's logs -------

export_logs() {
  local dir
  dir="${LOG_ROOT}/$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$dir"
  say "exporting cluster logs to ${dir}"
  kind export logs "$dir" --name "$CLUSTER" >/dev/null 2>&1 || say "kind export logs failed"
  kc get all,networkpolicies,hpa,pdb,resourcequotas --all-namespaces -o wide >"${dir}/resources.txt" 2>&1 || true
  kc get events --all-namespaces --sort-by=.lastTimestamp >"${dir}/events.txt" 2>&1 || true
}

on_exit() {
  local status=$?
  if [ "$status" -ne 0 ] && [ "${EXPORT_LOGS_ON_FAILURE:-0}" = 1 ] && cluster_exists; then
    export_logs
  fi
  exit "$status"
}
trap on_exit EXIT

# --- commands -----------------------------------------------------------------------------------

untaint_control_plane() {
  # kind taints the control-plane node as soon as a cluster has workers; here every node may run
  # servinglab's pods (k8s/kind/cluster-two-nodes.yaml), so the topology spread has nodes to use.
  local nodes
  nodes=$(kc get nodes -o name | wc -l | tr -d ' ')
  [ "$nodes" -gt 1 ] || return 0
  if kc get nodes -l node-role.kubernetes.io/control-plane -o jsonpath='{.items[*].spec.taints[*].key}' |
    grep -q node-role.kubernetes.io/control-plane; then
    say "${nodes} nodes: letting workloads run on the control-plane node too"
    kc taint nodes -l node-role.kubernetes.io/control-plane node-role.kubernetes.io/control-plane:NoSchedule-
  fi
}

install_metrics_server() {
  # Returns non-zero instead of exiting: the cluster works without metrics-server.
  say "installing metrics-server from ${METRICS_SERVER_DIR}/${METRICS_SERVER_MANIFEST} (vendored, pinned)"
  if [ -n "$METRICS_SERVER_IMAGE" ]; then
    say "loading ${METRICS_SERVER_IMAGE} from the local Docker into the node (METRICS_SERVER_IMAGE)"
    kind load docker-image "$METRICS_SERVER_IMAGE" --name "$CLUSTER" || return 1
  fi
  kc apply -k "$METRICS_SERVER_DIR" || return 1
  if [ -n "$METRICS_SERVER_IMAGE" ]; then
    kc -n kube-system set image deployment/metrics-server "metrics-server=${METRICS_SERVER_IMAGE}" || return 1
  fi
  kc -n kube-system rollout status deployment/metrics-server --timeout "$METRICS_SERVER_TIMEOUT" || return 1
}

cmd_up() {
  need_tools docker kind kubectl
  need_engine
  local version create
  version=$(kind version | awk '{print $2}')
  [ "$version" = "$KIND_VERSION" ] || say "warning: kind ${version} found; this lab is tested with ${KIND_VERSION}"
  if cluster_exists; then
    say "cluster ${CLUSTER} already exists"
  else
    create=(kind create cluster --name "$CLUSTER" --config "$KIND_CONFIG" --wait 120s)
    if [ -n "$KIND_NODE_IMAGE" ]; then
      say "node image ${KIND_NODE_IMAGE} (KIND_NODE_IMAGE) instead of the one pinned in ${KIND_CONFIG}"
      create+=(--image "$KIND_NODE_IMAGE")
    fi
    "${create[@]}"
  fi
  EXPORT_LOGS_ON_FAILURE=1
  untaint_control_plane
  # metrics-server feeds the HorizontalPodAutoscalers and kind-bench's CPU/memory figures. When it
  # fails (typically: no network to pull its image), say so and go on: everything else works.
  if install_metrics_server; then
    say "cluster ${CLUSTER} is ready (context ${CONTEXT}); next: make kind-load"
  else
    say "warning: metrics-server is not running (no network to pull its image? k8s/README.md, \"Offline\")."
    say "warning: going on without it: no CPU figures, so HPAs show <unknown> and keep their replicas,"
    say "warning: and kind-bench refuses to run until \`make kind-up\` succeeds (it re-applies metrics-server)."
    say "cluster ${CLUSTER} is ready, without metrics-server (context ${CONTEXT}); next: make kind-load"
  fi
}

cmd_load() {
  need_tools docker kind
  need_engine
  need_venv
  need_cluster
  EXPORT_LOGS_ON_FAILURE=1
  local ref
  ref=$("$PY" -m lab.images ref)
  "$PY" -m lab.images build
  kind load docker-image "$ref" --name "$CLUSTER"
  say "loaded ${ref} into ${CLUSTER}; next: make kind-deploy ARCH=monolith (or microservices)"
}

image_tag() {
  # IMAGE_TAG, else the tag `make kind-load` gives a build of this tree (lab/images.py: the git
  # sha, plus a hash of the changes when the tree is dirty).
  local ref
  if [ -n "$IMAGE_TAG" ]; then
    echo "$IMAGE_TAG"
  else
    ref=$("$PY" -m lab.images ref) || return 1
    echo "${ref#*:}"
  fi
}

image_loaded() {
  # kind stores loaded images under docker.io/library/ in the node's containerd.
  docker exec "${CLUSTER}-control-plane" crictl inspecti "docker.io/library/$1" >/dev/null 2>&1
}

need_image() {
  image_loaded "servinglab:$1" ||
    die "image servinglab:$1 is not in the cluster: run \`make kind-load\` (the tag follows the tree: each commit, and each different set of uncommitted changes, needs its own load)"
}

smoke_test() {
  local url=$1 answer
  say "smoke test: POST ${url}/v1/predict"
  answer=$(curl -sS --fail --max-time 10 --retry 15 --retry-delay 2 --retry-connrefused \
    -H 'Content-Type: application/json' -d "$SMOKE_BODY" "${url}/v1/predict") ||
    die "POST ${url}/v1/predict failed"
  case "$answer" in
    *"$SMOKE_EXPECT"*) say "smoke test passed: ${answer}" ;;
    *) die "unexpected answer from ${url}/v1/predict (wanted ${SMOKE_EXPECT}): ${answer}" ;;
  esac
}

split_patches() {
  # BENCH_CPU_SPLIT=gateway=400m,preprocess=200m,... as kustomize patches: requests = limits.
  local entry role cpu
  echo "patches:"
  for entry in $(echo "$1" | tr ',' ' '); do
    case "$entry" in *=*) ;; *) die "BENCH_CPU_SPLIT: '${entry}' is not POD=CPU (e.g. inference=300m)" ;; esac
    role=${entry%%=*}
    cpu=${entry#*=}
    case "$role" in
      gateway | preprocess | inference | postprocess) ;;
      *) die "BENCH_CPU_SPLIT: no pod '${role}' (gateway, preprocess, inference, postprocess)" ;;
    esac
    case "$cpu" in
      '' | *[!0-9m.]*) die "BENCH_CPU_SPLIT: '${cpu}' is not a CPU quantity such as 250m or 0.25" ;;
    esac
    cat <<PATCH
  - target:
      kind: Deployment
      name: ${role}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/resources/requests/cpu
        value: "${cpu}"
      - op: replace
        path: /spec/template/spec/containers/0/resources/limits/cpu
        value: "${cpu}"
PATCH
  done
}

render_overlay() {
  # render_overlay ARCH ENV TAG: a throw-away overlay on top of k8s/overlays/ARCH/ENV that adds the
  # kind-only NodePorts, sets this tag (image and app.kubernetes.io/version) and any
  # BENCH_CPU_SPLIT, and next to it the rendered manifest: exactly what deploy applies. It lives in
  # build/ (git-ignored) because kustomize only accepts relative paths. Sets RENDERED.
  local arch=$1 env=$2 tag=$3 dir root
  dir="${DEPLOY_DIR}/${arch}-${env}"
  mkdir -p "$dir"
  # kustomize takes only relative paths: the checkout as seen from the generated overlay.
  root=$("$PY" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$PWD" "$dir")
  {
    cat <<OVERLAY
# Generated by scripts/kind.sh; safe to delete.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ${root}/k8s/overlays/${arch}/${env}
components:
  - ${root}/k8s/components/kind
images:
  - name: servinglab
    newTag: "${tag}"
labels:
  - pairs:
      app.kubernetes.io/version: "${tag}"
    includeTemplates: true
OVERLAY
    if [ "$arch" = microservices ] && [ -n "$BENCH_CPU_SPLIT" ]; then split_patches "$BENCH_CPU_SPLIT"; fi
  } >"${dir}/kustomization.yaml"
  kubectl kustomize "$dir" >"${dir}/rendered.yaml"
  RENDERED="${dir}/rendered.yaml"
}

check_budget() {
  # Where a namespace has a budget (the ResourceQuota of k8s/components/bench), the pods' CPU
  # requests and limits must add up to it exactly: more would be refused by the API server, less
  # would give this architecture a smaller budget than the other one.
  "$PY" - "$1" <<'PYTHON'
import sys

import yaml

docs = [doc for doc in yaml.safe_load_all(open(sys.argv[1])) if doc]


def cpu(quantity):
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


quotas = [doc for doc in docs if doc["kind"] == "ResourceQuota"]
if quotas:
    hpas = {doc["spec"]["scaleTargetRef"]["name"]: doc["spec"] for doc in docs
            if doc["kind"] == "HorizontalPodAutoscaler"}
    problems = []
    for section in ("requests", "limits"):
        total = 0.0
        for doc in docs:
            if doc["kind"] == "Deployment":
                hpa = hpas.get(doc["metadata"]["name"])
                replicas = hpa["maxReplicas"] if hpa else doc["spec"].get("replicas", 1)
                total += replicas * sum(cpu(c["resources"][section]["cpu"])
                                        for c in doc["spec"]["template"]["spec"]["containers"])
        budget = cpu(quotas[0]["spec"]["hard"][section + ".cpu"])
        if abs(total - budget) > 1e-9:
            problems.append(f"the pods' CPU {section} add up to {total:g}, the budget (ResourceQuota) is {budget:g}")
    if problems:
        sys.exit("[kind] error: " + "; ".join(problems) + " (see BENCH_CPU_SPLIT in k8s/components/bench)")
PYTHON
}

prepare_namespace() {
  # What `kubectl apply` cannot do by itself when an existing deployment changes shape.
  local arch=$1 rendered=$2 namespace service ip
  namespace=$(namespace_of "$arch")
  kc get namespace "$namespace" >/dev/null 2>&1 || return 0
  # apply never deletes: the bench quota would stay behind under dev or prod and refuse their pods.
  if ! grep -q '^kind: ResourceQuota$' "$rendered"; then
    kc -n "$namespace" delete resourcequota servinglab-budget --ignore-not-found
  fi
  # A Service's clusterIP is immutable: stage Services created with a virtual IP by an older
  # checkout are recreated headless.
  if [ "$arch" = microservices ]; then
    for service in $STAGES; do
      ip=$(kc -n "$namespace" get service "$service" -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
      if [ -n "$ip" ] && [ "$ip" != None ]; then
        say "recreating Service ${service} headless (it has the virtual IP ${ip})"
        kc -n "$namespace" delete service "$service"
      fi
    done
  fi
}

deploy_overlay() {
  local arch=$1 env=$2 tag=$3 namespace deployment
  namespace=$(namespace_of "$arch")
  render_overlay "$arch" "$env" "$tag"
  check_budget "$RENDERED" || die "not deploying ${arch}/${env}"
  prepare_namespace "$arch" "$RENDERED"
  say "applying k8s/overlays/${arch}/${env} and k8s/components/kind with image servinglab:${tag}"
  kc apply -f "$RENDERED"
  for deployment in $(kc -n "$namespace" get deployments -o name); do
    kc -n "$namespace" rollout status "$deployment" --timeout "$ROLLOUT_TIMEOUT"
  done
  smoke_test "http://127.0.0.1:$(node_port_of "$arch")"
}

cmd_deploy() {
  need_tools docker kind kubectl curl
  need_engine
  need_venv
  need_cluster
  check_arch "$ARCH"
  check_env "$K8S_ENV"
  check_split "$K8S_ENV"
  local tag
  tag=$(image_tag)
  need_image "$tag"
  EXPORT_LOGS_ON_FAILURE=1
  deploy_overlay "$ARCH" "$K8S_ENV" "$tag"
}

cmd_render() {
  need_tools kubectl
  need_venv
  check_arch "$ARCH"
  check_env "$K8S_ENV"
  check_split "$K8S_ENV"
  local tag
  tag=$(image_tag)
  render_overlay "$ARCH" "$K8S_ENV" "$tag"
  check_budget "$RENDERED" || die "${ARCH}/${K8S_ENV} does not fit its budget"
  say "rendered ${RENDERED}"
}

cmd_bench() {
  need_tools docker kind kubectl curl
  need_engine
  need_venv
  need_cluster
  local arch tag args
  for arch in $ARCHS; do check_arch "$arch"; done
  tag=$(image_tag)
  need_image "$tag"
  EXPORT_LOGS_ON_FAILURE=1
  # The budget the benchmark prices must not move while it runs: each architecture runs its bench
  # overlay (k8s/components/bench: pinned replicas, requests = limits, a ResourceQuota).
  for arch in $ARCHS; do
    deploy_overlay "$arch" bench "$tag"
  done
  args=(--target kind --kube-context "$CONTEXT" --archs "$ARCHS")
  for arch in $ARCHS; do
    args+=(--endpoint "${arch}=http://127.0.0.1:$(node_port_of "$arch")" --namespace "${arch}=$(namespace_of "$arch")")
  done
  say "benchmarking ${ARCHS} on ${CONTEXT}"
  "$PY" -m benchmarks.bench "${args[@]}"
}

# One TCP connection attempt per HOST:PORT=open|closed argument, run inside the cluster: "open"
# must connect, "closed" must not. A name that does not resolve proves nothing: it fails the check.
NETPOL_PY='
import socket, sys
failed = False
for argument in sys.argv[1:]:
    target, expected = argument.rsplit("=", 1)
    host, port = target.rsplit(":", 1)
    try:
        address = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)[0][4]
    except OSError as error:
        print(target, "does not resolve:", error, "(inconclusive)")
        failed = True
        continue
    try:
        socket.create_connection(address, timeout=3).close()
        seen = "open"
    except OSError as error:
        seen = "closed (" + type(error).__name__ + ")"
    ok = seen.startswith(expected)
    failed = failed or not ok
    print(target, address[0], seen, "expected", expected, "ok" if ok else "WRONG")
sys.exit(1 if failed else 0)
'

cmd_netpol() {
  need_tools docker kind kubectl
  need_engine
  need_cluster
  local namespace probe_namespace image stage allowed denied
  namespace=$(namespace_of microservices)
  probe_namespace=servinglab-netpol-probe
  kc -n "$namespace" get deployment gateway >/dev/null 2>&1 ||
    die "the microservices are not deployed: run \`make kind-deploy ARCH=microservices\` first"
  EXPORT_LOGS_ON_FAILURE=1
  image=$(kc -n "$namespace" get deployment gateway -o jsonpath='{.spec.template.spec.containers[0].image}')
  allowed=""
  denied="gateway.${namespace}.svc.cluster.local:8000=open"
  for stage in $STAGES; do
    allowed="${allowed} ${stage}:$(stage_port "$stage")=open"
    denied="${denied} ${stage}.${namespace}.svc.cluster.local:$(stage_port "$stage")=closed"
  done
  # The allowed path: the gateway reaches every stage (so the stages listen, and DNS works).
  say "network policy: from a gateway pod, every stage must be reachable"
  # shellcheck disable=SC2086 # one argument per target
  kc -n "$namespace" exec deployment/gateway -- python -c "$NETPOL_PY" $allowed ||
    die "the gateway cannot reach every stage"
  # The denied path: a pod in another namespace, labelled like a gateway, reaches the gateway's
  # HTTP port (open to every client) but no stage: the stages admit the gateway pods of their own
  # namespace only (allow-gateway-to-*), and nothing in the probe's namespace restricts its egress,
  # so only the stages' ingress policies can refuse it.
  say "network policy: from a pod outside the gateway, no stage may be reachable"
  kc delete namespace "$probe_namespace" --ignore-not-found --wait=true >/dev/null
  kc create namespace "$probe_namespace"
  kc label namespace "$probe_namespace" pod-security.kubernetes.io/enforce=restricted
  # shellcheck disable=SC2086 # one argument per target
  kc -n "$probe_namespace" run netpol-probe --image "$image" --image-pull-policy IfNotPresent \
    --restart Never --labels app.kubernetes.io/name=gateway,app.kubernetes.io/component=entrypoint \
    --override-type strategic \
    --overrides "$NETPOL_POD_OVERRIDES" --command -- python -c "$NETPOL_PY" $denied
  if ! kc -n "$probe_namespace" wait pod/netpol-probe --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s; then
    kc -n "$probe_namespace" logs pod/netpol-probe >&2 || true
    die "a pod outside the gateway reached a stage, or the probe could not run (its output is above)"
  fi
  kc -n "$probe_namespace" logs pod/netpol-probe
  kc delete namespace "$probe_namespace" --wait=false >/dev/null
  say "network policy: the allowed path is open and the denied one is closed"
}

# The probe pod under the "restricted" Pod Security Standard, like every servinglab pod.
NETPOL_POD_OVERRIDES='{"apiVersion": "v1", "spec": {
  "automountServiceAccountToken": false,
  "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
  "containers": [{"name": "netpol-probe", "securityContext": {"allowPrivilegeEscalation": false,
    "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}}]}}'

cmd_logs() {
  need_tools docker kind kubectl
  need_cluster
  export_logs
}

cmd_down() {
  need_tools docker kind
  need_engine
  if cluster_exists; then
    kind delete cluster --name "$CLUSTER"
  else
    say "no cluster named ${CLUSTER}; nothing to delete"
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  load) cmd_load ;;
  deploy) cmd_deploy ;;
  bench) cmd_bench ;;
  netpol) cmd_netpol ;;
  render) cmd_render ;;
  logs) cmd_logs ;;
  down) cmd_down ;;
  *)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
