"""3-D volumes: the .npy source and header scan, the DALI pipeline (crop, flips, labels), mixup
and cuboid CutMix on 5-D batches, cuboid sampling, and MONAI's MixUp/CutMix semantics (against
MONAI itself when it is installed, else skipped with the reason)."""

import numpy as np
import pytest
import torch

from dali_mixup import MixupConfig
from dali_mixup.mix import mix_images
from dali_mixup.sampler import MixupParams, MixupSampler
from dali_mixup.scan import ValidationError
from dali_mixup.kinds.volume import create_volume_loader, scan_volumes, volume_source


def _write(root, n=6, classes=2, shape=(1, 8, 8, 8)):
    """Volume k is constant k + 1 (so a mixed voxel says who it came from), class k % classes."""
    paths = []
    for k in range(n):
        d = root / f"c{k % classes}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"v{k}.npy"
        np.save(p, np.full(shape, k + 1, np.float32))
        paths.append(str(p))
    return paths


def test_epoch_serves_every_volume_once_with_its_label(tmp_path):
    _write(tmp_path, n=5)
    it = create_volume_loader(root=tmp_path, batch_size=2, crop=(4, 6, 10), seed=3)
    seen = []
    for (batch,) in it:
        data, idx = batch["data"], batch["label_index"]
        assert data.shape[1:] == (1, 4, 6, 10) and data.dtype == torch.float32
        for v, y in zip(data, idx.tolist()):
            value = int(v.max())  # W 10 > 8: two zero-padded columns, wherever the crop put them
            assert int((v == value).sum()) == 4 * 6 * 8 and int((v == 0).sum()) == 4 * 6 * 2
            assert y == (value - 1) % 2
            seen.append(value)
        assert torch.all(batch["lam"] == 1)  # mixup off
    assert sorted(seen) == [1, 2, 3, 4, 5]


def test_mixup_and_cuboid_cutmix_on_batches(tmp_path):
    _write(tmp_path, n=6)
    cfg = MixupConfig(alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, mode="elem", num_classes=2)
    it = create_volume_loader(root=tmp_path, batch_size=6, crop=(8, 8, 8), mixup=cfg, seed=1)
    cut_seen = mix_seen = 0
    for _ in range(4):  # epochs of one batch
        for (b,) in it:
            data, lam, cut, boxes = b["data"], b["lam"], b["cutmix"], b["boxes"]
            assert boxes.shape == (6, 6)
            for i in range(6):
                v = data[i, 0]
                if not cut[i]:  # mixup of two constant volumes: constant
                    assert len(v.unique()) == 1
                    mix_seen += 1
                    continue
                z0, z1, y0, y1, x0, x1 = boxes[i].tolist()
                mask = torch.zeros(8, 8, 8, dtype=torch.bool)
                mask[z0:z1, y0:y1, x0:x1] = True
                assert len(v[mask].unique()) <= 1 and len(v[~mask].unique()) <= 1  # partner inside, own outside
                vol = float(mask.sum()) / 512
                assert abs(float(lam[i]) - (1 - vol)) < 1e-6  # correct_lam: λ from the cuboid
                cut_seen += 1
            torch.testing.assert_close(b["label"].sum(1), torch.ones(6))
    assert cut_seen and mix_seen


def test_sampler_draws_cuboids_inside_the_volume():
    s = MixupSampler(MixupConfig(alpha=0.4, cutmix_alpha=1.0, switch_prob=1.0, mode="elem"), seed=0)
    size = (5, 7, 9)
    p = s.sample(400, image_size=size)
    assert p.boxes.shape == (400, 6) and p.image_size == size
    lo, hi = p.boxes[:, 0::2], p.boxes[:, 1::2]
    assert bool((lo >= 0).all() and (hi >= lo).all() and (hi <= torch.tensor(size)).all())
    vol = (hi - lo).prod(1).double() / np.prod(size)
    cut = p.cutmix
    torch.testing.assert_close(p.lam[cut].double(), 1 - vol[cut], atol=1e-6, rtol=0)
    minmax = MixupSampler(MixupConfig(cutmix_minmax=(0.2, 0.8), switch_prob=1.0, mode="elem"), seed=0)
    q = minmax.sample(50, image_size=size)
    assert bool(((q.boxes[:, 1::2] - q.boxes[:, 0::2]) <= torch.tensor(size)).all())


