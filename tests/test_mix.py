"""``mix_images`` / ``mix_targets``: each behaviour on every device (the ``device`` fixture: the CPU
twin, and the CuPy kernels where there is a GPU) against a float64 reference and the edge cases;
the CUDA kernels bit for bit against the CPU twin; the peers (timm, torchvision)."""

import numpy as np
import pytest
import torch

from dali_mixup import MixupConfig, MixupParams, MixupSampler, mix_images, mix_targets

DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]


def make(shape, dtype, seed=0, channels_last=False, device="cpu", scale=3):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    else:
        x = (torch.randn(shape, generator=g) * scale).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.to(device)


def bits(t):
    """The raw bytes of ``t`` in logical order (bit-exact comparison of any dtype and layout)."""
    return t.contiguous().view(-1).view(torch.uint8)


def reference(x, params, out_dtype):
    """float64 reference, then the output type's rounding (half to even for uint8)."""
    lam = params.lam.double().view(-1, *([1] * (x.dim() - 1)))
    xd = x.cpu().double()
    y = lam * xd + (1 - lam) * xd[params.perm]
    if out_dtype == torch.uint8:
        return torch.round(y).clamp(0, 255).to(torch.uint8)
    return y.to(out_dtype)


def assert_close_to_reference(got, want):
    got = got.cpu()
    if got.dtype == torch.uint8:
        diff = (got.int() - want.int()).abs()
        assert diff.max() <= 1  # float32 vs float64 may land on either side of a .5 tie
        assert (diff == 0).float().mean() > 0.999
    else:
        tol = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[got.dtype]
        torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol * 8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, channels_last",
    [((5, 3, 8, 6), False), ((5, 3, 8, 6), True), ((5, 8, 6, 3), False), ((3, 40, 17), False), ((4, 2, 3, 4, 5), False)],
)
def test_matches_float64_reference(device, dtype, shape, channels_last):
    x = make(shape, dtype, channels_last=channels_last, device=device)
    params = MixupSampler(MixupConfig(alpha=0.7, mode="elem"), 3).sample(shape[0])
    out = mix_images(x, params)
    assert out.shape == x.shape and out.dtype == dtype and out.stride() == x.stride()
    assert_close_to_reference(out, reference(x, params, dtype))


