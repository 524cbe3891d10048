# syntax=docker/dockerfile:1
#
# dali-mixup in a container. One Dockerfile, three variants on one pinned Debian base; CUDA comes
# from the wheels of torch, DALI and CuPy, and the NVIDIA Container Toolkit mounts the driver when
# the container starts (docker/README.md has the table, the measured sizes and the recorded build):
#
#   CUDA 13 (default; host driver >= 580 and the NVIDIA Container Toolkit):
#     docker build -t dali-mixup:cuda13 .
#   CUDA 12 (host driver >= 570):
#     docker build -t dali-mixup:cuda12 \
#       --build-arg CUDA_EXTRA=cuda12 \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#   CPU only (no CuPy; DALI's CPU backend, torch's CPU build):
#     docker build -t dali-mixup:cpu \
#       --build-arg CUDA_EXTRA=cpu \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#
# BASE_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04 (or 12.8.1 for cuda12) still works, untested here:
# the image then carries the CUDA runtime of that base as well as the wheels'.
#
# Behind a TLS-intercepting proxy, give the build your CA bundle as a secret; apt and pip use it
# during the build only, and no layer keeps it:
#     docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt ...
#
# Versions come from constraints.txt, the file `make test` installs with. docker/cuda-line.sh keeps
# the build arguments together: it stops the build before any download when CUDA_EXTRA disagrees
# with the base's CUDA_VERSION or with a PyTorch index that names its line, and after the install
# when torch is not built for the line's CUDA.

# A pinned image, never :latest.
ARG BASE_IMAGE=debian:bookworm-20250520-slim
# The CUDA line: cuda13, cuda12 or cpu. It names the extra of pyproject.toml installed and the
# env-* stage the runtime starts from (the NVIDIA Container Toolkit's settings).
ARG CUDA_EXTRA=cuda13

# ---------------------------------------------------------------------------------------------
# deps: Python and a virtual environment in /opt/venv with the pinned dependencies, not the
# package. The runtime starts FROM this stage, so the 6.5 GB of dependencies are one layer that
# the image shares with it (not a copy, which a rebuild would checksum and store twice).
# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS deps

ARG CUDA_EXTRA
# Extras of pyproject.toml installed besides the CUDA line: the bench tools (torchvision, timm, ...)
# that `dali-mixup bench` and `dali-mixup train` use.
ARG EXTRAS=bench
# torch and torchvision from the PyTorch index of the same line (cu130, cu128 or cpu); the rest,
# and whatever that index lacks, from PyPI.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Build arguments that do not belong together stop the build here, before any download.
COPY docker/cuda-line.sh docker/slim_venv.py /src/docker/
RUN sh /src/docker/cuda-line.sh args

RUN --mount=type=secret,id=ca-bundle,required=false \
    if [ -s /run/secrets/ca-bundle ]; then set -- -o Acquire::https::CAInfo=/run/secrets/ca-bundle; fi \
    && apt-get "$@" update \
    && DEBIAN_FRONTEND=noninteractive apt-get "$@" install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH}

# Dependencies first, from pyproject.toml and constraints.txt alone: editing the source does not
# reinstall them. constraints.txt pins the tests' environment (the CUDA 13 line); cuda-line.sh
# adapts it to the line built.
COPY pyproject.toml /src/pyproject.toml
COPY constraints.txt /src/constraints.txt
RUN python3 -c "import sys, tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; extras = ('${CUDA_EXTRA},${EXTRAS}').split(','); print('\n'.join(p['dependencies'] + [r for e in extras if e for r in p['optional-dependencies'][e]]))" \
        > /src/requirements.txt \
    && cat /src/requirements.txt \
    && sh /src/docker/cuda-line.sh constraints < /src/constraints.txt > /src/line-constraints.txt
