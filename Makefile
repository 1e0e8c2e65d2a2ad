# Developer entry points. `make demo` and `make test` are the two commands in the README.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXTRAS ?= dev

.PHONY: setup setup-demo demo test lint bench bench-quick fuzz clean lock k8s-bins cluster-up cluster-down demo-cluster \
	system-deps-demo system-deps-test system-deps-images base-image images image-sizes

# Debian packages: libGL/glib for mediapipe's OpenCV (lite engine); espeak-ng makes test speech;
# podman builds and runs the images without a daemon (runc: its OCI runtime here), mmdebstrap
# makes the stand-in base image.
DEMO_DEBS = libgl1 libglib2.0-0
IMAGE_DEBS = podman runc mmdebstrap
TEST_DEBS = $(DEMO_DEBS) espeak-ng $(IMAGE_DEBS)

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

system-deps-images:
	$(call install_debs,$(IMAGE_DEBS))

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

# The whole test suite (what CI runs). The images are (re)built first: unchanged layers come
# from the build cache, so this takes seconds when they are current.
test: system-deps-test setup k8s-bins images
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

# Coverage-guided fuzzing of the runner's input decoding (tests/fuzz/fuzz.py, atheris): each
# target for FUZZ_SECONDS, from the committed seeds and findings; fails on a finding.
FUZZ_SECONDS ?= 60
fuzz: setup
	$(BIN)/python tests/fuzz/fuzz.py --all --seconds $(FUZZ_SECONDS)

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
# `kubectl get tv`, the video in a local S3 server. ARGS=--keep leaves it running. The test
# node runs the pods from the images (`make images`); MULTITALK_TEST_NODE_RUNTIME=process
# runs their commands from the virtualenv instead (quick runs, no images).
demo-cluster: setup k8s-bins $(if $(filter process,$(MULTITALK_TEST_NODE_RUNTIME)),,images)
	PYTHONPATH=tests $(BIN)/python -m cluster.demo $(ARGS)

# --- Container images (`make images`) ----------------------------------------------------
# Built without a daemon by podman (`--isolation chroot`: root in a sandbox is enough); with
# Docker, the README's `docker build` lines build the same images.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
OPERATOR_IMAGE ?= multitalk-operator:$(VERSION)
RUNNER_IMAGE ?= multitalk-runner:$(VERSION)
export MULTITALK_TEST_OPERATOR_IMAGE = $(OPERATOR_IMAGE)
export MULTITALK_TEST_RUNNER_IMAGE = $(RUNNER_IMAGE)
# The base of both images. The Dockerfiles default to python:3.11-slim-bookworm from a
# registry; without BASE_IMAGE, `make images` builds on a local stand-in made from Debian's
# packages (bookworm and its Python 3.11, the same distribution and Python minor).
STANDIN_BASE = localhost/multitalk-base:bookworm-python3.11
BASE_IMAGE ?= $(STANDIN_BASE)
export MULTITALK_TEST_BASE_IMAGE = $(BASE_IMAGE)
# The host's index settings travel as build secrets, never in a layer (each only when set).
CA_BUNDLE ?= $(or $(PIP_CERT),$(SSL_CERT_FILE))
comma := ,
IMAGE_SECRETS = $(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE)) \
	$(if $(PIP_INDEX_URL),--secret id=pip_index_url$(comma)env=PIP_INDEX_URL) \
	$(if $(PIP_EXTRA_INDEX_URL),--secret id=pip_extra_index_url$(comma)env=PIP_EXTRA_INDEX_URL)
IMAGE_BUILD = podman build --isolation chroot --layers --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	--build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	$(IMAGE_SECRETS)

images: system-deps-images
	@if ! podman image exists $(BASE_IMAGE); then \
		if [ "$(BASE_IMAGE)" = "$(STANDIN_BASE)" ]; then $(MAKE) --no-print-directory base-image; \
		elif ! podman pull -q $(BASE_IMAGE); then \
			echo "error: the base image $(BASE_IMAGE) is not here and could not be pulled." >&2; \
			echo "  Pull or load it (podman pull, podman load -i FILE), or build on the local stand-in:" >&2; \
			echo "  make images (without BASE_IMAGE; it runs make base-image), or BASE_IMAGE=<a Python 3.11 image>." >&2; \
			exit 1; \
		fi; \
	fi
	$(IMAGE_BUILD) -f Dockerfile.operator -t $(OPERATOR_IMAGE) .
	$(IMAGE_BUILD) -f Dockerfile.runner -t $(RUNNER_IMAGE) .
	@echo "built $(OPERATOR_IMAGE) and $(RUNNER_IMAGE) on $(BASE_IMAGE) (sizes: make image-sizes)"

# The stand-in base: a minimal Debian bookworm root filesystem with python3 and venv from the
# host's apt sources, trimmed like the slim images (no docs, man pages or locales).
base-image: system-deps-images
	@mkdir -p build
	mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		--include=python3,python3-venv,ca-certificates,netbase,tzdata \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' bookworm build/base-image.tar \
	|| { echo "error: mmdebstrap could not build the stand-in base: it needs Debian's packages" \
		"(the host's apt sources) and root, or BASE_IMAGE=<a Python 3.11 image> instead." >&2; exit 1; }
	podman import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' build/base-image.tar $(STANDIN_BASE)
	rm -f build/base-image.tar

# Both images' sizes, and the runner's torch + CUDA share.
image-sizes: setup
	$(BIN)/python benchmarks/image_sizes.py
