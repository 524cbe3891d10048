#!/usr/bin/env bash
# What a lent GPU machine runs once DALI is unpacked into /tmp/site (../shared/gpu/README.md):
# the GPU tests, then the quick GPU measurements; everything lands in $OUT.
set -u
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-bench-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1
python -c "import torch, cupy, nvidia.dali as d; print('torch', torch.__version__, 'cupy', cupy.__version__, 'dali', d.__version__)" | tee "$OUT/versions.txt"
timeout 240 python -m pytest tests/test_gpu_kernels.py tests/test_gpu_iterator.py -q -p no:cacheprovider -rs 2>&1 | tail -60 > "$OUT/gpu_tests.txt"
tail -5 "$OUT/gpu_tests.txt"
root=$(python -c "from dali_mixup.datasets import synthetic_imagenet as s; print(s(${IMAGES:-3000}, 10, cache_dir='/tmp/ds'))")
timeout 300 python benchmarks/gpu_quick.py "$root" 2>&1 | tail -30 | tee "$OUT/gpu_quick.txt"
