"""Small real image files written by the tests (no downloads)."""

from __future__ import annotations

import os

import numpy as np


def structured(h, w, seed):
    """An RGB image with structure (gradients and blobs), uint8 (h, w, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.1), rng.uniform(0, 6.28)
        img[..., c] = 127 + 100 * np.sin(xx * fx + yy * fy + ph)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def write_image(path, h, w, seed, mode="RGB", fmt=None):
    from PIL import Image

    im = Image.fromarray(structured(h, w, seed))
    if mode == "L":
        im = im.convert("L")
    elif mode == "CMYK":
        im = im.convert("CMYK")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im.save(path, format=fmt, quality=90)
    return path


def unique_class_set(root, n=23, odd=True):
    """ImageFolder with one image per class (so the label identifies the sample), mixed sizes;
    with ``odd`` a grayscale JPEG, a CMYK JPEG and a PNG among them. Returns the root."""
    for i in range(n):
        h, w = 40 + (i * 7) % 50, 36 + (i * 11) % 60
        mode, ext = "RGB", "jpg"
        if odd and i == 1:
            mode = "L"
        elif odd and i == 2:
            mode = "CMYK"
        elif odd and i == 3:
            ext = "png"
        write_image(os.path.join(root, f"c{i:03d}", f"img{i}.{ext}"), h, w, seed=i, mode=mode)
    return root


def write_tar(path, members):
    """A tar (a WebDataset shard) of ``(name, bytes)`` members at ``path``; returns its path."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return str(path)
