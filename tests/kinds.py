"""Tiny real data for every sample kind of ``build_loader``, and the table the contract tests
(``test_contract.py``, ``contract_worker.py``) are parametrised over.

Each kind's data has one sample per class (or, for detection, one image id per image), so a batch
says which samples it holds (``sample_ids``). A new kind joins every contract test by adding one
``Kind`` entry to ``KINDS``: its data maker, its required options, how to read it in file order,
one configuration option a saved state must match, and the mixing it is tested with.
"""

from __future__ import annotations

import json
import os
import wave
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from dali_mixup import MixupConfig
from images import unique_class_set, write_image


@dataclass(frozen=True)
class Data:
    """A data set written by a maker.

    Attributes:
        options: the data arguments of ``build_loader`` (``root=``, ``annotations=``), JSON values.
        ids: every sample's id (``sample_ids``), ascending, which is also file order.
        files: sample id -> the file that holds it (what the bad-file tests corrupt).
    """

    options: Dict[str, Any]
    ids: List[int]
    files: Dict[int, str]


@dataclass(frozen=True)
class Kind:
    """A sample kind as the contract tests know it.

    Attributes:
        make: ``(folder, n) -> Data``: ``n`` samples written under ``folder``.
        options: the kind's required options (besides the data and the shared ones).
        ordered: options that read the samples in file order, no shuffling (``None``: the kind
            cannot; its policy tests then compare sets, not orders).
        config: ``(option, saved value, loaded value)``: a configuration a state records; a state
            saved with one value is refused by a loader with the other, naming the option.
        mixup: the mixing the kind is tested with.
    """

    make: Callable[[str, int], Data]
    options: Dict[str, Any]
    ordered: Optional[Dict[str, Any]]
    config: Tuple[str, Any, Any]
    mixup: Optional[MixupConfig] = field(default=None)


# ----------------------------------------------------------------------------------- makers


def make_images(folder: str, n: int) -> Data:
    """ImageFolder ``folder/images/c<i>/img<i>.jpg``, one RGB JPEG per class (``unique_class_set``)."""
    root = unique_class_set(os.path.join(folder, "images"), n, odd=False)
    files = {i: os.path.join(root, f"c{i:03d}", f"img{i}.jpg") for i in range(n)}
    return Data({"root": root}, list(range(n)), files)


def write_wav(path: str, samples: np.ndarray, rate: int) -> str:
    """A mono 16-bit PCM WAV (the stdlib ``wave`` module) of float ``samples`` in [-1, 1]."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def make_audio(folder: str, n: int, rate: int = 8000) -> Data:
    """``folder/audio/c<i>/clip<i>.wav``: one clip per class, a tone with a little noise, 0.2–0.35 s
    (some shorter than the loader's 0.25 s window, so padding and windows both occur)."""
    root = os.path.join(folder, "audio")
    rng = np.random.default_rng(0)
    files = {}
    for i in range(n):
        t = np.arange(int(rate * (0.2 + 0.05 * (i % 4)))) / rate
        x = 0.4 * np.sin(2 * np.pi * (220.0 + 110.0 * i) * t) + 0.05 * rng.standard_normal(t.shape)
        files[i] = write_wav(os.path.join(root, f"c{i:02d}", f"clip{i}.wav"), x, rate)
    return Data({"root": root}, list(range(n)), files)


def make_coco(folder: str, n: int) -> Data:
    """``folder/coco/images/<id>.jpg`` (small JPEGs, 32–48 px) and ``folder/coco/instances.json``:
    image ids 1..n, one box (with its rectangle polygon, so ``masks=True`` works) per image."""
    base = os.path.join(folder, "coco")
    root = os.path.join(base, "images")
    images, anns, files = [], [], {}
    for i in range(1, n + 1):
        h, w = 32 + 4 * (i % 4), 48 - 4 * (i % 3)
        name = f"{i:03d}.jpg"
        files[i] = write_image(os.path.join(root, name), h, w, seed=100 + i)
        x0, y0, bw, bh = 2 + i % 5, 3 + i % 4, 12 + i % 7, 10 + i % 6
        images.append(dict(id=i, file_name=name, width=w, height=h))
        anns.append(dict(id=1000 + i, image_id=i, category_id=1 + i % 3, bbox=[x0, y0, bw, bh], area=bw * bh,
                         iscrowd=0, segmentation=[[x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]]))
    path = os.path.join(base, "instances.json")
    with open(path, "w") as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=c, name=f"cat{c}") for c in (1, 2, 3)]), f)
    return Data({"root": root, "annotations": path}, list(range(1, n + 1)), files)


def make_volumes(folder: str, n: int) -> Data:
    """``folder/volumes/c<i>/v<i>.npy``: one float32 (1, D, H, W) volume per class (np.save, format
    1.0), sizes around the 8³ crop (some smaller: padded; some larger: cropped)."""
    root = os.path.join(folder, "volumes")
    rng = np.random.default_rng(1)
    files = {}
    for i in range(n):
        shape = (1, 7 + i % 3, 8 + i % 4, 9 - i % 2)
        path = os.path.join(root, f"c{i:02d}", f"v{i}.npy")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, rng.standard_normal(shape).astype(np.float32))
        files[i] = path
    return Data({"root": root}, list(range(n)), files)


# ------------------------------------------------------------------------------------ table

KINDS: Dict[str, Kind] = {
    "image": Kind(make_images, {"image_size": 32}, ordered={"train": False}, config=("train", True, False),
                  mixup=MixupConfig(alpha=0.4, cutmix_alpha=1.0)),
    "audio": Kind(make_audio, {"duration": 0.25, "sample_rate": 8000, "features": None},
                  ordered={"train": False}, config=("features", "log_mel", None), mixup=MixupConfig(alpha=0.4)),
    "detection": Kind(make_coco, {"canvas": 64}, ordered={"shuffle": False}, config=("masks", True, False),
                      mixup=MixupConfig(alpha=0.4, cutmix_alpha=1.0)),
    "volume": Kind(make_volumes, {"crop": (8, 8, 8)}, ordered={"shuffle": False}, config=("shuffle", True, False),
                   mixup=MixupConfig(alpha=0.4, cutmix_alpha=1.0)),
}


def loader_options(kind: str, data: Data, **overrides) -> Dict[str, Any]:
    """``build_loader`` options for ``kind`` over ``data``: the data, the kind's required options,
    the tests' shared settings (CPU, one thread, batch 2, the kind's mixup) and ``overrides``."""
    opts: Dict[str, Any] = dict(data.options)
    opts.update(KINDS[kind].options)
    opts.update(batch_size=2, device="cpu", num_threads=1, mixup=KINDS[kind].mixup)
    opts.update(overrides)
    return opts


def sample_ids(kind: str, batch) -> List[int]:
    """The ids of the samples in ``batch`` (a batch dict), in batch order: the class index for
    image, audio and volume data (one sample per class), the COCO image id for detection."""
    if kind == "detection":
        return [int(v) for v in batch["image_ids"].reshape(-1).tolist()]
    return [int(v) for v in batch["label_index"].reshape(-1).tolist()]


def corrupt(path: str) -> str:
    """Overwrite a data file with text (not an image, clip or array any more); returns the path."""
    with open(path, "wb") as f:
        f.write(b"this is not a real data file, just some text bytes\n" * 4)
    return path
