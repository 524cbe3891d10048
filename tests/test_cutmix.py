"""CutMix: the sampler's boxes and λ correction, the CPU twin against a reference and against
timm's CutMix (same λ, pairing and box), layouts, and the parameters' validation."""

import numpy as np
import pytest
import torch
from scipy import stats

from dali_mixup import MixupConfig, MixupParams, MixupSampler, mix_images, mix_targets

DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]
MODES = ["batch", "elem", "pair"]


def make(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    return (torch.randn(shape, generator=g) * 3).to(dtype)


def cutmix_cfg(**kw):
    base = dict(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, mode="elem")
    base.update(kw)
    return MixupConfig(**base)


# ---------------------------------------------------------------- sampler


@pytest.mark.parametrize("mode", MODES)
def test_cutmix_off_keeps_the_mixup_draws(mode):
    pairing = "flip" if mode == "pair" else "derangement"
    plain = MixupSampler(MixupConfig(alpha=0.4, mode=mode, pairing=pairing), 3)
    zero = MixupSampler(MixupConfig(alpha=0.4, mode=mode, pairing=pairing, cutmix_alpha=0.0), 3)
    never = MixupSampler(MixupConfig(alpha=0.4, mode=mode, pairing=pairing, cutmix_alpha=1.0, switch_prob=0.0), 3)
    for n in [8, 5, 64]:
        p, q, r = plain.sample(n), zero.sample(n, image_size=(7, 9)), never.sample(n)
        for other in (q, r):
            assert torch.equal(p.lam, other.lam) and torch.equal(p.perm, other.perm)
            assert not other.has_cutmix


def test_image_size_is_required_only_with_cutmix():
    with pytest.raises(ValueError, match=r"image_size=\(H, W\)"):
        MixupSampler(cutmix_cfg(), 0).sample(4)
    with pytest.raises(ValueError, match="image_size"):
        MixupSampler(cutmix_cfg(enabled=False), 0).sample(4)  # the contract does not depend on enabled
    MixupSampler(MixupConfig(), 0).sample(4)  # mixup only: not needed
    assert MixupSampler(MixupConfig(), 0).sample(4, image_size=(8, 6)).image_size == (8, 6)
    with pytest.raises(TypeError, match="image_size"):
        MixupSampler(cutmix_cfg(), 0).sample(4, image_size=224)
    with pytest.raises(ValueError, match="image_size"):
        MixupSampler(cutmix_cfg(), 0).sample(4, image_size=(0, 5))
    off = MixupSampler(cutmix_cfg(enabled=False), 0).sample(4, image_size=(8, 8))
    assert torch.all(off.lam == 1) and not off.has_cutmix


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("minmax", [None, (0.2, 0.8)])
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (2, 3), (31, 17), (224, 224), (480, 640)])
def test_boxes_stay_inside_and_lambda_is_corrected(mode, minmax, size):
    pairing = "flip" if mode == "pair" else "derangement"
    cfg = cutmix_cfg(mode=mode, pairing=pairing, cutmix_minmax=minmax, switch_prob=0.7, prob=0.9)
    s = MixupSampler(cfg, sum(size))
    h, w = size
    seen_cutmix = False
    for n in [1, 2, 7, 32] * 3:  # batch mode: one box a batch, enough batches to see CutMix for any seed
        p = s.sample(n, image_size=size)
        y0, y1, x0, x1 = p.boxes.unbind(1)
        assert torch.all((0 <= y0) & (y0 <= y1) & (y1 <= h) & (0 <= x0) & (x0 <= x1) & (x1 <= w))
        cut = p.cutmix
        assert torch.all(p.boxes[~cut] == 0)
        area = ((y1 - y0) * (x1 - x0)).double().numpy()
        want = (1.0 - area / float(h * w)).astype(np.float32)
        np.testing.assert_array_equal(p.lam.numpy()[cut.numpy()], want[cut.numpy()])
        seen_cutmix |= bool(cut.any())
        if mode == "batch":
            assert torch.all(p.boxes == p.boxes[0]) and torch.all(p.lam == p.lam[0])
        if mode == "pair":
            assert torch.equal(p.boxes, p.boxes[p.perm]) and torch.equal(p.cutmix, p.cutmix[p.perm])
            assert torch.equal(p.lam, p.lam[p.perm])
    assert seen_cutmix


