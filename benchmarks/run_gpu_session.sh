#!/usr/bin/env bash
# What a lent GPU machine runs once DALI is unpacked into /tmp/site (../shared/gpu/README.md):
# the GPU tests, the kernels' device bandwidth, and the end-to-end bench; everything lands in $OUT.
set -u
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-bench-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1
python -c "import torch, cupy, nvidia.dali as d; print('torch', torch.__version__, 'cupy', cupy.__version__, 'dali', d.__version__)" | tee "$OUT/versions.txt"
timeout 150 python -m pytest tests/test_gpu_kernels.py tests/test_gpu_iterator.py -q -p no:cacheprovider -rs 2>&1 | tail -40 > "$OUT/gpu_tests.txt"
tail -2 "$OUT/gpu_tests.txt"
timeout 90 python benchmarks/kernel_bandwidth.py --repeats 20 --out "$OUT/kernel-bandwidth.json" 2>&1 | tail -8
timeout ${BENCH_TIMEOUT:-240} python -m dali_mixup bench --images ${IMAGES:-4096} --batch-size ${BS:-256} --out "$OUT" --no-progress 2>&1 | tail -25
