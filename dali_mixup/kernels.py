"""The CUDA side of mixup: named, module-level CuPy ``ElementwiseKernel``s and thin launchers.

The kernels are pure functions of ``(x, lam, perm)`` (and, for CutMix, ``cut``, ``boxes`` and the
sample's memory grid). Their CUDA source lives in the string
constants below so that tests can compile it with NVRTC for sm_80/sm_90 and run it on the host
(as C++) against the CPU twin without a GPU. CuPy is imported only when a kernel is launched.

Numerics, shared bit for bit with ``dali_mixup.cpu``:
``y = fma(1 - lam, float(x[j]), fl(lam * float(x[i])))`` in float32: one rounded product and one
fused multiply-add (``dm_mul``, ``dm_fma``: PTX ``mul.rn.f32``/``fma.rn.f32``, without the
flush-to-zero CuPy's -ftz=true gives ``__fmul_rn``), which is what torch's CPU ``add(..., alpha=)``
computes where its CPU capability has FMA (AVX2, AVX-512, NEON); λ = 1 copies ``x[i]`` without
reading the partner. Stores:
uint8 rounds half to even (``rintf``) and saturates; float16 and bfloat16 round to nearest
even. float16 and bfloat16 travel as their uint16/int16 bit patterns.

The fused kernel (``NORMALIZE_MIX_IMAGES_OP``, ``fused_normalize=True``) reads uint8 crops and
first normalises each value read as ``dm_mul(dm_sub(x, fl32(mean·255)), fl32(1/(std·255)))``
(two rounded float32 operations, the constants rounded once from float64), then mixes the
normalised values with the fma form above.
"""

from __future__ import annotations

import functools

MIX_PREAMBLE = r"""
#include <cuda_fp16.h>
__device__ __forceinline__ float dm_load(unsigned char v) { return (float)v; }
__device__ __forceinline__ float dm_load(float v) { return v; }
__device__ __forceinline__ float dm_load(unsigned short v) {  /* float16 bits */
    return __half2float(__ushort_as_half(v));
}
__device__ __forceinline__ float dm_load(short v) {  /* bfloat16 bits */
    return __uint_as_float(((unsigned int)(unsigned short)v) << 16);
}
/* float32 arithmetic, IEEE round to nearest even WITHOUT flush-to-zero: CuPy compiles every
   kernel with -ftz=true, under which __fmul_rn, __fmaf_rn and a - b flush subnormal inputs and
   results to zero, while the CPU twin keeps them (a float32 λ below 2^-126 is drawn about once in
   10^4 samples at α = 0.1). Inline PTX is compiled as written, whatever -ftz says. The tests'
   host build of these sources (no __CUDA_ARCH__) does plain IEEE float arithmetic. */
__device__ __forceinline__ float dm_mul(float a, float b) {
#ifdef __CUDA_ARCH__
    float r; asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r;
#else
    return __fmul_rn(a, b);
#endif
}
__device__ __forceinline__ float dm_add(float a, float b) {
#ifdef __CUDA_ARCH__
    float r; asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r;
#else
    return __fadd_rn(a, b);
#endif
}
__device__ __forceinline__ float dm_sub(float a, float b) {
#ifdef __CUDA_ARCH__
    float r; asm("sub.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r;
#else
    return a - b;
#endif
}
__device__ __forceinline__ float dm_fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    float r; asm("fma.rn.f32 %0, %1, %2, %3;" : "=f"(r) : "f"(a), "f"(b), "f"(c)); return r;
#else
    return __fmaf_rn(a, b, c);
#endif
}
/* elements per thread in the packed kernel, from the input's element size: 16 bytes of each
   input sample at least (16 uint8, 8 float16/bfloat16/float32); pack_width in Python */
#define DM_PACK_WIDTH(T) (sizeof(T) == 1 ? 16 : 8)
template <typename T, int N> struct __align__(sizeof(T) * N) dm_pack { T v[N]; };
/* v clamped to [0, hi]: in the packed CutMix kernel, a box edge as an element index of a pack */
__device__ __forceinline__ int dm_clamp(long long v, int hi) { return v < 0 ? 0 : v < hi ? (int)v : hi; }
/* fused normalisation of one uint8 pixel value (NORMALIZE_MIX_IMAGES_OP): (v - mean*255) then
   one rounded product by 1/(std*255); both constants rounded once to float32 on the host
   (normalize_table), no fma, no flush-to-zero */
template <typename V>
__device__ __forceinline__ float dm_normalize(V v, float mean255, float inv_std255) {
    return dm_mul(dm_sub(dm_load(v), mean255), inv_std255);
}
__device__ __forceinline__ void dm_store(float y, unsigned char& o) {
    o = (unsigned char)fminf(fmaxf(rintf(y), 0.0f), 255.0f);
}
__device__ __forceinline__ void dm_store(float y, float& o) { o = y; }
__device__ __forceinline__ void dm_store(float y, unsigned short& o) {  /* float16, nearest even */
    o = __half_as_ushort(__float2half_rn(y));
}
__device__ __forceinline__ void dm_store(float y, short& o) {  /* bfloat16, nearest even */
    unsigned int u = __float_as_uint(y);
    if ((u & 0x7fffffffu) > 0x7f800000u) { o = (short)0x7fc0; return; }
    u += 0x7fffu + ((u >> 16) & 1u);
    o = (short)(unsigned short)(u >> 16);
}
"""