@pytest.mark.parametrize("mode", MODES)
def test_switch_prob_zero_and_one(mode):
    pairing = "flip" if mode == "pair" else "derangement"
    never = MixupSampler(cutmix_cfg(mode=mode, pairing=pairing, switch_prob=0.0), 0)
    always = MixupSampler(cutmix_cfg(mode=mode, pairing=pairing, switch_prob=1.0), 0)
    for _ in range(20):
        assert not never.sample(16, image_size=(32, 32)).has_cutmix
        p = always.sample(16, image_size=(32, 32))
        paired = p.perm != torch.arange(16)
        assert torch.all(p.cutmix[paired])  # prob = 1: every mixed sample uses CutMix


def test_switch_prob_is_the_share_of_mixed_samples_that_use_cutmix():
    s = MixupSampler(cutmix_cfg(prob=0.5, switch_prob=0.3), 4)
    ps = [s.sample(256, image_size=(64, 64)) for _ in range(40)]
    cut = torch.cat([p.cutmix for p in ps]).float().mean().item()
    mixed_mixup = torch.cat([(p.lam < 1) & ~p.cutmix for p in ps]).float().mean().item()
    assert abs(cut - 0.15) < 0.01, cut  # prob * switch_prob
    assert abs(mixed_mixup - 0.35) < 0.015, mixed_mixup  # prob * (1 - switch_prob), λ < 1 a.s.


def test_same_seed_same_boxes_and_state_dict():
    cfg = cutmix_cfg(mode="pair", pairing="derangement")
    a, b = MixupSampler(cfg, 9), MixupSampler(cfg, 9)
    for n in [8, 5, 64]:
        p, q = a.sample(n, image_size=(20, 30)), b.sample(n, image_size=(20, 30))
        for f in ("lam", "perm", "boxes", "cutmix"):
            assert torch.equal(getattr(p, f), getattr(q, f)), f
    state = a.state_dict()
    want = a.sample(16, image_size=(20, 30))
    c = MixupSampler(cfg, 0)
    c.load_state_dict(state)
    assert torch.equal(c.sample(16, image_size=(20, 30)).boxes, want.boxes)


def test_without_correction_lambda_is_the_beta_draw_and_sets_the_box_size():
    # correct_lam=False: λ is the Beta(a, a) draw itself; an unclipped box has sides
    # int(H*sqrt(1-λ)) and int(W*sqrt(1-λ)) (timm's rand_bbox); a clipped one is smaller.
    a, h, w = 0.7, 97, 61
    s = MixupSampler(MixupConfig(alpha=0.4, cutmix_alpha=a, switch_prob=1.0, mode="elem", correct_lam=False), 5)
    ps = [s.sample(500, image_size=(h, w)) for _ in range(10)]
    lam = torch.cat([p.lam for p in ps]).double().numpy()
    boxes = torch.cat([p.boxes for p in ps]).numpy()
    assert stats.kstest(lam, stats.beta(a, a).cdf).pvalue > 0.01
    ratio = np.sqrt(1.0 - lam)
    side_h, side_w = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
    # λ is stored as float32: the recomputed side may be off by one at an integer boundary
    assert np.all(side_h <= np.floor(h * ratio) + 1) and np.all(side_w <= np.floor(w * ratio) + 1)
    inner_h = (boxes[:, 0] > 0) & (boxes[:, 1] < h)
    inner_w = (boxes[:, 2] > 0) & (boxes[:, 3] < w)
    assert inner_h.sum() > 1000 and inner_w.sum() > 1000
    assert np.all(np.abs(side_h[inner_h] - np.floor(h * ratio[inner_h])) <= 1)
    assert np.all(np.abs(side_w[inner_w] - np.floor(w * ratio[inner_w])) <= 1)
    assert np.mean(side_h[inner_h] == np.floor(h * ratio[inner_h])) > 0.99


@pytest.mark.parametrize("a, minmax, size", [(1.0, None, (224, 224)), (0.3, None, (48, 80)), (1.0, (0.2, 0.8), (64, 96))])
def test_box_sizes_follow_the_beta_draw_as_timm(a, minmax, size):
    """Two-sample KS: our corrected λ (box area) and box heights against timm's own
    ``cutmix_bbox_and_lam`` fed λ ~ Beta(a, a) from NumPy's legacy generator."""
    timm_mixup = pytest.importorskip("timm.data.mixup")
    k = 4000
    s = MixupSampler(MixupConfig(alpha=0.4, cutmix_alpha=a, cutmix_minmax=minmax, switch_prob=1.0, mode="elem"), 11)
    p = s.sample(k, image_size=size)
    ours_lam = p.lam.double().numpy()
    ours_h = (p.boxes[:, 1] - p.boxes[:, 0]).numpy()
    np.random.seed(11)
    ref_lam, ref_h = [], []
    for lam in np.random.beta(a, a, size=k):
        (yl, yh, xl, xh), lam_c = timm_mixup.cutmix_bbox_and_lam((3, *size), lam, ratio_minmax=minmax)
        ref_lam.append(lam_c)
        ref_h.append(yh - yl)
    assert stats.ks_2samp(ours_lam, ref_lam).pvalue > 0.01
    assert stats.ks_2samp(ours_h, ref_h).pvalue > 0.01
    # and not merely any distribution: a different α is told apart
    other = MixupSampler(MixupConfig(alpha=0.4, cutmix_alpha=4.0, switch_prob=1.0, mode="elem"), 11)
    if minmax is None:
        assert stats.ks_2samp(other.sample(k, image_size=size).lam.numpy(), ref_lam).pvalue < 1e-6


