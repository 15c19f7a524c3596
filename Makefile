# servinglab: monolith vs microservices for one ML pipeline. `make` lists the targets.
# Everything bootstraps itself: a fresh clone needs only `make test` or `make bench`.

PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
ARCH ?= monolith
PORT ?= 8000
PROFILE ?= linear
SEED ?= 42
MODELS ?= models
PYTEST_ARGS ?=
# pytest-xdist workers for make test (one per core here); 0 runs the suite in one process. A third
# worker does not help on 2 cores: the suite is CPU-bound (with 3, CPU 0, where benches pin their
# servers, was 94% busy and the run took longer).
TEST_WORKERS ?= 2
LOCUST_PORT ?= 8089
# make bench reads these from the environment: ARCHS, REPS, QUICK, SLO_MS, SUT_CPUS, LOADGEN_CPUS,
# SUT_MEMORY_GIB, PROFILE, STEP_SECONDS, LABEL, PRICES, TARGET=local|docker|kind, IMAGE (benchmarks/bench.py).
export ARCHS REPS QUICK SLO_MS SUT_CPUS LOADGEN_CPUS SUT_MEMORY_GIB PROFILE STEP_SECONDS LABEL PRICES TARGET IMAGE
# Experiment knobs (table: benchmarks/knobs.py; `make help` lists them) and make bench-sweep's SWEEP, SWEEP_VALUES.
export RATE USERS PHASE_SECONDS
export CACHE CACHE_PLACEMENT CACHE_RATE BATCHING BATCH_MAX_SIZE BATCH_MAX_WAIT_MS REPLICAS HOP_DELAY_MS SWEEP SWEEP_VALUES
# make scenarios (benchmarks/scenarios/run.py): which scenarios, and the daily load trace of scenario 1.
export SCENARIOS TRACE

PY := $(VENV)/bin/python
STAMPS := .stamps
INSTALLED := $(STAMPS)/installed
PROTOS_OUT := microservices/generated/servinglab/v1/pipeline_pb2.py
MODEL := $(MODELS)/$(PROFILE)/CURRENT
TRAINING_SOURCES := servinglab/model/data.py servinglab/model/estimators.py servinglab/model/training.py servinglab/model/artifact.py servinglab/schema.py

.DEFAULT_GOAL := help

##@ Main

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m [VAR=value]\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } \
	  /^## / { printf "  %s\n", substr($$0, 4) }' $(MAKEFILE_LIST)

.PHONY: test
test: bootstrap ## Run the whole test suite on TEST_WORKERS=2 workers (bootstraps venv, protos and models first)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

.PHONY: lint
lint: $(INSTALLED) $(PROTOS_OUT) ## ruff (lint and format check) on the tree, mypy on the packages
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

.PHONY: format
format: $(INSTALLED) ## Apply ruff's formatter and its safe fixes
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

.PHONY: run
run: bootstrap ## Serve ARCH=monolith|microservices|split|chained on PORT (default 8000) until Ctrl-C
	$(PY) -m lab.run --arch $(ARCH) --port $(PORT)

.PHONY: dev
dev: bootstrap ## Flask development server with auto-reload (monolith, for live coding; not for measuring)
	PORT=$(PORT) $(PY) -m monolith

.PHONY: bench
bench: bootstrap ## Benchmark ARCHS under Locust at an equal CPU budget; QUICK=1 for a <90 s classroom run
	$(PY) -m benchmarks.bench

.PHONY: chaos
chaos: bootstrap ## Kill, restart, roll and roll out under steady load (ARCHS, RATE=40, PHASE_SECONDS=8); blast-radius report
	$(PY) -m benchmarks.chaos

.PHONY: certs
certs: $(INSTALLED) ## Self-signed CA + server certificate in certs/ for TLS on the gRPC hops (LAB_GRPC_TLS_DIR=certs)
	$(PY) -m lab.certs certs

.PHONY: bench-sweep
bench-sweep: bootstrap ## Vary one knob (SWEEP=profile|hop_delay_ms|cache_rate|...; SWEEP_VALUES=...), chart the crossover
	$(PY) -m benchmarks.sweep

.PHONY: scenarios
scenarios: bootstrap ## When do microservices win? Every measured scenario (SCENARIOS=planner memory batching ship; QUICK=1 <= 6 min)
	$(PY) -m benchmarks.scenarios

.PHONY: report
report: $(INSTALLED) ## Regenerate report.md/report.html of RUN=<reports/dir> from its results.json
	@test -n "$(RUN)" || { echo "usage: make report RUN=reports/<run-dir>"; exit 2; }
	$(PY) -m benchmarks.report $(RUN)

.PHONY: demo
demo: bootstrap ## Serve ARCH on PORT plus the Locust web UI on LOCUST_PORT, for live classroom load
	$(PY) -m benchmarks.demo --arch $(ARCH) --port $(PORT) --locust-port $(LOCUST_PORT)

