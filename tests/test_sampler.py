import numpy as np
import pytest
import torch
from scipy import stats

from dali_mixup import MixupConfig, MixupParams, MixupSampler


def draws(cfg, seed, sizes):
    s = MixupSampler(cfg, seed)
    return [s.sample(n) for n in sizes]


@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
@pytest.mark.parametrize("pairing", ["derangement", "flip"])
def test_same_seed_same_params(mode, pairing):
    cfg = MixupConfig(alpha=0.4, mode=mode, pairing=pairing, prob=0.7)
    a, b = draws(cfg, 7, [8, 5, 1, 64]), draws(cfg, 7, [8, 5, 1, 64])
    for p, q in zip(a, b):
        assert torch.equal(p.lam, q.lam) and torch.equal(p.perm, q.perm)
        assert p.lam.dtype == torch.float32 and p.perm.dtype == torch.int64
    c = draws(cfg, 8, [64])[0]
    assert not torch.equal(c.lam, a[-1].lam) or not torch.equal(c.perm, a[-1].perm)


def test_golden_sequence_is_machine_independent():
    # PCG64 + numpy's Beta: these values are the contract "same seed, same batches".
    p = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), seed=0).sample(6)
    assert p.perm.tolist() == GOLDEN_PERM
    np.testing.assert_array_equal(p.lam.numpy(), np.array(GOLDEN_LAM, dtype=np.float32))


GOLDEN_PERM = [3, 2, 5, 4, 0, 1]
GOLDEN_LAM = [0.9999993443489075, 0.9996964335441589, 0.9723507165908813,
              0.7623988389968872, 0.2974381744861603, 0.024185553193092346]


@pytest.mark.parametrize("n", [2, 3, 5, 8, 33, 256])
def test_derangement_has_no_fixed_point(n):
    s = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), 0)
    for _ in range(20):
        p = s.sample(n)
        assert sorted(p.perm.tolist()) == list(range(n))
        assert not torch.any(p.perm == torch.arange(n))


def test_batch_of_one_and_zero_are_left_alone():
    s = MixupSampler(MixupConfig(alpha=1.0), 0)
    p = s.sample(1)
    assert p.perm.tolist() == [0]
    assert s.sample(0).lam.shape == (0,)


def test_flip_and_roll_match_timm_and_torchvision():
    flip = MixupSampler(MixupConfig(pairing="flip"), 0).sample(5)
    assert flip.perm.tolist() == [4, 3, 2, 1, 0]  # timm: x.flip(0)
    roll = MixupSampler(MixupConfig(pairing="roll"), 0).sample(5)
    x = torch.arange(5)
    assert torch.equal(x[roll.perm], x.roll(1, 0))  # torchvision: batch.roll(1, 0)


def test_modes():
    b = MixupSampler(MixupConfig(alpha=1.0, mode="batch"), 1).sample(16)
    assert torch.all(b.lam == b.lam[0])
    e = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), 1).sample(16)
    assert len(set(e.lam.tolist())) > 1
    for pairing in ["flip", "derangement"]:
        for n in [6, 7]:
            p = MixupSampler(MixupConfig(alpha=1.0, mode="pair", pairing=pairing), 1).sample(n)
            assert torch.equal(p.perm[p.perm], torch.arange(n))  # mutual partners
            assert torch.equal(p.lam, p.lam[p.perm])  # one λ per pair
            assert torch.all(p.lam[p.perm == torch.arange(n)] == 1)


def test_prob_zero_and_one_and_disabled():
    p0 = MixupSampler(MixupConfig(alpha=1.0, mode="elem", prob=0.0), 0).sample(64)
    assert torch.all(p0.lam == 1)
    p1 = MixupSampler(MixupConfig(alpha=1.0, mode="elem", prob=1.0), 0).sample(64)
    assert torch.all(p1.lam < 1)
    off = MixupSampler(MixupConfig(alpha=1.0, enabled=False), 0).sample(8)
    assert torch.all(off.lam == 1) and off.perm.tolist() == list(range(8))


def test_prob_is_applied_once_not_squared():
    s = MixupSampler(MixupConfig(alpha=1.0, mode="elem", prob=0.3), 3)
    lam = torch.cat([s.sample(256).lam for _ in range(40)])
    frac = (lam < 1).float().mean().item()
    assert abs(frac - 0.3) < 0.02, frac  # p² would be 0.09
    s = MixupSampler(MixupConfig(alpha=1.0, mode="batch", prob=0.3), 3)
    frac_b = np.mean([float(s.sample(4).lam[0] < 1) for _ in range(4000)])
    assert abs(frac_b - 0.3) < 0.03, frac_b


