# `make test`: create .venv, install the package with the extras the tests need, run the tests.
# `make bench`: same environment, then the main job (`dali-mixup bench --quick`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,bench,dev

.PHONY: test bench bench-kernels gpu-test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest tests

bench: $(VENV)/.installed
	$(VENV)/bin/dali-mixup bench --quick

bench-kernels: $(VENV)/.installed
	$(PY) -m pytest benchmarks --benchmark-only

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