.PHONY: perf
perf: bootstrap ## Check the performance targets (stage microseconds, HTTP overhead, hop cost)
	$(PY) -m benchmarks.perf

##@ Experiment knobs: make bench VAR=value (or bench-sweep SWEEP=<lower-case name>); defaults first
## ARCHS=monolith microservices [split chained]   topologies to compare
## PROFILE=linear|boosting|forest|knn             model profile (heavier model, same hops; knn: big in memory)
## CACHE=none|local|redis                         prediction cache in the servers
## CACHE_PLACEMENT=gateway|inference              where microservices cache (with CACHE on)
## CACHE_RATE=0..1                                share of requests repeating earlier inputs (Zipf-like)
## BATCHING=off|on                                micro-batch the model call (8 threads per worker)
## BATCH_MAX_SIZE=N, BATCH_MAX_WAIT_MS=MS         batch limits (with BATCHING=on)
## REPLICAS=inference=2[,preprocess=2]            replicas per gRPC service, same CPUs
## HOP_DELAY_MS=0                                 network delay added per hop between services

##@ Building blocks

.PHONY: bootstrap
bootstrap: $(INSTALLED) $(PROTOS_OUT) models ## Virtualenv + install + generated protos + trained models

$(INSTALLED): pyproject.toml requirements/constraints.txt scripts/bootstrap.sh
	BOOTSTRAP_PYTHON=$(PYTHON_BOOTSTRAP) scripts/bootstrap.sh $(VENV)
	@mkdir -p $(STAMPS) && touch $@

.PHONY: protos
protos: $(PROTOS_OUT) ## Generate gRPC code from protos/ into microservices/generated/

$(PROTOS_OUT): $(INSTALLED) $(wildcard protos/*/*/*.proto) scripts/gen_protos.py
	$(PY) scripts/gen_protos.py

.PHONY: models
models: $(MODELS)/linear/CURRENT $(MODELS)/forest/CURRENT $(MODELS)/boosting/CURRENT $(MODELS)/knn/CURRENT

$(MODELS)/%/CURRENT: $(INSTALLED) $(TRAINING_SOURCES)
	$(PY) -m servinglab.model.training --profile $* --seed $(SEED) --out $(MODELS)

.PHONY: train
train: $(INSTALLED) ## Train PROFILE=linear|forest|boosting|knn with SEED (writes models/<profile>/<version>)
	$(PY) -m servinglab.model.training --profile $(PROFILE) --seed $(SEED) --out $(MODELS)

.PHONY: clean
clean: ## Remove generated code, models, reports and stamps (keeps the virtualenv)
	rm -rf $(STAMPS) microservices/generated $(MODELS) reports .pytest_cache

.PHONY: distclean
distclean: clean ## Also remove the virtualenv
	rm -rf $(VENV)

##@ Containers (a Docker engine; no registry, no network inside the build)

# BASE_IMAGE: the image's base (default: the pinned python slim image, else a local Debian base);
# DEBIAN_MIRROR: where debootstrap fetches that base from. lab/image_build.py says how.
export BASE_IMAGE DEBIAN_MIRROR

.PHONY: image run-docker bench-container-tax docker-clean
image: $(INSTALLED) $(PROTOS_OUT) ## Build the project image offline (wheelhouse on the host, local base if need be); prints its size
	$(PY) -m lab.images build

run-docker: image ## Serve ARCH in containers (one per role, own bridge network) on 127.0.0.1:PORT until Ctrl-C
	$(PY) -m lab.containers run --arch $(ARCH) --port $(PORT) $(if $(IMAGE),--image $(IMAGE))

bench-container-tax: bootstrap ## Local processes vs containers at the same budget (REPS pairs, QUICK runs): capacity, latency, CPU, hops
	$(PY) -m benchmarks.container_tax

docker-clean: $(INSTALLED) ## Remove every container and network a servinglab run left behind (a killed run)
	$(PY) -m lab.containers clean

##@ Kubernetes on kind (needs Docker, kind and kubectl; see k8s/README.md)

K8S_ENV ?= dev

.PHONY: kind-up kind-load kind-deploy kind-bench kind-down
kind-up: ## Create the kind cluster (KIND_NODE_IMAGE, KIND_CONFIG) and install the vendored metrics-server
	scripts/kind.sh up

kind-load: $(INSTALLED) $(PROTOS_OUT) ## Build the image (docker SDK, tagged with the git sha) and load it into kind
	PY=$(PY) scripts/kind.sh load

kind-deploy: $(INSTALLED) ## Deploy ARCH=monolith|microservices with K8S_ENV=dev|prod, wait, smoke-test
	PY=$(PY) ARCH=$(ARCH) K8S_ENV=$(K8S_ENV) scripts/kind.sh deploy

kind-bench: $(INSTALLED) ## Deploy both bench overlays (fixed, equal CPU budget; BENCH_CPU_SPLIT) and benchmark them; QUICK=1
	PY=$(PY) scripts/kind.sh bench

kind-down: ## Delete the kind cluster
	scripts/kind.sh down