# i: flat index of the output element in memory order; n: its sample; j: the same element
# of the partner sample. Reads x[i] and (when λ != 1) x[j]; writes out once.
MIX_IMAGES_OP = r"""
const long long n = (long long)i / sample_size;
const float l = lam[n];
float y;
if (l == 1.0f) {
    y = dm_load(x[i]);
} else {
    const long long j = perm[n] * sample_size + ((long long)i - n * sample_size);
    y = dm_fma(dm_sub(1.0f, l), dm_load(x[j]), dm_mul(l, dm_load(x[i])));
}
dm_store(y, out);
"""

MIX_IMAGES_PARAMS = "raw T x, raw float32 lam, raw int64 perm, int64 sample_size"
MIX_IMAGES_OUT = "U out"

# The same operation, P = DM_PACK_WIDTH(T) consecutive elements per thread with aligned vector
# loads and stores: 16 for 1-byte inputs (uint8), 8 for the others, so that a thread reads at
# least 16 bytes of each sample (8-wide uint8 reached only 63-91 % of copy bandwidth on an
# H100). i is a pack index, a sample is sample_packs packs (its size a multiple of P, both
# buffers aligned to P of their own elements: packable checks this, and where it fails
# launch_mix_images uses MIX_IMAGES_OP). One division and one λ/partner lookup per P elements,
# 16-32 byte loads: this is what brings the kernel near copy bandwidth. Element for element the
# arithmetic is MIX_IMAGES_OP's.
MIX_IMAGES_PACKED_OP = r"""
constexpr int P = DM_PACK_WIDTH(T);
const long long n = (long long)i / sample_packs;
const float l = lam[n];
const dm_pack<T, P> a = reinterpret_cast<const dm_pack<T, P>*>(&x[0])[i];
dm_pack<U, P> o;
if (l == 1.0f) {
#pragma unroll
    for (int k = 0; k < P; ++k) dm_store(dm_load(a.v[k]), o.v[k]);
} else {
    const float m = dm_sub(1.0f, l);
    const dm_pack<T, P> b = reinterpret_cast<const dm_pack<T, P>*>(&x[0])[perm[n] * sample_packs + ((long long)i - n * sample_packs)];
#pragma unroll
    for (int k = 0; k < P; ++k) dm_store(dm_fma(m, dm_load(b.v[k]), dm_mul(l, dm_load(a.v[k]))), o.v[k]);
}
reinterpret_cast<dm_pack<U, P>*>(&out[0])[i] = o;
"""

MIX_IMAGES_PACKED_PARAMS = "raw T x, raw float32 lam, raw int64 perm, int64 sample_packs"
MIX_IMAGES_PACKED_OUT = "raw U out"


def pack_width(element_size: int) -> int:
    """Elements per thread of the packed kernel for input elements of ``element_size`` bytes:
    DM_PACK_WIDTH in MIX_PREAMBLE (16 for uint8, 8 for the 2- and 4-byte types)."""
    return 16 if element_size == 1 else 8