@pytest.mark.parametrize("in_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
def test_fused_cast(device, in_dtype, out_dtype):
    x = make((4, 3, 5, 5), in_dtype, seed=1, device=device)
    if out_dtype == torch.uint8 and in_dtype != torch.uint8:
        x = (x.float().abs() * 20).to(in_dtype)
    params = MixupParams([0.25, 0.5, 1.0, 0.0], [1, 2, 3, 0])
    out = mix_images(x, params, dtype=out_dtype)
    assert out.dtype == out_dtype
    assert_close_to_reference(out, reference(x, params, out_dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lambda_one_and_zero(device, dtype):
    x = make((4, 3, 4, 4), dtype, device=device)
    params = MixupParams([1.0, 0.0, 1.0, 0.0], [3, 2, 1, 0])
    out = mix_images(x, params)
    assert out.device == x.device
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert torch.equal(out[1], x[2]) and torch.equal(out[3], x[0])


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_small_and_odd_batches(device, n):
    x = make((n, 3, 6, 6), torch.float32, device=device)
    params = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), n).sample(n)
    assert_close_to_reference(mix_images(x, params), reference(x, params, torch.float32))
    if n == 1:
        assert torch.equal(mix_images(x, params), x)  # a batch of 1 is left as it is


def test_empty_batch(device):
    x = torch.empty(0, 3, 4, 4, device=device)
    assert mix_images(x, MixupParams.identity(0)).shape == (0, 3, 4, 4)


def test_uint8_rounds_half_to_even_and_saturates(device):
    x = torch.tensor([[1], [2], [0], [255]], dtype=torch.uint8, device=device)
    params = MixupParams([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 2])
    # 1.5 -> 2, 1.5 -> 2, 1.0 -> 1, 127.5 -> 128
    assert mix_images(x, params).view(-1).tolist() == [2, 2, 1, 128]
    x = torch.tensor([[0], [1]], dtype=torch.uint8, device=device)
    assert mix_images(x, MixupParams([0.5, 0.5], [1, 0])).view(-1).tolist() == [0, 0]  # 0.5 -> 0


def test_out_given_is_written_and_returned(device):
    x = make((4, 3, 5, 5), torch.float32, device=device)
    out = torch.full_like(x, float("nan"))
    params = MixupParams([0.3, 0.6, 0.9, 0.1], [1, 0, 3, 2])
    res = mix_images(x, params, out=out)
    assert res is out and not torch.isnan(out).any()


def test_out_aliasing_x_is_refused(device):
    x = make((4, 3, 5, 5), torch.float32, device=device)
    params = MixupParams([0.3, 0.6, 0.9, 0.1], [1, 0, 3, 2])
    with pytest.raises(ValueError, match="alias"):
        mix_images(x, params, out=x)
    with pytest.raises(ValueError, match="alias"):
        big = torch.zeros(8, 3, 5, 5, device=device)
        mix_images(big[:4], params, out=big[2:6])


def test_bad_arguments():
    x = make((4, 3, 5, 5), torch.float32)
    params = MixupParams.identity(4)
    with pytest.raises(ValueError, match="batch of 3"):
        mix_images(x, MixupParams.identity(3))
    with pytest.raises(TypeError, match="dtype"):
        mix_images(x.double(), params)
    with pytest.raises(ValueError, match="shape"):
        mix_images(x, params, out=torch.empty(4, 3, 5, 4))
    with pytest.raises(ValueError, match="layout"):
        mix_images(x, params, out=torch.empty_like(x, memory_format=torch.channels_last))
    with pytest.raises(TypeError, match="MixupParams"):
        mix_images(x, (torch.ones(4), torch.arange(4)))


def test_non_dense_input_is_handled(device):
    base = make((4, 3, 10, 10), torch.float32, device=device)
    x = base[:, :, ::2, ::2]
    params = MixupParams([0.3, 0.6, 0.9, 0.1], [1, 0, 3, 2])
    assert_close_to_reference(mix_images(x, params), reference(x, params, torch.float32))


# ---------------------------------------------------------------- targets


def test_targets_smoothing_matches_cross_entropy():
    n, c, eps = 6, 5, 0.1
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    t = mix_targets(labels, MixupParams.identity(n), c, eps)
    logits = torch.randn(n, c)
    want = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=eps)
    got = torch.sum(-t * logits.log_softmax(-1), dim=-1).mean()
    torch.testing.assert_close(got, want)


def test_targets_rows_sum_to_one_with_same_class_partner(device):
    labels = torch.tensor([3, 3, 1, 1], device=device)
    params = MixupParams([0.3, 0.7, 0.5, 0.2], [1, 0, 3, 2])
    t = mix_targets(labels, params, 4, 0.1).cpu()
    torch.testing.assert_close(t.sum(1), torch.ones(4))
    on = 1 - 0.1 + 0.1 / 4
    torch.testing.assert_close(t[0, 3], torch.tensor(on))


def test_targets_values(device):
    labels = torch.tensor([0, 2, 1], device=device)
    params = MixupParams([0.75, 0.5, 1.0], [1, 2, 0])
    t = mix_targets(labels, params, 3)
    want = torch.tensor([[0.75, 0.0, 0.25], [0.0, 0.5, 0.5], [0.0, 1.0, 0.0]])
    assert t.device == labels.device
    torch.testing.assert_close(t.cpu(), want)
    assert t.dtype == torch.float32


def test_targets_large_class_ids_are_exact(device):
    # a bfloat16 cast of labels would turn 1001 into 1000: labels are never cast to floats
    labels = torch.tensor([1001, 999, 257], device=device)
    t = mix_targets(labels, MixupParams.identity(3), 1024)
    assert t.argmax(1).tolist() == [1001, 999, 257]


