#!/usr/bin/env bash
# `make docker-check`: build the image from this repository's Dockerfile and run it for real.
#
# buildah (chroot isolation) builds the CPU and the CUDA 13 variants on a local Debian bookworm
# base that debootstrap makes (cached as an image), and podman (runc) runs them. The CPU variant:
#   - the image's promises: non-root user, no DEBIAN_FRONTEND, HOME and the caches writable under
#     --user, one line (not a traceback) for a results folder the user cannot write;
#   - `doctor`;
#   - `bench --quick --device cpu` on a small built-in set, as another uid (--user), results mounted;
#   - the test suite's CPU tier (-m "not gpu") as that uid, against the installed wheel, the
#     repository and a generated ImageFolder mounted read-only, a results folder mounted;
#   - a one-line source edit rebuilt (timed: the dependency layers must come from the cache);
#   - the compose file's services through podman-compose, as far as a machine without GPU allows.
# The CUDA 13 variant, without a GPU:
#   - the NVIDIA Container Toolkit's settings in the image (visible devices, capabilities with
#     `video`, the driver requirement);
#   - DALI and CuPy import, torch is built for CUDA 13 (and docker/cuda-line.sh stops a cuda12
#     build that would get this torch);
#   - NVRTC from the wheels compiles every kernel of dali_mixup.kernels.KERNELS for sm_80 and
#     sm_90 (docker/nvrtc_check.py, the sources of tests/test_kernel_source.py);
#   - `doctor` says in one line that there is no GPU and exits 0 (1, one problem line, with
#     --device gpu);
#   - the CUDA libraries it carries, with sizes, and those present more than once
#     (docker/cuda_libs.py).
# Then the guard: build arguments that do not belong together stop the build before any download.
# Prints the image sizes, the largest layers and the timings; docker/README.md records a run.
#
# Needs root (apt-get, buildah, podman) and ~40 GB of disk; 22 minutes cold, 12 warm (docker/README.md).
# Environment (all optional):
#   DOCKER_CHECK_DIR   work folder (default /var/tmp/dali-mixup-docker-check): data, results, logs
#   DOCKER_CHECK_COLD  1: make the base anew, so that no layer comes from the cache (buildah
#                      1.28's --no-cache leaves no cache behind for the edit rebuild to use)
#   TORCH_INDEX_URL    where torch comes from (default https://pypi.org/simple: the PyTorch
#                      indexes are not reachable where this project is developed; PyPI's torch is
#                      the CUDA 13 build, which the CUDA 13 variant wants, and the CPU image
#                      carries CUDA wheels it does not use)
#   CA_BUNDLE          CA bundle handed to the build as the ca-bundle secret (default: the
#                      system's, when it exists; needed behind a TLS-intercepting proxy)
#   DEBIAN_MIRROR      debootstrap's mirror (default http://deb.debian.org/debian)
#   TEST_ARGS          extra pytest arguments for the in-container test run
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${DOCKER_CHECK_DIR:-/var/tmp/dali-mixup-docker-check}
BASE=localhost/dali-mixup-base:bookworm
IMAGE=localhost/dali-mixup:cpu
TEST_IMAGE=localhost/dali-mixup:cpu-test
CUDA_IMAGE=localhost/dali-mixup:cuda13
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://pypi.org/simple}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
COLD=${DOCKER_CHECK_COLD:-0}
RUN_UID=4242   # not the image's user (1000): what `--user "$(id -u):$(id -g)"` gives
BENCH_IMAGES=64

