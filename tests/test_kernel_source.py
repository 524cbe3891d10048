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
        f"NVRTC compiled {len(compiled)} mixup image kernels (scalar and packed: 16-wide for uint8 input, 8-wide "
        f"otherwise), {len(compiled)} mixup/CutMix image kernels and 2 target kernels for {arch}"
    )


@pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_packed_kernel_reads_x_in_128_bit_loads(arch):
    """The point of the pack width: x is read only by 128-bit vector loads (a 16-wide uint8 pack
    is one ld.global.v4.u32, an 8-wide one was a 64-bit v2), out written only by vector stores;
    the scalar loads are λ (f32) and the partner index (u64), one of each per pack."""
    for a in DT:
        for b in DT:
            src = h.image_kernel_source(a, b, "mix_images_packed")
            ptx = h.nvrtc_compile(src, arch, f"packed_{a}_{b}.cu", ptx=True).decode(errors="replace")
            loads = re.findall(r"\bld\.global(?:\.nc)?\.([\w.]+)", ptx)
            stores = re.findall(r"\bst\.global\.([\w.]+)", ptx)
            scalar = [t for t in loads if not re.fullmatch(r"v4\.[bfsu]32", t)]
            assert len(scalar) < len(loads) and sorted(set(scalar)) == ["f32", "u64"], (a, b, arch, loads)
            assert scalar.count("f32") == scalar.count("u64"), (a, b, arch, loads)
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
    monkeypatch.setattr(kernels, "_mix_images_kernel", host_kernel("mix"))
    monkeypatch.setattr(kernels, "_mix_images_packed_kernel", host_kernel("mixp"))
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


@pytest.mark.parametrize("a", DT)
@pytest.mark.parametrize("b", DT)
@pytest.mark.parametrize(
    "shape, layout, channels_last",
    [((7, 3, 11, 13), "NCHW", False), ((7, 3, 11, 13), "NCHW", True), ((6, 9, 5, 4), "NHWC", False),
     ((3, 1, 1, 1), "NCHW", False), ((5, 2, 1, 17), "NCHW", False)],
)
def test_host_compiled_cutmix_kernel_equals_cpu_twin(host_lib, a, b, shape, layout, channels_last):
    requires_fma()
    x = random_images(shape, TORCH[a], seed=sum(shape))
    if b == "uint8" and a != "uint8":
        x = x.float().abs().clamp(max=300).to(TORCH[a])  # saturation in copies and blends
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    n = shape[0]
    hw = shape[2:4] if layout == "NCHW" else shape[1:3]
    params = _cutmix_params(n, *hw, seed=n)
    assert params.has_cutmix
    want = mix_images(x, params, dtype=TORCH[b], layout=layout)
    from dali_mixup.mix import _cutmix_grid, _memory_order_view

    outer, height, width, inner = _cutmix_grid(x, layout, params)
    xs = _memory_order_view(x)
    xs = xs.view(torch.int16) if a == "bfloat16" else xs
    got = torch.empty(x.numel(), dtype=TORCH[b])
    gs = got.view(torch.int16) if b == "bfloat16" else got
    cut = params.cutmix.to(torch.uint8)
    getattr(host_lib, f"cutmix_{a}_{b}")(
        _ptr(xs), _ptr(params.lam), _ptr(params.perm), _ptr(cut), _ptr(params.boxes),
        ctypes.c_longlong(x.numel() // n), ctypes.c_longlong(inner), ctypes.c_longlong(height),
        ctypes.c_longlong(width), _ptr(gs), ctypes.c_longlong(x.numel()),
    )
    want_flat = _memory_order_view(want)
    assert torch.equal(got.view(torch.uint8), want_flat.view(torch.uint8)), (a, b)


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
