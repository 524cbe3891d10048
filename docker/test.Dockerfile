# The test image of `make docker-check` (docker/check.sh): the built image plus what the test
# suite's CPU tier needs on top of it: the dev extra (pytest, scipy, ...) at the versions of
# constraints.txt, and g++ for the host twins of the CUDA kernels (test_kernel_source compiles
# them). The tests are not in it: the check mounts the repository read-only and runs them against
# the wheel installed in the image.
ARG IMAGE=localhost/dali-mixup:cpu
FROM ${IMAGE}
USER root
RUN --mount=type=secret,id=ca-bundle,required=false \
    if [ -s /run/secrets/ca-bundle ]; then set -- -o Acquire::https::CAInfo=/run/secrets/ca-bundle; fi \
    && apt-get "$@" update \
    && DEBIAN_FRONTEND=noninteractive apt-get "$@" install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml constraints.txt /tmp/req/
RUN --mount=type=secret,id=ca-bundle,required=false \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/req/pyproject.toml', 'rb'))['project']['optional-dependencies']['dev']))" \
        > /tmp/req/dev.txt \
    && PIP_NO_CACHE_DIR=1 pip install -c /tmp/req/constraints.txt -r /tmp/req/dev.txt \
    && rm -rf /tmp/req
USER mixup