SUMMARY=()
FAILED=()
say() { printf '\n== %s\n' "$*"; }
record() { SUMMARY+=("$(printf '%-58s %s' "$1" "$2")"); }
fail() { FAILED+=("$1"); record "$1" "FAILED"; printf 'docker-check: FAILED: %s\n' "$1" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f s", b - a }'; }
gb() { awk -v b="$1" 'BEGIN { printf "%.2f GB", b / 1e9 }'; }

# ---------------------------------------------------------------------------------------------
say "tools"
if [ "$(id -u)" != 0 ]; then
    echo "docker-check: run as root (apt-get, buildah and podman with chroot isolation need it)" >&2
    exit 2
fi
missing=()
for tool in buildah podman runc debootstrap podman-compose; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        buildah podman runc debootstrap podman-compose
fi
buildah --version; podman --version; runc --version | head -1; podman-compose version 2>/dev/null | grep -i '^podman-compose' || true
mkdir -p "$WORK/logs"

# podman's default limits for root containers (1048576 open files, nproc up to the pid limit)
# exceed what an unprivileged-looking sandbox may set: take the machine's own hard limits.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu); pidmax=$(cat /proc/sys/kernel/pid_max)
[ "$nofile" = unlimited ] && nofile=1048576
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pidmax" ]; } && nproc=$pidmax
printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' "$nofile" "$nofile" "$nproc" "$nproc" \
    > "$WORK/containers.conf"
export CONTAINERS_CONF=$WORK/containers.conf

BUILDAH=(buildah bud --isolation chroot --layers)
if [ -n "$CA_BUNDLE" ] && [ -s "$CA_BUNDLE" ]; then
    BUILDAH+=(--secret "id=ca-bundle,src=$CA_BUNDLE")
fi
# CUDA_EXTRA is always given: buildah 1.28 skips the stages it thinks unused before it applies the
# global ARG defaults, and would then miss the runtime's env-<line> stage.
CPU_ARGS=(--build-arg BASE_IMAGE="$BASE" --build-arg CUDA_EXTRA=cpu --build-arg TORCH_INDEX_URL="$TORCH_INDEX_URL")
CUDA_ARGS=(--build-arg BASE_IMAGE="$BASE" --build-arg CUDA_EXTRA=cuda13 --build-arg TORCH_INDEX_URL="$TORCH_INDEX_URL")

# ---------------------------------------------------------------------------------------------
# The image and the tests come from one snapshot of the working tree (tracked and untracked files,
# not the ignored ones; modification times kept, so the layer cache still applies): edits made
# while the check runs cannot pair a new test with an older package.
say "snapshot of the working tree ($WORK/context)"
CTX=$WORK/context
rm -rf "$CTX"; mkdir -p "$CTX"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && xargs -0 cp -a --parents -t "$CTX" 2>/dev/null || true)
git -C "$ROOT" log -1 --format='commit %h %s' | cut -c1-100
git -C "$ROOT" status --short | head -20

# ---------------------------------------------------------------------------------------------
say "base image $BASE (debootstrap bookworm, minbase)"
if [ "$COLD" = 1 ] && podman image exists "$BASE"; then podman rmi -f "$BASE" >/dev/null; fi
if podman image exists "$BASE"; then
    echo "cached"
    record "base image (debootstrap)" "cached"
else
    t=$(now)
    rootfs=$WORK/rootfs
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" > "$WORK/logs/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/logs/debootstrap.log"; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s-security bookworm-security main\n' \
        "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" > "$rootfs/etc/apt/sources.list"
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$BASE" >/dev/null
    rm -rf "$rootfs"
    record "base image (debootstrap + import)" "$(since "$t"), $(gb "$(podman image inspect --format '{{.Size}}' "$BASE")")"
fi

# ---------------------------------------------------------------------------------------------
say "build $IMAGE (CPU variant; log: $WORK/logs/build.log)"
t=$(now)
if "${BUILDAH[@]}" "${CPU_ARGS[@]}" -f "$CTX/Dockerfile" -t "$IMAGE" "$CTX" > "$WORK/logs/build.log" 2>&1; then
    cached=$(grep -c 'Using cache' "$WORK/logs/build.log" || true)
    record "build, CPU variant ($cached steps from the cache)" "$(since "$t")"
