"""Kernel verification without a GPU: the kernels' CUDA source, wrapped the way CuPy's
ElementwiseKernel wraps it (CuPy's own ``carray.cuh``/``float16.cuh``, ``CArray`` arguments,
``CUPY_FOR`` loop, ``out`` bound by reference), compiled with NVRTC; and the same operation
compiled as host C++ so it can run here against the CPU twin."""

from __future__ import annotations

import ctypes
import os
import pathlib
import shutil
import subprocess
import sys

from dali_mixup import kernels

# (type name in the kernel, numpy dtype name, torch dtype name)
TYPES = {
    "uint8": ("unsigned char", "uint8"),
    "float16": ("unsigned short", "uint16"),  # float16 travels as uint16 bits
    "bfloat16": ("short", "int16"),  # bfloat16 travels as int16 bits
    "float32": ("float", "float32"),
}


def cupy_include_dir():
    try:
        import cupy  # noqa: F401  (imports without a GPU)
    except Exception:  # pragma: no cover
        return None
    import cupy as cp

    return pathlib.Path(cp.__file__).parent / "_core" / "include"


def cuda_include_dirs():
    dirs = []
    for cand in [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]:
        if cand and (pathlib.Path(cand) / "include" / "cuda_fp16.h").exists():
            dirs.append(pathlib.Path(cand) / "include")
    for p in sys.path:
        for sub in ("nvidia/cu13/include", "nvidia/cuda_runtime/include"):
            if (pathlib.Path(p) / sub / "cuda_fp16.h").exists():
                dirs.append(pathlib.Path(p) / sub)
    return dirs


def elementwise_source(name, params, out, op, preamble, types):
    """CUDA source shaped like CuPy's ElementwiseKernel output for ``raw`` inputs and one
    output. ``types`` maps the placeholders (T, U, L) to C types."""
    args, binds = [], []
    for p in params.split(","):
        parts = p.split()
        raw = parts[0] == "raw"
        ctype, pname = parts[-2], parts[-1]
        ctype = {"float32": "float", "int64": "long long", "uint8": "unsigned char"}.get(ctype, ctype)
        if raw:
            args.append(f"CArray<{ctype}, 1, true, false> {pname}")
        else:
            args.append(f"{ctype} {pname}")
    *raw_out, otype, oname = out.split()
    otype = {"float32": "float"}.get(otype, otype)
    if raw_out:  # a raw output: the operation indexes it itself; the loop runs over ``size``
        out_arg, bind = f"CArray<{otype}, 1, true, false> {oname}", ""
    else:  # CuPy binds ``out`` to the output element of index i
        out_arg, bind = f"CArray<{otype}, 1, true, false> _raw_{oname}", f"{otype} &{oname} = _raw_{oname}[i];"
    typedefs = "".join(f"typedef {c} {t};\n" for t, c in types.items())
    return (
        # what CuPy puts before every kernel (float16.cuh only when an argument is float16: ours
        # never is, the kernels see float16 as uint16 bits)
        "#include <cupy/complex.cuh>\n#include <cupy/carray.cuh>\n#include <cupy/atomics.cuh>\n"
        + typedefs
        + preamble
        + f'\nextern "C" __global__ void {name}({", ".join(args)}, {out_arg}, long long _n) {{\n'
        f"  CUPY_FOR(i, _n) {{\n    {bind}\n{op}\n  }}\n}}\n"
    )


# the image kernels of ``kernels.KERNELS`` (kind -> its parameters, its output, its operation)
IMAGE_KERNELS = {kind: spec for kind, spec in kernels.KERNELS.items() if kind != "mix_targets"}


def image_kernel_source(in_dtype, out_dtype, kind="mix_images"):
    params, out, op = IMAGE_KERNELS[kind]
    types = {"T": TYPES[in_dtype][0], "U": TYPES[out_dtype][0]}
    return elementwise_source(f"dali_mixup_{kind}_{in_dtype}_{out_dtype}", params, out, op, kernels.MIX_PREAMBLE, types)


def target_kernel_source(label_ctype="long long"):
    params, out, op = kernels.KERNELS["mix_targets"]
    return elementwise_source("dali_mixup_mix_targets", params, out, op, kernels.MIX_PREAMBLE, {"L": label_ctype})


