"""A built-in synthetic, ImageNet-like dataset of JPEGs for the benchmark.

The set is generated once, deterministically from a seed, and cached under the user's cache
directory (``$XDG_CACHE_HOME/dali-mixup/datasets`` or ``~/.cache/dali-mixup/datasets``) as an
ImageFolder tree: ``<root>/class_00/img_000000.jpg`` ...

What makes it stand in for ImageNet in a loader benchmark:

* sizes spread like ImageNet's: the shorter side is mostly 300 to 500 px (a clipped normal
  around 375 px), the aspect mostly 4:3 landscape, some portrait, square and panoramic;
* JPEG quality 90 with 4:2:0 chroma subsampling, as most photos;
* content with structure at several scales (a colour gradient, smooth value noise at four
  octaves, filled shapes, a fine texture), so the files compress, and decode, like photos
  (about 2.5 bits per pixel, 40 to 80 kB a file), not like white noise;
* classes that differ (each has its own palette and shape family), evenly represented.

Image ``i`` is drawn from its own generator seeded by ``(seed, i)``, so the bytes do not depend
on the number of worker processes, and the same seed gives the same files on every machine
with the same Pillow/libjpeg build (the decoded pixels are what the tests compare).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

#: bump when the generator changes what it writes: the cache directory name includes it.
GENERATOR_VERSION = 1
MANIFEST = "dali-mixup-dataset.json"


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate.

    Args:
        num_images: total number of JPEGs (>= 1), spread evenly over the classes.
        num_classes: number of classes (>= 1), directories ``class_00`` ...
        seed: the generator seed; image ``i`` uses ``np.random.default_rng([seed, i])``.
        quality: JPEG quality (1 to 95).
    """

    num_images: int = 2048
    num_classes: int = 10
    seed: int = 0
    quality: int = 90

    def __post_init__(self):
        for name, low in (("num_images", 1), ("num_classes", 1), ("seed", 0), ("quality", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"SyntheticSpec.{name} must be an int >= {low}, got {v!r}")
        if self.quality > 95:
            raise ValueError(f"SyntheticSpec.quality must be <= 95, got {self.quality!r}")

    @property
    def dirname(self) -> str:
        return (
            f"synthetic-imagenet-v{GENERATOR_VERSION}-n{self.num_images}-c{self.num_classes}"
            f"-s{self.seed}-q{self.quality}"
        )


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dali-mixup/datasets``, or ``~/.cache/dali-mixup/datasets``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dali-mixup" / "datasets"


def class_name(c: int) -> str:
    return f"class_{c:02d}"


def image_size(rng: np.random.Generator) -> Tuple[int, int]:
    """(width, height) of one image, spread like ImageNet's training set.

    The shorter side is a normal around 375 px (sd 60) clipped to [200, 600], so about 90 %
    fall in 300 to 500 px; the aspect is 4:3 landscape (55 %), 3:4 portrait (20 %), square
    (10 %) or between 1.5 and 2.2 landscape (15 %).
    """
    short = int(np.clip(round(rng.normal(375.0, 60.0)), 200, 600))
    kind = rng.choice(4, p=[0.55, 0.20, 0.10, 0.15])
    aspect = (4 / 3, 3 / 4, 1.0, float(rng.uniform(1.5, 2.2)))[kind]
    if aspect >= 1.0:
        return int(round(short * aspect)), short
    return short, int(round(short / aspect))


def _class_palette(num_classes: int, c: int) -> np.ndarray:
    """Three RGB colours (3, 3) in [0, 255] that characterise class ``c`` (spread hues)."""
    import colorsys

    hue = (c / max(num_classes, 1) + 0.07) % 1.0
    cols = []
    for dh, s, v in ((0.0, 0.65, 0.85), (0.08, 0.45, 0.45), (-0.1, 0.30, 0.95)):
        cols.append(colorsys.hsv_to_rgb((hue + dh) % 1.0, s, v))
    return np.asarray(cols, dtype=np.float32) * 255.0


def _smooth_noise(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Value noise at four octaves, (h, w) float32 in about [-1, 1]."""
    from PIL import Image

    acc = np.zeros((h, w), dtype=np.float32)
    amp_total = 0.0
    for cells, amp in ((3, 1.0), (9, 0.5), (27, 0.25), (81, 0.125)):
        gw = max(2, int(round(cells * w / max(w, h))) + 1)
        gh = max(2, int(round(cells * h / max(w, h))) + 1)
        grid = rng.random((gh, gw), dtype=np.float32) * 2.0 - 1.0
        img = Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC)
        acc += np.asarray(img, dtype=np.float32) * amp
        amp_total += amp
    return acc / amp_total


def render_image(spec: SyntheticSpec, index: int) -> Tuple[np.ndarray, int]:
    """Pixels ``(H, W, 3)`` uint8 and the class of image ``index``: a pure function of
    ``(spec, index)``."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng([spec.seed, index])
    label = index % spec.num_classes
    w, h = image_size(rng)
    pal = _class_palette(spec.num_classes, label)
    jitter = rng.normal(0.0, 18.0, size=(3, 3)).astype(np.float32)
    pal = np.clip(pal + jitter, 0, 255)

    # background: a linear gradient between two palette colours in a random direction
    theta = rng.uniform(0, 2 * np.pi)
    ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    t = np.clip(np.cos(theta) * xs + np.sin(theta) * ys + 0.5, 0.0, 1.0)
    img = pal[0] * (1.0 - t[..., None]) + pal[1] * t[..., None]

    # smooth multi-scale noise modulating brightness, and a little per-channel tint
    n = _smooth_noise(rng, w, h)
    img *= (1.0 + 0.35 * n)[..., None]
    img += (n[..., None] * rng.normal(0.0, 20.0, size=3).astype(np.float32))

    # shapes: the class picks the family (ellipses, boxes, polygons), the image their layout
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(canvas)
    family = label % 3
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.05, 0.3) * min(w, h)
        col = tuple(int(v) for v in np.clip(pal[2] * rng.uniform(0.5, 1.1) + rng.normal(0, 25, 3), 0, 255))
        if family == 0:
            ry = r * rng.uniform(0.5, 1.5)
            draw.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=col)
        elif family == 1:
            draw.rectangle([cx - r, cy - r * rng.uniform(0.3, 1.0), cx + r, cy + r], fill=col)
        else:
            k = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * rng.uniform(0.5, 1.0, k)
            draw.polygon([(cx + a * np.cos(b), cy + a * np.sin(b)) for a, b in zip(rad, ang)], fill=col)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.6, 1.6))))

    # fine texture (grain, foliage, fabric): low-amplitude noise as photos have
    out = np.asarray(canvas, dtype=np.int16)
    grain = rng.integers(-10, 11, size=(h, w, 1), dtype=np.int16)
    out = np.clip(out + grain, 0, 255).astype(np.uint8)
    return out, label


