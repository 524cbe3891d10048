"""The CuPy kernels on a real GPU against the CPU twin (marker ``gpu``; skipped without one)."""

import pytest
import torch

from dali_mixup import MixupConfig, MixupParams, MixupSampler, mix_images, mix_targets

pytestmark = pytest.mark.gpu


def bits(t):
    """The raw bytes of ``t`` in logical order (bit-exact comparison of any dtype and layout)."""
    return t.contiguous().view(-1).view(torch.uint8)
DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]


def images(shape, dtype, seed=0, channels_last=False, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) if dtype == torch.uint8 else (torch.randn(shape, generator=g) * 40).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.to(device)


@pytest.mark.parametrize("in_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
# samples of 969 elements take the scalar kernel, 1728 and 6464 the packed one, 120 (whole 8-element
# packs) the packed one except for uint8 input (16-element packs)
@pytest.mark.parametrize(
    "shape, cl",
    [((33, 3, 17, 19), False), ((33, 3, 17, 19), True), ((8, 24, 24, 3), False), ((5, 64, 101), False),
     ((6, 3, 8, 5), False)],
)
def test_cuda_equals_cpu_twin(in_dtype, out_dtype, shape, cl):
    x = images(shape, in_dtype, seed=1, channels_last=cl)
    if out_dtype == torch.uint8 and in_dtype != torch.uint8:
        x = x.float().abs().to(in_dtype)
    n = shape[0]
    params = MixupSampler(MixupConfig(alpha=0.4, mode="elem", prob=0.9), n).sample(n)
    want = mix_images(x, params, dtype=out_dtype)
    got = mix_images(x.cuda(), params, dtype=out_dtype)
    assert got.is_cuda and got.stride() == want.stride()
    got = got.cpu()
    if out_dtype == torch.float32:
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert torch.equal(bits(got), bits(want))


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32])
def test_cuda_targets_equal_cpu_twin(eps, label_dtype):
    n, c = 64, 1000
    labels = torch.randint(0, c, (n,), dtype=label_dtype)
    labels[1] = labels[0]
    params = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), 2).sample(n)
    want = mix_targets(labels, params, c, eps)
    got = mix_targets(labels.cuda(), params, c, eps)
    assert got.is_cuda
    assert torch.equal(got.cpu(), want)


def test_runs_on_torch_current_stream_and_writes_out_in_place():
    x = images((16, 3, 64, 64), torch.float32, device="cuda")
    params = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), 0).sample(16)
    s = torch.cuda.Stream()
    out = torch.empty_like(x)
    ptr = out.data_ptr()
    with torch.cuda.stream(s):
        torch.cuda.current_stream().wait_stream(torch.cuda.default_stream())
        res = mix_images(x, params, out=out)
        y = res * 1  # queued behind the kernel on the same stream
    s.synchronize()
    assert res.data_ptr() == ptr
    torch.testing.assert_close(y.cpu(), mix_images(x.cpu(), params), rtol=1e-6, atol=1e-6)


def test_cached_cupy_streams_follow_torchs_current_stream():
    from dali_mixup import kernels

    x = images((8, 3, 32, 32), torch.uint8, device="cuda")
    params = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), 4).sample(8)
    want = mix_images(x.cpu(), params)
    side = [torch.cuda.Stream(), torch.cuda.Stream()]
    for k in range(6):  # default, side 0, default, side 1, ...: each launch on the stream in force
        s = torch.cuda.default_stream() if k % 2 == 0 else side[k // 2 % 2]
        with torch.cuda.stream(s):
            s.wait_stream(torch.cuda.default_stream())
            got = mix_images(x, params)
            key = (x.device.index, torch.cuda.current_stream().cuda_stream)
        s.synchronize()
        assert torch.equal(got.cpu(), want), k
        assert kernels._EXTERNAL_STREAMS[key].ptr == s.cuda_stream


def test_cuda_alias_is_refused():
    x = images((4, 3, 8, 8), torch.float32, device="cuda")
    with pytest.raises(ValueError, match="alias"):
        mix_images(x, MixupParams([0.5] * 4, [1, 0, 3, 2]), out=x)


@pytest.mark.parametrize("in_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, layout, cl",
    [((33, 3, 17, 19), "NCHW", False), ((33, 3, 17, 19), "NCHW", True), ((8, 24, 20, 3), "NHWC", False),
     ((4, 3, 1, 1), "NCHW", False)],
)
def test_cuda_cutmix_equals_cpu_twin(in_dtype, out_dtype, shape, layout, cl):
    x = images(shape, in_dtype, seed=2, channels_last=cl)
    if out_dtype == torch.uint8 and in_dtype != torch.uint8:
        x = x.float().abs().to(in_dtype)
    n = shape[0]
    size = shape[2:4] if layout == "NCHW" else shape[1:3]
    cfg = MixupConfig(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, mode="elem", prob=0.9)
    params = MixupSampler(cfg, n).sample(n, image_size=size)
    if not params.has_cutmix:  # tiny images: force one full-image box
        boxes, cut = params.boxes.clone(), params.cutmix.clone()
        boxes[0], cut[0] = torch.tensor([0, size[0], 0, size[1]]), True
        params = MixupParams(params.lam, params.perm, boxes=boxes, cutmix=cut, image_size=size)
    want = mix_images(x, params, dtype=out_dtype, layout=layout)
    got = mix_images(x.cuda(), params, dtype=out_dtype, layout=layout)
    assert got.is_cuda and got.stride() == want.stride()
    got = got.cpu()
    assert torch.equal(got.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8))


