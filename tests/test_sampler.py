import dataclasses
import json

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
    # PCG64 + numpy's Beta: these values are the contract "same seed, same batches". Drawn since
    # the sampler draws blocks of batches (issue 23), from the seed's generator advanced 2**64 per block.
    p = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), seed=0).sample(6)
    assert p.perm.tolist() == GOLDEN_PERM
    np.testing.assert_array_equal(p.lam.numpy(), np.array(GOLDEN_LAM, dtype=np.float32))


GOLDEN_PERM = [3, 2, 5, 4, 0, 1]
GOLDEN_LAM = [0.024185553193092346, 0.5222166776657104, 0.7651481032371521,
              0.5327848196029663, 0.8065351247787476, 0.014945052564144135]


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


def test_on_with_moves_a_block_of_params_once_and_the_labels_alone():
    """Sampler params go to a device a block of batches at a time (one copy for the block), the
    labels each batch; params built directly travel with the labels in one copy."""
    s = MixupSampler(MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="elem"), 4, prefetch=False)
    for _ in range(3):  # blocks of 1 and 2 batches: the next is a block of 4
        s.sample(6, image_size=(8, 8))
    p, q = s.sample(6, image_size=(8, 8)), s.sample(6, image_size=(8, 8))
    labels = torch.arange(6) * 5
    d, (lab,) = p.on_with("meta", labels)  # "meta": a device other than the CPU that runs here
    assert lab.device.type == "meta" and lab.shape == labels.shape and lab.dtype == labels.dtype
    assert d.lam.device.type == "meta" and d.boxes.shape == (6, 4) and d.image_size == (8, 8)
    # one buffer for the block: 4 batches of λ (24 B), partners (48), boxes (192), cutmix (6 -> 8)
    assert d.lam.untyped_storage().nbytes() == 4 * (24 + 48 + 192 + 8) == 4 * 272
    e, _ = q.on_with("meta", labels)
    for f in ("lam", "perm", "boxes", "cutmix"):  # the next batch: rows of the same copy
        assert getattr(e, f)._base is getattr(d, f)._base and getattr(e, f).untyped_storage().nbytes() == 4 * 272
    assert p.on("meta") is d
    d2, (lab2,) = p.on_with("meta", labels)  # params cached: only the labels travel
    assert d2 is d and lab2.device.type == "meta"
    same, (cpu_labels,) = p.on_with("cpu", labels)
    assert same is p and torch.equal(cpu_labels, labels)
    for r in (p, q):  # a block's rows on a device hold the batch's values (the CPU as the device here)
        block, row = r._block
        on = block.on(torch.device("cpu"), row, r.image_size)
        assert all(torch.equal(getattr(on, f), getattr(r, f)) for f in ("lam", "perm", "boxes", "cutmix"))
    built = MixupParams(p.lam, p.perm, boxes=p.boxes, cutmix=p.cutmix, image_size=(8, 8))
    b, (lab3,) = built.on_with("meta", labels)
    assert lab3.untyped_storage().nbytes() == b.lam.untyped_storage().nbytes() == 24 + 48 + 192 + 8 + 48


# ---------------------------------------------------------------- blocks of batches (issue 23)

BLOCK_CONFIGS = [
    MixupConfig(alpha=0.4, mode="elem", prob=0.8),
    MixupConfig(alpha=0.3, mode="pair"),
    MixupConfig(alpha=0.2, mode="batch", pairing="roll"),
    MixupConfig(alpha=0.2, cutmix_alpha=1.0, mode="elem"),
    MixupConfig(alpha=0.2, cutmix_alpha=1.0, mode="batch", prob=0.7),
    MixupConfig(alpha=0.2, cutmix_minmax=(0.2, 0.8), mode="pair", pairing="flip", correct_lam=False),
]


