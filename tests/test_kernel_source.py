"""The CUDA kernels verified without a GPU: compiled with NVRTC for sm_80 and sm_90 (with CuPy's
own headers, the way ElementwiseKernel wraps the operation), and the same operation compiled
as host C++ and run against the CPU twin, bit for bit."""

import contextlib
import ctypes
import re

import numpy as np
import pytest
import torch

import cuda_harness as h
from dali_mixup import kernels
from dali_mixup import MixupConfig, MixupParams, MixupSampler, mix_images, mix_targets

DT = list(h.TYPES)
TORCH = {"uint8": torch.uint8, "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _nvrtc_reason():
    try:
        from cuda.bindings import nvrtc

        err, major, minor = nvrtc.nvrtcVersion()
        return None
    except Exception as e:  # noqa: BLE001
        return f"no NVRTC here ({e}); install cuda-bindings"


@pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_kernel(arch):
    compiled = []
    for a in DT:
        for b in DT:
            for kind in h.IMAGE_KERNELS:
                cubin = h.nvrtc_compile(h.image_kernel_source(a, b, kind), arch, f"{kind}_{a}_{b}.cu")
                assert len(cubin) > 0
            compiled.append(f"{a}->{b}")
    for label_type in ["long long", "int"]:
        assert len(h.nvrtc_compile(h.target_kernel_source(label_type), arch, "targets.cu")) > 0
    # the harness must not write into shared bytes objects (an empty NVRTC log once hit b" ")
    assert b" " == bytes([32]) and b" ".isspace()
    print(
        f"NVRTC compiled {len(compiled)} mixup image kernels and {len(compiled)} mixup/CutMix image kernels, each "
        f"scalar and packed (16-wide for uint8 input, 8-wide otherwise), and 2 target kernels for {arch}"
    )


@pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_float_arithmetic_keeps_subnormals_under_cupys_ftz(arch):
    """CuPy compiles with -ftz=true (so does the harness), which turns __fmul_rn & co. into
    flush-to-zero instructions; the CPU twin keeps subnormals. No float32 add/sub/mul/fma of the
    kernels may carry .ftz (min/max/cvt on uint8 stores may: their results are whole numbers)."""
    ftz_arith = re.compile(r"\b(?:add|sub|mul|fma)(?:\.r[nzmp])?\.ftz(?:\.sat)?\.f32\b")
    arith = re.compile(r"\b(?:add|sub|mul|fma)\.rn\.f32\b")
    for a in DT:
        for b in DT:
            for kind in h.IMAGE_KERNELS:
                ptx = h.nvrtc_compile(h.image_kernel_source(a, b, kind), arch, f"{kind}.cu", ptx=True).decode()
                assert not ftz_arith.findall(ptx), (kind, a, b, sorted(set(ftz_arith.findall(ptx))))
                assert arith.search(ptx), (kind, a, b)  # the arithmetic is there, without .ftz
    ptx = h.nvrtc_compile(h.target_kernel_source("long long"), arch, "targets.cu", ptx=True).decode()
    assert not ftz_arith.findall(ptx) and arith.search(ptx)


def test_host_kernels_keep_subnormals_like_the_cpu_twin(host_lib):
    """λ below 2^-126 and subnormal pixels: the host build of the ops (IEEE, as the GPU's PTX now
    is) and the CPU twin agree bit for bit, and the subnormal products are not flushed."""
    tiny = float(np.float32(1e-40))
    params = MixupParams([tiny, 0.5, 1.0 - 2**-24, tiny], [1, 0, 3, 2])
    x = torch.tensor([[0.0, 255.0, 1e-39, -3.0], [0.0, 0.0, 1e-38, 2.0], [1.0, 0.0, 1e-45, 0.0],
                      [5.0, 0.0, 0.0, 0.0]], dtype=torch.float32)
    want = mix_images(x, params)
    got = torch.empty_like(x)
    host_lib.mix_float32_float32(_ptr(x), _ptr(params.lam), _ptr(params.perm), ctypes.c_longlong(4), _ptr(got),
                         ctypes.c_longlong(x.numel()))
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    assert want[0, 1] == np.float32(tiny) * np.float32(255.0) != 0  # λ·x kept, not flushed
    labels = torch.tensor([0, 1, 2, 3])
    t_want = mix_targets(labels, params, 4)
    t_got = torch.empty(4, 4)
    host_lib.targets(_ptr(labels), _ptr(params.lam), _ptr(params.perm), ctypes.c_longlong(4), ctypes.c_float(1.0),
                     ctypes.c_float(0.0), _ptr(t_got), ctypes.c_longlong(16))
    assert torch.equal(t_got, t_want) and t_want[0, 0] == np.float32(tiny)


@pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize(
    "kind, scalar_per_pack",
    [("mix_images_packed", {"f32": 1, "u64": 1}), ("mix_cutmix_images_packed", {"u8": 1, "f32": 1, "u64": 5})],
)
def test_nvrtc_packed_kernel_reads_x_in_128_bit_loads(arch, kind, scalar_per_pack):
    """The point of the pack width: x is read only by 128-bit vector loads (a 16-wide uint8 pack
    is one ld.global.v4.u32, an 8-wide one was a 64-bit v2), out written only by vector stores;
    the scalar loads are λ (f32) and the partner index (u64), one of each per pack, and for
    CutMix also cut[n] (u8) and the four box edges (u64). (NVRTC may duplicate the whole pack's
    code, so the counts are checked as multiples of one pack's.)"""
    for a in DT:
        for b in DT:
            src = h.image_kernel_source(a, b, kind)
            ptx = h.nvrtc_compile(src, arch, f"{kind}_{a}_{b}.cu", ptx=True).decode(errors="replace")
            loads = re.findall(r"\bld\.global(?:\.nc)?\.([\w.]+)", ptx)
            stores = re.findall(r"\bst\.global\.([\w.]+)", ptx)
            scalar = [t for t in loads if not re.fullmatch(r"v4\.[bfsu]32", t)]
            copies = scalar.count("f32")
            assert len(scalar) < len(loads) and copies >= 1, (a, b, arch, loads)
            assert {t: scalar.count(t) for t in set(scalar)} == {t: c * copies for t, c in scalar_per_pack.items()}, (
                a, b, arch, loads)
            assert stores and all(t.startswith(("v2.", "v4.")) for t in stores), (a, b, arch, stores)


def test_nvrtc_rejects_broken_source():
    if _nvrtc_reason():
        pytest.skip(_nvrtc_reason())
    with pytest.raises(RuntimeError, match="NVRTC failed"):
        h.nvrtc_compile(h.image_kernel_source("uint8", "uint8").replace("dm_load(x[i])", "dm_lod(x[i])"), "sm_90")


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    try:
        return h.host_library(tmp_path_factory.mktemp("host"))
    except FileNotFoundError as e:
        pytest.skip(f"no C++ compiler: {e}")


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr())