def nvrtc_compile(source: str, arch: str, name: str = "kernel.cu", ptx: bool = False) -> bytes:
    """Compile with NVRTC for ``arch`` (e.g. 'sm_90'); returns the cubin (or, with ``ptx``, the
    PTX text); raises with the log."""
    from cuda.bindings import nvrtc

    def check(res):
        err = res[0] if isinstance(res, tuple) else res
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"NVRTC error {err}")
        return res[1:] if isinstance(res, tuple) and len(res) > 1 else None

    (prog,) = check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []))
    # -ftz=true: CuPy adds it to every kernel it compiles (cupy/cuda/compiler.py)
    opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"-ftz=true"]
    inc = cupy_include_dir()
    if inc is None:
        raise RuntimeError("CuPy is not installed: its headers (cupy/carray.cuh) are what the kernels compile "
                           "against; install the dev extra")
    if inc is not None:
        cccl = inc / "cupy" / "_cccl"  # the include paths CuPy passes to NVRTC
        opts += [f"-I{cccl / d}".encode() for d in ("cub", "thrust", "libcudacxx")] + [f"-I{inc}".encode()]
    opts += [f"-I{d}".encode() for d in cuda_include_dirs()]
    res = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    (size,) = check(nvrtc.nvrtcGetProgramLogSize(prog))
    log = _out_buffer(size)
    nvrtc.nvrtcGetProgramLog(prog, log)
    if res[0] != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC failed for {arch}:\n{log.decode(errors='replace')}\n--- source ---\n{source}")
    get_size, get = (nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX) if ptx else (nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN)
    (size,) = check(get_size(prog))
    code = _out_buffer(size)
    check(get(prog, code))
    return code[:size]


def _out_buffer(size: int) -> bytes:
    """A fresh bytes object for NVRTC to write into. Never ``b" " * size``: for size 1 (an empty
    log is just its NUL) that is CPython's shared one-byte ``b" "``, and NVRTC's NUL then turns
    every ``b" "`` in the process into ``b"\\x00"`` (it broke ``bytes.isspace`` parsing and the
    arguments of later subprocesses in the test run)."""
    return bytes(size + 2)


HOST_PRELUDE = r"""
#include <cmath>
#include <cstring>
#include <cstdint>
#define __device__
#define __forceinline__ inline
#define __align__(n) alignas(n)
typedef _Float16 float16;
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmaf_rn(float a, float b, float c) { return std::fmaf(a, b, c); }
static inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
typedef _Float16 __half;
static inline __half __ushort_as_half(unsigned short u) { __half h; std::memcpy(&h, &u, 2); return h; }
static inline unsigned short __half_as_ushort(__half h) { unsigned short u; std::memcpy(&u, &h, 2); return u; }
static inline float __half2float(__half h) { return (float)h; }
static inline __half __float2half_rn(float f) { return (__half)f; }
/* the partner table of the host-built packed CutMix op: counts the lookups (each one a partner pack read) */
struct CountedReads {
    const long long* p; long long* reads;
    long long operator[](long long k) const { ++*reads; return p[k]; }
};
"""