def _write_one(args) -> Tuple[str, int, int]:
    spec, index, root = args
    from PIL import Image

    pixels, label = render_image(spec, index)
    rel = os.path.join(class_name(label), f"img_{index:06d}.jpg")
    path = os.path.join(root, rel)
    Image.fromarray(pixels, mode="RGB").save(path, format="JPEG", quality=spec.quality, subsampling="4:2:0")
    return rel, label, os.path.getsize(path)


def _manifest_ok(root: Path, spec: SyntheticSpec) -> bool:
    try:
        meta = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("spec") == asdict(spec) and meta.get("generator_version") == GENERATOR_VERSION


def synthetic_imagenet(
    num_images: int = 2048,
    num_classes: int = 10,
    seed: int = 0,
    *,
    cache_dir: Optional[os.PathLike] = None,
    workers: Optional[int] = None,
    quality: int = 90,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Path:
    """The root of the synthetic ImageFolder for these parameters, generating it if needed.

    Generation writes into a temporary sibling directory and renames it into place when done,
    so an interrupted run leaves no half-written set behind; a complete set carries a manifest
    (``dali-mixup-dataset.json``) and is reused as it is.

    Args:
        num_images: total number of JPEGs (>= 1).
        num_classes: number of classes (>= 1).
        seed: generator seed.
        cache_dir: where sets live (default ``default_cache_dir()``).
        workers: processes to render with (default: all cores); the bytes do not depend on it.
        quality: JPEG quality.
        progress: optional ``callback(done, total)`` called as images are written.

    Returns:
        The ImageFolder root (``<cache_dir>/<spec.dirname>``).
    """
    spec = SyntheticSpec(num_images=num_images, num_classes=num_classes, seed=seed, quality=quality)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache / spec.dirname
    if _manifest_ok(root, spec):
        return root
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.dirname}.", dir=cache))
    try:
        for c in range(spec.num_classes):
            (tmp / class_name(c)).mkdir()
        jobs = [(spec, i, str(tmp)) for i in range(spec.num_images)]
        workers = max(1, int(workers or os.cpu_count() or 1))
        results: List[Tuple[str, int, int]] = []
        if workers == 1 or spec.num_images < 32:
            it = map(_write_one, jobs)
            pool = None
        else:
            import multiprocessing as mp

            pool = mp.get_context("spawn" if os.name == "nt" else "fork").Pool(workers)
            it = pool.imap(_write_one, jobs, chunksize=16)
        try:
            for r in it:
                results.append(r)
                if progress is not None:
                    progress(len(results), spec.num_images)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        sizes = [r[2] for r in results]
        meta = {
            "generator_version": GENERATOR_VERSION,
            "spec": asdict(spec),
            "classes": [class_name(c) for c in range(spec.num_classes)],
            "num_images": spec.num_images,
            "total_bytes": int(sum(sizes)),
            "mean_bytes": float(np.mean(sizes)),
        }
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=1) + "\n")
        if root.exists():  # a stale or incomplete set from another generator version
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root

