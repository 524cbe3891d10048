"""`make docker-check`, inside the CUDA image and without a GPU: CuPy compiles every kernel of
``dali_mixup.kernels.KERNELS`` for sm_80 and sm_90 with the NVRTC and the CUDA headers of the
image's wheels.

The sources are the ones tests/test_kernel_source.py compiles (tests/cuda_harness.py wraps each
operation the way CuPy's ElementwiseKernel does, for every pair of input and output dtypes, scalar
and packed; the target kernel for int64 and int32 labels). The compiler is CuPy's own: its NVRTC
binding, the include options CuPy passes (``assemble_cupy_compiler_options``: its headers, its CCCL,
the CUDA headers cuda-pathfinder finds), and the flags CuPy adds (``-ftz=true``,
``--device-as-default-execution-space``, ``-arch=sm_XX``). Only the device query that picks the
architecture on a GPU is left out. The check fails unless NVRTC and the CUDA headers come from
the environment's site-packages (the wheels), not from a CUDA installation.

Usage: python3 nvrtc_check.py TESTS_DIR   (the repository's tests/ folder, for cuda_harness)
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time

ARCHS = ("80", "90")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.rsplit("\n\n", 1)[-1], file=sys.stderr)
        return 2
    sys.path.insert(0, argv[0])
    import cuda_harness as h  # noqa: E402  (the tests' harness: the kernels' sources)
    from cupy._core import core
    from cupy.cuda import compiler

    from dali_mixup import kernels

    problems = []
    covered = set(h.IMAGE_KERNELS) | {"mix_targets"}
    if covered != set(kernels.KERNELS):
        problems.append(f"the harness does not cover the kernels {sorted(set(kernels.KERNELS) - covered)}")

    options = core.assemble_cupy_compiler_options(()) + ("-ftz=true", "--device-as-default-execution-space")
    sources = []
    for a in h.TYPES:
        for b in h.TYPES:
            for kind in h.IMAGE_KERNELS:
                sources.append((f"{kind}_{a}_{b}", h.image_kernel_source(a, b, kind)))
    for label_type in ("long long", "int"):
        sources.append((f"mix_targets_{label_type.replace(' ', '_')}", h.target_kernel_source(label_type)))

    t0 = time.perf_counter()
    compiled = 0
    for arch in ARCHS:
        for name, source in sources:
            prog = compiler._NVRTCProgram(source, f"{name}.cu", method="cubin")
            try:
                cubin, _ = prog.compile(options + (f"-arch=sm_{arch}",))
            except compiler.CompileException as e:
                problems.append(f"{name} for sm_{arch}: {e.get_message().strip().splitlines()[0]}")
                continue
            if not cubin:
                problems.append(f"{name} for sm_{arch}: empty cubin")
            compiled += 1
    seconds = time.perf_counter() - t0

    site = os.path.realpath(sysconfig.get_paths()["purelib"])
    nvrtc = sorted({os.path.realpath(line.split(None, 5)[5].strip()) for line in open("/proc/self/maps")
                    if len(line.split(None, 5)) == 6 and "libnvrtc" in line})
    includes = [o[2:] for o in options if o.startswith("-I") and "cupy" not in o]
    major, minor = compiler._get_nvrtc_version()
    print(f"NVRTC {major}.{minor}: {', '.join(nvrtc) or 'not mapped'}")
    print(f"CUDA headers: {', '.join(includes) or 'none'}")
    for path in nvrtc + includes:
        if not os.path.realpath(path).startswith(site + os.sep):
            problems.append(f"{path} is not from the wheels (site-packages {site})")
    if not nvrtc:
        problems.append("NVRTC was not loaded")
    if not includes:
        problems.append("CuPy passes no CUDA include folder (cuda_fp16.h & co.)")
    print(f"compiled {compiled} of {len(sources) * len(ARCHS)} kernels ({len(sources)} sources x sm_{', sm_'.join(ARCHS)}: "
          f"{len(h.IMAGE_KERNELS)} image kernels x {len(h.TYPES)}x{len(h.TYPES)} dtypes, 2 target kernels) in {seconds:.0f} s")
    for p in problems:
        print(f"nvrtc_check: problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