else
    tail -30 "$WORK/logs/build.log"
    echo "docker-check: the build failed (log: $WORK/logs/build.log)" >&2
    exit 1
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
record "image size, CPU variant" "$(gb "$size")"
echo "largest layers:"
podman history --format '{{.Size}}  {{.CreatedBy}}' "$IMAGE" | grep -v '^0 B' | cut -c1-150 | head -12
echo "what the virtual environment holds (MB):"
podman run --rm --network none --entrypoint sh "$IMAGE" -c '
    cd /opt/venv/lib/python3*/site-packages
    for d in /opt/venv torch triton cupy nvidia nvidia/dali nvidia/cu13 nvidia/cudnn; do
        if [ -e "$d" ]; then du -sm "$d"; fi
    done' \
    | tee "$WORK/logs/venv-du.txt" || true

# A small ImageFolder (train/ and val/), mounted read-only wherever data is read.
rm -rf "$WORK/data"; mkdir -p "$WORK/data"
podman run --rm --network none -v "$WORK/data:/out" --user 0 --entrypoint python3 "$IMAGE" -c '
import numpy as np, pathlib
from PIL import Image
rng = np.random.default_rng(0)
for split, n in (("train", 24), ("val", 8)):
    for c in range(4):
        d = pathlib.Path("/out", split, f"class{c}"); d.mkdir(parents=True)
        for i in range(n):
            a = (rng.random((96, 128, 3)) * 64 + c * 48).astype(np.uint8)
            Image.fromarray(a).save(d / f"{i}.jpg", quality=90)
'
chmod -R a+rX "$WORK/data"