def random_images(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    return (torch.randn(shape, generator=g) * 50).to(dtype)


def requires_fma():
    cap = torch.backends.cpu.get_cpu_capability()
    if cap in ("DEFAULT", "NO AVX"):
        pytest.skip(f"torch CPU capability {cap}: vectorised add(alpha=) has no FMA here")


def _host_case(a, b, shape, seed):
    """Input, params pinned to λ = 0, 0.5 and 1 where the batch allows, and the CPU twin's output."""
    requires_fma()
    x = random_images(shape, TORCH[a], seed=seed)
    if b == "uint8" and a != "uint8":
        x = x.float().abs().clamp(max=300).to(TORCH[a])  # exercises saturation too
    n = shape[0]
    params = MixupSampler(MixupConfig(alpha=0.5, mode="elem", prob=0.8), seed).sample(n)
    if n >= 5:
        lam = params.lam.clone()
        lam[:3] = torch.tensor([0.0, 0.5, 1.0])
        params = MixupParams(lam, params.perm)
    return x, params, mix_images(x, params, dtype=TORCH[b])


def _run_host(host_lib, entry, x, params, out_dtype, pack, out=None):
    """Call ``entry`` (one element or one pack of ``pack`` per index) and return its output
    (``out`` where given)."""
    xs = x.view(torch.int16) if x.dtype == torch.bfloat16 else x
    got = torch.empty_like(x, dtype=out_dtype) if out is None else out
    gs = got.view(torch.int16) if out_dtype == torch.bfloat16 else got
    n = x.shape[0]
    getattr(host_lib, entry)(
        _ptr(xs), _ptr(params.lam), _ptr(params.perm), ctypes.c_longlong(x.numel() // n // pack), _ptr(gs),
        ctypes.c_longlong(x.numel() // pack),
    )
    return got


@pytest.mark.parametrize("a", DT)
@pytest.mark.parametrize("b", DT)
@pytest.mark.parametrize("shape", [(7, 3, 11, 13), (2, 1), (5, 257)])
def test_host_compiled_kernel_equals_cpu_twin(host_lib, a, b, shape):
    x, params, want = _host_case(a, b, shape, seed=sum(shape))
    got = _run_host(host_lib, f"mix_{a}_{b}", x, params, TORCH[b], pack=1)
    assert torch.equal(got.view(-1).view(torch.uint8), want.view(-1).view(torch.uint8)), (a, b)


def _pack(a):
    return kernels.pack_width(TORCH[a].itemsize)


def test_pack_width_per_input_dtype(host_lib):
    """16 elements (16 bytes) per thread for uint8 input, 8 for the wider types, whatever the output;
    the width the host-compiled packed operation really uses (the elements one pack index writes)
    is the one the launcher divides by."""
    assert {a: _pack(a) for a in DT} == {"uint8": 16, "float16": 8, "bfloat16": 8, "float32": 8}
    for a in DT:
        for b in DT:
            x = torch.zeros(1, 64, dtype=TORCH[a])  # one sample, one pack index of the op
            got = torch.full((1, 64), 7, dtype=TORCH[b])
            _run_host(host_lib, f"mixp_{a}_{b}", x, MixupParams([1.0], [0]), TORCH[b], pack=64, out=got)
            assert int((got != 7).sum()) == _pack(a), (a, b)


@pytest.mark.parametrize("a", DT)
@pytest.mark.parametrize("b", DT)
@pytest.mark.parametrize("n, packs", [(7, 3 * 8), (2, 1), (5, 37)])
def test_host_compiled_packed_kernel_equals_cpu_twin(host_lib, a, b, n, packs):
    x, params, want = _host_case(a, b, (n, packs * _pack(a)), seed=n + packs + 1)
    got = _run_host(host_lib, f"mixp_{a}_{b}", x, params, TORCH[b], pack=_pack(a))
    assert torch.equal(got.view(-1).view(torch.uint8), want.view(-1).view(torch.uint8)), (a, b)


def _at(numel, dtype, offset):
    """A dense 1-D tensor of ``numel`` elements, ``offset`` elements past a 128-byte boundary."""
    buf = torch.empty(numel + offset + 128, dtype=dtype)
    start = (-buf.data_ptr()) % 128 // buf.element_size() + offset
    return buf[start : start + numel]


@pytest.mark.parametrize("a", DT)
@pytest.mark.parametrize("b", DT)
@pytest.mark.parametrize(
    "sample, x_offset, out_offset",
    [(48, 0, 0), (24, 0, 0), (5, 0, 0), (48, 1, 0), (48, 0, 1), (48, 0, 8), (48, 16, 16)],
)
def test_launcher_picks_packed_or_scalar_kernel(monkeypatch, host_lib, a, b, sample, x_offset, out_offset):
    """launch_mix_images with the host-compiled operations standing in for the CuPy kernels: the
    packed kernel for whole packs in pack-aligned buffers (16 uint8 or 8 wider elements, each
    buffer aligned to a pack of its own elements), the scalar one for odd sizes and misaligned
    buffers; either way bit for bit the CPU twin."""
    n = 6
    x0, params, want = _host_case(a, b, (n, sample), seed=sample)
    x = _at(x0.numel(), x0.dtype, x_offset).copy_(x0.view(-1))
    out = _at(x0.numel(), TORCH[b], out_offset)
    ran = []

    def host_kernel(entry):
        def launch(xs, lam, perm, per_sample, outs, size=None):  # CuPy's size: out's, or given
            ran.append((entry, per_sample, size))
            getattr(host_lib, f"{entry}_{a}_{b}")(
                _ptr(xs), _ptr(lam), _ptr(perm), ctypes.c_longlong(per_sample), _ptr(outs),
                ctypes.c_longlong(outs.numel() if size is None else size),
            )
        return lambda: launch

    monkeypatch.setattr(kernels, "_on_torch_stream", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(kernels, "_cupy_view", lambda t: t)
    monkeypatch.setattr(kernels, "get_kernel", {"mix_images": host_kernel("mix")(),
                                                "mix_images_packed": host_kernel("mixp")()}.__getitem__)
    kernels.launch_mix_images(x, params.lam, params.perm, sample, out)

    pack = _pack(a)
    if sample % pack == 0 and x_offset % pack == 0 and out_offset % pack == 0:
        assert ran == [("mixp", sample // pack, n * sample // pack)], (a, b)
    else:
        assert ran == [("mix", sample, None)], (a, b)
    assert torch.equal(out.view(torch.uint8), want.reshape(-1).view(torch.uint8)), (a, b)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_host_compiled_target_kernel_equals_cpu_twin(host_lib, eps):
    n, c = 9, 7
    labels = torch.tensor([0, 6, 3, 3, 1, 2, 5, 4, 0], dtype=torch.int64)
    params = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), 1).sample(n)
    want = mix_targets(labels, params, c, eps)
    from dali_mixup.mix import smoothing_values

    on, off = smoothing_values(c, eps)
    got = torch.empty(n, c, dtype=torch.float32)
    host_lib.targets(
        _ptr(labels), _ptr(params.lam), _ptr(params.perm), ctypes.c_longlong(c), ctypes.c_float(on),
        ctypes.c_float(off), _ptr(got), ctypes.c_longlong(n * c),
    )
    assert torch.equal(got, want)


def _cutmix_params(n, h, w, seed):
    """Mixed mixup and CutMix samples with boxes of every kind: empty, full, at the borders."""
    cfg = MixupConfig(alpha=0.5, cutmix_alpha=1.0, switch_prob=0.5, mode="elem", prob=0.9)
    p = MixupSampler(cfg, seed).sample(n, image_size=(h, w))
    lam, cut, boxes = p.lam.clone(), p.cutmix.clone(), p.boxes.clone()
    if n >= 4:
        cut[:4] = True
        boxes[0] = torch.tensor([0, h, 0, w])  # the whole image
        boxes[1] = torch.tensor([0, 0, 0, 0])  # empty
        boxes[2] = torch.tensor([h - 1, h, 0, 1])  # the bottom-left pixel
        boxes[3] = torch.tensor([0, max(h // 2, 1), w // 3, w])  # touching top and right
    return MixupParams(lam, p.perm, boxes=boxes, cutmix=cut, image_size=(h, w))


def _packed_cutmix_params(n, h, w, pack, seed):
    """``_cutmix_params`` (n >= 11) plus boxes on and across the edges of ``pack``-wide packs of a
    row, and mixup samples with λ = 1, 0 and 0.3 in the same batch."""
    p = _cutmix_params(n, h, w, seed)
    lam, cut, boxes = p.lam.clone(), p.cutmix.clone(), p.boxes.clone()
    cut[4:8], cut[8:11], boxes[8:11], lam[8:11] = True, False, 0, torch.tensor([1.0, 0.0, 0.3])
    boxes[4] = torch.tensor([1, h, min(pack, w), min(2 * pack, w)])  # the second pack of rows 1..h-1
    boxes[5] = torch.tensor([0, 1, pack - 1, min(pack + 1, w)])  # two pixels across a pack edge
    boxes[6] = torch.tensor([h - 1, h, w - 1, w])  # the bottom-right pixel
    boxes[7] = torch.tensor([0, h, 3, 3])  # every row, no column: reads no partner
    return MixupParams(lam, p.perm, boxes=boxes, cutmix=cut, image_size=(h, w))


def _cutmix_case(a, b, shape, layout, channels_last, pack=None):
    """Input, params (``_cutmix_params``, or ``_packed_cutmix_params`` for ``pack``), the sample's
    grid (outer, H, W, inner) and the CPU twin's output; input and output 1-D in memory order."""
    requires_fma()
    x = random_images(shape, TORCH[a], seed=sum(shape))
    if b == "uint8" and a != "uint8":
        x = x.float().abs().clamp(max=300).to(TORCH[a])  # saturation in copies and blends
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    n = shape[0]
    hw = shape[2:4] if layout == "NCHW" else shape[1:3]
    params = _cutmix_params(n, *hw, seed=n) if pack is None else _packed_cutmix_params(n, *hw, pack, seed=n)
    assert params.has_cutmix
    want = mix_images(x, params, dtype=TORCH[b], layout=layout)
    from dali_mixup.mix import _cutmix_grid, _memory_order_view

    return _memory_order_view(x), params, _cutmix_grid(x, layout, params), _memory_order_view(want)


def _host_cutmix(host_lib, entry, x, lam, perm, cut, boxes, ints, out, total):
    """Run the host-compiled ``entry`` (``cutmix_*``: ints = sample_size, inner, height, width, one
    element per index; ``cutmixp_*``: sample_packs, height, row_packs, one pack per index) over
    ``total`` indices; returns the packed op's partner pack reads (0 for the scalar op)."""
    reads = ctypes.c_longlong(0)
    extra = (ctypes.byref(reads),) if entry.startswith("cutmixp_") else ()
    getattr(host_lib, entry)(
        _ptr(x), _ptr(lam), _ptr(perm), _ptr(cut), _ptr(boxes), *map(ctypes.c_longlong, ints), _ptr(out),
        ctypes.c_longlong(total), *extra,
    )
    return reads.value


def _same_bits(got, want):
    return torch.equal(got.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize("a", DT)
@pytest.mark.parametrize("b", DT)
@pytest.mark.parametrize(
    "shape, layout, channels_last",
    [((7, 3, 11, 13), "NCHW", False), ((7, 3, 11, 13), "NCHW", True), ((6, 9, 5, 4), "NHWC", False),
     ((3, 1, 1, 1), "NCHW", False), ((5, 2, 1, 17), "NCHW", False)],
)
def test_host_compiled_cutmix_kernel_equals_cpu_twin(host_lib, a, b, shape, layout, channels_last):
    xs, params, (_, height, width, inner), want = _cutmix_case(a, b, shape, layout, channels_last)
    got = torch.empty(xs.numel(), dtype=TORCH[b])
    ints = (xs.numel() // shape[0], inner, height, width)
    _host_cutmix(host_lib, f"cutmix_{a}_{b}", xs, params.lam, params.perm, params.cutmix, params.boxes, ints, got,
                 xs.numel())
    assert _same_bits(got, want), (a, b)


def _partner_packs(params, grid, pack):
    """The packs whose partner pack must be read: those of a mixup sample with λ != 1, and those
    of a CutMix sample on a box row holding a box column."""
    outer, height, width, _ = grid
    reads = 0
    for lam, cut, (y0, y1, x0, x1) in zip(params.lam.tolist(), params.cutmix.tolist(), params.boxes.tolist()):
        if cut:
            cols = -(-x1 // pack) - x0 // pack if x1 > x0 else 0  # packs [x0 // P, ceil(x1 / P))
            reads += outer * max(y1 - y0, 0) * cols
        elif lam != 1.0:
            reads += outer * height * width // pack
    return reads


@pytest.mark.parametrize("a", DT)
@pytest.mark.parametrize("b", DT)
@pytest.mark.parametrize(
    "shape, layout, channels_last",
    [((14, 3, 5, 32), "NCHW", False), ((12, 2, 3, 48), "NCHW", False), ((11, 1, 6, 16), "NCHW", True),
     ((12, 4, 16, 1), "NHWC", False)],
)
def test_host_compiled_packed_cutmix_kernel_equals_cpu_twin(host_lib, a, b, shape, layout, channels_last):
    """The packed CutMix operation on samples (outer, H, W, 1) with W a multiple of the pack:
    bit for bit the CPU twin, mixup and CutMix samples in one launch, boxes empty, whole, one
    pixel, on and across pack edges; and it reads a partner pack only where one is used."""
    pack = _pack(a)
    xs, params, grid, want = _cutmix_case(a, b, shape, layout, channels_last, pack=pack)
    _, height, width, inner = grid
    assert inner == 1 and width % pack == 0
    got = torch.empty(xs.numel(), dtype=TORCH[b])
    ints = (xs.numel() // shape[0] // pack, height, width // pack)
    reads = _host_cutmix(host_lib, f"cutmixp_{a}_{b}", xs, params.lam, params.perm, params.cutmix, params.boxes,
                         ints, got, xs.numel() // pack)
    assert _same_bits(got, want), (a, b)
    assert reads == _partner_packs(params, grid, pack) < xs.numel() // pack, (a, b)


@pytest.mark.parametrize("a", DT)
@pytest.mark.parametrize("b", DT)
@pytest.mark.parametrize(
    "shape, layout, channels_last, x_offset, out_offset",
    [
        ((12, 2, 5, 32), "NCHW", False, 0, 0),  # W % 16 == 0: packed
        ((12, 2, 5, 24), "NCHW", False, 0, 0),  # W % 8 == 0 only: packed for 2- and 4-byte input
        ((12, 2, 5, 20), "NCHW", False, 0, 0),  # W % 8 != 0: scalar
        ((12, 5, 32, 3), "NHWC", False, 0, 0),  # inner 3: scalar, though a sample is whole packs
        ((12, 3, 5, 32), "NCHW", True, 0, 0),  # channels_last, inner 3: scalar
        ((12, 5, 32, 1), "NHWC", False, 0, 0),  # inner 1: packed
        ((12, 2, 5, 32), "NCHW", False, 1, 0),  # x misaligned: scalar
        ((12, 2, 5, 32), "NCHW", False, 0, 1),  # out misaligned: scalar
        ((12, 2, 5, 32), "NCHW", False, 8, 8),  # 8-element aligned: packed for 2- and 4-byte input
    ],
)
def test_cutmix_launcher_picks_packed_or_scalar_kernel(
    monkeypatch, host_lib, a, b, shape, layout, channels_last, x_offset, out_offset
):
    """launch_mix_cutmix_images with the host-compiled operations standing in for the CuPy
    kernels: the packed one where a pack lies in one image row (inner 1, W a multiple of the
    pack) and the buffers are pack-aligned, the scalar one otherwise; either way the CPU twin."""
    pack = _pack(a)
    xs, params, grid, want = _cutmix_case(a, b, shape, layout, channels_last, pack=pack)
    x = _at(xs.numel(), xs.dtype, x_offset).copy_(xs)
    out = _at(xs.numel(), TORCH[b], out_offset)
    ran = []

    def host_kernel(entry):
        def launch(x, lam, perm, cut, boxes, *ints_out, size=None):  # CuPy's size: out's, or given
            *ints, o = ints_out
            ran.append((entry, tuple(ints), size))
            _host_cutmix(host_lib, f"{entry}_{a}_{b}", x, lam, perm, cut, boxes, ints, o,
                         o.numel() if size is None else size)
        return lambda: launch

    monkeypatch.setattr(kernels, "_on_torch_stream", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(kernels, "_cupy_view", lambda t: t)
    monkeypatch.setattr(kernels, "get_kernel", {"mix_cutmix_images": host_kernel("cutmix")(),
                                                "mix_cutmix_images_packed": host_kernel("cutmixp")()}.__getitem__)
    kernels.launch_mix_cutmix_images(x, params.lam, params.perm, params.cutmix, params.boxes, grid, out)

    n, s = shape[0], xs.numel() // shape[0]
    _, height, width, inner = grid
    if inner == 1 and width % pack == 0 and x_offset % pack == 0 and out_offset % pack == 0:
        assert ran == [("cutmixp", (s // pack, height, width // pack), n * s // pack)], (a, b)
    else:
        assert ran == [("cutmix", (s, inner, height, width), None)], (a, b)
    assert _same_bits(out, want), (a, b)


# ---------------------------------------------------------------- CuPy views from pointers


class _PosingAsCuda:
    """A CPU tensor posing as a CUDA one on device 0: ``_cupy_view`` reads only its pointer and
    metadata, and building a CuPy array over a pointer makes no CUDA call, so this runs here."""

    device = torch.device("cuda", 0)

    def __init__(self, t):
        self._t = t

    def __getattr__(self, name):
        return getattr(self._t, name)


@pytest.mark.parametrize("dtype, cupy_dtype", [
    (torch.uint8, "uint8"), (torch.bool, "uint8"), (torch.float16, "uint16"), (torch.bfloat16, "int16"),
    (torch.float32, "float32"), (torch.int32, "int32"), (torch.int64, "int64"),
])
def test_cupy_view_is_the_tensors_memory_and_keeps_it_alive(dtype, cupy_dtype):
    import gc
    import weakref

    pytest.importorskip("cupy")
    t = torch.zeros(37, dtype=dtype)
    ptr, nbytes = t.data_ptr(), t.numel() * t.element_size()
    v = kernels._cupy_view(_PosingAsCuda(t))
    assert v.data.ptr == ptr and v.shape == (37,) and str(v.dtype) == cupy_dtype and v.nbytes == nbytes
    assert v.data.device_id == 0 and v.flags.c_contiguous
    alive = weakref.ref(t)
    del t
    gc.collect()
    assert alive() is not None  # the view holds the tensor
    del v
    gc.collect()
    assert alive() is None


def test_cupy_view_refuses_strided_and_multi_dim_tensors():
    pytest.importorskip("cupy")
    with pytest.raises(ValueError, match="dense 1-D"):
        kernels._cupy_view(_PosingAsCuda(torch.zeros(8)[::2]))
    with pytest.raises(ValueError, match="dense 1-D"):
        kernels._cupy_view(_PosingAsCuda(torch.zeros(2, 3)))
    assert kernels._cupy_view(_PosingAsCuda(torch.zeros(8)[3:4])).shape == (1,)


def _cuboid_params(n, size, seed):
    """Sampled 3-D CutMix params (cuboids), with an empty cuboid, a full one and a mixup sample
    with λ = 0.5 pinned where the batch allows."""
    p = MixupSampler(MixupConfig(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.7, mode="elem"), seed).sample(
        n, image_size=size)
    lam, cut, boxes = p.lam.clone(), p.cutmix.clone(), p.boxes.clone()
    if n >= 4:
        cut[:3] = True
        boxes[0] = torch.tensor([1, 1, 0, size[1], 0, size[2]])  # empty
        boxes[1] = torch.tensor([0, size[0], 0, size[1], 0, size[2]])  # the whole volume
        cut[3], lam[3] = False, 0.5
    return MixupParams(lam, p.perm, boxes=boxes, cutmix=cut, image_size=size)


@pytest.mark.parametrize("a", DT)
@pytest.mark.parametrize("b", DT)
@pytest.mark.parametrize(
    "shape, layout, channels_last",
    [((6, 2, 5, 7, 9), "NCDHW", False), ((6, 2, 5, 7, 9), "NCDHW", True), ((5, 4, 3, 6, 3), "NDHWC", False),
     ((2, 1, 1, 1, 1), "NCDHW", False)],
)
def test_host_compiled_cuboid_cutmix_kernel_equals_cpu_twin(host_lib, a, b, shape, layout, channels_last):
    """The volume kernel (cuboid boxes, (outer, D, H, W, inner) grids) gives the CPU twin's bits."""
    requires_fma()
    x = random_images(shape, TORCH[a], seed=sum(shape))
    if b == "uint8" and a != "uint8":
        x = x.float().abs().clamp(max=300).to(TORCH[a])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    size = shape[2:5] if layout == "NCDHW" else shape[1:4]
    params = _cuboid_params(shape[0], size, seed=shape[0])
    want = mix_images(x, params, dtype=TORCH[b], layout=layout)
    from dali_mixup.mix import _cutmix_grid, _memory_order_view

    xs, grid = _memory_order_view(x), _cutmix_grid(x, layout, params)
    assert grid[1:4] == size and len(grid) == 5
    got = torch.empty(xs.numel(), dtype=TORCH[b])
    getattr(host_lib, f"cutmix3_{a}_{b}")(
        _ptr(xs), _ptr(params.lam), _ptr(params.perm), _ptr(params.cutmix), _ptr(params.boxes),
        *map(ctypes.c_longlong, (xs.numel() // shape[0], grid[4], *grid[1:4])), _ptr(got),
        ctypes.c_longlong(xs.numel()))
    assert _same_bits(got, _memory_order_view(want)), (a, b)
    # the twin itself: inside the cuboid the partner, outside the sample (both converted as stored)
    xo = x.to(TORCH[b]) if a == b or b != "uint8" else None
    if xo is not None:
        spatial = (2, 3, 4) if layout == "NCDHW" else (1, 2, 3)
        for i in params.cutmix.nonzero().view(-1).tolist():
            z0, z1, y0, y1, x0, x1 = params.boxes[i].tolist()
            ref = xo[i].clone()
            idx = [slice(None)] * 4
            for d, lo, hi in zip(spatial, (z0, y0, x0), (z1, y1, x1)):
                idx[d - 1] = slice(lo, hi)
            ref[tuple(idx)] = xo[int(params.perm[i])][tuple(idx)]
            assert _same_bits(want[i].contiguous(), ref.contiguous())


def test_cuboid_launcher_uses_the_volume_kernel(monkeypatch):
    """A 5-entry grid goes to ``mix_cutmix_volumes`` with (sample_size, inner, D, H, W)."""
    calls = []
    monkeypatch.setattr(kernels, "get_kernel", lambda name: lambda *args, **kw: calls.append((name, args[5:10])))
    monkeypatch.setattr(kernels, "_on_torch_stream", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(kernels, "_cupy_view", lambda t: t)
    x = torch.zeros(2 * 3 * 4 * 5 * 6)
    kernels.launch_mix_cutmix_images(x, torch.ones(2), torch.arange(2), torch.zeros(2, dtype=torch.bool),
                                     torch.zeros(2, 6, dtype=torch.int64), (3, 4, 5, 6, 1), torch.empty_like(x))
    assert calls == [("mix_cutmix_volumes", (3 * 4 * 5 * 6, 1, 4, 5, 6))]


# ------------------------------------------------- fused normalize + mirror + transpose + mix

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORM_OUT = ["float32", "float16", "bfloat16"]


def _mirror_flags(kind, n):
    return {"none": torch.zeros(n, dtype=torch.uint8), "all": torch.ones(n, dtype=torch.uint8),
            "mixed": torch.tensor([i % 3 == 1 for i in range(n)], dtype=torch.uint8)}[kind]


def _normmix_params(mode, n, h, w, seed):
    """Mixup params with λ = 0, 0.5, 1 pinned, or ``_cutmix_params`` (boxes empty, whole, one pixel,
    at the borders, with mixup samples in the same batch)."""
    if mode == "cutmix":
        return _cutmix_params(n, h, w, seed)
    p = MixupSampler(MixupConfig(alpha=0.5, mode="elem", prob=0.8), seed).sample(n)
    lam = p.lam.clone()
    lam[:3] = torch.tensor([0.0, 0.5, 1.0])
    return MixupParams(lam, p.perm, image_size=(h, w))


def _host_normmix(host_lib, b, x, params, mirror, norm, layout):
    n, h, w, c = x.shape
    out = torch.empty((n, h, w, c) if layout == "NHWC" else (n, c, h, w), dtype=TORCH[b])
    o = out.view(torch.int16) if b == "bfloat16" else out
    host_lib[f"normmix_{b}"](
        _ptr(x), _ptr(params.lam), _ptr(params.perm), _ptr(params.cutmix), _ptr(params.boxes), _ptr(mirror),
        _ptr(norm), *map(ctypes.c_longlong, (h * w * c, c, h, w, int(layout == "NHWC"))), _ptr(o),
        ctypes.c_longlong(out.numel()))
    return out


@pytest.mark.parametrize("b", NORM_OUT)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mirror", ["none", "all", "mixed"])
@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
@pytest.mark.parametrize("shape", [(7, 5, 9, 3), (6, 1, 4, 3)])
def test_host_compiled_normalize_mix_kernel_equals_cpu_twin(host_lib, b, layout, mirror, mode, shape):
    """The fused kernel over uint8 HWC crops (normalize, mirror by each sample's own flag,
    transpose to the layout, cast, mixup or CutMix in output coordinates) gives the CPU twin's
    bits for every output dtype x layout x mirror pattern x mix mode."""
    from dali_mixup.mix import normalize_mix_images, normalize_table

    requires_fma()
    n, hh, ww, _ = shape
    x = random_images(shape, torch.uint8, seed=sum(shape))
    params = _normmix_params(mode, n, hh, ww, seed=n)
    flags = _mirror_flags(mirror, n)
    want = normalize_mix_images(x, params, MEAN, STD, mirror=flags, layout=layout, dtype=TORCH[b])
    got = _host_normmix(host_lib, b, x, params, flags, normalize_table(MEAN, STD), layout)
    assert _same_bits(got, want), (b, layout, mirror, mode)
    # the meaning: the unfused path's mix of the normalised, mirrored, transposed batch
    v = normalize_mix_images(x, MixupParams.identity(n), MEAN, STD, mirror=flags, layout=layout)
    ref = x.float().flip(2).where(flags.bool().view(-1, 1, 1, 1), x.float())
    ref = (ref - normalize_table(MEAN, STD)[:3]) * normalize_table(MEAN, STD)[3:]
    ref = ref if layout == "NHWC" else ref.permute(0, 3, 1, 2)
    assert torch.equal(v, ref.contiguous())
    assert _same_bits(want, mix_images(v, params, dtype=TORCH[b], layout=layout))


def test_host_compiled_normalize_mix_keeps_subnormals(host_lib):
    """A std so large that 1/(std*255) and the normalised values are subnormal float32: kernel and
    twin agree bit for bit and nothing is flushed to zero."""
    from dali_mixup.mix import normalize_mix_images, normalize_table

    requires_fma()
    mean, std = (0.0, 0.5, 1.0), (1e36, 3e37, 1e36)
    x = random_images((4, 3, 5, 3), torch.uint8, seed=5)
    params = MixupParams([0.3, 1.0, float(np.float32(1e-40)), 0.75], [1, 0, 3, 2])
    flags = _mirror_flags("mixed", 4)
    table = normalize_table(mean, std)
    assert 0 < float(table[3]) < np.finfo(np.float32).tiny  # the factor itself is subnormal
    want = normalize_mix_images(x, params, mean, std, mirror=flags)
    got = _host_normmix(host_lib, "float32", x, params, flags, table, "NCHW")
    assert _same_bits(got, want)
    sub = want[(want != 0) & (want.abs() < np.finfo(np.float32).tiny)]
    assert sub.numel() > 10


def test_normalize_mix_launcher_passes_the_kernels_arguments(monkeypatch, host_lib):
    """launch_normalize_mix_images with the host-compiled operation standing in for the CuPy kernel:
    argument order and the (C, H, W) grid, bit for bit the CPU twin."""
    from dali_mixup.mix import normalize_mix_images, normalize_table

    requires_fma()
    x = random_images((6, 4, 8, 3), torch.uint8, seed=9)
    params = _normmix_params("cutmix", 6, 4, 8, seed=6)
    flags = _mirror_flags("mixed", 6)
    for layout in ("NCHW", "NHWC"):
        want = normalize_mix_images(x, params, MEAN, STD, mirror=flags, layout=layout, dtype=torch.bfloat16)
        out = torch.empty(want.numel(), dtype=torch.bfloat16)

        def launch(xs, lam, perm, cut, boxes, mirror, norm, *ints_out):
            *ints, o = ints_out
            host_lib["normmix_bfloat16"](_ptr(xs), _ptr(lam), _ptr(perm), _ptr(cut), _ptr(boxes), _ptr(mirror),
                                         _ptr(norm), *map(ctypes.c_longlong, ints), _ptr(o.view(torch.int16)),
                                         ctypes.c_longlong(o.numel()))

        monkeypatch.setattr(kernels, "_on_torch_stream", lambda device: contextlib.nullcontext())
        monkeypatch.setattr(kernels, "_cupy_view", lambda t: t)
        monkeypatch.setattr(kernels, "get_kernel", {"normalize_mix_images": launch}.__getitem__)
        kernels.launch_normalize_mix_images(x.view(-1), params.lam, params.perm, params.cutmix, params.boxes, flags,
                                            normalize_table(MEAN, STD), (3, 4, 8), layout == "NHWC", out)
        assert _same_bits(out, want), layout
