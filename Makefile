# Developer entry points. `make demo` and `make test` are the two commands in the README.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXTRAS ?= dev

.PHONY: setup setup-demo demo test lint bench clean lock

# Lock files (`make lock`): the images install them, CI installs with them as constraints.
LOCKS = requirements/operator.txt requirements/runner.txt

# Full development environment (every extra, test tools, linters).
$(BIN)/.installed-$(EXTRAS): pyproject.toml $(LOCKS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==26.3
	$(BIN)/pip install -q $(addprefix -c ,$(LOCKS)) -e '.[$(EXTRAS)]'
	touch $@

setup: $(BIN)/.installed-$(EXTRAS)

setup-demo:
	$(MAKE) setup EXTRAS=runner,lite

# Render the committed example speech and portrait into out/hello.mp4 on the CPU.
demo: setup-demo
	$(BIN)/multitalk-runner render --audio examples/media/hello.wav --image examples/media/portrait.jpg \
		--out out/hello.mp4 --overwrite --engine auto --result out/hello.result.json
	@echo "wrote out/hello.mp4 (poster out/hello.png, manifest out/hello.json)"

# The whole test suite (what CI runs).
test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy cannot follow the editable install's folder mapping: give it the import tree as links.
	mkdir -p build/typecheck/multitalk
	ln -sfn ../../../runner build/typecheck/multitalk/runner
	ln -sfn ../../../operator build/typecheck/multitalk/operator
	MYPYPATH=build/typecheck $(BIN)/mypy -p multitalk.runner -p multitalk.operator

bench: setup
	$(BIN)/python benchmarks/run_all.py

# Re-pin requirements/*.txt from pyproject.toml in clean venvs (after changing a dependency).
lock:
	PYTHON=$(PYTHON) requirements/lock.sh

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