def test_targets_bad_labels():
    params = MixupParams.identity(3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        mix_targets(torch.tensor([0, 3, 1]), params, 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        mix_targets(torch.tensor([0, -1, 1]), params, 3)
    with pytest.raises(TypeError, match="integer"):
        mix_targets(torch.tensor([0.0, 1.0, 2.0]), params, 3)
    with pytest.raises(ValueError, match="num_classes"):
        mix_targets(torch.tensor([0, 1, 2]), params, 0)
    with pytest.raises(ValueError, match="label_smoothing"):
        mix_targets(torch.tensor([0, 1, 2]), params, 3, 1.0)
    t = mix_targets(torch.tensor([[0], [1], [2]], dtype=torch.int32), params, 3)
    assert t.shape == (3, 3)


# ---------------------------------------------------------------- peers


def test_equals_timm_mixup_given_the_same_lambda():
    timm_mixup = pytest.importorskip("timm.data.mixup")
    n, c, eps = 8, 10, 0.1
    x = make((n, 3, 16, 16), torch.float32, seed=4)
    labels = torch.arange(n) % c
    m = timm_mixup.Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=eps, num_classes=c, mode="batch")
    np.random.seed(0)
    xt = x.clone()
    xt, tt = m(xt, labels.clone())  # in place on xt; draws λ with np.random
    lam = float(((xt[0] - x[-1]) / (x[0] - x[-1])).flatten()[0])  # recover timm's λ from the output
    params = MixupParams(torch.full((n,), np.float32(lam)), torch.arange(n - 1, -1, -1))
    torch.testing.assert_close(mix_images(x, params), xt, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mix_targets(labels, params, c, eps), tt, rtol=1e-5, atol=1e-6)


def test_equals_torchvision_mixup_given_the_same_lambda():
    v2 = pytest.importorskip("torchvision.transforms.v2")
    n, c = 8, 10
    x = make((n, 3, 16, 16), torch.float32, seed=5)
    labels = torch.arange(n) % c
    torch.manual_seed(0)
    xt, tt = v2.MixUp(alpha=1.0, num_classes=c)(x, labels)
    lam = float(((xt[1] - x[0]) / (x[1] - x[0])).flatten()[0])
    params = MixupParams(torch.full((n,), np.float32(lam)), (torch.arange(n) - 1) % n)
    torch.testing.assert_close(mix_images(x, params), xt, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mix_targets(labels, params, c), tt, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- CUDA kernels vs the CPU twin (GPU only)

@pytest.mark.gpu
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
    x = make(shape, in_dtype, seed=1, channels_last=cl, scale=40)
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


@pytest.mark.gpu
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


@pytest.mark.gpu
def test_runs_on_torch_current_stream_and_writes_out_in_place():
    x = make((16, 3, 64, 64), torch.float32, device="cuda")
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


@pytest.mark.gpu
def test_cached_cupy_streams_follow_torchs_current_stream():
    from dali_mixup import kernels

    x = make((8, 3, 32, 32), torch.uint8, device="cuda")
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


@pytest.mark.gpu
def test_cuda_alias_is_refused():
    x = make((4, 3, 8, 8), torch.float32, device="cuda")
    with pytest.raises(ValueError, match="alias"):
        mix_images(x, MixupParams([0.5] * 4, [1, 0, 3, 2]), out=x)


@pytest.mark.gpu
@pytest.mark.parametrize("in_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, layout, cl",
    [((33, 3, 17, 19), "NCHW", False), ((33, 3, 17, 19), "NCHW", True), ((8, 24, 20, 3), "NHWC", False),
     ((4, 3, 1, 1), "NCHW", False)],
)
def test_cuda_cutmix_equals_cpu_twin(in_dtype, out_dtype, shape, layout, cl):
    x = make(shape, in_dtype, seed=2, channels_last=cl, scale=40)
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


@pytest.mark.gpu
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


@pytest.mark.gpu
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
    x = make(shape, in_dtype, seed=3, channels_last=cl, scale=40)
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