def host_library(tmpdir: pathlib.Path) -> ctypes.CDLL:
    """The kernels' operations compiled as host C++ (g++ -ffp-contract=off), one entry per
    (in, out) dtype pair: ``mix_<in>_<out>(x, lam, perm, sample_size, out, total)``,
    ``mixp_<in>_<out>(x, lam, perm, sample_packs, out, total_packs)`` (the packed kernel),
    ``cutmix_<in>_<out>(x, lam, perm, cut, boxes, sample_size, inner, height, width, out, total)``,
    ``cutmix3_<in>_<out>(x, lam, perm, cut, boxes, sample_size, inner, depth, height, width, out, total)``
    (the volume kernel, cuboid boxes (N, 6)),
    ``cutmixp_<in>_<out>(x, lam, perm, cut, boxes, sample_packs, height, row_packs, out, total_packs,
    partner_reads)`` (the packed CutMix kernel; ``*partner_reads`` counts its ``perm[n]`` lookups,
    one per pack that reads its partner),
    ``normmix_<out>(x, lam, perm, cut, boxes, mirror, norm, sample_size, channels, height, width,
    channels_last, out, total)`` (the fused normalize/mirror/transpose/mix kernel over uint8 crops) and
    ``targets(labels, lam, perm, num_classes, on, off, out, total)``."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise FileNotFoundError("no C++ compiler")
    # CuPy's headers are device code: the host build drops their #include lines (HOST_PRELUDE
    # defines float16 and the intrinsics the operations use)
    preamble = "\n".join(ln for ln in kernels.MIX_PREAMBLE.splitlines() if not ln.lstrip().startswith("#include"))
    src = [HOST_PRELUDE, preamble]
    for a, (ta, _) in TYPES.items():
        for b, (tb, _) in TYPES.items():
            src.append(
                f'extern "C" void mix_{a}_{b}(const {ta}* x, const float* lam, const long long* perm, '
                f"long long sample_size, {tb}* _raw_out, long long total) {{\n"
                f"  for (long long i = 0; i < total; ++i) {{ {tb}& out = _raw_out[i];\n{kernels.MIX_IMAGES_OP}\n  }}\n}}\n"
            )
            src.append(
                f'extern "C" void mixp_{a}_{b}(const {ta}* x, const float* lam, const long long* perm, '
                f"long long sample_packs, {tb}* out, long long total_packs) {{\n  typedef {ta} T; typedef {tb} U;\n"
                f"  for (long long i = 0; i < total_packs; ++i) {{\n{kernels.MIX_IMAGES_PACKED_OP}\n  }}\n}}\n"
            )
            src.append(
                f'extern "C" void cutmix_{a}_{b}(const {ta}* x, const float* lam, const long long* perm, '
                f"const unsigned char* cut, const long long* boxes, long long sample_size, long long inner, "
                f"long long height, long long width, {tb}* _raw_out, long long total) {{\n"
                f"  for (long long i = 0; i < total; ++i) {{ {tb}& out = _raw_out[i];\n"
                f"{kernels.MIX_CUTMIX_IMAGES_OP}\n  }}\n}}\n"
            )
            src.append(
                f'extern "C" void cutmix3_{a}_{b}(const {ta}* x, const float* lam, const long long* perm, '
                f"const unsigned char* cut, const long long* boxes, long long sample_size, long long inner, "
                f"long long depth, long long height, long long width, {tb}* _raw_out, long long total) {{\n"
                f"  for (long long i = 0; i < total; ++i) {{ {tb}& out = _raw_out[i];\n"
                f"{kernels.MIX_CUTMIX_VOLUMES_OP}\n  }}\n}}\n"
            )
            src.append(
                f'extern "C" void cutmixp_{a}_{b}(const {ta}* x, const float* lam, const long long* perm_, '
                f"const unsigned char* cut, const long long* boxes, long long sample_packs, long long height, "
                f"long long row_packs, {tb}* out, long long total_packs, long long* partner_reads) {{\n"
                f"  typedef {ta} T; typedef {tb} U; const CountedReads perm{{perm_, partner_reads}};\n"
                f"  for (long long i = 0; i < total_packs; ++i) {{\n{kernels.MIX_CUTMIX_IMAGES_PACKED_OP}\n  }}\n}}\n"
            )
    for b, (tb, _) in TYPES.items():  # the fused kernel reads uint8 crops
        src.append(
            f'extern "C" void normmix_{b}(const unsigned char* x, const float* lam, const long long* perm, '
            f"const unsigned char* cut, const long long* boxes, const unsigned char* mirror, const float* norm, "
            f"long long sample_size, long long channels, long long height, long long width, long long channels_last, "
            f"{tb}* _raw_out, long long total) {{\n"
            f"  for (long long i = 0; i < total; ++i) {{ {tb}& out = _raw_out[i];\n"
            f"{kernels.NORMALIZE_MIX_IMAGES_OP}\n  }}\n}}\n"
        )
    src.append(
        'extern "C" void targets(const long long* labels, const float* lam, const long long* perm, '
        "long long num_classes, float on_value, float off_value, float* _raw_out, long long total) {\n"
        f"  for (long long i = 0; i < total; ++i) {{ float& out = _raw_out[i];\n{kernels.MIX_TARGETS_OP}\n  }}\n}}\n"
    )
    cpp = tmpdir / "dali_mixup_host.cpp"
    so = tmpdir / "dali_mixup_host.so"
    cpp.write_text("\n".join(src))
    subprocess.run(
        [cxx, "-O2", "-std=c++17", "-ffp-contract=off", "-fPIC", "-shared", str(cpp), "-o", str(so)],
        check=True,
        capture_output=True,
        text=True,
    )
    return ctypes.CDLL(str(so))
