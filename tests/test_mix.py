"""The CPU twin against a float64 reference, the edge cases, and the peers (timm, torchvision)."""

import numpy as np
import pytest
import torch

from dali_mixup import MixupConfig, MixupParams, MixupSampler, mix_images, mix_targets

DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]


def make(shape, dtype, seed=0, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    else:
        x = (torch.randn(shape, generator=g) * 3).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x


def reference(x, params, out_dtype):
    """float64 reference, then the output type's rounding (half to even for uint8)."""
    lam = params.lam.double().view(-1, *([1] * (x.dim() - 1)))
    xd = x.double()
    y = lam * xd + (1 - lam) * xd[params.perm]
    if out_dtype == torch.uint8:
        return torch.round(y).clamp(0, 255).to(torch.uint8)
    return y.to(out_dtype)


def assert_close_to_reference(got, want):
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
def test_matches_float64_reference(dtype, shape, channels_last):
    x = make(shape, dtype, channels_last=channels_last)
    params = MixupSampler(MixupConfig(alpha=0.7, mode="elem"), 3).sample(shape[0])
    out = mix_images(x, params)
    assert out.shape == x.shape and out.dtype == dtype and out.stride() == x.stride()
    assert_close_to_reference(out, reference(x, params, dtype))


@pytest.mark.parametrize("in_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
def test_fused_cast(in_dtype, out_dtype):
    x = make((4, 3, 5, 5), in_dtype, seed=1)
    if out_dtype == torch.uint8 and in_dtype != torch.uint8:
        x = (x.float().abs() * 20).to(in_dtype)
    params = MixupParams([0.25, 0.5, 1.0, 0.0], [1, 2, 3, 0])
    out = mix_images(x, params, dtype=out_dtype)
    assert out.dtype == out_dtype
    assert_close_to_reference(out, reference(x, params, out_dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lambda_one_and_zero(dtype):
    x = make((4, 3, 4, 4), dtype)
    params = MixupParams([1.0, 0.0, 1.0, 0.0], [3, 2, 1, 0])
    out = mix_images(x, params)
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert torch.equal(out[1], x[2]) and torch.equal(out[3], x[0])


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_small_and_odd_batches(n):
    x = make((n, 3, 6, 6), torch.float32)
    params = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), n).sample(n)
    assert_close_to_reference(mix_images(x, params), reference(x, params, torch.float32))
    if n == 1:
        assert torch.equal(mix_images(x, params), x)  # a batch of 1 is left as it is


def test_empty_batch():
    x = torch.empty(0, 3, 4, 4)
    assert mix_images(x, MixupParams.identity(0)).shape == (0, 3, 4, 4)


def test_uint8_rounds_half_to_even_and_saturates():
    x = torch.tensor([[1], [2], [0], [255]], dtype=torch.uint8)
    params = MixupParams([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 2])
    # 1.5 -> 2, 1.5 -> 2, 1.0 -> 1, 127.5 -> 128
    assert mix_images(x, params).view(-1).tolist() == [2, 2, 1, 128]
    x = torch.tensor([[0], [1]], dtype=torch.uint8)
    assert mix_images(x, MixupParams([0.5, 0.5], [1, 0])).view(-1).tolist() == [0, 0]  # 0.5 -> 0


def test_out_given_is_written_and_returned():
    x = make((4, 3, 5, 5), torch.float32)
    out = torch.full_like(x, float("nan"))
    params = MixupParams([0.3, 0.6, 0.9, 0.1], [1, 0, 3, 2])
    res = mix_images(x, params, out=out)
    assert res is out and not torch.isnan(out).any()


def test_out_aliasing_x_is_refused():
    x = make((4, 3, 5, 5), torch.float32)
    params = MixupParams([0.3, 0.6, 0.9, 0.1], [1, 0, 3, 2])
    with pytest.raises(ValueError, match="alias"):
        mix_images(x, params, out=x)
    with pytest.raises(ValueError, match="alias"):
        big = torch.zeros(8, 3, 5, 5)
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


def test_non_dense_input_is_handled():
    base = make((4, 3, 10, 10), torch.float32)
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


def test_targets_rows_sum_to_one_with_same_class_partner():
    labels = torch.tensor([3, 3, 1, 1])
    params = MixupParams([0.3, 0.7, 0.5, 0.2], [1, 0, 3, 2])
    t = mix_targets(labels, params, 4, 0.1)
    torch.testing.assert_close(t.sum(1), torch.ones(4))
    on = 1 - 0.1 + 0.1 / 4
    torch.testing.assert_close(t[0, 3], torch.tensor(on))


def test_targets_values():
    labels = torch.tensor([0, 2, 1])
    params = MixupParams([0.75, 0.5, 1.0], [1, 2, 0])
    t = mix_targets(labels, params, 3)
    want = torch.tensor([[0.75, 0.0, 0.25], [0.0, 0.5, 0.5], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(t, want)
    assert t.dtype == torch.float32


def test_targets_large_class_ids_are_exact():
    # a bfloat16 cast of labels would turn 1001 into 1000: labels are never cast to floats
    labels = torch.tensor([1001, 999, 257])
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