# Mixup and CutMix in one pass, chosen per sample by cut[n]. A sample is seen in memory order as
# (outer, height, width, inner): NCHW is (C, H, W, 1), NHWC is (1, H, W, C). A CutMix sample
# copies the partner's element inside its box [y0, y1) x [x0, x1) (boxes[4n .. 4n+3]) and its
# own outside; a mixup sample blends exactly as MIX_IMAGES_OP. Reads one or two input elements
# and writes out once.
MIX_CUTMIX_IMAGES_OP = r"""
const long long n = (long long)i / sample_size;
const long long r = (long long)i - n * sample_size;
float y;
if (cut[n]) {
    /* 32-bit division is several times cheaper than 64-bit; mix_images checks sample_size < 2^31 */
    const unsigned int p = ((unsigned int)r / (unsigned int)inner) % (unsigned int)(height * width);
    const unsigned int h = p / (unsigned int)width;
    const unsigned int w = p - h * (unsigned int)width;
    const bool inside = (long long)h >= boxes[4 * n] && (long long)h < boxes[4 * n + 1]
        && (long long)w >= boxes[4 * n + 2] && (long long)w < boxes[4 * n + 3];
    y = dm_load(x[inside ? perm[n] * sample_size + r : (long long)i]);
} else {
    const float l = lam[n];
    if (l == 1.0f) {
        y = dm_load(x[i]);
    } else {
        y = dm_fma(dm_sub(1.0f, l), dm_load(x[perm[n] * sample_size + r]), dm_mul(l, dm_load(x[i])));
    }
}
dm_store(y, out);
"""

MIX_CUTMIX_IMAGES_PARAMS = (
    "raw T x, raw float32 lam, raw int64 perm, raw uint8 cut, raw int64 boxes, int64 sample_size, "
    "int64 inner, int64 height, int64 width"
)

# The same operation, P = DM_PACK_WIDTH(T) consecutive elements of a sample per thread (i is a
# pack index) with MIX_IMAGES_PACKED_OP's aligned vector loads and stores. Only for samples that
# are (outer, height, width, 1) in memory order (inner == 1: NCHW) with width % P == 0, so that a
# pack lies inside one image row: the row h and first column w0 come from two 32-bit divisions
# per pack (row_packs = width / P packs a row), and element k is in the box iff
# y0 <= h < y1 and x0 <= w0 + k < x1, that is k in [kb, ke) = [x0 - w0, x1 - w0) clamped to
# [0, P]. The partner's pack is read only where it is used: by the packs of a CutMix sample that
# touch its box (a box row and kb < ke), and by a mixup sample with λ != 1, which blends as
# MIX_IMAGES_PACKED_OP. Element for element the results are MIX_CUTMIX_IMAGES_OP's (a CutMix
# element is a copy, dm_store(dm_load(v))). launch_mix_cutmix_images checks these conditions and
# packable's, and uses MIX_CUTMIX_IMAGES_OP where they fail.
MIX_CUTMIX_IMAGES_PACKED_OP = r"""
constexpr int P = DM_PACK_WIDTH(T);
const long long n = (long long)i / sample_packs;
const long long q = (long long)i - n * sample_packs;
const bool c = cut[n];
float l = 1.0f;
int kb = 0, ke = 0;  /* CutMix: the pack's elements inside the box are [kb, ke) */
bool partner;
if (c) {
    /* 32-bit division as in MIX_CUTMIX_IMAGES_OP: mix_images checks a sample has < 2^31 elements */
    const unsigned int p = (unsigned int)q % (unsigned int)(height * row_packs);
    const unsigned int h = p / (unsigned int)row_packs;
    const long long w0 = (long long)(p - h * (unsigned int)row_packs) * P;
    if ((long long)h >= boxes[4 * n] && (long long)h < boxes[4 * n + 1]) {
        kb = dm_clamp(boxes[4 * n + 2] - w0, P);
        ke = dm_clamp(boxes[4 * n + 3] - w0, P);
    }
    partner = kb < ke;
} else {
    l = lam[n];
    partner = l != 1.0f;
}
const dm_pack<T, P>* xp = reinterpret_cast<const dm_pack<T, P>*>(&x[0]);
const dm_pack<T, P> a = xp[i];
dm_pack<U, P> o;
if (!partner) {
#pragma unroll
    for (int k = 0; k < P; ++k) dm_store(dm_load(a.v[k]), o.v[k]);
} else {
    const dm_pack<T, P> b = xp[perm[n] * sample_packs + q];
    if (c) {
#pragma unroll
        for (int k = 0; k < P; ++k) dm_store(dm_load(k >= kb && k < ke ? b.v[k] : a.v[k]), o.v[k]);
    } else {
        const float m = dm_sub(1.0f, l);
#pragma unroll
        for (int k = 0; k < P; ++k) dm_store(dm_fma(m, dm_load(b.v[k]), dm_mul(l, dm_load(a.v[k]))), o.v[k]);
    }
}
reinterpret_cast<dm_pack<U, P>*>(&out[0])[i] = o;
"""