# ---------------------------------------------------------------------------------------------
say "the image's settings"
env_lines=$(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE")
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
if [ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ]; then record "runs as non-root ($user)" ok; else fail "non-root user (got '$user')"; fi
if grep -q '^DEBIAN_FRONTEND=' <<<"$env_lines"; then fail "DEBIAN_FRONTEND not in the runtime environment"; else record "DEBIAN_FRONTEND not in the runtime environment" ok; fi
if podman run --rm --network none --user "$RUN_UID:$RUN_UID" --entrypoint sh "$IMAGE" -c '
        set -e
        echo "HOME=$HOME XDG_CACHE_HOME=$XDG_CACHE_HOME CUPY_CACHE_DIR=$CUPY_CACHE_DIR MPLCONFIGDIR=$MPLCONFIGDIR"
        for d in "$HOME" "$XDG_CACHE_HOME" "$CUPY_CACHE_DIR" "$MPLCONFIGDIR"; do
            [ -n "$d" ] && touch "$d/.w" && rm "$d/.w"
        done
        python3 -c "import matplotlib; print(\"matplotlib config\", matplotlib.get_configdir())" 2>&1
        ' > "$WORK/logs/user-dirs.log" 2>&1 \
    && ! grep -q -i 'temporary' "$WORK/logs/user-dirs.log"; then
    cat "$WORK/logs/user-dirs.log"
    record "--user $RUN_UID: HOME, caches, MPLCONFIGDIR writable" ok
else
    cat "$WORK/logs/user-dirs.log"; fail "--user $RUN_UID: HOME, caches, MPLCONFIGDIR writable"
fi

# Results folder the container's user cannot write: bench and train stop at once with one line
# and exit status 2, no traceback.
rm -rf "$WORK/results-ro"; mkdir -p "$WORK/results-ro"; chmod 755 "$WORK/results-ro"
for cmd in "bench --quick --device cpu" "train /data --device cpu --epochs 1"; do
    set +e
    # shellcheck disable=SC2086
    podman run --rm --network none --user "$RUN_UID:$RUN_UID" -v "$WORK/data:/data:ro" -v "$WORK/results-ro:/results" "$IMAGE" $cmd \
        > "$WORK/logs/results-ro.out" 2> "$WORK/logs/results-ro.err"
    rc=$?
    set -e
    cat "$WORK/logs/results-ro.err"
    if [ "$rc" = 2 ] && [ "$(wc -l < "$WORK/logs/results-ro.err")" = 1 ] && ! grep -q Traceback "$WORK/logs/results-ro.err"; then
        record "unwritable /results, ${cmd%% *}: one line, exit status 2" ok
    else
        fail "unwritable /results, ${cmd%% *}: one line, exit status 2 (got $rc, $(wc -l < "$WORK/logs/results-ro.err") lines)"
    fi
done

# ---------------------------------------------------------------------------------------------
say "doctor"
t=$(now)
if podman run --rm --network none --shm-size=1g "$IMAGE" doctor 2>&1 | tee "$WORK/logs/doctor.log"; then
    record "doctor (exit 0)" "$(since "$t")"
else
    fail "doctor"
fi

# ---------------------------------------------------------------------------------------------
say "bench --quick --device cpu --images $BENCH_IMAGES, as uid $RUN_UID, results in $WORK/results"
rm -rf "$WORK/results"; mkdir -p "$WORK/results"; chown "$RUN_UID:$RUN_UID" "$WORK/results"
t=$(now)
if podman run --rm --network none --shm-size=1g --user "$RUN_UID:$RUN_UID" -v "$WORK/results:/results" "$IMAGE" \
        bench --quick --device cpu --images "$BENCH_IMAGES" --no-progress \
        > "$WORK/logs/bench.out" 2> "$WORK/logs/bench.err"; then
    tail -25 "$WORK/logs/bench.out"
    record "bench --quick --device cpu --images $BENCH_IMAGES" "$(since "$t")"
else
    tail -25 "$WORK/logs/bench.out"; tail -25 "$WORK/logs/bench.err"; fail "bench --quick --device cpu"
fi
if grep -q -i -E 'Matplotlib created a temporary|Traceback' "$WORK/logs/bench.err"; then
    fail "bench: no Matplotlib cache warning, no traceback"; cat "$WORK/logs/bench.err"
fi
ls -l "$WORK/results/bench-out" 2>/dev/null || true
if ls "$WORK/results"/bench-out/bench-*.json >/dev/null 2>&1; then
    record "results in the mounted folder's bench-out/ (as documented)" ok
else
    fail "results in the mounted folder's bench-out/"
fi

# ---------------------------------------------------------------------------------------------
say "test image $TEST_IMAGE (the image + the dev extra + g++) and the CPU test tier"
t=$(now)
if "${BUILDAH[@]}" --build-arg IMAGE="$IMAGE" \
        -f "$CTX/docker/test.Dockerfile" -t "$TEST_IMAGE" "$CTX" > "$WORK/logs/build-test.log" 2>&1; then
    record "build, test image" "$(since "$t")"
else
    tail -30 "$WORK/logs/build-test.log"; fail "build, test image"
fi
if podman image exists "$TEST_IMAGE"; then
    rm -rf "$WORK/test-results"; mkdir -p "$WORK/test-results"; chown "$RUN_UID:$RUN_UID" "$WORK/test-results"
    t=$(now)
    # The repository read-only at /src, its dali_mixup/ hidden: the tests import the installed wheel.
    # shellcheck disable=SC2086
    if podman run --rm --network none --shm-size=1g --user "$RUN_UID:$RUN_UID" \
            -v "$CTX:/src:ro" --tmpfs /src/dali_mixup -v "$WORK/data:/data:ro" -v "$WORK/test-results:/results" \
            -w /results --entrypoint sh "$TEST_IMAGE" -c '
                python3 -c "import dali_mixup; print(\"testing\", dali_mixup.__file__)"
                exec pytest -p no:cacheprovider -c /src/pyproject.toml --rootdir /src /src/tests -m "not gpu" -q \
                    --junitxml=/results/junit.xml "$@"' sh ${TEST_ARGS:-} \
            > "$WORK/logs/tests.log" 2>&1; then
        status=ok
    else
        status=FAILED
    fi
    tail -30 "$WORK/logs/tests.log"
    counts=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$WORK/logs/tests.log" | tail -1 | tr -d '=' | xargs)
    if [ "$status" = ok ]; then record "tests -m 'not gpu' ($counts)" "$(since "$t")"; else fail "tests -m 'not gpu' ($counts)"; fi
fi

# ---------------------------------------------------------------------------------------------
say "a one-line source edit, rebuilt"
ctx=$WORK/edit-context
rm -rf "$ctx"; mkdir -p "$ctx"
cp -a "$CTX/." "$ctx/"
marker="docker-check edit $(date +%s)"
echo "# $marker" >> "$ctx/dali_mixup/__init__.py"
t=$(now)
if "${BUILDAH[@]}" "${CPU_ARGS[@]}" -f "$ctx/Dockerfile" -t "$IMAGE-edit" "$ctx" > "$WORK/logs/build-edit.log" 2>&1 \
        && podman run --rm --network none --entrypoint python3 "$IMAGE-edit" -c \
            "import dali_mixup, sys; sys.exit('$marker' not in open(dali_mixup.__file__).read())"; then
    record "rebuild after a one-line source edit" "$(since "$t")"
else
    tail -20 "$WORK/logs/build-edit.log"; fail "rebuild after a one-line source edit"
fi
podman history --format '{{.Size}}  {{.CreatedBy}}' "$IMAGE-edit" 2>/dev/null | head -4 | cut -c1-120 || true
podman rmi "$IMAGE-edit" >/dev/null 2>&1 || true
rm -rf "$ctx"

# ---------------------------------------------------------------------------------------------
say "compose services (podman-compose; no GPU here: the device reservations cannot be met)"
rm -rf "$WORK/compose-results"; mkdir -p "$WORK/compose-results"; chown "$RUN_UID:$RUN_UID" "$WORK/compose-results"
export DATA_DIR=$WORK/data RESULTS_DIR=$WORK/compose-results CUDA_EXTRA=cpu HOST_UID=$RUN_UID HOST_GID=$RUN_UID
project=dali-mixup-check
# --no-deps: podman-compose 1.0.3's `run` otherwise starts every service of the file first;
# -T: no terminal here.
compose=(podman-compose -p "$project" -f "$CTX/docker/compose.yaml")
crun=("${compose[@]}" run --no-deps -T --rm)
t=$(now)
if "${crun[@]}" bench doctor > "$WORK/logs/compose-doctor.log" 2>&1; then
    record "compose: run bench doctor" "$(since "$t")"
else
    tail -15 "$WORK/logs/compose-doctor.log"; fail "compose: run bench doctor"
fi
t=$(now)
if "${crun[@]}" bench bench --quick --device cpu --data /data/train --no-progress \
        > "$WORK/logs/compose-bench.log" 2>&1 && ls "$WORK"/compose-results/bench-out/bench-*.json >/dev/null 2>&1; then
    record "compose: run bench bench --quick --device cpu --data /data/train" "$(since "$t")"
else
    tail -15 "$WORK/logs/compose-bench.log"; fail "compose: bench service on the CPU"
fi
# The train service as compose defines it, one CPU process instead of one per GPU.
train_args=(--standalone --nproc_per_node=1 -m dali_mixup train /data --out /results/train --resume auto
            --device cpu --model small-cnn --image-size 32 --epochs 1 --batch-size 16 --quiet)
t=$(now)
if "${crun[@]}" train "${train_args[@]}" > "$WORK/logs/compose-train.log" 2>&1 \
        && ls "$WORK"/compose-results/train/*.pt >/dev/null 2>&1; then
    tail -3 "$WORK/logs/compose-train.log"
    record "compose: run train (torchrun, 1 CPU process, 1 epoch)" "$(since "$t")"
elif grep -q 'error setting rlimit' "$WORK/logs/compose-train.log"; then
    # memlock: -1 (unlimited) needs CAP_SYS_RESOURCE where the hard limit is lower, as in a sandbox.
    record "compose: run train" "not here: ulimit memlock=-1 refused (hard limit $(ulimit -Hl) KB)"
    t=$(now)
    if podman run --rm --network none --shm-size=1g --user "$RUN_UID:$RUN_UID" -w /results \
            -v "$WORK/data:/data:ro" -v "$WORK/compose-results:/results" --entrypoint torchrun "$IMAGE" \
            "${train_args[@]}" > "$WORK/logs/train.log" 2>&1 && ls "$WORK"/compose-results/train/*.pt >/dev/null 2>&1; then
        tail -3 "$WORK/logs/train.log"
        record "  the train service's command, podman run without memlock" "$(since "$t")"
    else
        tail -15 "$WORK/logs/train.log"; fail "train service's command (torchrun, 1 CPU process)"
    fi
else
    tail -15 "$WORK/logs/compose-train.log"; fail "compose: train service on the CPU"
fi
"${compose[@]}" down > /dev/null 2>&1 || true
podman network rm -f "${project}_default" > /dev/null 2>&1 || true
podman volume rm -f "${project}_cache" > /dev/null 2>&1 || true

# ---------------------------------------------------------------------------------------------
say "build $CUDA_IMAGE (CUDA 13 variant, same base, CUDA from the wheels; log: $WORK/logs/build-cuda13.log)"
t=$(now)
if "${BUILDAH[@]}" "${CUDA_ARGS[@]}" -f "$CTX/Dockerfile" -t "$CUDA_IMAGE" "$CTX" > "$WORK/logs/build-cuda13.log" 2>&1; then
    cached=$(grep -c 'Using cache' "$WORK/logs/build-cuda13.log" || true)
    record "build, CUDA 13 variant ($cached steps from the cache)" "$(since "$t")"
else
    tail -30 "$WORK/logs/build-cuda13.log"; fail "build, CUDA 13 variant"
fi
if podman image exists "$CUDA_IMAGE"; then
    record "image size, CUDA 13 variant" "$(gb "$(podman image inspect --format '{{.Size}}' "$CUDA_IMAGE")")"
    echo "largest layers:"
    podman history --format '{{.Size}}  {{.CreatedBy}}' "$CUDA_IMAGE" | grep -v '^0 B' | cut -c1-150 | head -8
    slimmed=$(grep '^slim_venv: [0-9]' "$WORK/logs/build-cuda13.log" | tail -1 || true)
    grep '^slim_venv:' "$WORK/logs/build-cuda13.log" || true
    [ -n "$slimmed" ] && record "slim_venv in the build (${slimmed#slim_venv: })" ok

    cuda_env=$(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$CUDA_IMAGE")
    want_env="NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility,video NVIDIA_REQUIRE_CUDA=cuda>=13.0"
    missing_env=()
    for kv in $want_env; do grep -qxF "$kv" <<<"$cuda_env" || missing_env+=("$kv"); done
    if [ ${#missing_env[@]} = 0 ] && ! grep -q '^NVIDIA_' <<<"$env_lines"; then
        record "NVIDIA_* set in the CUDA image ($want_env), none in the CPU image" ok
    else
        fail "NVIDIA_* in the images (missing in the CUDA image: ${missing_env[*]:-none}; CPU image: $(grep '^NVIDIA_' <<<"$env_lines" | xargs))"
    fi

    # DALI and CuPy import without a GPU; torch says the CUDA it was built for.
    if podman run --rm --network none --user "$RUN_UID:$RUN_UID" --entrypoint python3 "$CUDA_IMAGE" -c '
import importlib.metadata as md, sys
import cupy, nvidia.dali, torch
dali = [d for d in ("nvidia-dali-cuda130", "nvidia-dali-cuda120") if d in {x.metadata["Name"] for x in md.distributions()}]
wheels = " ".join(dali)
print(f"DALI {nvidia.dali.__version__} ({wheels}); CuPy {cupy.__version__} (CUDA path {cupy.cuda.get_cuda_path()})")
print(f"torch {torch.__version__}: built for CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, GPU available: {torch.cuda.is_available()}")
sys.exit(0 if dali == ["nvidia-dali-cuda130"] and (torch.version.cuda or "").startswith("13.") else 1)
' 2>&1 | tee "$WORK/logs/cuda-imports.log"; then
        record "CUDA image: DALI, CuPy import; $(grep -o 'torch [^:]*: built for CUDA [0-9.]*' "$WORK/logs/cuda-imports.log")" ok
    else
        fail "CUDA image: DALI and CuPy import, torch built for CUDA 13"
    fi
    set +e
    podman run --rm --network none -e CUDA_EXTRA=cuda12 --entrypoint sh "$CUDA_IMAGE" /src/docker/cuda-line.sh torch \
        > "$WORK/logs/cuda-line-torch.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" != 0 ] && grep -q '^CUDA_EXTRA=cuda12 does not match torch' "$WORK/logs/cuda-line-torch.log"; then
        record "cuda-line.sh torch: CUDA_EXTRA=cuda12 with this torch stops" ok
    else
        cat "$WORK/logs/cuda-line-torch.log"; fail "cuda-line.sh torch: CUDA_EXTRA=cuda12 with this torch stops"
    fi

    # NVRTC from the wheels: every kernel, sm_80 and sm_90, as any uid (the tests' harness mounted).
    t=$(now)
    if podman run --rm --network none --user "$RUN_UID:$RUN_UID" -v "$CTX/tests:/check/tests:ro" -v "$CTX/docker:/check/docker:ro" \
            --entrypoint python3 "$CUDA_IMAGE" /check/docker/nvrtc_check.py /check/tests 2>&1 | tee "$WORK/logs/nvrtc.log"; then
        record "NVRTC (wheels): $(grep -o 'compiled [0-9]* of [0-9]* kernels' "$WORK/logs/nvrtc.log"), sm_80 + sm_90" "$(since "$t")"
    else
        fail "NVRTC from the wheels compiles every kernel for sm_80 and sm_90"
    fi

    # doctor without a GPU: one line says so; exit 0 (the CPU checks run), 1 with --device gpu.
    t=$(now)
    set +e
    podman run --rm --network none --shm-size=1g "$CUDA_IMAGE" doctor > "$WORK/logs/cuda-doctor.out" 2> "$WORK/logs/cuda-doctor.err"
    rc=$?
    podman run --rm --network none --shm-size=1g "$CUDA_IMAGE" doctor --device gpu \
        > "$WORK/logs/cuda-doctor-gpu.out" 2> "$WORK/logs/cuda-doctor-gpu.err"
    rc_gpu=$?
    set -e
    cat "$WORK/logs/cuda-doctor.out" "$WORK/logs/cuda-doctor.err" "$WORK/logs/cuda-doctor-gpu.err"
    no_gpu=$(grep -c -E '^ +GPU +none: ' "$WORK/logs/cuda-doctor.out" || true)
    problems_gpu=$(grep -c '^doctor: problem: ' "$WORK/logs/cuda-doctor-gpu.err" || true)
    if [ "$rc" = 0 ] && [ "$no_gpu" = 1 ] && ! grep -q 'doctor: problem' "$WORK/logs/cuda-doctor.err" \
            && [ "$rc_gpu" = 1 ] && [ "$problems_gpu" = 1 ] && grep -q '^doctor: problem: GPU: ' "$WORK/logs/cuda-doctor-gpu.err"; then
        record "CUDA image, doctor without GPU: one 'GPU none' line, exit 0; --device gpu: one problem, exit 1" "$(since "$t")"
    else
        fail "CUDA image, doctor without GPU (exit $rc, $no_gpu 'GPU none' lines; --device gpu: exit $rc_gpu, $problems_gpu problem lines)"
    fi

    # The CUDA libraries the image carries, and those present more than once.
    t=$(now)
    if podman run --rm --network none --user 0 -v "$CTX/docker:/check/docker:ro" -v "$WORK/logs:/logs" --entrypoint sh "$CUDA_IMAGE" -c '
            site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])")
            python3 /check/docker/cuda_libs.py --loaded --json /logs/cuda-libs.json "$site" /usr/local/cuda' \
            > "$WORK/logs/cuda-libs.txt" 2>&1; then
        sed -n '1,/^files:/p' "$WORK/logs/cuda-libs.txt" | grep -v '^files:'
        sed -n '/^present more than once/,$p' "$WORK/logs/cuda-libs.txt"
        record "CUDA libraries: $(head -1 "$WORK/logs/cuda-libs.txt" | grep -o '^CUDA library files: [0-9]*, [0-9.]* GB' | cut -d' ' -f4-)" "$(since "$t")"
        record "  present more than once: $(grep -o '^present more than once: .*' "$WORK/logs/cuda-libs.txt" | cut -d' ' -f5-)" \
            "$(grep -E '^  lib' "$WORK/logs/cuda-libs.txt" | cut -d: -f1 | xargs | tr ' ' ',')"
    else
        tail -20 "$WORK/logs/cuda-libs.txt"; fail "CUDA libraries listed (docker/cuda_libs.py)"
    fi
    echo "what the virtual environment holds (MB):"
    podman run --rm --network none --entrypoint sh "$CUDA_IMAGE" -c '
        cd /opt/venv/lib/python3*/site-packages
        for d in /opt/venv torch triton cupy cupy_backends nvidia nvidia/dali nvidia/cu13 nvidia/cudnn; do
            if [ -e "$d" ]; then du -sm "$d"; fi
        done' \
        | tee "$WORK/logs/venv-du-cuda13.txt" || true
fi

# ---------------------------------------------------------------------------------------------
say "the guard: build arguments that do not belong together stop the build before any download"
# A base that says CUDA_VERSION=12.8.1, as nvidia/cuda:12.8.1-* does: the local base plus that
# variable (metadata only).
FAKE_CUDA12_BASE=localhost/dali-mixup-base:cuda-version-12
ctr=$(buildah from --pull=never "$BASE")
buildah config --env CUDA_VERSION=12.8.1 "$ctr"
buildah commit --quiet "$ctr" "$FAKE_CUDA12_BASE" >/dev/null
buildah rm "$ctr" >/dev/null
guard_cases=(
    "CUDA_EXTRA=cuda12 with TORCH_INDEX_URL=.../cu130|$BASE|cuda12|https://download.pytorch.org/whl/cu130|CUDA_EXTRA=cuda12 does not match TORCH_INDEX_URL"
    "CUDA_EXTRA=cuda13 with TORCH_INDEX_URL=.../cpu|$BASE|cuda13|https://download.pytorch.org/whl/cpu|CUDA_EXTRA=cuda13 does not match TORCH_INDEX_URL"
    "CUDA_EXTRA=cuda13 on a base with CUDA_VERSION=12.8.1|$FAKE_CUDA12_BASE|cuda13|$TORCH_INDEX_URL|CUDA_EXTRA=cuda13 does not match the base image"
    "CUDA_EXTRA=cuda14|$BASE|cuda14|$TORCH_INDEX_URL|CUDA_EXTRA=cuda14 is not a line of this image"
)
for case in "${guard_cases[@]}"; do
    IFS='|' read -r what base extra index message <<<"$case"
    set +e
    # --force-rm: a failed RUN otherwise leaves its working container behind
    "${BUILDAH[@]}" --force-rm --build-arg BASE_IMAGE="$base" --build-arg CUDA_EXTRA="$extra" --build-arg TORCH_INDEX_URL="$index" \
        --target deps -f "$CTX/Dockerfile" "$CTX" > "$WORK/logs/build-guard.log" 2>&1
    rc=$?
    set -e
    last_step=$(grep -E '^STEP [0-9]+/[0-9]+: ' "$WORK/logs/build-guard.log" | tail -1)
    if [ "$rc" != 0 ] && grep -q "^$message" "$WORK/logs/build-guard.log" && [[ "$last_step" == *"cuda-line.sh args" ]]; then
        record "guard: $what stops at cuda-line.sh args" ok
    else
        tail -10 "$WORK/logs/build-guard.log"; fail "guard: $what"
    fi
done
podman rmi "$FAKE_CUDA12_BASE" >/dev/null 2>&1 || true

# ---------------------------------------------------------------------------------------------
say "summary (logs in $WORK/logs)"
printf '%s\n' "${SUMMARY[@]}" | tee "$WORK/summary.txt"
if [ ${#FAILED[@]} -gt 0 ]; then
    printf 'docker-check: %d check(s) failed\n' "${#FAILED[@]}" >&2
    exit 1
fi
echo "docker-check: everything checked works"
