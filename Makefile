# Set-up, main job and tests on a fresh machine with Python 3.11 and pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: setup demo test test-fast bench clean

setup: $(VENV)/.installed

# CPU torch first (a pinned version resolves to the local CPU build), then the package.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/bayesmix demo --out $(OUT)

# Every test, slow ones included; pytest's exit code 5 (no tests collected) is a failure.
test: setup
	$(BIN)/python -m pytest -q -ra -n 2 --dist loadscope --durations=30; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" -n 2

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