def test_cuboid_params_are_checked():
    lam, perm = [0.5, 1.0], [1, 0]
    ok = MixupParams(lam, perm, boxes=[[0, 2, 0, 2, 0, 2], [0] * 6], cutmix=[True, False], image_size=(3, 4, 5))
    assert ok.boxes.shape == (2, 6)
    assert MixupParams(lam, perm, image_size=(3, 4, 5)).boxes.shape == (2, 6)
    with pytest.raises(ValueError, match="inside 3x4x5"):
        MixupParams(lam, perm, boxes=[[0, 4, 0, 2, 0, 2], [0] * 6], cutmix=[True, False], image_size=(3, 4, 5))
    with pytest.raises(ValueError, match=r"shape \(2, 6\)"):
        MixupParams(lam, perm, boxes=[[0, 1, 0, 1], [0] * 4], cutmix=[True, False], image_size=(3, 4, 5))
    with pytest.raises(TypeError, match=r"\(D, H, W\)"):
        MixupParams(lam, perm, image_size=(3, 4.0, 5))
    with pytest.raises(ValueError, match="5-D volumes"):
        mix_images(torch.zeros(2, 3, 4, 5), ok)
    with pytest.raises(ValueError, match="drawn for 3x4x5"):
        mix_images(torch.zeros(2, 1, 3, 5, 4), ok)
    x = torch.rand(2, 1, 3, 4, 5)
    out = mix_images(x, ok, layout="NCDHW")
    assert torch.equal(out[0, :, :2, :2, :2], x[1, :, :2, :2, :2]) and torch.equal(out[1], x[1])
    # channels last: (N, D, H, W, C), the same cuboid
    xl = x.permute(0, 2, 3, 4, 1).contiguous()
    assert torch.equal(mix_images(xl, ok, layout="NDHWC").permute(0, 4, 1, 2, 3), out)


def _bad(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((1, 4, 4, 4), np.float32))
    bad = {}
    bad["ndim"] = tmp_path / "three_dims.npy"
    np.save(bad["ndim"], np.zeros((4, 4, 4), np.float32))
    bad["dtype"] = tmp_path / "complex.npy"
    np.save(bad["dtype"], np.zeros((1, 4, 4, 4), np.complex64))
    bad["truncated"] = tmp_path / "truncated.npy"
    np.save(bad["truncated"], np.zeros((1, 4, 4, 4), np.float32))
    raw = bad["truncated"].read_bytes()
    bad["truncated"].write_bytes(raw[: len(raw) - 10])
    bad["fortran"] = tmp_path / "fortran.npy"
    np.save(bad["fortran"], np.asfortranarray(np.zeros((1, 4, 4, 5), np.float32)))
    bad["channels"] = tmp_path / "two_channels.npy"
    np.save(bad["channels"], np.zeros((2, 4, 4, 4), np.float32))
    bad["text"] = tmp_path / "not_numpy.npy"
    bad["text"].write_text("hello")
    return str(good), {k: str(v) for k, v in bad.items()}


def test_bad_volumes_are_named(tmp_path):
    good, bad = _bad(tmp_path)
    with pytest.raises(ValidationError) as e:
        scan_volumes([good] + list(bad.values()))
    files = {p.path: p.reason for p in e.value.problems}
    assert set(files) == set(bad.values())
    msg = str(e.value)
    for what, path in bad.items():
        assert path in msg
    assert "3 dims" in files[bad["ndim"]] and "complex64" in files[bad["dtype"]]
    assert "truncated" in files[bad["truncated"]] and "Fortran" in files[bad["fortran"]]
    assert "2 channels" in files[bad["channels"]]
    nan = tmp_path / "nan.npy"
    arr = np.zeros((1, 4, 4, 4), np.float32)
    arr[0, 1, 2, 3] = np.nan
    np.save(nan, arr)
    assert scan_volumes([good, str(nan)]) == (1, 1)  # headers only: NaN not looked for
    with pytest.raises(ValidationError, match="NaN"):
        scan_volumes([good, str(nan)], check_values=True)
    with pytest.raises(ValidationError, match="truncated"):
        create_volume_loader(files=[(good, 0), (bad["truncated"], 1)], batch_size=1, crop=(2, 2, 2))


def test_sources_and_option_errors(tmp_path):
    paths = _write(tmp_path / "vols", n=3)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{p} {k}\n" for k, p in enumerate(paths)))
    s = volume_source(file_list=lst)
    assert s.files == tuple(paths) and s.labels == (0, 1, 2) and s.num_classes == 3
    f = volume_source(root=tmp_path / "vols")
    assert f.classes == ("c0", "c1") and f.labels == (0, 0, 1)
    with pytest.raises(ValueError, match="exactly one"):
        volume_source()
    with pytest.raises(TypeError, match="crop"):
        create_volume_loader(files=[(paths[0], 0)], batch_size=1, crop=(2, 2))
    with pytest.raises(ValueError, match="crop"):
        create_volume_loader(files=[(paths[0], 0)], batch_size=1, crop=(2, 0, 2))
    with pytest.raises(ValueError, match="device"):
        create_volume_loader(files=[(paths[0], 0)], batch_size=1, crop=(2, 2, 2), device="tpu")
    with pytest.raises(ValueError, match="reader_device"):
        create_volume_loader(files=[(paths[0], 0)], batch_size=1, crop=(2, 2, 2), reader_device="gpu")
    with pytest.raises(ValueError, match="num_classes"):
        create_volume_loader(files=[(paths[0], 3)], batch_size=1, crop=(2, 2, 2), num_classes=2)