MIX_CUTMIX_IMAGES_PACKED_PARAMS = (
    "raw T x, raw float32 lam, raw int64 perm, raw uint8 cut, raw int64 boxes, int64 sample_packs, "
    "int64 height, int64 row_packs"
)

# MIX_CUTMIX_IMAGES_OP for volumes: a sample is (outer, depth, height, width, inner) in memory
# order (NCDHW is (C, D, H, W, 1), NDHWC (1, D, H, W, C)), and a CutMix sample copies the
# partner's element inside its cuboid [z0, z1) x [y0, y1) x [x0, x1) (boxes[6n .. 6n+5]) and its
# own outside; a mixup sample blends exactly as MIX_IMAGES_OP. Reads one or two input elements
# and writes out once.
MIX_CUTMIX_VOLUMES_OP = r"""
const long long n = (long long)i / sample_size;
const long long r = (long long)i - n * sample_size;
float y;
if (cut[n]) {
    /* 32-bit division, as MIX_CUTMIX_IMAGES_OP: mix_images checks sample_size < 2^31 */
    const unsigned int plane = (unsigned int)(height * width);
    const unsigned int p = ((unsigned int)r / (unsigned int)inner) % ((unsigned int)depth * plane);
    const unsigned int z = p / plane;
    const unsigned int q = p - z * plane;
    const unsigned int h = q / (unsigned int)width;
    const unsigned int w = q - h * (unsigned int)width;
    const bool inside = (long long)z >= boxes[6 * n] && (long long)z < boxes[6 * n + 1]
        && (long long)h >= boxes[6 * n + 2] && (long long)h < boxes[6 * n + 3]
        && (long long)w >= boxes[6 * n + 4] && (long long)w < boxes[6 * n + 5];
    y = dm_load(x[inside ? perm[n] * sample_size + r : (long long)i]);
} else {
    const float l = lam[n];
    if (l == 1.0f) {
        y = dm_load(x[i]);
    } else {
        y = dm_fma(dm_sub(1.0f, l), dm_load(x[perm[n] * sample_size + r]), dm_mul(l, dm_load(x[i])));
    }
}
dm_store(y, out);
"""

MIX_CUTMIX_VOLUMES_PARAMS = (
    "raw T x, raw float32 lam, raw int64 perm, raw uint8 cut, raw int64 boxes, int64 sample_size, "
    "int64 inner, int64 depth, int64 height, int64 width"
)