def test_minmax_sides_are_uniform_in_the_bounds():
    h, w, lo, hi = 100, 50, 0.2, 0.8
    s = MixupSampler(MixupConfig(alpha=0.4, cutmix_minmax=(lo, hi), switch_prob=1.0, mode="elem"), 2)
    p = s.sample(30000, image_size=(h, w))
    side_h = (p.boxes[:, 1] - p.boxes[:, 0]).numpy()
    assert side_h.min() == int(h * lo) and side_h.max() == int(h * hi) - 1  # [lo, hi) as timm's randint
    counts = np.bincount(side_h - int(h * lo))
    assert stats.chisquare(counts).pvalue > 0.001


# ---------------------------------------------------------------- params


def test_params_default_to_no_cutmix():
    p = MixupParams([0.5, 1.0], [1, 0])
    assert p.boxes.shape == (2, 4) and p.boxes.dtype == torch.int64 and not p.boxes.any()
    assert p.cutmix.dtype == torch.bool and not p.has_cutmix and p.image_size is None


def test_params_with_boxes_are_validated():
    lam, perm = [0.75, 1.0], [1, 0]
    ok = MixupParams(lam, perm, boxes=[[0, 2, 0, 2], [0, 0, 0, 0]], cutmix=[True, False], image_size=(4, 4))
    assert ok.has_cutmix and ok.boxes.dtype == torch.int64
    with pytest.raises(ValueError, match="together"):
        MixupParams(lam, perm, boxes=[[0, 2, 0, 2], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="together"):
        MixupParams(lam, perm, cutmix=[True, False])
    with pytest.raises(ValueError, match="shape"):
        MixupParams(lam, perm, boxes=[[0, 2, 0, 2]], cutmix=[True, False])
    with pytest.raises(ValueError, match="boxes"):
        MixupParams(lam, perm, boxes=[[2, 1, 0, 2], [0, 0, 0, 0]], cutmix=[True, False])
    with pytest.raises(ValueError, match="boxes"):
        MixupParams(lam, perm, boxes=[[-1, 1, 0, 2], [0, 0, 0, 0]], cutmix=[True, False])
    with pytest.raises(ValueError, match="inside 4x4"):
        MixupParams(lam, perm, boxes=[[0, 5, 0, 2], [0, 0, 0, 0]], cutmix=[True, False], image_size=(4, 4))
    with pytest.raises(TypeError, match="boxes"):
        MixupParams(lam, perm, boxes=[[0.0, 2.0, 0.0, 2.0], [0, 0, 0, 0]], cutmix=[True, False])
    with pytest.raises(TypeError, match="cutmix"):
        MixupParams(lam, perm, boxes=[[0, 2, 0, 2], [0, 0, 0, 0]], cutmix=[1, 0])
    with pytest.raises(TypeError, match="image_size"):
        MixupParams(lam, perm, image_size=(4.0, 4))


# ---------------------------------------------------------------- images


def reference(x, params, out_dtype, layout="NCHW"):
    """Sample by sample, in float64: a copy with the partner's box pasted, or the blend."""
    xs = x if layout == "NCHW" else x.permute(0, 3, 1, 2)
    xd = xs.double()
    out = torch.empty_like(xd)
    for i in range(x.shape[0]):
        j = int(params.perm[i])
        if params.cutmix[i]:
            y0, y1, x0, x1 = params.boxes[i].tolist()
            out[i] = xd[i]
            out[i, :, y0:y1, x0:x1] = xd[j, :, y0:y1, x0:x1]
        else:
            lam = float(params.lam[i])
            out[i] = lam * xd[i] + (1 - lam) * xd[j]
    if out_dtype == torch.uint8:
        out = torch.round(out).clamp(0, 255)
    out = out.to(out_dtype)
    return out if layout == "NCHW" else out.permute(0, 2, 3, 1)


def fixed_params(n, h, w):
    """Samples 0..3 CutMix (whole image, empty box, a corner pixel, a band), the rest mixup."""
    lam = torch.linspace(0.0, 1.0, n)
    boxes = torch.zeros(n, 4, dtype=torch.int64)
    cut = torch.zeros(n, dtype=torch.bool)
    cut[:4] = True
    boxes[0] = torch.tensor([0, h, 0, w])
    boxes[2] = torch.tensor([h - 1, h, w - 1, w])
    boxes[3] = torch.tensor([h // 3, h, 0, max(w // 2, 1)])
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    lam = torch.where(cut, 1.0 - area.float() / (h * w), lam)
    perm = torch.roll(torch.arange(n), 1)
    return MixupParams(lam, perm, boxes=boxes, cutmix=cut, image_size=(h, w))


@pytest.mark.parametrize("in_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
def test_cutmix_matches_reference_every_dtype(in_dtype, out_dtype):
    x = make((7, 3, 9, 11), in_dtype, seed=2)
    if out_dtype == torch.uint8 and in_dtype != torch.uint8:
        x = (x.float().abs() * 60).to(in_dtype)  # rounding and saturation of copied pixels
    params = fixed_params(7, 9, 11)
    before = x.clone()
    out = mix_images(x, params, dtype=out_dtype)
    assert torch.equal(x, before)  # the input is never written (float32 -> uint8 once rounded it)
    want = reference(x, params, out_dtype)
    cut = params.cutmix
    assert torch.equal(out[cut], want[cut])  # CutMix pixels are copies: exact
    if out_dtype == torch.uint8:
        assert (out[~cut].int() - want[~cut].int()).abs().max() <= 1
    else:
        tol = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[out_dtype]
        torch.testing.assert_close(out[~cut].double(), want[~cut].double(), rtol=tol, atol=tol * 8)


@pytest.mark.parametrize("layout, channels_last", [("NCHW", False), ("NCHW", True), ("NHWC", False)])
@pytest.mark.parametrize("size", [(1, 1), (5, 8), (8, 5)])
def test_cutmix_layouts(layout, channels_last, size):
    h, w = size
    base = make((6, 3, h, w), torch.float32, seed=h * w)
    params = MixupSampler(cutmix_cfg(switch_prob=1.0), 1).sample(6, image_size=size)
    params = fixed_params(6, h, w) if not params.has_cutmix or h * w == 1 else params
    want = reference(base, params, torch.float32)
    if layout == "NHWC":
        x = base.permute(0, 2, 3, 1).contiguous()
        got = mix_images(x, params, layout="NHWC").permute(0, 3, 1, 2)
    else:
        x = base.contiguous(memory_format=torch.channels_last) if channels_last else base
        got = mix_images(x, params)
        assert got.stride() == x.stride()
    cut = params.cutmix
    assert torch.equal(got[cut], want[cut])


def test_layout_errors_are_clear():
    params = MixupSampler(cutmix_cfg(switch_prob=1.0), 0).sample(4, image_size=(16, 12))
    x = make((4, 16, 12, 3), torch.float32)
    with pytest.raises(ValueError, match="layout"):
        mix_images(x, params)  # an NHWC tensor read as NCHW: H=12, W=3
    assert mix_images(x, params, layout="NHWC").shape == x.shape
    with pytest.raises(ValueError, match="layout must be one of"):
        mix_images(x, params, layout="HWC")
    with pytest.raises(ValueError, match="4-D"):
        mix_images(make((4, 16, 12), torch.float32), params)
    fixed = MixupParams([0.5] * 4, [1, 0, 3, 2], boxes=[[0, 20, 0, 2]] * 4, cutmix=[True] * 4)
    with pytest.raises(ValueError, match="outside"):
        mix_images(make((4, 3, 16, 12), torch.float32), fixed)
    # mixup-only params do not need a layout: any (N, ...) tensor
    mix_images(make((4, 5), torch.float32), MixupParams([0.5] * 4, [1, 0, 3, 2]), layout="NHWC")


def test_cutmix_reads_no_overwritten_partner_and_refuses_alias():
    x = make((4, 3, 6, 6), torch.float32)
    params = MixupParams([0.0] * 4, [1, 2, 3, 0], boxes=[[0, 6, 0, 6]] * 4, cutmix=[True] * 4)
    out = mix_images(x, params)
    assert torch.equal(out, x[[1, 2, 3, 0]])  # a full box is the partner, read before any write
    with pytest.raises(ValueError, match="alias"):
        mix_images(x, params, out=x)


def test_batch_of_one_with_cutmix_is_left_as_it_is():
    x = make((1, 3, 8, 8), torch.uint8)
    p = MixupSampler(cutmix_cfg(switch_prob=1.0), 0).sample(1, image_size=(8, 8))
    assert torch.equal(mix_images(x, p), x)


# ---------------------------------------------------------------- timm


def _timm():
    return pytest.importorskip("timm.data.mixup")


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("minmax", [None, (0.25, 0.75)])
@pytest.mark.parametrize("channels", ["NCHW", "NHWC"])
def test_equals_timm_cutmix_batch_mode(eps, minmax, channels):
    """Same λ, pairing (flip) and box as timm's CutMix: images and targets equal bit for bit
    (16x16 images keep 1 − area/256 exact in float32, so the targets match exactly too)."""
    tm = _timm()
    n, c = 8, 10
    x = make((n, 3, 16, 16), torch.float32, seed=3)
    labels = torch.tensor([0, 1, 2, 3, 3, 5, 9, 0])
    m = tm.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_minmax=minmax, label_smoothing=eps, num_classes=c)
    checked = 0
    for seed in range(20):
        np.random.seed(seed)
        lam, use_cutmix = m._params_per_batch()  # the same draws timm's __call__ makes
        (y0, y1, x0, x1), lam = tm.cutmix_bbox_and_lam(x.shape, lam, ratio_minmax=minmax)
        assert use_cutmix
        if lam == 1.0:  # an empty box: timm leaves the batch as it is, nothing to compare
            continue
        checked += 1
        np.random.seed(seed)
        xt, tt = m(x.clone(), labels.clone())
        params = MixupParams(
            torch.full((n,), np.float32(lam)), torch.arange(n - 1, -1, -1),
            boxes=[[y0, y1, x0, x1]] * n, cutmix=[True] * n, image_size=(16, 16),
        )
        if channels == "NCHW":
            got = mix_images(x, params)
        else:
            got = mix_images(x.permute(0, 2, 3, 1).contiguous(), params, layout="NHWC").permute(0, 3, 1, 2)
        assert torch.equal(got, xt)
        assert torch.equal(mix_targets(labels, params, c, eps), tt)
    assert checked >= 10


@pytest.mark.parametrize("mode", ["elem", "pair"])
def test_equals_timm_elem_and_pair_with_switching(mode):
    """timm's per-sample switching (mixup or CutMix, switch_prob 0.5, prob 0.8) replayed with its
    own draws: CutMix samples and all targets equal exactly; mixup samples to float32 rounding
    (we fuse a multiply-add, timm rounds twice)."""
    tm = _timm()
    n, c, eps, h, w = 10, 7, 0.1, 12, 20
    x = make((n, 3, h, w), torch.float32, seed=6)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 3, 3])
    m = tm.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.8, switch_prob=0.5, mode=mode,
                 label_smoothing=eps, num_classes=c)
    count = n if mode == "elem" else n // 2
    for seed in range(100):  # the first seed whose draws hold both kinds of sample
        np.random.seed(seed)
        lam_batch, use_cutmix = m._params_per_elem(count)  # the draws timm's __call__ makes
        lam, cut = lam_batch.copy(), use_cutmix & (lam_batch != 1.0)
        boxes = np.zeros((count, 4), dtype=np.int64)
        for i in range(count):
            if cut[i]:
                box, lam[i] = tm.cutmix_bbox_and_lam(x[i].shape, lam_batch[i])
                boxes[i] = box
        if mode == "pair":
            lam, cut, boxes = (np.concatenate([lam, lam[::-1]]), np.concatenate([cut, cut[::-1]]),
                               np.concatenate([boxes, boxes[::-1]]))
        if (cut & (lam < 1)).any() and (~cut & (lam < 1)).any():
            break
    else:
        pytest.fail("no seed gave both mixup and CutMix samples")
    np.random.seed(seed)
    xt, tt = m(x.clone(), labels.clone())
    params = MixupParams(torch.from_numpy(lam.astype(np.float32)), torch.arange(n - 1, -1, -1),
                         boxes=boxes, cutmix=cut, image_size=(h, w))
    got = mix_images(x, params)
    cut_t = torch.from_numpy(cut)
    assert torch.equal(got[cut_t], xt[cut_t])
    torch.testing.assert_close(got[~cut_t], xt[~cut_t], rtol=1e-6, atol=1e-6)
    assert torch.equal(mix_targets(labels, params, c, eps), tt)
