# syntax=docker/dockerfile:1
#
# dali-mixup on a GPU host with the NVIDIA Container Toolkit.
#
#   docker build -t dali-mixup:cuda13 .
#   docker run --rm --gpus all dali-mixup:cuda13 doctor      # smoke test
#   docker run --rm --gpus all --shm-size=2g dali-mixup:cuda13   # bench --quick
#
# CUDA 12 hosts (driver < 580): build the cuda12 variant, three build arguments that belong together:
#
#   docker build -t dali-mixup:cuda12 \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#     --build-arg CUDA_EXTRA=cuda12 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# The builder checks that CUDA_EXTRA names the CUDA major version of BASE_IMAGE.
# See docker/README.md.

# A pinned CUDA runtime image, never :latest. The CUDA 13 line matches the `cuda13` extra
# (nvidia-dali-cuda130, cupy-cuda13x) and needs an NVIDIA driver >= 580 on the host.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# builder: a virtual environment in /opt/venv with the dependencies, then the package itself.
# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

# Extras of pyproject.toml installed in the image: the CUDA line plus the bench tools
# (torchvision, timm, ...) that `dali-mixup bench` and `dali-mixup train` use.
ARG CUDA_EXTRA=cuda13
ARG EXTRAS=bench
# torch from the PyTorch index of the same CUDA line (cu130 for CUDA 13, cu128 for CUDA 12).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# Fail early when the extra does not match the image's CUDA (the base image sets CUDA_VERSION).
RUN test "cuda${CUDA_VERSION%%.*}" = "${CUDA_EXTRA}" \
    || { echo "CUDA_EXTRA=${CUDA_EXTRA} does not match CUDA ${CUDA_VERSION} of the base image" >&2; exit 1; }

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH}

# Dependencies first, from pyproject.toml alone, so that editing the source does not reinstall them.
COPY pyproject.toml /src/pyproject.toml
RUN python3 -c "import sys, tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; extras = ('${CUDA_EXTRA},${EXTRAS}').split(','); print('\n'.join(p['dependencies'] + [r for e in extras if e for r in p['optional-dependencies'][e]]))" \
        > /src/requirements.txt \
    && cat /src/requirements.txt \
    && pip install --upgrade pip \
    && pip install --index-url "${TORCH_INDEX_URL}" torch torchvision \
    && pip install -r /src/requirements.txt

# Then the package (no dependencies left to resolve: the extras above are the same as
# `pip install "dali-mixup[${CUDA_EXTRA},${EXTRAS}]"`).
COPY README.md /src/README.md
COPY dali_mixup /src/dali_mixup
RUN pip install --no-deps /src \
    && python3 -c "import dali_mixup, nvidia.dali, cupy, torch; print('dali_mixup', dali_mixup.__version__, 'DALI', nvidia.dali.__version__, 'CuPy', cupy.__version__, 'torch', torch.__version__)"

# ---------------------------------------------------------------------------------------------
# runtime: the same base, Python and the virtual environment; no pip cache, no build tools.
# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

ARG USER_UID=1000
ARG USER_GID=1000

# `video` exposes the NVJPG engines (hardware JPEG decoder of A100/H100) inside the container;
# compute,utility alone would hide them and DALI would silently fall back to CUDA decoding.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/cache \
    DEBIAN_FRONTEND=noninteractive

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*

# Ubuntu 24.04 images ship a user `ubuntu` with uid 1000: replace it by ours.
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && groupadd --gid "${USER_GID}" mixup \
    && useradd --uid "${USER_UID}" --gid "${USER_GID}" --create-home --shell /bin/bash mixup \
    && mkdir -p /results /data /cache \
    && chown mixup:mixup /results \
    && chmod 1777 /cache

COPY --from=builder /opt/venv /opt/venv

USER mixup
# Results (bench JSON and PNG, checkpoints) go to the working directory: mount a host folder here.
# /cache (XDG_CACHE_HOME) holds the bench's generated data set: mount a volume to keep it.
WORKDIR /results

ENTRYPOINT ["dali-mixup"]
CMD ["bench", "--quick"]