# Normalize, mirror, transpose, cast and mix in one pass (the fused form of DALI's
# crop_mirror_normalize followed by MIX_CUTMIX_IMAGES_OP). x is a batch of uint8 crops (N, H, W, C)
# in HWC as DALI's resize writes them; i is the flat index of an output element in memory order,
# (C, H, W) per sample for NCHW (channels_last == 0) or (H, W, C) for NHWC (channels_last == 1),
# the same sample_size = C*H*W elements as the input's. Sample m's pixel (h, w, c) in output
# coordinates is its crop's (h, mirror[m] ? W-1-w : w, c), normalised as
# v = dm_mul(dm_sub(x, norm[c]), norm[C + c]) (norm: mean*255 then 1/(std*255), float32). A
# mixup sample is dm_fma(1 - λ, v(partner), dm_mul(λ, v(own))) (MIX_IMAGES_OP's arithmetic on
# the normalised values, which is what the unfused path mixes); λ = 1 reads no partner. A CutMix
# sample is v(partner) inside its box [y0, y1) x [x0, x1) (output coordinates) and v(own) outside,
# reading one crop per element. The partner pixel follows the partner's own mirror flag, as DALI
# flipped it. One or two uint8 reads, one write per element.
NORMALIZE_MIX_IMAGES_OP = r"""
const long long n = (long long)i / sample_size;
/* 32-bit pixel arithmetic: normalize_mix_images checks sample_size < 2^31 */
const unsigned int r = (unsigned int)((long long)i - n * sample_size);
const unsigned int nc = (unsigned int)channels, wd = (unsigned int)width;
unsigned int c, p;
if (channels_last) {
    p = r / nc;
    c = r - p * nc;
} else {
    const unsigned int plane = (unsigned int)height * wd;
    c = r / plane;
    p = r - c * plane;
}
const unsigned int h = p / wd;
const unsigned int w = p - h * wd;
const unsigned int row = h * wd;
const float m = norm[c], s = norm[nc + c];
const bool cm = cut[n];
float l = 1.0f;
bool partner;
if (cm) {
    partner = (long long)h >= boxes[4 * n] && (long long)h < boxes[4 * n + 1]
        && (long long)w >= boxes[4 * n + 2] && (long long)w < boxes[4 * n + 3];
} else {
    l = lam[n];
    partner = l != 1.0f;
}
float y;
if (cm && partner) {
    const long long j = perm[n];
    y = dm_normalize(x[j * sample_size + (long long)((row + (mirror[j] ? wd - 1u - w : w)) * nc + c)], m, s);
} else {
    const float a = dm_normalize(x[n * sample_size + (long long)((row + (mirror[n] ? wd - 1u - w : w)) * nc + c)], m, s);
    if (!partner) {
        y = a;
    } else {
        const long long j = perm[n];
        const float b = dm_normalize(x[j * sample_size + (long long)((row + (mirror[j] ? wd - 1u - w : w)) * nc + c)], m, s);
        y = dm_fma(dm_sub(1.0f, l), b, dm_mul(l, a));
    }
}
dm_store(y, out);
"""

NORMALIZE_MIX_IMAGES_PARAMS = (
    "raw T x, raw float32 lam, raw int64 perm, raw uint8 cut, raw int64 boxes, raw uint8 mirror, raw float32 norm, "
    "int64 sample_size, int64 channels, int64 height, int64 width, int64 channels_last"
)

# One output element per (sample, class): the sample's own smoothed one-hot weighted by λ plus
# its partner's weighted by 1 − λ. Rows sum to 1 when both share a class.
MIX_TARGETS_OP = r"""
const long long n = (long long)i / num_classes;
const long long c = (long long)i - n * num_classes;
const float l = lam[n];
const float ta = ((long long)labels[n] == c) ? on_value : off_value;
const float tb = ((long long)labels[perm[n]] == c) ? on_value : off_value;
out = dm_add(dm_mul(l, ta), dm_mul(dm_sub(1.0f, l), tb));
"""

MIX_TARGETS_PARAMS = (
    "raw L labels, raw float32 lam, raw int64 perm, int64 num_classes, float32 on_value, float32 off_value"
)
MIX_TARGETS_OUT = "float32 out"


#: Every kernel, by name: (params, output, operation). CuPy's style: a named module-level kernel
#: per operation, compiled on first launch for the dtypes it meets (``get_kernel``).
KERNELS = {
    "mix_images": (MIX_IMAGES_PARAMS, MIX_IMAGES_OUT, MIX_IMAGES_OP),
    "mix_images_packed": (MIX_IMAGES_PACKED_PARAMS, MIX_IMAGES_PACKED_OUT, MIX_IMAGES_PACKED_OP),
    "mix_cutmix_images": (MIX_CUTMIX_IMAGES_PARAMS, MIX_IMAGES_OUT, MIX_CUTMIX_IMAGES_OP),
    "mix_cutmix_images_packed": (MIX_CUTMIX_IMAGES_PACKED_PARAMS, MIX_IMAGES_PACKED_OUT, MIX_CUTMIX_IMAGES_PACKED_OP),
    "mix_cutmix_volumes": (MIX_CUTMIX_VOLUMES_PARAMS, MIX_IMAGES_OUT, MIX_CUTMIX_VOLUMES_OP),
    "normalize_mix_images": (NORMALIZE_MIX_IMAGES_PARAMS, MIX_IMAGES_OUT, NORMALIZE_MIX_IMAGES_OP),
    "mix_targets": (MIX_TARGETS_PARAMS, MIX_TARGETS_OUT, MIX_TARGETS_OP),
}