def test_to_device_on_cuda_is_queued_and_exact():
    from dali_mixup.sampler import to_device

    p = MixupSampler(MixupConfig(alpha=0.4, cutmix_alpha=1.0), 5).sample(33, image_size=(16, 16))
    labels = torch.randint(0, 1000, (33,))
    moved = to_device("cuda", labels, p.lam, p.perm, p.boxes, p.cutmix)
    for a, b in zip(moved, (labels, p.lam, p.perm, p.boxes, p.cutmix)):
        assert a.is_cuda and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.cpu(), b)
    d = p.on("cuda")
    assert d is p.on("cuda") and torch.equal(d.boxes.cpu(), p.boxes) and torch.equal(d.cutmix.cpu(), p.cutmix)


def _cutmix_edge_params(n, h, w):
    """n >= 12 samples at h >= 6, w >= 24: CutMix boxes whole, empty, on and across the edges of
    8- and 16-element packs, the bottom-right pixel; mixup samples with λ = 1, 0 and 0.3; the
    rest as drawn."""
    cfg = MixupConfig(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, mode="elem", prob=0.9)
    p = MixupSampler(cfg, n).sample(n, image_size=(h, w))
    lam, cut, boxes = p.lam.clone(), p.cutmix.clone(), p.boxes.clone()
    cut[:6], cut[6:9], boxes[6:9], lam[6:9] = True, False, 0, torch.tensor([1.0, 0.0, 0.3])
    boxes[:6] = torch.tensor(
        [[0, h, 0, w], [0, 0, 0, 0], [1, h, 16, min(32, w)], [0, 1, 7, 9], [3, 5, 15, 17], [h - 1, h, w - 1, w]]
    )
    return MixupParams(lam, p.perm, boxes=boxes, cutmix=cut, image_size=(h, w))


@pytest.mark.parametrize("in_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
# packed: the packed CutMix kernel runs (a pack inside one image row: inner 1, W a multiple of the
# pack, 16 for uint8 input and 8 otherwise; pack-aligned buffers), False: the scalar one, None:
# packed for 2- and 4-byte input only
@pytest.mark.parametrize(
    "shape, layout, cl, offset, packed",
    [((16, 3, 20, 32), "NCHW", False, 0, True), ((16, 3, 20, 24), "NCHW", False, 0, None),
     ((16, 3, 20, 30), "NCHW", False, 0, False), ((16, 20, 32, 3), "NHWC", False, 0, False),
     ((16, 3, 20, 32), "NCHW", True, 0, False), ((16, 20, 32, 1), "NHWC", False, 0, True),
     ((16, 3, 20, 32), "NCHW", False, 1, False)],
)
def test_cuda_packed_and_scalar_cutmix_equal_cpu_twin(monkeypatch, in_dtype, out_dtype, shape, layout, cl, offset,
                                                      packed):
    from dali_mixup import kernels

    ran = []
    real = kernels.get_kernel
    monkeypatch.setattr(kernels, "get_kernel", lambda name: ran.append(name) or real(name))
    x = images(shape, in_dtype, seed=3, channels_last=cl)
    if out_dtype == torch.uint8 and in_dtype != torch.uint8:
        x = x.float().abs().to(in_dtype)
    h, w = shape[2:4] if layout == "NCHW" else shape[1:3]
    params = _cutmix_edge_params(shape[0], h, w)
    want = mix_images(x, params, dtype=out_dtype, layout=layout)
    xd = x.cuda()
    if offset:  # x starts `offset` elements past an aligned allocation
        xd = torch.empty(x.numel() + offset, dtype=in_dtype, device="cuda")[offset:].view(shape).copy_(x)
    got = mix_images(xd, params, dtype=out_dtype, layout=layout)
    assert got.is_cuda and got.stride() == want.stride()
    packed = in_dtype != torch.uint8 if packed is None else packed
    assert ran == ["mix_cutmix_images_packed" if packed else "mix_cutmix_images"]
    assert torch.equal(bits(got.cpu()), bits(want))
