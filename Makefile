# warren: two commands on a fresh machine.
#   make demo   the seed's scenario on warren, then the operator scaling workers on a local cluster
#   make test   everything, against a real RabbitMQ and a real kube-apiserver
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
export WARREN_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2f
export WARREN_MANAGEMENT_URL ?= http://127.0.0.1:15672

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: test
test: rabbitmq-up lint crds-check kustomize-check tools ## Run every test (starts RabbitMQ and the local cluster, takes the cluster down after)
	@set -e; trap 'bash deploy/local/cluster.sh down' EXIT; \
	bash deploy/local/cluster.sh up; \
	KUBECONFIG=$(CURDIR)/.local/kubeconfig bash deploy/local/test-rust.sh; \
	bash deploy/local/test-cluster.sh; \
	bash deploy/local/test-chart.sh; \
	bash deploy/local/test-e2e.sh

.PHONY: test-e2e
test-e2e: rabbitmq-up tools ## helm install with the built images on the real node, the seed's scenario, termination, Pod Security, the kustomize overlay (needs `make cluster-up`)
	bash deploy/local/test-e2e.sh

.PHONY: test-rust
test-rust: rabbitmq-up ## Every Rust test, service tests included (the operator's cluster tests need `make cluster-up`); fails on any skip
	KUBECONFIG=$(CURDIR)/.local/kubeconfig bash deploy/local/test-rust.sh

.PHONY: test-cluster
test-cluster: tools ## The local cluster's own checks (recreates the cluster and leaves it up)
	bash deploy/local/test-cluster.sh

.PHONY: test-chart
test-chart: rabbitmq-up tools ## Helm chart checks: render rules, install, RBAC as the chart's ServiceAccount (needs `make cluster-up`)
	$(CARGO) build --locked -p warren-operator
	bash deploy/local/test-chart.sh

CRD_FILES := deploy/crd/taskqueue.yaml charts/warren/crds/taskqueue.yaml

.PHONY: crds
crds: ## Regenerate the CRD (deploy/crd/ and the chart's crds/) from the Rust types
	$(CARGO) run --quiet --locked -p warren-operator -- crd > deploy/crd/taskqueue.yaml
	cp deploy/crd/taskqueue.yaml charts/warren/crds/taskqueue.yaml

.PHONY: crds-check
crds-check: ## Fail when a committed CRD file differs from the Rust types
	@mkdir -p .local; $(CARGO) run --quiet --locked -p warren-operator -- crd > .local/crd.yaml; \
	for f in $(CRD_FILES); do \
	  diff -u $$f .local/crd.yaml || { echo "$$f is stale: run make crds" >&2; exit 1; }; \
	done

.PHONY: kustomize
kustomize: tools ## Render deploy/kustomize/{base,seed} from the Helm chart
	bash deploy/kustomize/render.sh

.PHONY: kustomize-check
kustomize-check: tools ## Fail when deploy/kustomize differs from the chart, or an overlay does not build
	@set -e; rm -rf .local/kustomize; mkdir -p .local/kustomize; \
	bash deploy/kustomize/render.sh .local/kustomize; \
	for f in base/warren.yaml seed/workers.yaml; do \
	  diff -u deploy/kustomize/$$f .local/kustomize/$$f || { echo "deploy/kustomize/$$f is stale: run make kustomize" >&2; exit 1; }; \
	done; \
	. deploy/local/env.sh; for k in base seed overlays/local; do \
	  kubectl kustomize deploy/kustomize/$$k >/dev/null || { echo "kubectl kustomize deploy/kustomize/$$k failed" >&2; exit 1; }; \
	done

.PHONY: lint
lint: lint-scripts ## cargo fmt --check, clippy -D warnings (the dispatcher library also without its CLI), shellcheck, ruff
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy -p warren-dispatcher --lib --no-default-features --locked -- -D warnings

