"""The rows ``dali-mixup bench`` measures besides ours: each builds an iterable of batches.

DALI iterators are built with ``auto_reset=False`` and ``reset()`` by the bench when their
next epoch starts, so that no row prefetches in the background while another row is timed.

Every row delivers the same thing, one epoch of ``{"data": (N, 3, S, S) images, "label":
targets}`` batches on the same device, from the same files, with the same augmentation
(random resized crop to S, horizontal flip, ImageNet normalisation):

* ``dali``: DALI's own ``DALIClassificationIterator`` over the project's pipeline (no mixup,
  integer labels): the ceiling mixup should not lower.
* ``dali-mixup``: mixup written in DALI itself: ``fn.batch_permutation`` (no fixed points),
  ``fn.permute_batch``, ``fn.random.beta`` and arithmetic, labels one-hot and mixed in the graph
  too; the strongest same-stack peer.
* ``dali-torch``: DALI's iterator followed by eager torch mixup, as NVIDIA's
  DeepLearningExamples ``MixUpWrapper`` does (one λ per batch, ``torch.randperm``).
* ``torchvision``: ``ImageFolder`` (or the same files/shards) + ``DataLoader`` (workers, pinned
  memory when CUDA, persistent workers) + ``transforms.v2`` augmentation + ``v2.MixUp`` in the
  collate function, then ``.to(device)``: the CPU baseline people run today.
* ``timm``: timm's ``create_dataset`` + ``create_loader(collate_fn=FastCollateMixup(...))``, the
  loader most ImageNet-style mixup training runs on: PIL decode and augmentation in the workers,
  uint8 mixed in the collate; on a GPU timm's ``PrefetchLoader`` moves the uint8 batch to the
  device and normalises it there on a side stream (a normalised float batch on the device, as
  the other rows deliver); on the CPU there is no prefetcher and the row delivers what the
  collate makes: uint8, not normalised (less work than the other rows do).

``prefetch_depth`` says how many batches each row can hold ready before its timed region starts
(the bench times at least that many batches more than it).

Heavy imports (DALI, torchvision, timm) happen inside the functions.
"""

from __future__ import annotations

import io
import os
import tarfile
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from dali_mixup.constants import IMAGENET_MEAN, IMAGENET_STD
from dali_mixup.sources import Source, SourceKind


#: batches DALI prepares ahead (``prefetch_queue_depth`` of every DALI row, ours included)
DALI_PREFETCH = 2
#: batches each DataLoader worker prepares ahead (torch's default ``prefetch_factor``)
LOADER_PREFETCH = 2


def prefetch_depth(name: str, workers: int, loader=None) -> int:
    """Batches a row can have ready before it is asked for the first one: DALI's prefetch
    queue, or a ``DataLoader``'s ``workers * prefetch_factor`` (plus the batch timm's
    ``PrefetchLoader`` holds, where ``loader`` has it)."""
    if name in ("torchvision", "timm"):
        return workers * LOADER_PREFETCH + (1 if getattr(loader, "prefetcher", False) else 0)
    return DALI_PREFETCH


# --- DALI rows -------------------------------------------------------------------------------


def _dali_pipeline(source: Source, *, device: str, image_size: int, batch_size: int, num_threads: int,
                   seed: int, dtype: str, layout: str, mixup_alpha: Optional[float], num_classes: int):
    from nvidia.dali import fn, pipeline_def, types

    from dali_mixup.kinds.image_pipeline import decode_augment, read_source

    @pipeline_def
    def pipe():
        encoded, labels = read_source(source, shard_id=0, num_shards=1, shuffle=True)
        images = decode_augment(encoded, device=device, image_size=image_size, dtype=dtype, layout=layout)
        if mixup_alpha is None:
            return images, labels
        # mixup inside the DALI graph: one λ ~ Beta(α, α) and one partner per sample
        perm = fn.batch_permutation(no_fixed_points=True)
        lam = fn.random.beta(alpha=mixup_alpha, beta=mixup_alpha)
        if device == "gpu":
            lam = lam.gpu()
        partner = fn.permute_batch(images, indices=perm)
        mixed = images * lam + partner * (1.0 - lam)
        mixed = fn.cast(mixed, dtype={"float32": types.FLOAT, "float16": types.FLOAT16, "uint8": types.UINT8}[dtype])
        if source.kind is SourceKind.WEBDATASET:
            # ASCII 'cls' members cannot be parsed in the graph: return them with perm and λ
            return mixed, labels, perm, lam
        onehot = fn.one_hot(fn.reshape(labels, shape=[]), num_classes=num_classes, dtype=types.FLOAT)
        if device == "gpu":
            onehot = onehot.gpu()
        target = onehot * lam + fn.permute_batch(onehot, indices=perm) * (1.0 - lam)
        return mixed, target

    device_id = torch.cuda.current_device() if device == "gpu" else None
    return pipe(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                prefetch_queue_depth=DALI_PREFETCH)