# In the layer that installs them (a later layer cannot shrink the image), slim_venv.py removes
# what no process here loads: CUDA's link-time static archives, NVRTC's unused alternative build,
# and byte-identical copies of one library in one folder (made links).
RUN --mount=type=secret,id=ca-bundle,required=false \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install -c /src/line-constraints.txt --upgrade pip \
    && pip install -c /src/line-constraints.txt --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
        torch torchvision \
    && pip install -c /src/line-constraints.txt -r /src/requirements.txt \
    && pip check \
    && sh /src/docker/cuda-line.sh torch \
    && python3 /src/docker/slim_venv.py /opt/venv

# ---------------------------------------------------------------------------------------------
# wheel: the package itself, built as a wheel (a source edit rebuilds this stage in seconds).
# ---------------------------------------------------------------------------------------------
FROM deps AS wheel
RUN --mount=type=secret,id=ca-bundle,required=false \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install -c /src/constraints.txt setuptools wheel
COPY README.md /src/README.md
COPY dali_mixup /src/dali_mixup
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /dist /src

# ---------------------------------------------------------------------------------------------
# env-<line>: what the NVIDIA Container Toolkit reads when the container starts (an nvidia/cuda
# base would set it; the Debian base does not). Metadata only: these stages add no layer.
#   NVIDIA_VISIBLE_DEVICES      the GPUs to mount where the toolkit is the default runtime (with
#                               `--gpus` Docker sets it itself)
#   NVIDIA_DRIVER_CAPABILITIES  `video` exposes the NVJPG engines (the hardware JPEG decoder of
#                               A100/H100) inside the container; compute,utility alone hides them
#                               and DALI silently decodes with CUDA instead
#   NVIDIA_REQUIRE_CUDA         the driver must support the line's CUDA (13.0: driver >= 580; 12.8:
#                               driver >= 570); an older one fails at start with "unsatisfied
#                               condition", not later inside torch
# The CPU variant sets none of them.
# ---------------------------------------------------------------------------------------------
FROM deps AS env-cpu

FROM deps AS env-cuda13
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    NVIDIA_REQUIRE_CUDA="cuda>=13.0"

FROM deps AS env-cuda12
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    NVIDIA_REQUIRE_CUDA="cuda>=12.8"

# ---------------------------------------------------------------------------------------------
# runtime: the dependencies and the line's environment, a user, then the wheel in a layer of its own.
# ---------------------------------------------------------------------------------------------
FROM env-${CUDA_EXTRA} AS runtime

ARG CUDA_EXTRA
ARG USER_UID=1000
ARG USER_GID=1000

# HOME and the caches are set, and writable by any uid, so that `--user "$(id -u):$(id -g)"` works:
# CuPy's kernel cache, Matplotlib's config, torch's hub and the bench's generated data set go to
# /cache (mount a volume there to keep them).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/mixup \
    XDG_CACHE_HOME=/cache \
    CUPY_CACHE_DIR=/cache/cupy \
    MPLCONFIGDIR=/cache/matplotlib

# Ubuntu 24.04 images (an nvidia/cuda base) ship a user `ubuntu` with uid 1000: replace it by ours.
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && groupadd --gid "${USER_GID}" mixup \
    && useradd --uid "${USER_UID}" --gid "${USER_GID}" --create-home --shell /bin/bash mixup \
    && mkdir -p /results /data /cache/cupy /cache/matplotlib \
    && chown mixup:mixup /results \
    && chmod 1777 /home/mixup /cache /cache/cupy /cache/matplotlib

COPY --from=wheel /dist /opt/dist
RUN pip install --no-deps --no-index /opt/dist/*.whl \
    && rm -rf /opt/dist \
    && python3 -c "import dali_mixup, nvidia.dali, torch; print('dali_mixup', dali_mixup.__version__, 'DALI', nvidia.dali.__version__, 'torch', torch.__version__)" \
    && if [ "${CUDA_EXTRA}" != cpu ]; then python3 -c "import cupy; print('CuPy', cupy.__version__)"; fi

USER mixup
# Results go to the working directory: the bench writes bench-out/bench-<hardware>.json and .png
# under it, so a host folder mounted here gets them in its bench-out/. bench and train check
# before the run that they can write there (one line and exit status 2 when not).
WORKDIR /results

ENTRYPOINT ["dali-mixup"]
CMD ["bench", "--quick"]