def _monai_params(monai_mixer, data):
    monai_mixer.set_random_state(seed=7)
    monai_mixer.randomize(data)
    return monai_mixer._params


def test_equals_monai_mixup_and_cutmix_given_the_same_draws():
    """Given MONAI's λ, permutation and box, ``mix_images`` (and the soft targets) give MONAI's
    ``MixUp``/``CutMix`` results, 2-D and 3-D."""
    reg = pytest.importorskip("monai.transforms.regularization.array", reason="MONAI is not installed")
    from dali_mixup.mix import mix_targets

    for shape in [(6, 2, 5, 7, 4), (6, 3, 9, 8)]:
        n, dims = shape[0], shape[2:]
        data = torch.rand(shape)
        labels = torch.tensor([0, 1, 2, 0, 1, 2])
        onehot = torch.nn.functional.one_hot(labels, 3).float()

        mixup = reg.MixUp(batch_size=n, alpha=0.7)
        weight, perm, _ = _monai_params(mixup, data)
        want = mixup(data, randomize=False)
        # MONAI's MixUp applies its image formula to labels too, and refuses (N, C) one-hots
        # ("Unexpected number of dimensions"): its formula, written out
        want_y = weight[:, None] * onehot + (1 - weight[:, None]) * onehot[torch.as_tensor(perm)]
        params = MixupParams(weight, torch.as_tensor(perm))
        torch.testing.assert_close(mix_images(data, params), want, rtol=0, atol=2e-7)  # one fma vs two roundings
        torch.testing.assert_close(mix_targets(labels, params, 3), want_y, rtol=0, atol=2e-7)

        cutmix = reg.CutMix(batch_size=n, alpha=0.7)
        weight, perm, coords = _monai_params(cutmix, data)
        want = cutmix.apply(data)
        from math import ceil, sqrt

        boxes = []
        for w in weight.tolist():  # MONAI's box: from its shared corner, sides E*sqrt(1-λ)
            row = []
            for c, d in zip(coords, dims):
                c = int(c)
                row += [c, min(ceil(c + d * sqrt(1 - w)), d)]
            boxes.append(row)
        params = MixupParams(weight, torch.as_tensor(perm), boxes=boxes, cutmix=[True] * n, image_size=tuple(dims))
        assert torch.equal(mix_images(data, params), want)
        torch.testing.assert_close(mix_targets(labels, params, 3), cutmix.apply_on_labels(onehot), rtol=0, atol=2e-7)


@pytest.mark.gpu
def test_gpu_loader_mixes_on_the_device_like_the_cpu_twin(tmp_path):
    """device="gpu": crop and flips on the GPU, cuboid CutMix by the CUDA volume kernel; each
    batch equals the CPU twin's mix of the same unmixed batch with the same params."""
    _write(tmp_path, n=8)
    cfg = MixupConfig(alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, mode="elem", num_classes=2)
    it = create_volume_loader(root=tmp_path, batch_size=8, crop=(8, 8, 8), mixup=cfg, device="gpu", seed=2)
    (b,) = next(it)
    assert b["data"].is_cuda and b["boxes"].shape == (8, 6)
    cut = b["cutmix"].cpu()
    for i in range(8):
        v = b["data"][i, 0].cpu()
        if cut[i]:
            z0, z1, y0, y1, x0, x1 = b["boxes"][i].tolist()
            mask = torch.zeros(8, 8, 8, dtype=torch.bool)
            mask[z0:z1, y0:y1, x0:x1] = True
            assert len(v[mask].unique()) <= 1 and len(v[~mask].unique()) <= 1
        else:
            assert len(v.unique()) == 1
    x = torch.rand(4, 2, 3, 5, 6, device="cuda")
    params = MixupSampler(cfg, seed=0).sample(4, image_size=(3, 5, 6))
    assert torch.equal(mix_images(x, params).cpu(), mix_images(x.cpu(), params))


def test_resume_mid_epoch_gives_the_batches_that_would_have_followed(tmp_path):
    """The volume loader resumes through the same state codec as images (pipeline_factory)."""
    import json

    root = tmp_path / "vols"
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(5):
            np.save(root / f"c{c}" / f"{i}.npy", rng.random((1, 6, 6, 6), dtype=np.float32))

    def make():
        return create_volume_loader(root, batch_size=3, crop=(4, 4, 4), seed=5,
                                    mixup=MixupConfig(alpha=0.4, mode="elem", cutmix_alpha=1.0))

    ld = make()
    it = iter(ld)
    next(it)
    state = json.loads(json.dumps(ld.state_dict()))
    want = [next(it)[0] for _ in range(3)]
    resumed = make()
    resumed.load_state_dict(state)
    got = [b[0] for b, _ in zip(resumed, range(3))]
    for w, g in zip(want, got):
        assert torch.equal(w["data"], g["data"]) and torch.equal(w["label"], g["label"])