def schedule(cfg):
    """(config, batch size, image size) per call: runs long enough for blocks of 1 .. 32 batches
    and a prefetched one, a last partial batch, a batch of 1, config changes between epochs (one
    that draws alike, mixup off and on again), another image size."""
    other = dataclasses.replace(cfg, label_smoothing=0.1)  # draws alike: the run goes on
    off = dataclasses.replace(cfg, enabled=False)
    size, size2 = (24, 20), (9, 11)
    steps = [(cfg, 16, size)] * 70 + [(cfg, 5, size), (cfg, 1, size)] + [(other, 16, size)] * 9
    steps += [(off, 16, size)] * 3 + [(cfg, 16, size)] * 5 + [(cfg, 16, size2)] * 4 + [(cfg, 0, size)]
    return steps + [(cfg, 16, size)] * 40


def run(sampler, steps):
    out = []
    for cfg, n, size in steps:
        sampler.config = cfg
        out.append(sampler.sample(n, image_size=size))
    return out


def same(p, q, identity=True):
    return all(torch.equal(getattr(p, f), getattr(q, f)) for f in ("lam", "perm", "boxes", "cutmix")) and (
        p.image_size == q.image_size and (not identity or p.is_identity == q.is_identity))


@pytest.mark.parametrize("cfg", BLOCK_CONFIGS, ids=lambda c: f"{c.mode.value}-{c.pairing.value}-{c.cutmix_on}")
def test_prefetching_does_not_change_the_sequence(cfg):
    steps = schedule(cfg)
    a, b = run(MixupSampler(cfg, 11), steps), run(MixupSampler(cfg, 11, prefetch=False), steps)
    assert all(same(p, q) for p, q in zip(a, b))
    for p, (c, n, size) in zip(a, steps):  # every batch valid for its size and config
        assert p.batch_size == n and p.is_identity == (not c.enabled or n == 0)
        if n:
            q = MixupParams(p.lam, p.perm, boxes=p.boxes, cutmix=p.cutmix, image_size=p.image_size)
            assert same(p, q, identity=False) and p.has_cutmix == q.has_cutmix


@pytest.mark.parametrize("cfg", BLOCK_CONFIGS, ids=lambda c: f"{c.mode.value}-{c.pairing.value}-{c.cutmix_on}")
def test_resume_is_exact_at_every_batch_also_inside_a_block(cfg):
    steps = schedule(cfg)
    want = run(MixupSampler(cfg, 5), steps)
    for cut in list(range(0, 20)) + [31, 62, 63, 64, 70, 71, 72, 80, 83, 86, 91, len(steps) - 41]:
        s = MixupSampler(cfg, 5)
        run(s, steps[:cut])
        state = json.loads(json.dumps(s.state_dict()))  # as the iterator's state_dict travels
        t = MixupSampler(steps[cut][0], 0)  # the iterator restores into a sampler of another seed
        t.load_state_dict(state)
        assert all(same(p, q) for p, q in zip(want[cut:], run(t, steps[cut:]))), cut


def test_a_config_change_takes_effect_for_the_next_batch():
    cfg = MixupConfig(alpha=1.0, mode="elem")
    s = MixupSampler(cfg, 3)
    for _ in range(40):  # well inside a block
        assert torch.all(s.sample(8).lam < 1)
    s.config = dataclasses.replace(cfg, prob=0.0)
    assert torch.all(s.sample(8).lam == 1)
    s.config = dataclasses.replace(cfg, enabled=False)
    assert s.sample(8).is_identity
    s.config = dataclasses.replace(cfg, cutmix_alpha=1.0, switch_prob=1.0)
    assert torch.all(s.sample(8, image_size=(16, 16)).cutmix)
    s.config = cfg
    assert torch.all(s.sample(8).lam < 1)


def test_handed_out_params_are_never_written_again():
    s = MixupSampler(MixupConfig(alpha=0.4, cutmix_alpha=1.0, mode="elem"), 1)
    kept = [s.sample(16 if i % 9 else 7, image_size=(12, 12)) for i in range(400)]
    copies = [tuple(getattr(p, f).clone() for f in ("lam", "perm", "boxes", "cutmix")) for p in kept]
    for _ in range(400):
        s.sample(16, image_size=(12, 12))
    for p, c in zip(kept, copies):
        assert all(torch.equal(getattr(p, f), v) for f, v in zip(("lam", "perm", "boxes", "cutmix"), c))


