#!/usr/bin/env bash
# The GPU check (`make gpu-check` where there is make; this script where there is not): what a lent
# GPU machine runs once DALI is unpacked into /tmp/site (../shared/gpu/README.md). Creates no venv
# and installs nothing: the host's python3 (torch, CuPy, torchvision, timm, pytest) runs
# benchmarks/gpu_check.py, which runs every stage with its own time budget (7 minutes in all) and
# keeps its results in $OUT (else bench-out/) as it goes.
# Set GIT_COMMIT in the command (the tree travels without its history). Extra arguments go to
# gpu_check.py (e.g. --dry-run here on the CPU, --stages bench,train --budget 200).
#   DM_SITE   where DALI was unpacked (default /tmp/site; the rehearsal uses its own folder)
#   PYTHON    the interpreter (default python3; .venv/bin/python where python3 has no torch)
set -u
cd "$(dirname "$0")/.."
site=${DM_SITE:-/tmp/site}
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ] && ! "$PY" -c "import torch" 2>/dev/null; then PY=.venv/bin/python; fi
if [ -z "${GIT_COMMIT:-}" ] && ! git rev-parse --short HEAD >/dev/null 2>&1; then
  echo "run_gpu_session: GIT_COMMIT is not set and this tree has no git history: the results will" \
       "name no commit (write GIT_COMMIT=<commit> into the command)" >&2
fi
exec "$PY" benchmarks/gpu_check.py "$@"
