# Developer entry points. `make demo` and `make test` are the two commands in the README.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXTRAS ?= dev

.PHONY: setup setup-demo demo test lint bench bench-quick clean lock k8s-bins cluster-up cluster-down demo-cluster \
	system-deps-demo system-deps-test

# Debian packages: libGL/glib for mediapipe's OpenCV (lite engine); espeak-ng makes test speech.
DEMO_DEBS = libgl1 libglib2.0-0
TEST_DEBS = $(DEMO_DEBS) espeak-ng

# Install the missing ones with apt-get (sudo when not root); elsewhere, say what is needed.
define install_debs
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null || { echo "please install: $$missing" >&2; exit 1; }; \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "apt-get install $$missing"; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

system-deps-demo:
	$(call install_debs,$(DEMO_DEBS))

system-deps-test:
	$(call install_debs,$(TEST_DEBS))

# Lock files (`make lock`): the images install them, CI installs with them as constraints.
LOCKS = requirements/operator.txt requirements/runner.txt

# Full development environment (every extra, test tools, linters).
$(BIN)/.installed-$(EXTRAS): pyproject.toml $(LOCKS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==26.3
	$(BIN)/pip install -q $(addprefix -c ,$(LOCKS)) -e '.[$(EXTRAS)]'
	touch $@

setup: $(BIN)/.installed-$(EXTRAS)

setup-demo: system-deps-demo
	$(MAKE) setup EXTRAS=runner,lite

# Render the committed example speech and portrait into out/hello.mp4 on the CPU.
demo: setup-demo
	$(BIN)/multitalk-runner render --audio examples/media/hello.wav --image examples/media/portrait.jpg \
		--out out/hello.mp4 --overwrite --engine auto --result out/hello.result.json
	@echo "wrote out/hello.mp4 (poster out/hello.png, manifest out/hello.json)"

# The whole test suite (what CI runs).
test: system-deps-test setup k8s-bins
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy cannot follow the editable install's folder mapping: give it the import tree as links.
	mkdir -p build/typecheck/multitalk
	ln -sfn ../../../runner build/typecheck/multitalk/runner
	ln -sfn ../../../operator build/typecheck/multitalk/operator
	MYPYPATH=build/typecheck $(BIN)/mypy -p multitalk.runner -p multitalk.operator

bench: system-deps-test setup k8s-bins
	$(BIN)/python benchmarks/run_all.py

# Smaller runs of every benchmark: CI prints these figures on every build.
bench-quick: system-deps-test setup k8s-bins
	$(BIN)/python benchmarks/run_all.py --quick

# Re-pin requirements/*.txt from pyproject.toml in clean venvs (after changing a dependency).
lock:
	PYTHON=$(PYTHON) requirements/lock.sh

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache

# --- A real Kubernetes control plane (tests/cluster, tests/k8s) ---------------------------
# etcd, kube-apiserver and kube-controller-manager of the release pinned in tests/k8s/go.mod,
# and tests/kstatus' reader (kstatus and Flux's health checks, pinned in its go.mod), built
# once from the Go module proxy into ~/.cache/multitalk-operator (seconds when cached).
k8s-bins:
	@bash tests/k8s/build.sh >/dev/null
	@bash tests/kstatus/build.sh >/dev/null

CLUSTER_DIR ?= out/cluster

# A loopback control plane in the background: `export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig`.
cluster-up: setup k8s-bins
	@if [ -f $(CLUSTER_DIR)/pid ] && kill -0 $$(cat $(CLUSTER_DIR)/pid) 2>/dev/null; then \
		echo "already up: export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig"; exit 0; fi; \
	mkdir -p $(CLUSTER_DIR); rm -f $(CLUSTER_DIR)/kubeconfig; \
	PYTHONPATH=tests nohup $(BIN)/python -m cluster.controlplane up --kubeconfig $(CLUSTER_DIR)/kubeconfig \
		>$(CLUSTER_DIR)/control-plane.log 2>&1 & echo $$! >$(CLUSTER_DIR)/pid; \
	for i in $$(seq 240); do [ -f $(CLUSTER_DIR)/kubeconfig ] && break; \
		kill -0 $$(cat $(CLUSTER_DIR)/pid) 2>/dev/null || { cat $(CLUSTER_DIR)/control-plane.log; exit 1; }; sleep 0.5; done; \
	echo "control plane up: export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig"

cluster-down:
	@if [ -f $(CLUSTER_DIR)/pid ]; then kill $$(cat $(CLUSTER_DIR)/pid) 2>/dev/null || true; \
		while kill -0 $$(cat $(CLUSTER_DIR)/pid) 2>/dev/null; do sleep 0.2; done; rm -f $(CLUSTER_DIR)/pid; fi
	@echo "control plane stopped"

# The whole path on a loopback control plane: chart (Helm library), operator, kubectl apply,
# `kubectl get tv`, the video in a local S3 server. ARGS=--keep leaves it running.
demo-cluster: setup k8s-bins
	PYTHONPATH=tests $(BIN)/python -m cluster.demo $(ARGS)
