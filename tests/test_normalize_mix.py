"""``fused_normalize``: DALI hands over uint8 HWC crops and the flip coin, and one kernel
normalises, mirrors, lays out, casts and mixes (``NormalizeBlend``). The host-compiled kernel
against the CPU twin is in ``test_kernel_source.py``; here the loaders (CPU backend, and the GPU
path under the ``gpu`` marker), the rule and the options.

Measured difference to the default (unfused) form with the same seed, CPU backend: none for
float32 and bfloat16 (DALI's CPU crop_mirror_normalize computes ``(x − mean·255)·(1/(std·255))``
with the same two roundings); float16 at most 2^-9 (one float16 ULP at the values' magnitude,
2..4) where mixed, because the unfused path rounds each normalised value to float16 before
mixing and the fused one rounds once, after (unmixed samples: equal).
"""

import pytest
import torch

from dali_mixup import MixupConfig, MixupParams, create_loader
from dali_mixup.fields import BatchMixer, MirrorFlags, NormalizeBlend, SoftTarget
from dali_mixup.mix import normalize_mix_images, normalize_table
from images import unique_class_set

N = 23
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return unique_class_set(str(tmp_path_factory.mktemp("data")), N)


def _pair(root, device="cpu", **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("image_size", 32)
    kw.setdefault("seed", 3)
    kw.setdefault("num_threads", 2)
    return (create_loader(root, device=device, **kw), create_loader(root, device=device, fused_normalize=True, **kw))


def _ulps(a, b):
    """Largest distance in units in the last place between two float tensors of one dtype."""
    bits, mask = {torch.float32: (torch.int32, 0x7FFFFFFF), torch.float16: (torch.int16, 0x7FFF),
                  torch.bfloat16: (torch.int16, 0x7FFF)}[a.dtype]

    def ordered(t):  # sign-magnitude bits -> integers in the order of the values (+0 and -0 both 0)
        v = t.contiguous().view(bits).long()
        return torch.where(v < 0, -(v & mask), v & mask)

    return int((ordered(a) - ordered(b)).abs().max()) if a.numel() else 0


def _compare(plain, fused, dtype):
    """Same crops, labels and params batch by batch; the images' largest absolute difference."""
    worst, batches = 0.0, 0
    for p, f in zip(plain, fused):
        p, f = p[0], f[0]
        assert set(p) == set(f)
        for k in ("label_index", "label", "lam", "perm", "cutmix", "boxes"):
            if k in p:
                assert torch.equal(p[k], f[k]), k
        assert p["data"].shape == f["data"].shape and p["data"].dtype == f["data"].dtype == dtype
        assert f["data"].is_contiguous()
        worst = max(worst, float((p["data"].cpu().float() - f["data"].cpu().float()).abs().max()))
        batches += 1
    assert batches == -(-N // 4)
    return worst


#: one ULP of each output dtype at the normalised values' magnitude (|v| < 4 for ImageNet's mean/std)
ULP_AT_4 = {"float32": 2.0**-22, "float16": 2.0**-9, "bfloat16": 2.0**-6}
#: the largest absolute difference to the unfused form, per dtype, measured (module docstring)
CPU_ATOL = {"float32": 0.0, "bfloat16": 0.0, "float16": ULP_AT_4["float16"]}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_fused_loader_equals_the_unfused_one(root, dtype, layout):
    cfg = MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="elem", label_smoothing=0.1)
    plain, fused = _pair(root, mixup=cfg, dtype=dtype, layout=layout)
    worst = _compare(plain, fused, getattr(torch, dtype))
    assert worst <= CPU_ATOL[dtype], (dtype, layout, worst)


@pytest.mark.parametrize("train, mixup", [(False, None), (True, None), (True, MixupConfig(alpha=0.4, enabled=False))])
def test_fused_loader_without_mixing_is_dalis_normalisation(root, train, mixup):
    """Validation (center crop, no mirror) and training without mixup: the normalised crops, equal
    to crop_mirror_normalize's bits."""
    plain, fused = _pair(root, mixup=mixup, train=train, dtype="float32")
    assert _compare(plain, fused, torch.float32) == 0


def test_fused_normalize_options_are_checked(root):
    with pytest.raises(ValueError, match="fused_normalize=True.*dtype"):
        create_loader(root, batch_size=4, device="cpu", dtype="uint8", fused_normalize=True)
    with pytest.raises(TypeError, match="fused_normalize must be a bool"):
        create_loader(root, batch_size=4, device="cpu", fused_normalize="yes")


def test_rule_and_mixer_checks():
    with pytest.raises(TypeError, match="dtype"):
        NormalizeBlend(dtype=torch.uint8)
    with pytest.raises(ValueError, match="reads \\['mirror'\\], which are not fields"):
        BatchMixer({"data": NormalizeBlend(), "label": SoftTarget(3)})
    mixer = BatchMixer({"data": NormalizeBlend(layout="NHWC", dtype=torch.bfloat16), "label": SoftTarget(3),
                        "mirror": MirrorFlags()})
    x = torch.randint(0, 256, (4, 5, 6, 3), dtype=torch.uint8)
    batch = {"data": x, "label": torch.tensor([[0], [1], [2], [0]], dtype=torch.int32),
             "mirror": torch.tensor([1, 0, 0, 1], dtype=torch.int32)}
    params = MixupParams([0.3, 1.0, 0.5, 0.0], [1, 0, 3, 2])
    out = mixer(batch, params)
    assert set(out) == {"data", "label", "label_index", "lam", "perm"}  # the mirror flags are consumed
    want = normalize_mix_images(x, params, MEAN, STD, mirror=batch["mirror"], layout="NHWC", dtype=torch.bfloat16)
    assert torch.equal(out["data"].view(torch.int16), want.view(torch.int16))
    with pytest.raises(ValueError, match="uint8 crops"):
        mixer({**batch, "data": x.float()}, params)
    assert mixer.sample(__import__("dali_mixup").MixupSampler(MixupConfig(alpha=1.0, cutmix_alpha=1.0), 0),
                        batch).image_size == (5, 6)


def test_normalize_table_rounds_once_from_float64():
    t = normalize_table(MEAN, STD)
    assert t.dtype == torch.float32 and t.shape == (6,)
    for c in range(3):
        assert float(t[c]) == float(torch.tensor(MEAN[c] * 255.0, dtype=torch.float64).float())
        assert float(t[3 + c]) == float(torch.tensor(1.0 / (STD[c] * 255.0), dtype=torch.float64).float())


# ---------------------------------------------------------------- the GPU path


def _cuda_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    pytest.importorskip("cupy")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("cutmix", [False, True])
def test_gpu_fused_kernel_equals_cpu_twin(dtype, layout, cutmix):
    _cuda_or_skip()
    from dali_mixup import MixupSampler

    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 256, (33, 17, 24, 3), generator=g, dtype=torch.uint8)
    cfg = MixupConfig(alpha=0.7, mode="elem", cutmix_alpha=1.0 if cutmix else 0.0, prob=0.9)
    params = MixupSampler(cfg, 5).sample(33, image_size=(17, 24))
    mirror = torch.randint(0, 2, (33,), generator=g, dtype=torch.int32)
    want = normalize_mix_images(x, params, MEAN, STD, mirror=mirror, layout=layout, dtype=dtype)
    got = normalize_mix_images(x.cuda(), params, MEAN, STD, mirror=mirror, layout=layout, dtype=dtype)
    assert got.is_cuda and got.shape == want.shape
    assert _ulps(got.cpu(), want) == 0, (dtype, layout, cutmix)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_gpu_fused_loader_against_the_unfused_one(root, dtype, layout):
    """GPU pipelines: same crops, labels and params; the images within a few ULP of the output
    dtype (DALI's GPU normalisation may round differently from the CPU's); the distance printed."""
    _cuda_or_skip()
    cfg = MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="elem")
    plain, fused = _pair(root, device="gpu", mixup=cfg, dtype=dtype, layout=layout)
    worst = _compare(plain, fused, getattr(torch, dtype))
    print(f"fused vs unfused on the GPU, {dtype} {layout}: max |difference| {worst:.3g} "
          f"({worst / ULP_AT_4[dtype]:.2f} ULP of {dtype} at 2..4)")
    assert worst <= 4 * ULP_AT_4[dtype], (dtype, layout, worst)