@functools.lru_cache(maxsize=None)
def get_kernel(name: str):
    """The CuPy ``ElementwiseKernel`` ``KERNELS[name]`` over the shared preamble, named
    ``dali_mixup_<name>``; made once per process (CuPy compiles per dtype and device on launch)."""
    import cupy

    params, out, op = KERNELS[name]
    return cupy.ElementwiseKernel(params, out, op, name=f"dali_mixup_{name}", preamble=MIX_PREAMBLE)


#: the CuPy dtype each torch dtype travels as: the 16-bit floats as their bits, float16 as uint16
#: and bfloat16 as int16 (CuPy's float16 class defeats vector loads, and CuPy has no bfloat16);
#: the kernels convert with the round-to-nearest-even intrinsics
_CUPY_DTYPE_NAMES = {
    "torch.uint8": "uint8", "torch.bool": "uint8", "torch.int16": "int16", "torch.float16": "uint16",
    "torch.bfloat16": "int16", "torch.float32": "float32", "torch.int32": "int32", "torch.int64": "int64",
}


def _cupy_view(t):
    """Zero-copy CuPy view of a dense 1-D CUDA torch tensor, built from its pointer: CuPy memory
    it does not own, holding a reference to ``t`` so the buffer outlives the view. No DLPack
    exchange: torch's ``__dlpack__`` runs a stream handshake in Python for every tensor, and the
    kernels are launched on torch's current stream (``_on_torch_stream``), which is already
    ordered after whatever produced ``t``."""
    import cupy

    if t.dim() != 1 or (t.numel() > 1 and t.stride(0) != 1):
        raise ValueError(f"_cupy_view needs a dense 1-D tensor, got shape {tuple(t.shape)} strides {t.stride()}")
    n = t.numel()
    mem = cupy.cuda.UnownedMemory(t.data_ptr(), n * t.element_size(), t, t.device.index)
    return cupy.ndarray((n,), _CUPY_DTYPE_NAMES[str(t.dtype)], cupy.cuda.MemoryPointer(mem, 0))


_EXTERNAL_STREAMS: dict = {}  # (device index, stream pointer) -> CuPy's wrapper of that torch stream


def _on_torch_stream(device):
    """CuPy device + stream context matching torch's current stream on ``device``. CuPy's
    wrapper of each torch stream is made once and kept (it holds the pointer and a reference to
    the torch stream, and never destroys it); CuPy keeps its current-stream stack per thread, so
    one wrapper may be entered from several threads."""
    import contextlib

    import cupy
    import torch

    torch_stream = torch.cuda.current_stream(device)
    key = (device.index, torch_stream.cuda_stream)
    stream = _EXTERNAL_STREAMS.get(key)
    if stream is None:
        if len(_EXTERNAL_STREAMS) > 64:  # streams made and dropped in a loop: keep the table small
            _EXTERNAL_STREAMS.clear()
        with cupy.cuda.Device(device.index):  # from_external takes the current device
            if hasattr(cupy.cuda.Stream, "from_external") and hasattr(torch_stream, "__cuda_stream__"):
                stream = cupy.cuda.Stream.from_external(torch_stream)
            else:  # older CuPy or torch without the CUDA stream protocol (ExternalStream is deprecated in CuPy 14)
                stream = cupy.cuda.ExternalStream(key[1], device.index)
        _EXTERNAL_STREAMS[key] = stream
    ctx = contextlib.ExitStack()
    ctx.enter_context(cupy.cuda.Device(device.index))
    ctx.enter_context(stream)
    return ctx


def packable(x_flat, out_flat, sample_size: int) -> bool:
    """Whether the packed kernel applies: whole packs (``pack_width`` of x's element size) per
    sample, and each buffer aligned to a pack of its own elements (out's may be wider than x's)."""
    pack = pack_width(x_flat.element_size())
    return (
        sample_size % pack == 0
        and x_flat.data_ptr() % (pack * x_flat.element_size()) == 0
        and out_flat.data_ptr() % (pack * out_flat.element_size()) == 0
    )


