"""The built-in synthetic data set: determinism, sizes, classes, caching."""

import json

import numpy as np
import pytest

from dali_mixup.tools import datasets
from dali_mixup.tools.datasets import MANIFEST, SyntheticSpec, render_image, synthetic_imagenet


def test_render_is_deterministic_and_seed_dependent():
    spec = SyntheticSpec(num_images=8, num_classes=4, seed=3)
    a, la = render_image(spec, 5)
    b, lb = render_image(spec, 5)
    assert la == lb == 5 % 4
    np.testing.assert_array_equal(a, b)
    c, _ = render_image(SyntheticSpec(num_images=8, num_classes=4, seed=4), 5)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_sizes_spread_like_imagenet():
    rng = np.random.default_rng(0)
    sizes = [datasets.image_size(rng) for _ in range(2000)]
    short = np.array([min(s) for s in sizes])
    aspect = np.array([max(s) / min(s) for s in sizes])
    assert 0.8 <= np.mean((short >= 300) & (short <= 500)) <= 0.97  # mostly 300..500 px
    assert short.min() >= 200 and short.max() <= 600
    assert np.mean([w > h for w, h in sizes]) > 0.6  # mostly landscape, as photos
    assert aspect.max() <= 2.25


def test_content_has_structure_not_white_noise():
    pixels, _ = render_image(SyntheticSpec(), 0)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    g = pixels.astype(np.float32).mean(axis=2)
    # neighbouring pixels correlate strongly (white noise would give ~0)
    corr = np.corrcoef(g[:, :-1].ravel(), g[:, 1:].ravel())[0, 1]
    assert corr > 0.8
    assert g.std() > 10  # not flat either


def test_generate_classes_sizes_and_cache(tmp_path):
    calls = []
    root = synthetic_imagenet(23, num_classes=5, seed=1, cache_dir=tmp_path, workers=1,
                              progress=lambda d, t: calls.append((d, t)))
    assert root.parent == tmp_path and root.name == SyntheticSpec(23, 5, 1).dirname
    assert calls[-1] == (23, 23)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert classes == [f"class_{c:02d}" for c in range(5)]
    counts = [len(list((root / c).glob("*.jpg"))) for c in classes]
    assert sum(counts) == 23 and max(counts) - min(counts) <= 1  # balanced
    meta = json.loads((root / MANIFEST).read_text())
    assert meta["num_images"] == 23 and meta["spec"]["seed"] == 1
    from PIL import Image

    with Image.open(root / "class_02" / "img_000007.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and 200 <= min(im.size) <= 600
    # cached: not generated again
    mtime = (root / MANIFEST).stat().st_mtime_ns
    again = synthetic_imagenet(23, num_classes=5, seed=1, cache_dir=tmp_path, progress=lambda d, t: calls.append(0))
    assert again == root and (root / MANIFEST).stat().st_mtime_ns == mtime and calls[-1] == (23, 23)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_same_bytes_whatever_the_worker_count(tmp_path):
    a = synthetic_imagenet(40, num_classes=3, seed=2, cache_dir=tmp_path / "a", workers=1)
    b = synthetic_imagenet(40, num_classes=3, seed=2, cache_dir=tmp_path / "b", workers=2)
    fa = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert fa == sorted(p.relative_to(b) for p in b.rglob("*.jpg"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)


def test_incomplete_set_is_regenerated(tmp_path):
    root = tmp_path / SyntheticSpec(4, 2, 0).dirname
    (root / "class_00").mkdir(parents=True)  # a set without manifest: interrupted
    out = synthetic_imagenet(4, num_classes=2, seed=0, cache_dir=tmp_path)
    assert out == root and (root / MANIFEST).exists() and len(list(root.rglob("*.jpg"))) == 4


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert datasets.default_cache_dir() == tmp_path / "dali-mixup" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.default_cache_dir() == tmp_path / "home" / ".cache" / "dali-mixup" / "datasets"


@pytest.mark.parametrize("kw", [dict(num_images=0), dict(num_classes=0), dict(seed=-1), dict(quality=100),
                                dict(num_images=2.5)])
def test_invalid_spec(kw):
    with pytest.raises(ValueError, match="SyntheticSpec"):
        SyntheticSpec(**kw)