def test_bench_runs_the_fused_row_next_to_ours(root, tmp_path, capsys):
    """``dali-mixup bench --peers ours,ours-fused,dali``: both forms measured in one run, each with
    the iterator's host time per batch."""
    import json

    from dali_mixup.tools import bench, cli

    rc = cli.main(["bench", "--data", str(root), "--batch-size", "4", "--image-size", "32", "--epochs", "1",
                   "--warmup", "0", "--workers", "1", "--no-progress", "--no-plot", "--device", "cpu",
                   "--peers", "ours-fused,dali,ours", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    (path,) = tmp_path.glob("bench-*.json")
    rows = {r["name"]: r for r in json.loads(path.read_text())["rows"]}
    assert list(rows) == ["ours", "ours-fused", "dali"]
    # a timed round is whole epochs (as many as it takes to pass the prefetch depth): N images each
    assert all(r["status"] == "ok" and r["epochs"][0]["images"] % N == 0 for r in rows.values())
    assert rows["ours-fused"]["host_ms_per_batch"]["mix"] > 0
    assert bench.EXTRA_LABELS["ours-fused"] in out


def test_fused_loader_resumes_mid_epoch(root):
    """state_dict/load_state_dict: the fused pipeline (uint8 crops + mirror coin) is rebuilt from its
    checkpoint and the next batch is the one the saved loader would have given."""
    cfg = MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="elem")
    kw = dict(batch_size=4, image_size=32, seed=5, num_threads=2, device="cpu", mixup=cfg, fused_normalize=True,
              dtype="bfloat16")
    a = create_loader(root, **kw)
    it = iter(a)
    next(it)
    state = a.state_dict()
    want = next(it)[0]
    b = create_loader(root, **kw)
    b.load_state_dict(state)
    got = next(iter(b))[0]
    for k in ("data", "label", "lam", "perm", "cutmix", "boxes", "label_index"):
        assert torch.equal(got[k].view(torch.int16) if k == "data" else got[k],
                           want[k].view(torch.int16) if k == "data" else want[k]), k
