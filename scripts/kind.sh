#!/usr/bin/env bash
# servinglab on a local kind cluster: scripts/kind.sh up|load|deploy|bench|logs|down
# (behind `make kind-up`, `kind-load`, `kind-deploy ARCH=...`, `kind-bench`, `kind-down`).
#
#   up      create the cluster (k8s/kind/cluster.yaml) and install metrics-server (needs internet)
#   load    build the image with the docker SDK (lab.images) and load it into the node
#   deploy  apply k8s/overlays/$ARCH/$K8S_ENV with the image tag of this commit, wait for the
#           rollout, then smoke-test POST /v1/predict through the NodePort from the host
#   bench   run the Locust benchmark from the host against the deployed architectures
#   logs    export cluster logs to reports/kind-logs/ (also done automatically on any failure)
#   down    delete the cluster
#
# Written for bash 3.2 too (macOS): no associative arrays, no mapfile. Every kubectl call names
# the kind context explicitly, so this script never touches any other cluster you have.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-servinglab}
CONTEXT="kind-${CLUSTER}"
KIND_CONFIG=k8s/kind/cluster.yaml
KIND_VERSION=v0.31.0
METRICS_SERVER_URL=https://github.com/kubernetes-sigs/metrics-server/releases/download/v0.8.1/components.yaml
PY=${PY:-.venv/bin/python}
ARCH=${ARCH:-monolith}
K8S_ENV=${K8S_ENV:-dev}
ARCHS=${ARCHS:-monolith microservices}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-240s}
LOG_ROOT=reports/kind-logs
DEPLOY_DIR=build/kind-deploy
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

namespace_of() { echo "servinglab-$1"; }

node_port_of() {
  case "$1" in
    monolith) echo 30080 ;;      # k8s/base/monolith/monolith.yaml
    microservices) echo 30081 ;; # k8s/base/microservices/gateway.yaml
  esac
}

# --- failure handling: once past the prerequisites, any failure exports the cluster's logs -------

export_logs() {
  local dir
  dir="${LOG_ROOT}/$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$dir"
  say "exporting cluster logs to ${dir}"
  kind export logs "$dir" --name "$CLUSTER" >/dev/null 2>&1 || say "kind export logs failed"
  kc get all,networkpolicies,hpa,pdb --all-namespaces -o wide >"${dir}/resources.txt" 2>&1 || true
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

cmd_up() {
  need_tools docker kind kubectl
  need_engine
  local version
  version=$(kind version | awk '{print $2}')
  [ "$version" = "$KIND_VERSION" ] || say "warning: kind ${version} found; this lab is tested with ${KIND_VERSION}"
  if cluster_exists; then
    say "cluster ${CLUSTER} already exists"
  else
    kind create cluster --name "$CLUSTER" --config "$KIND_CONFIG" --wait 120s
  fi
  EXPORT_LOGS_ON_FAILURE=1
  # metrics-server feeds the HorizontalPodAutoscalers and kind-bench's CPU/memory figures.
  say "installing metrics-server from ${METRICS_SERVER_URL} (needs internet access)"
  kc apply -f "$METRICS_SERVER_URL" ||
    die "could not apply metrics-server (no internet?). The cluster works without it, but HPAs show <unknown> and kind-bench has no CPU/memory figures; re-run \`make kind-up\` when online"
  # kind's kubelets serve self-signed certificates, which metrics-server refuses by default.
  if ! kc -n kube-system get deployment metrics-server -o jsonpath='{.spec.template.spec.containers[0].args}' |
    grep -q -- --kubelet-insecure-tls; then
    kc -n kube-system patch deployment metrics-server --type=json \
      -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
  fi
  kc -n kube-system rollout status deployment/metrics-server --timeout "$ROLLOUT_TIMEOUT"
  say "cluster ${CLUSTER} is ready (context ${CONTEXT}); next: make kind-load"
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

image_loaded() {
  # kind stores loaded images under docker.io/library/ in the node's containerd.
  docker exec "${CLUSTER}-control-plane" crictl inspecti "docker.io/library/$1" >/dev/null 2>&1
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

cmd_deploy() {
  need_tools docker kind kubectl curl
  need_engine
  need_venv
  need_cluster
  check_arch "$ARCH"
  case "$K8S_ENV" in dev | prod) ;; *) die "K8S_ENV must be dev or prod, not '${K8S_ENV}'" ;; esac
  local ref tag namespace deployment dir
  ref=$("$PY" -m lab.images ref)
  tag=${ref#*:}
  image_loaded "$ref" ||
    die "image ${ref} is not in the cluster: run \`make kind-load\` (the tag follows the git sha, so each commit needs its own load)"
  EXPORT_LOGS_ON_FAILURE=1
  # A throw-away overlay on top of the chosen one, setting the image tag of this commit. It lives
  # in build/ (git-ignored) because kustomize only accepts relative paths; the rendered manifest
  # next to it records exactly what was applied.
  dir="${DEPLOY_DIR}/${ARCH}-${K8S_ENV}"
  mkdir -p "$dir"
  cat >"${dir}/kustomization.yaml" <<EOF
# Generated by scripts/kind.sh deploy; safe to delete.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../k8s/overlays/${ARCH}/${K8S_ENV}
images:
  - name: servinglab
    newTag: "${tag}"
EOF
  kubectl kustomize "$dir" >"${dir}/rendered.yaml"
  say "applying k8s/overlays/${ARCH}/${K8S_ENV} with image ${ref}"
  kc apply -f "${dir}/rendered.yaml"
  namespace=$(namespace_of "$ARCH")
  for deployment in $(kc -n "$namespace" get deployments -o name); do
    kc -n "$namespace" rollout status "$deployment" --timeout "$ROLLOUT_TIMEOUT"
  done
  smoke_test "http://127.0.0.1:$(node_port_of "$ARCH")"
}

cmd_bench() {
  need_tools kind kubectl
  need_venv
  need_cluster
  EXPORT_LOGS_ON_FAILURE=1
  local arch namespace args
  args=(--target kind --kube-context "$CONTEXT" --archs "$ARCHS")
  for arch in $ARCHS; do
    check_arch "$arch"
    namespace=$(namespace_of "$arch")
    kc -n "$namespace" get deployments -o name 2>/dev/null | grep -q . ||
      die "${arch} is not deployed: run \`make kind-deploy ARCH=${arch}\` first"
    args+=(--endpoint "${arch}=http://127.0.0.1:$(node_port_of "$arch")" --namespace "${arch}=${namespace}")
  done
  say "benchmarking ${ARCHS} on ${CONTEXT}"
  "$PY" -m benchmarks.runner "${args[@]}"
}

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
  logs) cmd_logs ;;
  down) cmd_down ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
