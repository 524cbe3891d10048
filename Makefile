# `make test`: create .venv, install the package with the extras the tests need, run the tests.
# `make bench`: same environment, then the main job (`dali-mixup bench --quick`).
# Versions: constraints.txt pins what .venv holds (`make constraints` rewrites it from .venv); the
# Docker image installs from the same file.
# `make wheel-check`: build the sdist and wheel, install the wheel (not the source tree) into a
# fresh venv, run `dali-mixup doctor` and CPU tests against it.
# `make docker-check`: build the CPU and CUDA 13 images with buildah and run them with podman, no GPU
# needed: doctor, bench, the CPU tests inside the container; in the CUDA image DALI/CuPy imports, NVRTC
# from the wheels on every kernel, its CUDA libraries (root, ~40 GB of disk; see docker/README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,bench,dev,lightning,torchdata,timm
CONSTRAINTS ?= constraints.txt

.PHONY: test bench bench-kernels gpu-test gpu-check constraints wheel-check docker-check clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(CONSTRAINTS) --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest tests

bench: $(VENV)/.installed
	$(VENV)/bin/dali-mixup bench --quick

bench-kernels: $(VENV)/.installed
	$(PY) -m pytest benchmarks --benchmark-only

# GPU host with DALI in /tmp/site, no venv, <= 7 min, 3 files to $OUT: benchmarks/README.md "make gpu-check".
gpu-check:
	bash benchmarks/run_gpu_session.sh

# Rewrite constraints.txt from what .venv holds (after changing pyproject.toml's requirements:
# install without -c, check the tests pass, then run this). Keeps the file's comment header.
constraints:
	test -x $(PY)
	{ grep '^#' $(CONSTRAINTS); $(PY) -m pip freeze --all --exclude-editable | grep -v '^#'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

wheel-check:
	PYTHON=$(PYTHON) bash docker/wheel-check.sh

docker-check:
	bash docker/check.sh

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
