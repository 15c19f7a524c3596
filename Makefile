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
LOCUST_PORT ?= 8089
# make bench reads these from the environment: ARCHS, REPS, QUICK, SLO_MS, SUT_CPUS, LOADGEN_CPUS,
# SUT_MEMORY_GIB, PROFILE, STEP_SECONDS, LABEL, PRICES, TARGET=local|docker|kind, IMAGE (benchmarks/runner.py).
export ARCHS REPS QUICK SLO_MS SUT_CPUS LOADGEN_CPUS SUT_MEMORY_GIB PROFILE STEP_SECONDS LABEL PRICES TARGET IMAGE

PY := $(VENV)/bin/python
STAMPS := .stamps
INSTALLED := $(STAMPS)/installed
PROTOS_OUT := microservices/generated/servinglab/v1/pipeline_pb2.py
MODEL := $(MODELS)/$(PROFILE)/CURRENT
TRAINING_SOURCES := servinglab/data.py servinglab/estimators.py servinglab/training.py servinglab/artifact.py servinglab/schema.py

.DEFAULT_GOAL := help

##@ Main

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m [VAR=value]\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: test
test: bootstrap ## Run the whole test suite (bootstraps venv, protos and models first)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: run
run: bootstrap ## Serve ARCH=monolith|microservices on PORT (default 8000) until Ctrl-C
	$(PY) -m servinglab.run --arch $(ARCH) --port $(PORT)

.PHONY: dev
dev: bootstrap ## Flask development server with auto-reload (monolith, for live coding; not for measuring)
	PORT=$(PORT) $(PY) -m monolith

.PHONY: bench
bench: bootstrap ## Benchmark ARCHS under Locust at an equal CPU budget; QUICK=1 for a <90 s classroom run
	$(PY) -m benchmarks.runner

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
models: $(MODELS)/linear/CURRENT $(MODELS)/forest/CURRENT $(MODELS)/boosting/CURRENT

$(MODELS)/%/CURRENT: $(INSTALLED) $(TRAINING_SOURCES)
	$(PY) -m servinglab.training --profile $* --seed $(SEED) --out $(MODELS)

.PHONY: train
train: $(INSTALLED) ## Train PROFILE=linear|forest|boosting with SEED (writes models/<profile>/<version>)
	$(PY) -m servinglab.training --profile $(PROFILE) --seed $(SEED) --out $(MODELS)

.PHONY: clean
clean: ## Remove generated code, models, reports and stamps (keeps the virtualenv)
	rm -rf $(STAMPS) microservices/generated $(MODELS) reports .pytest_cache

.PHONY: distclean
distclean: clean ## Also remove the virtualenv
	rm -rf $(VENV)

##@ Kubernetes on kind (needs Docker, kind and kubectl; see k8s/README.md)

K8S_ENV ?= dev

.PHONY: kind-up kind-load kind-deploy kind-bench kind-down
kind-up: ## Create the kind cluster and install metrics-server (needs internet for its manifest)
	scripts/kind.sh up

kind-load: $(INSTALLED) ## Build the image (docker SDK, tagged with the git sha) and load it into kind
	PY=$(PY) scripts/kind.sh load

kind-deploy: $(INSTALLED) ## Deploy ARCH=monolith|microservices with K8S_ENV=dev|prod, wait, smoke-test
	PY=$(PY) ARCH=$(ARCH) K8S_ENV=$(K8S_ENV) scripts/kind.sh deploy

kind-bench: $(INSTALLED) ## Benchmark the deployed architectures from the host; QUICK=1 for a short run
	PY=$(PY) scripts/kind.sh bench

kind-down: ## Delete the kind cluster
	scripts/kind.sh down
