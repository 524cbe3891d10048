#!/bin/sh
# The image's CUDA line (cuda13, cuda12 or cpu: the build argument CUDA_EXTRA) kept consistent with
# the other build arguments. The Dockerfile's deps stage runs it; tests/test_docker.py runs it with
# chosen environments; `make docker-check` runs `torch` inside a built image.
#
#   sh cuda-line.sh args         before any download: CUDA_EXTRA is a line of the image, and agrees
#                                with CUDA_VERSION (set by an nvidia/cuda base) and with a PyTorch
#                                index that names its line (TORCH_INDEX_URL=.../whl/cu130, .../cpu)
#   sh cuda-line.sh torch        after the install: torch is built for the line's CUDA major
#                                (torch from PyPI or a mirror says its line only once installed)
#   sh cuda-line.sh constraints  constraints.txt (stdin) for the line (stdout): the tests'
#                                environment is the CUDA 13 line, so cuda12 drops the pins of CUDA 13
#                                components (cuda-toolkit, cuda-bindings, nvidia-* wheels) and pins
#                                DALI and CuPy of the CUDA 12 line at the same versions
#
# Environment: CUDA_EXTRA (required), CUDA_VERSION and TORCH_INDEX_URL (optional).
set -eu

die() { echo "$*" >&2; exit 1; }

line=${CUDA_EXTRA:-}
case "$line" in
    cpu) major= index_hint= ;;
    cuda13) major=13 index_hint=https://download.pytorch.org/whl/cu130 ;;
    cuda12) major=12 index_hint=https://download.pytorch.org/whl/cu128 ;;
    *) die "CUDA_EXTRA=${line:-(unset)} is not a line of this image: use cuda13, cuda12 or cpu" ;;
esac

case "${1:-}" in
args)
    # nvidia/cuda images set CUDA_VERSION; the plain Debian base does not (CUDA comes from wheels).
    if [ -n "$major" ] && [ -n "${CUDA_VERSION:-}" ] && [ "${CUDA_VERSION%%.*}" != "$major" ]; then
        die "CUDA_EXTRA=$line does not match the base image (CUDA_VERSION=$CUDA_VERSION): use cuda${CUDA_VERSION%%.*} or a base of CUDA $major"
    fi
    # The PyTorch indexes name their line in the last path segment: cu130 is CUDA 13, cu128 is 12.
    index=${TORCH_INDEX_URL:-}
    index=${index%/}
    tag=${index##*/}
    case "$tag" in
    cpu)
        if [ -n "$major" ]; then
            die "CUDA_EXTRA=$line does not match TORCH_INDEX_URL=$TORCH_INDEX_URL (torch without CUDA): use $index_hint"
        fi ;;
    cu[0-9][0-9]*)
        index_major=${tag#cu}
        index_major=${index_major%?}
        if [ -n "$major" ] && [ "$index_major" != "$major" ]; then
            die "CUDA_EXTRA=$line does not match TORCH_INDEX_URL=$TORCH_INDEX_URL (torch for CUDA $index_major): use $index_hint"
        fi ;;
    *) ;;  # PyPI or a mirror: checked after the install (`torch`)
    esac
    echo "CUDA line: $line (base CUDA_VERSION=${CUDA_VERSION:-unset, CUDA from wheels}, torch from ${TORCH_INDEX_URL:-PyPI})" ;;
torch)
    python3 -c '
import sys

import torch

line, index_hint, built = sys.argv[1], sys.argv[2], torch.version.cuda
what = f"CUDA {built}" if built else "no CUDA (a CPU-only build)"
print(f"torch {torch.__version__}: built for {what}")
if line != "cpu" and (built or "").split(".")[0] != line[4:]:
    sys.exit(f"CUDA_EXTRA={line} does not match torch {torch.__version__}, built for {what}: "
             f"take torch from the index of the line (TORCH_INDEX_URL={index_hint})")
' "$line" "$index_hint" ;;
constraints)
    case "$line" in
    cuda12)
        sed -e '/^cuda-toolkit==/d' -e '/^cuda-bindings==/d' \
            -e 's/^nvidia-dali-cuda130==/nvidia-dali-cuda120==/' -e 's/^cupy-cuda13x==/cupy-cuda12x==/' \
            -e '/^nvidia-dali-/!{/^nvidia-/d;}' ;;
    *) cat ;;
    esac ;;
*) die "usage: CUDA_EXTRA=<line> sh cuda-line.sh args|torch|constraints" ;;
esac