RUFF_VERSION := 0.17.6
LINT_VENV := .local/venv-lint
RUFF := $(LINT_VENV)/bin/ruff
PYTHON_FILES = deploy/local/*.py deploy/images/*.py protocol/celery/*.py

.PHONY: lint-scripts
lint-scripts: ## shellcheck deploy/local/*.sh and deploy/kustomize/*.sh; ruff check and format --check of the Python scripts (installs both when missing)
	@command -v shellcheck >/dev/null || { echo "installing Debian's shellcheck"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null; }
	@$(RUFF) --version 2>/dev/null | grep -qx "ruff $(RUFF_VERSION)" || { echo "installing ruff $(RUFF_VERSION) in $(LINT_VENV)"; \
	  python3 -m venv $(LINT_VENV) && $(LINT_VENV)/bin/pip install -q "ruff==$(RUFF_VERSION)"; }
	shellcheck -x -P deploy/local deploy/local/*.sh deploy/kustomize/*.sh
	$(RUFF) check --config deploy/local/ruff.toml $(PYTHON_FILES)
	$(RUFF) format --check --config deploy/local/ruff.toml $(PYTHON_FILES)

.PHONY: build
build: ## Release binaries in target/release
	$(CARGO) build --release --workspace --locked

.PHONY: demo
demo: rabbitmq-up build tools ## The seed's load test on warren (1 then 3 workers per queue), then the operator scaling workers on the local cluster
	bash deploy/local/demo-task-flow.sh
	bash deploy/local/demo-autoscale.sh

.PHONY: bench
bench: rabbitmq-up build bench-operator bench-scale-down ## Benchmarks (operator reaction, scale-down IdleFirst/Any, task flow next to Celery); writes docs/benchmarks.md
	bash deploy/local/bench-task-flow.sh

.PHONY: bench-operator
bench-operator: tools ## Operator benchmarks on the local cluster (reaction, 1,000 TaskQueues); writes docs/bench-results/operator-*.json
	@set -e; bash deploy/local/cluster.sh up; \
	KUBECONFIG=$(CURDIR)/.local/kubeconfig $(CARGO) test --release --locked -p warren-operator --test bench -- --ignored --nocapture --test-threads=1

.PHONY: bench-scale-down
bench-scale-down: rabbitmq-up tools ## Scale-down on real worker pods, IdleFirst against Any; writes docs/bench-results/scale-down.json
	@set -e; bash deploy/local/cluster.sh up; bash deploy/local/bench-scale-down.sh

.PHONY: simulate
simulate: ## warren and the KEDA model on three standard traces, for every TaskQueue in docs/simulate/ (no cluster); writes docs/simulate/results.md and SVGs
	CARGO=$(CARGO) bash deploy/local/simulate-traces.sh

.PHONY: sim-check
sim-check: ## The simulator against the recorded real run in docs/bench-results/sim-check/ (no cluster): writes comparison.md, comparison.json and timeline.svg there
	CARGO=$(CARGO) bash deploy/local/sim-check.sh

.PHONY: sim-check-record
sim-check-record: rabbitmq-up tools ## A real autoscaling run on the local cluster's real node (the seed's workers, 24 tasks/s for 45 s) recorded for checking the simulator; writes docs/bench-results/sim-check/
	bash deploy/local/sim-check-record.sh

.PHONY: soak
soak: rabbitmq-up tools ## 30 min of open-loop load with bursts and random worker kills on the local cluster (SOAK_MINUTES, SOAK_RATE, ...); writes docs/bench-results/soak.json
	bash deploy/local/soak.sh

.PHONY: rabbitmq-up
rabbitmq-up: ## Install (if missing) and start RabbitMQ on 127.0.0.1
	bash deploy/local/rabbitmq.sh up

.PHONY: rabbitmq-down
rabbitmq-down: ## Stop the RabbitMQ that rabbitmq-up started
	bash deploy/local/rabbitmq.sh down

.PHONY: tools
tools: ## Build the pinned control-plane binaries and helm (cached in ~/.cache/warren)
	bash deploy/local/tools.sh

.PHONY: cluster-up
cluster-up: tools ## Start the local control plane with kwok nodes and the real node
	bash deploy/local/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the local control plane and remove its state
	bash deploy/local/cluster.sh down

.PHONY: cluster-status
cluster-status: ## Is the local control plane up?
	bash deploy/local/cluster.sh status

.PHONY: images
images: ## Container images (static musl binaries, FROM scratch) as OCI archives in .local/images/, built by buildah offline; no Docker engine, no registry
	bash deploy/local/images.sh build

.PHONY: images-check
images-check: rabbitmq-up images ## The images in a throwaway containerd: non-root, --help, names through /etc/hosts and DNS, a task from the dispatcher's image to the worker's
	bash deploy/local/images.sh check