def launch_mix_images(x_flat, lam, perm, sample_size: int, out_flat) -> None:
    """Launch the image kernel on torch's current stream (the packed one where it applies).
    All arguments are CUDA tensors on one device; ``x_flat``/``out_flat`` are 1-D dense views
    in memory order."""
    with _on_torch_stream(x_flat.device):
        args = (_cupy_view(x_flat), _cupy_view(lam), _cupy_view(perm))
        if packable(x_flat, out_flat, sample_size):
            pack = pack_width(x_flat.element_size())
            get_kernel("mix_images_packed")(*args, sample_size // pack, _cupy_view(out_flat), size=x_flat.numel() // pack)
        else:
            get_kernel("mix_images")(*args, sample_size, _cupy_view(out_flat))


def launch_mix_cutmix_images(x_flat, lam, perm, cut, boxes, grid, out_flat) -> None:
    """Launch the mixup/CutMix image kernel on torch's current stream: the packed one where a
    pack lies inside one image row (``inner == 1``, W a multiple of the pack width) and
    ``packable`` holds, the scalar one otherwise. ``cut``: (N,) bool, ``boxes``: (N, 4) int64,
    ``grid``: (outer, H, W, inner), a sample in memory order (volumes: boxes (N, 6), grid
    (outer, D, H, W, inner), the scalar ``mix_cutmix_volumes`` kernel); the tensors are CUDA tensors on one
    device, ``x_flat``/``out_flat`` 1-D dense in memory order."""
    import torch

    if len(grid) == 5:  # volumes (outer, D, H, W, inner), cuboid boxes (N, 6)
        _, depth, height, width, inner = grid
        with _on_torch_stream(x_flat.device):
            get_kernel("mix_cutmix_volumes")(
                _cupy_view(x_flat), _cupy_view(lam), _cupy_view(perm), _cupy_view(cut.view(torch.uint8)),
                _cupy_view(boxes.contiguous().view(-1)), x_flat.numel() // lam.numel(), inner, depth, height, width,
                _cupy_view(out_flat),
            )
        return
    _, height, width, inner = grid
    sample_size = x_flat.numel() // lam.numel()
    pack = pack_width(x_flat.element_size())
    with _on_torch_stream(x_flat.device):
        args = (
            _cupy_view(x_flat), _cupy_view(lam), _cupy_view(perm), _cupy_view(cut.view(torch.uint8)),
            _cupy_view(boxes.contiguous().view(-1)),
        )
        if inner == 1 and width % pack == 0 and packable(x_flat, out_flat, sample_size):
            get_kernel("mix_cutmix_images_packed")(
                *args, sample_size // pack, height, width // pack, _cupy_view(out_flat), size=x_flat.numel() // pack
            )
        else:
            get_kernel("mix_cutmix_images")(*args, sample_size, inner, height, width, _cupy_view(out_flat))


def launch_normalize_mix_images(x_flat, lam, perm, cut, boxes, mirror, norm, grid, channels_last: bool,
                                out_flat) -> None:
    """Launch the fused normalize/mirror/transpose/cast/mix kernel on torch's current stream.
    ``x_flat``: the uint8 crops (N, H, W, C) 1-D dense; ``cut`` (N,) bool, ``boxes`` (N, 4)
    int64, ``mirror`` (N,) uint8, ``norm`` (2C,) float32 (``mix.normalize_table``); ``grid``:
    (C, H, W); ``out_flat``: the output (N, C, H, W) or, with ``channels_last``, (N, H, W, C),
    1-D dense. All CUDA tensors on one device."""
    import torch

    channels, height, width = grid
    with _on_torch_stream(x_flat.device):
        get_kernel("normalize_mix_images")(
            _cupy_view(x_flat), _cupy_view(lam), _cupy_view(perm), _cupy_view(cut.view(torch.uint8)),
            _cupy_view(boxes.contiguous().view(-1)), _cupy_view(mirror), _cupy_view(norm),
            x_flat.numel() // lam.numel(), channels, height, width, int(channels_last), _cupy_view(out_flat),
        )


def launch_mix_targets(labels, lam, perm, num_classes: int, on_value, off_value, out) -> None:
    """Launch the target kernel on torch's current stream; ``out`` is a dense (N, C) float32."""
    import numpy as np

    with _on_torch_stream(out.device):
        get_kernel("mix_targets")(
            _cupy_view(labels),
            _cupy_view(lam),
            _cupy_view(perm),
            num_classes,
            np.float32(on_value),
            np.float32(off_value),
            _cupy_view(out.view(-1)),
        )