def test_samplers_are_independent_of_each_other():
    """Shards: a sampler's sequence does not depend on other samplers drawing (they share the
    background thread), and other seeds give other sequences."""
    cfg = MixupConfig(alpha=0.4, mode="elem")
    alone = [MixupSampler(cfg, seed).sample(32) for seed in (1, 2)]  # first batches only
    solo = [s.sample(32) for s in [MixupSampler(cfg, 1)] for _ in range(200)]
    a, b = MixupSampler(cfg, 1), MixupSampler(cfg, 2)
    together = []
    for _ in range(200):
        together.append(a.sample(32))
        b.sample(32)
    assert all(same(p, q) for p, q in zip(solo, together))
    assert not torch.equal(alone[0].lam, alone[1].lam)


def test_a_pickled_or_copied_sampler_goes_on_with_the_same_sequence():
    import copy
    import pickle

    cfg = MixupConfig(alpha=0.4, cutmix_alpha=1.0, mode="elem")
    s = MixupSampler(cfg, 8)
    for _ in range(37):  # inside a block, the next one being drawn in the background
        s.sample(16, image_size=(12, 12))
    for other in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        t = MixupSampler(cfg, 8)
        for _ in range(37):
            t.sample(16, image_size=(12, 12))
        assert all(same(other.sample(16, image_size=(12, 12)), t.sample(16, image_size=(12, 12))) for _ in range(60))
    p = s.sample(16, image_size=(12, 12))
    q = pickle.loads(pickle.dumps(p))
    assert same(p, q) and "_block" not in q.__dict__


def test_a_state_saved_before_blocks_still_loads():
    """States from earlier versions (seed and generator only) resume a sequence from that
    generator (not the one those versions drew)."""
    s = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), 0)
    legacy = {"seed": 4, "bit_generator": np.random.PCG64(99).state}
    s.load_state_dict(legacy)
    t = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), 0)
    t.load_state_dict(legacy)
    assert all(same(s.sample(8), t.sample(8)) for _ in range(20))
    assert s.seed == 4


@pytest.mark.parametrize("damage", [
    lambda st: st.pop("bit_generator"),
    lambda st: st.update(bit_generator="PCG64"),
    lambda st: st.update(block="3"),
    lambda st: st.update(block_drawn=st["block_batches"] + 1),
    lambda st: st.update(block_key=7),
])
def test_a_damaged_state_is_refused(damage):
    s = MixupSampler(MixupConfig(alpha=0.4), 0)
    s.sample(4)
    state = s.state_dict()
    damage(state)
    with pytest.raises((KeyError, TypeError, ValueError)):
        MixupSampler(MixupConfig(alpha=0.4), 0).load_state_dict(state)


@pytest.mark.gpu
def test_a_block_on_cuda_holds_each_batch_s_params_also_on_another_stream():
    import contextlib

    s = MixupSampler(MixupConfig(alpha=0.4, cutmix_alpha=1.0, mode="elem"), 6, prefetch=False)
    drawn = [s.sample(33, image_size=(16, 16)) for _ in range(12)]  # blocks of 1, 2, 4 and 5 of 8
    labels = torch.arange(33) * 7
    side = torch.cuda.Stream()
    for k, p in enumerate(drawn):
        with torch.cuda.stream(side) if k % 3 == 2 else contextlib.nullcontext():
            d, (lab,) = p.on_with("cuda", labels)
            got = {f: getattr(d, f).cpu() for f in ("lam", "perm", "boxes", "cutmix")}  # on the stream in use
            assert torch.equal(lab.cpu(), labels)
        assert all(getattr(d, f).is_cuda and torch.equal(got[f], getattr(p, f)) for f in got), k
    off = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), 6).sample(33)  # no CutMix: shared zero boxes
    d = off.on("cuda")
    assert torch.equal(d.boxes.cpu(), off.boxes) and not d.cutmix.any() and torch.equal(d.lam.cpu(), off.lam)