def dali_plain(source: Source, **kw):
    """DALI's ``DALIClassificationIterator`` over the project's training pipeline (no mixup)."""
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIClassificationIterator

    from dali_mixup.kinds.image_pipeline import READER_NAME

    pipe = _dali_pipeline(source, mixup_alpha=None, **kw)
    return DALIClassificationIterator(pipe, reader_name=READER_NAME, auto_reset=False,
                                      last_batch_policy=LastBatchPolicy.PARTIAL)


def _class_indices(label: torch.Tensor, ascii_labels: bool) -> torch.Tensor:
    """``(N,)`` int64 class ids from the reader's labels: integer ids for files, zero-padded ASCII
    ``cls`` bytes for WebDataset shards (``ascii_labels``)."""
    # TODO(core): public label parser: once dali_mixup.fields.class_indices is committed, drop the
    # fallback to the iterator's private _label_indices.
    try:
        from dali_mixup.fields import LabelEncoding, class_indices
    except ImportError:
        from dali_mixup.iterator import _label_indices

        return _label_indices(label)
    return class_indices(label, LabelEncoding.ASCII if ascii_labels else LabelEncoding.INDEX)


class _AfterDali:
    """A DALI iterator (``len``, ``reset``) whose batches pass through ``_batch``, one dict each."""

    def __init__(self, it, num_classes: int):
        self.it, self.num_classes = it, num_classes

    def __len__(self):
        return len(self.it)

    def reset(self):
        self.it.reset()

    def __iter__(self):
        for batch in self.it:
            yield [self._batch(batch[0])]

    def _batch(self, b: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        raise NotImplementedError


class _WdsLabels(_AfterDali):
    """Turns WebDataset 'cls' bytes into mixed one-hot targets with the graph's perm and λ."""

    def _batch(self, b):
        y = _class_indices(b["label"], ascii_labels=True).to(b["data"].device)
        perm = b["perm"].reshape(-1).long().to(y.device)
        lam = b["lam"].reshape(-1, 1).float().to(y.device)
        oh = torch.nn.functional.one_hot(y, self.num_classes).float()
        return {"data": b["data"], "label": lam * oh + (1 - lam) * oh[perm]}


def dali_native_mixup(source: Source, *, alpha: float, num_classes: int, **kw):
    """Mixup written in DALI: batch_permutation + permute_batch + random.beta + arithmetic."""
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from dali_mixup.kinds.image_pipeline import READER_NAME

    pipe = _dali_pipeline(source, mixup_alpha=alpha, num_classes=num_classes, **kw)
    wds = source.kind is SourceKind.WEBDATASET
    names = ["data", "label", "perm", "lam"] if wds else ["data", "label"]
    it = DALIGenericIterator(pipe, names, reader_name=READER_NAME, auto_reset=False,
                             last_batch_policy=LastBatchPolicy.PARTIAL)
    return _WdsLabels(it, num_classes) if wds else it


class EagerTorchMixup(_AfterDali):
    """DALI's iterator, then eager torch mixup as DeepLearningExamples' ``MixUpWrapper``:
    one λ ~ Beta(α, α) per batch, ``torch.randperm`` partners, one-hot targets mixed alike."""

    def __init__(self, it, alpha: float, num_classes: int, seed: int = 0, ascii_labels: bool = False):
        super().__init__(it, num_classes)
        self.alpha, self.ascii_labels = alpha, ascii_labels
        self.rng = np.random.default_rng(seed)

    def _batch(self, b):
        data = b["data"]
        y = _class_indices(b["label"], self.ascii_labels).to(data.device)
        with torch.no_grad():
            c = float(self.rng.beta(self.alpha, self.alpha))
            perm = torch.randperm(data.shape[0], device=data.device)
            target = torch.zeros(data.shape[0], self.num_classes, device=data.device).scatter_(1, y.view(-1, 1), 1.0)
            md = c * data + (1 - c) * data[perm]
            mt = c * target + (1 - c) * target[perm]
        return {"data": md, "label": mt}


def dali_torch_mixup(source: Source, *, alpha: float, num_classes: int, seed: int, **kw):
    return EagerTorchMixup(dali_plain(source, seed=seed, num_classes=num_classes, **kw), alpha, num_classes, seed,
                           ascii_labels=source.kind is SourceKind.WEBDATASET)


# --- the torchvision CPU baseline ------------------------------------------------------------


class FileListDataset(torch.utils.data.Dataset):
    """(path, label) pairs read with torchvision's default (PIL) loader, as ImageFolder does."""

    def __init__(self, files, labels, transform=None):
        self.files, self.labels, self.transform = list(files), list(labels), transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from torchvision.datasets.folder import default_loader

        return self.transform(default_loader(self.files[i])), self.labels[i]


class TarShardDataset(torch.utils.data.Dataset):
    """WebDataset shards read by index: member offsets are listed once, bytes read by seek."""

    def __init__(self, shards, transform=None, image_ext=("jpg", "jpeg", "png"), label_ext="cls"):
        self.transform = transform
        self.items: List[Tuple[str, int, int, int]] = []  # (shard, offset, size, label)
        for shard in shards:
            groups = {}
            with tarfile.open(shard) as tf:
                for m in tf:
                    if not m.isfile() or "." not in os.path.basename(m.name):
                        continue
                    d = os.path.dirname(m.name)
                    base = os.path.basename(m.name)
                    key, ext = base.split(".", 1)
                    g = groups.setdefault(os.path.join(d, key), {})
                    if ext.lower() in image_ext:
                        g["img"] = (m.offset_data, m.size)
                    elif ext == label_ext:
                        g["cls"] = int(tf.extractfile(m).read().strip())
            for key in sorted(groups):
                g = groups[key]
                if "img" in g and "cls" in g:
                    self.items.append((shard, g["img"][0], g["img"][1], g["cls"]))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        shard, off, size, label = self.items[i]
        with open(shard, "rb") as f:
            f.seek(off)
            img = Image.open(io.BytesIO(f.read(size))).convert("RGB")
        return self.transform(img), label


class MixupCollate:
    """``default_collate`` then ``v2.MixUp`` (or, with ``cutmix_alpha``, ``v2.RandomChoice`` of
    MixUp and CutMix), run in the DataLoader's workers (torchvision's placement for a batch
    transform)."""

    def __init__(self, alpha: float, num_classes: int, cutmix_alpha: Optional[float] = None):
        from torchvision.transforms import v2

        self.mixup = v2.MixUp(alpha=alpha, num_classes=num_classes)
        if cutmix_alpha:  # torchvision's recipe: one of the two per batch, p = 0.5
            self.mixup = v2.RandomChoice([self.mixup, v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)])

    def __call__(self, batch):
        from torch.utils.data import default_collate

        return self.mixup(*default_collate(batch))


