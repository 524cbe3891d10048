#!/usr/bin/env bash
# `make gpu-check`: what a lent GPU machine runs once DALI is unpacked into /tmp/site
# (../shared/gpu/README.md). Creates no venv and installs nothing: the host's python3 (torch, CuPy,
# torchvision, timm, pytest) runs benchmarks/gpu_check.py, which runs every stage with its own
# time budget (7 minutes in all) and writes three files to $OUT (else bench-out/).
# Set GIT_COMMIT in the command (the tree travels without its history). Extra arguments go to
# gpu_check.py (e.g. --dry-run here on the CPU, --stages bench,train).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ] && ! "$PY" -c "import torch" 2>/dev/null; then PY=.venv/bin/python; fi
exec "$PY" benchmarks/gpu_check.py "$@"
