"""``dali-mixup prepare-digits DIR``: scikit-learn's handwritten digits as an ImageFolder of JPEGs.

The data is the UCI "Optical Recognition of Handwritten Digits" test set that ships inside
scikit-learn (``sklearn.datasets.load_digits``): 1,797 scanned digits, 8x8 pixels with 17 grey
levels (0..16), ten classes. Nothing is downloaded.

Each image is scaled to 0..255, upscaled (bicubic, default 32x32), saved as an RGB JPEG, and
placed in a fixed, stratified train/test split::

    DIR/train/0/0000.jpg ... DIR/train/9/...
    DIR/test/0/...       ... DIR/test/9/...
    DIR/digits.json          (what was written and how)

File names are the sample's index in ``load_digits()``. The split and the pixels are
deterministic (fixed seed, no randomness in the encoding), so two runs write the same files.
"""

from __future__ import annotations

import json
import pathlib
import shutil

NUM_CLASSES = 10
SPLIT_SEED = 0


def add_arguments(parser) -> None:
    """The ``prepare-digits`` options; a value out of range is one line naming the option, exit 2."""
    from .argtypes import float_in, int_in

    parser.add_argument("dir", type=pathlib.Path, help="output folder (gets train/ and test/)")
    parser.add_argument("--size", type=int_in(8, 4096), default=32, help="side of the upscaled images in pixels, 8..4096 (default 32)")
    parser.add_argument("--test-fraction", type=float_in(0.0, 1.0, low_open=True, high_open=True), default=0.25,
                        help="fraction held out as test/ (default 0.25)")
    parser.add_argument("--quality", type=int_in(1, 100), default=95, help="JPEG quality 1..100 (default 95)")
    parser.add_argument("--force", action="store_true", help="rewrite DIR even if it already holds the digits")


def split_indices(labels, test_fraction: float = 0.25, seed: int = SPLIT_SEED):
    """A stratified split of ``range(len(labels))``: every class loses the same fraction to test.

    Args:
        labels: ``(N,)`` integer class ids.
        test_fraction: share of each class held out, in (0, 1).
        seed: seed of the per-class shuffle.

    Returns:
        ``(train, test)``: two sorted ``(M,)`` int64 index arrays that together cover ``range(N)``.
    """
    import numpy as np

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def to_image(pixels, size: int):
    """One digit as a PIL RGB image.

    Args:
        pixels: ``(8, 8)`` grey levels in 0..16.
        size: output side in pixels.
    """
    import numpy as np
    from PIL import Image

    grey = np.clip(np.rint(np.asarray(pixels, dtype=np.float64) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    img = Image.fromarray(grey, mode="L")
    if size != grey.shape[0]:
        img = img.resize((size, size), resample=Image.BICUBIC)
    return img.convert("RGB")


def prepare_digits(out_dir, size: int = 32, test_fraction: float = 0.25, quality: int = 95, force: bool = False) -> dict:
    """Write the digits ImageFolder under ``out_dir`` (see the module docstring).

    Returns:
        The manifest that is also written to ``out_dir/digits.json``: sizes, counts per split.
        When ``out_dir`` already holds a manifest with the same settings and ``force`` is false,
        nothing is rewritten and that manifest is returned.
    """
    from sklearn.datasets import load_digits

    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    out = pathlib.Path(out_dir)
    settings = {"size": size, "test_fraction": test_fraction, "quality": quality, "split_seed": SPLIT_SEED}
    manifest_path = out / "digits.json"
    if manifest_path.exists() and not force:
        old = json.loads(manifest_path.read_text())
        if not isinstance(old, dict):
            raise FileExistsError(f"{manifest_path} is not a digits manifest; pass --force to rewrite {out}")
        if old.get("settings") == settings:
            return old
        raise FileExistsError(
            f"{out} holds digits written with {old.get('settings')}, not {settings}; pass --force to rewrite"
        )

    for split in ("train", "test"):  # a rewrite must not leave files of an older split behind
        if (out / split).exists():
            shutil.rmtree(out / split)
    digits = load_digits()
    train, test = split_indices(digits.target, test_fraction)
    counts = {}
    for split, indices in (("train", train), ("test", test)):
        for c in range(NUM_CLASSES):
            (out / split / str(c)).mkdir(parents=True, exist_ok=True)
        for i in indices:
            label = int(digits.target[i])
            to_image(digits.images[i], size).save(out / split / str(label) / f"{i:04d}.jpg", quality=quality)
        counts[split] = len(indices)
    manifest = {
        "source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
        "settings": settings,
        "num_classes": NUM_CLASSES,
        "counts": counts,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def run(args) -> int:
    """Write the digits; a bad DIR (not writable, holding other digits) is one line, exit 2."""
    import sys

    from .argtypes import UsageError, writable_dir

    try:
        writable_dir(args.dir, "DIR")
        try:
            import sklearn.datasets  # noqa: F401
        except ImportError:
            raise UsageError("needs scikit-learn (pip install scikit-learn)") from None
        try:
            m = prepare_digits(args.dir, size=args.size, test_fraction=args.test_fraction, quality=args.quality,
                               force=args.force)
        except FileExistsError as e:
            raise UsageError(str(e)) from None
        except json.JSONDecodeError as e:
            raise UsageError(f"{args.dir / 'digits.json'} is not a digits manifest ({e}); pass --force to "
                             "rewrite") from None
    except UsageError as e:
        print(f"dali-mixup prepare-digits: error: {e}", file=sys.stderr)
        return 2
    print(
        f"digits: {m['counts']['train']} train + {m['counts']['test']} test JPEGs, "
        f"{m['settings']['size']}x{m['settings']['size']}, {m['num_classes']} classes in {args.dir}"
    )
    return 0