@pytest.mark.parametrize("a, b", [(0.4, 0.4), (2.0, 5.0)])
def test_lambda_follows_beta(a, b):
    s = MixupSampler(MixupConfig(alpha=a, beta=b, mode="elem"), 12345)
    lam = torch.cat([s.sample(500).lam for _ in range(10)]).double().numpy()
    res = stats.kstest(lam, stats.beta(a, b).cdf)
    assert res.pvalue > 0.01, res
    other = stats.kstest(lam, stats.beta(b, a).cdf) if a != b else None
    if other is not None:
        assert other.pvalue < 1e-6  # λ is the weight of the sample itself: Beta(α, β), not Beta(β, α)


def test_state_dict_resumes_the_sequence():
    cfg = MixupConfig(alpha=0.4, mode="elem")
    s = MixupSampler(cfg, 5)
    s.sample(8)
    state = s.state_dict()
    want = [s.sample(8) for _ in range(3)]
    t = MixupSampler(cfg, 0)
    t.load_state_dict(state)
    got = [t.sample(8) for _ in range(3)]
    for p, q in zip(want, got):
        assert torch.equal(p.lam, q.lam) and torch.equal(p.perm, q.perm)


def test_params_built_directly_are_validated():
    p = MixupParams([0.5, 1.0], [1, 0])
    assert p.lam.dtype == torch.float32 and p.perm.dtype == torch.int64
    with pytest.raises(ValueError, match="lam"):
        MixupParams([1.5, 0.0], [1, 0])
    with pytest.raises(ValueError, match="perm"):
        MixupParams([0.5, 0.5], [1, 2])
    with pytest.raises(ValueError, match="shape"):
        MixupParams([0.5], [0, 1])
    with pytest.raises(TypeError, match="perm"):
        MixupParams([0.5, 0.5], [1.0, 0.0])


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_batch_size(bad, exc):
    """A wrong type is a TypeError, a wrong value a ValueError, as in create_loader (checks.py)."""
    with pytest.raises(exc, match="batch_size"):
        MixupSampler(MixupConfig(), 0).sample(bad)


@pytest.mark.parametrize("cfg", [
    MixupConfig(alpha=0.4, mode="elem", prob=0.7),
    MixupConfig(alpha=1.0, mode="pair", pairing="derangement"),
    MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="elem"),
    MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="batch", cutmix_minmax=(0.2, 0.8)),
])
def test_sampled_params_pass_the_public_validation(cfg):
    # the sampler skips MixupParams' checks for speed; they must hold all the same
    s = MixupSampler(cfg, 9)
    for n in [0, 1, 2, 7, 64]:
        p = s.sample(n, image_size=(13, 9))
        q = MixupParams(p.lam, p.perm, boxes=p.boxes, cutmix=p.cutmix, image_size=p.image_size)
        for field in ("lam", "perm", "boxes", "cutmix"):
            a, b = getattr(p, field), getattr(q, field)
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), field
        assert p.on("cpu") is p


def test_to_device_packs_tensors_into_one_buffer_with_their_dtypes_and_shapes():
    from dali_mixup.sampler import to_device

    p = MixupSampler(MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="elem"), 3).sample(7, image_size=(9, 11))
    labels = torch.arange(7, dtype=torch.int64) * 3
    odd = torch.tensor([1, 2, 3], dtype=torch.uint8)  # 3 bytes: the next tensor must still start aligned
    strided = torch.arange(6, dtype=torch.int32).view(2, 3).t()  # a non-contiguous input arrives dense
    given = (odd, labels, p.lam, p.perm, p.boxes, p.cutmix, torch.zeros(0, dtype=torch.int64), strided,
             torch.tensor([1.5, -2.0], dtype=torch.bfloat16))
    moved = to_device("cpu", *given)
    assert len(moved) == len(given)
    base = moved[0].untyped_storage().data_ptr()
    for a, b in zip(moved, given):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        assert a.untyped_storage().data_ptr() == base  # one buffer, one copy
        assert (a.data_ptr() - base) % 8 == 0 and a.is_contiguous()
    moved[1][0] = 99  # views of a new buffer, not of the inputs
    assert labels[0] == 0
    assert to_device("cpu") == ()


def test_on_with_moves_the_labels_in_the_params_copy_and_caches_the_params():
    p = MixupSampler(MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="elem"), 4).sample(6, image_size=(8, 8))
    labels = torch.arange(6) * 5
    d, (lab,) = p.on_with("meta", labels)  # "meta": a device other than the CPU that runs here
    assert lab.device.type == "meta" and lab.shape == labels.shape and lab.dtype == labels.dtype
    assert d.lam.device.type == "meta" and d.boxes.shape == (6, 4) and d.image_size == (8, 8)
    # one buffer, one copy: λ (24 B), partners (48), boxes (192), cutmix (6 -> 8) and labels (48)
    assert lab.untyped_storage().nbytes() == d.lam.untyped_storage().nbytes() == 24 + 48 + 192 + 8 + 48
    assert p.on("meta") is d
    d2, (lab2,) = p.on_with("meta", labels)  # params cached: only the labels travel
    assert d2 is d and lab2.device.type == "meta"
    same, (cpu_labels,) = p.on_with("cpu", labels)
    assert same is p and torch.equal(cpu_labels, labels)