class ToDevice:
    """Moves each DataLoader batch to ``device`` (non-blocking from pinned memory)."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, device

    def __len__(self):
        return len(self.loader)

    def __iter__(self) -> Iterator:
        for x, y in self.loader:
            yield [{"data": x.to(self.device, non_blocking=True), "label": y.to(self.device, non_blocking=True)}]


def torchvision_baseline(source: Source, *, image_size: int, batch_size: int, workers: int, alpha: float,
                         num_classes: int, device: torch.device, seed: int, dtype: str = "float32",
                         layout: str = "NCHW", root: Optional[str] = None, cutmix_alpha: Optional[float] = None):
    """torchvision ``ImageFolder`` (or the same files / shards) + ``DataLoader`` + ``v2.MixUp``.

    ``root`` is the ImageFolder root of a folder source."""
    from torchvision import datasets
    from torchvision.transforms import v2

    tdtype = {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8}[dtype]
    steps = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip(), v2.ToImage(),
             v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if tdtype != torch.float32:
        steps.append(v2.ToDtype(tdtype))
    transform = v2.Compose(steps)
    if layout == "NHWC":
        raise ValueError("the torchvision baseline produces NCHW batches only")
    if source.kind is SourceKind.FOLDER and root is not None:
        ds = datasets.ImageFolder(root, transform=transform)
        if len(ds) != len(source):  # nested class folders or other extensions: the same files
            ds = FileListDataset(source.files, source.labels, transform)
    elif source.kind is SourceKind.WEBDATASET:
        ds = TarShardDataset(source.shards, transform)
    else:
        ds = FileListDataset(source.files, source.labels, transform)
    cuda = device.type == "cuda"
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=cuda,
        persistent_workers=workers > 0, drop_last=False, collate_fn=MixupCollate(alpha, num_classes, cutmix_alpha), generator=g,
        prefetch_factor=LOADER_PREFETCH if workers > 0 else None,
    )
    return ToDevice(loader, device)


# --- timm's loader ---------------------------------------------------------------------------


#: what the timm row delivers with (True) and without its prefetcher (the table's label says it)
TIMM_OUTPUT = {True: "float, normalised on the device by timm's PrefetchLoader",
               False: "uint8, not normalised (timm's DataLoader without its PrefetchLoader)"}


class TimmBatches:
    """timm's loader as a bench row: each ``(images, targets)`` batch as ``[{"data", "label"}]``.

    ``loader`` is timm's ``PrefetchLoader`` (GPU) or the ``DataLoader`` inside it (CPU).
    """

    def __init__(self, loader, reader: str, prefetcher: bool):
        self.loader, self.reader, self.prefetcher = loader, reader, prefetcher

    def __len__(self):
        return len(self.loader)

    def __iter__(self) -> Iterator:
        for x, y in self.loader:
            yield [{"data": x, "label": y}]


def timm_loader(source: Source, *, image_size: int, batch_size: int, workers: int, alpha: float, num_classes: int,
                device: torch.device, dtype: str = "float32", root: Optional[str] = None,
                cutmix_alpha: Optional[float] = None, prefetcher: Optional[bool] = None):
    """timm's ``create_dataset`` + ``create_loader`` with ``FastCollateMixup``, as timm's
    ``train.py`` runs them with its prefetcher: random resized crop (scale (0.08, 1), ratio
    (3/4, 4/3), bilinear) and flip in the workers, no colour jitter (the other rows have none),
    mixup (``mode="batch"``, no label smoothing, CutMix with ``cutmix_alpha`` and switch
    probability 0.5 as ours) in the collate on uint8.

    On a GPU: timm's ``PrefetchLoader`` (pinned memory, copy and normalisation to ``dtype`` on a
    side stream). On the CPU: the ``DataLoader`` inside it, whose batches are uint8 and not
    normalised (``FastCollateMixup`` collates uint8 images only, which timm's transforms give
    only with the prefetcher on; without it timm's ``train.py`` mixes float batches with
    ``Mixup`` in the training loop instead).

    ``prefetcher=True`` keeps the ``PrefetchLoader`` on the CPU as well (it normalises there, in
    the main process; ``benchmarks/train_step.py`` feeds a model with it); ``None``: on a GPU only.

    A folder source is read by timm's own ``create_dataset`` (its folder reader); a file list or
    WebDataset shards, which timm's datasets do not read, by the same dataset classes as the
    torchvision row, handed to timm's ``create_loader``.

    Returns:
        ``TimmBatches``; or a string, why the row cannot run (an odd batch size:
        ``FastCollateMixup`` mixes sample ``i`` with ``N - 1 - i`` and refuses one).
    """
    from timm.data import FastCollateMixup, create_dataset, create_loader

    if batch_size % 2:
        return f"timm's FastCollateMixup needs an even batch size, got {batch_size}"
    ds, reader = None, "timm create_dataset (folder reader)"
    if source.kind is SourceKind.FOLDER and root is not None:
        ds = create_dataset("", root=root, split="train", search_split=False, is_training=True,
                            batch_size=batch_size)
        if len(ds) != len(source):  # extensions timm's reader does not take: the same files as ours
            ds = None
    if ds is None:
        if source.kind is SourceKind.WEBDATASET:
            ds, reader = TarShardDataset(source.shards), "WebDataset shards read by index"
        else:
            ds, reader = FileListDataset(source.files, source.labels), "the file list, PIL"
    mix = FastCollateMixup(mixup_alpha=alpha, cutmix_alpha=cutmix_alpha or 0.0, prob=1.0, switch_prob=0.5,
                           mode="batch", label_smoothing=0.0, num_classes=num_classes)
    gpu = device.type == "cuda"
    prefetcher = gpu if prefetcher is None else prefetcher
    img_dtype = {"float32": torch.float32, "float16": torch.float16}[dtype]
    loader = create_loader(ds, input_size=(3, image_size, image_size), batch_size=batch_size, is_training=True,
                           scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, color_jitter=None,
                           interpolation="bilinear", num_workers=workers, collate_fn=mix, pin_memory=gpu,
                           img_dtype=img_dtype, device=device, use_prefetcher=True, persistent_workers=workers > 0)
    return TimmBatches(loader if prefetcher else loader.loader, reader, prefetcher)
