"""3-D volumes from NumPy files: a source of ``.npy`` volumes ``(C, D, H, W)`` with class labels,
a DALI pipeline (``fn.readers.numpy`` on the CPU or straight to the GPU, random 3-D crop and
flips) and an iterator that mixes them: mixup, and CutMix with cuboids (``mix_images`` on 5-D
batches, ``MixupParams.boxes`` (N, 6)).

Semantics are MONAI's ``MixUp``/``CutMix`` (``monai.transforms.regularization``) given the same
λ, partners and cuboids: ``λ·x[i] + (1−λ)·x[perm[i]]``, and the partner's voxels inside the
cuboid (every channel); targets ``λ·y[i] + (1−λ)·y[perm[i]]``. MONAI draws one corner for the
whole batch and sides ``E·sqrt(1−λ)``; ``MixupSampler`` draws one cuboid per sample holding
1 − λ of the volume (see ``sampler._draw_cuboids``) and, with ``correct_lam``, sets λ to what
the cuboid actually left.

Files are checked up front from their headers (``scan_volumes``): NumPy format 1.0 (what DALI
reads), 4 dims, a dtype the pipeline can read, C order, channels agreeing, and the file as long
as its header says; optionally their values (NaN or inf). A bad file is named in the error.

Example:
    >>> it = create_volume_loader(root="volumes/", batch_size=4, crop=(64, 64, 64),
    ...                           mixup=MixupConfig(alpha=0.4, cutmix_alpha=1.0, num_classes=2))
    >>> batch = next(iter(it))[0]   # data (4, C, 64, 64, 64) float32, label (4, 2) soft targets
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .checks import check_bool, check_int, check_seed
from .config import MixupConfig
from .fields import Blend, SoftTarget
from .sources import Source, SourceKind, folder_source

__all__ = ["BadVolumeError", "VolumeLabel", "create_volume_loader", "scan_volumes", "volume_pipeline",
           "volume_source"]

READER_NAME = "VolumeReader"
#: file dtypes the pipeline reads (then casts to the loader's dtype)
READABLE_DTYPES = ("uint8", "int8", "int16", "uint16", "int32", "float16", "float32", "float64")
_OUT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8}


class BadVolumeError(ValueError):
    """One or more volume files cannot be served; ``files`` maps each path to what is wrong."""

    def __init__(self, problems: Dict[str, str]):
        self.files = dict(problems)
        lines = [f"  {path}: {why}" for path, why in list(problems.items())[:20]]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} bad volume file(s):\n" + "\n".join(lines) + more)


def _header(path: str) -> Tuple[Tuple[int, ...], np.dtype, bool, int, Tuple[int, int]]:
    """(shape, dtype, fortran_order, data offset, format version) from a ``.npy`` header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        return tuple(shape), dtype, fortran, f.tell(), version


def scan_volumes(files: Sequence[str], check_values: bool = False) -> Tuple[int, ...]:
    """Check ``.npy`` volume files from their headers; returns the channel count of each file
    (all equal).

    Args:
        files: the paths.
        check_values: also read each file and reject NaN or inf (floating dtypes): a full read.

    Raises:
        BadVolumeError: naming every bad file and what is wrong with it: not a NumPy file,
            format other than 1.0 (DALI reads 1.0 only), ndim != 4 ``(C, D, H, W)``, a dtype
            outside ``READABLE_DTYPES``, Fortran order, fewer bytes than the header promises
            (truncated), NaN/inf values, a channel count other than the first file's.
    """
    problems: Dict[str, str] = {}
    channels = []
    for path in files:
        try:
            shape, dtype, fortran, offset, version = _header(path)
        except (OSError, ValueError) as e:
            problems[path] = f"not a readable .npy file ({e})"
            continue
        if version != (1, 0):
            problems[path] = (f"NumPy format {version[0]}.{version[1]}; DALI's numpy reader reads 1.0 "
                              "(np.save writes it)")
        elif len(shape) != 4:
            problems[path] = f"shape {shape} has {len(shape)} dims; a volume is (C, D, H, W)"
        elif dtype.name not in READABLE_DTYPES or dtype.byteorder == ">":
            problems[path] = f"dtype {dtype.str} ({dtype.name}); readable: {', '.join(READABLE_DTYPES)} (little-endian)"
        elif fortran:
            problems[path] = "Fortran order; save it C-contiguous (np.ascontiguousarray)"
        elif min(shape) < 1:
            problems[path] = f"shape {shape} is empty"
        elif os.path.getsize(path) < offset + int(np.prod(shape)) * dtype.itemsize:
            problems[path] = (f"truncated: {os.path.getsize(path) - offset} data bytes, the header promises "
                              f"{int(np.prod(shape)) * dtype.itemsize} for {shape} {dtype.name}")
        elif check_values and dtype.kind == "f" and not np.isfinite(np.load(path, mmap_mode="r")).all():
            problems[path] = "holds NaN or inf values"
        else:
            channels.append((path, shape[0]))
    if channels:
        first_path, c = channels[0]
        for path, ci in channels[1:]:
            if ci != c:
                problems[path] = f"{ci} channels, {first_path} has {c}"
    if problems:
        raise BadVolumeError(problems)
    return tuple(ci for _, ci in channels)


def volume_source(root=None, file_list=None, files: Optional[Sequence[Tuple[str, int]]] = None) -> Source:
    """Exactly one of:

    Args:
        root: ``root/<class>/<name>.npy``; classes are the sorted folder names (as ImageFolder).
        file_list: a text file of ``<path> <label>`` lines (relative paths are relative to it).
        files: ``[(path, label), ...]``.

    Returns:
        a ``Source`` (kind FOLDER or FILE_LIST) with the files in a fixed order.
    """
    given = [n for n, v in (("root", root), ("file_list", file_list), ("files", files)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of root, file_list, files; got {given or 'none'}")
    if root is not None:
        return folder_source(os.fspath(root), extensions=(".npy",))
    if file_list is not None:
        file_list = os.fspath(file_list)
        base = os.path.dirname(os.path.abspath(file_list))
        files = []
        with open(file_list) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise ValueError(f"{file_list}:{number}: expected '<path> <label>', got {line.strip()!r}")
                files.append((os.path.join(base, parts[0]), int(parts[1])))
    files = [(os.fspath(p), int(k)) for p, k in files]
    if not files:
        raise ValueError("no volume files given")
    bad = [k for _, k in files if k < 0]
    if bad:
        raise ValueError(f"labels must be >= 0; got {sorted(set(bad))[:10]}")
    n = max(k for _, k in files) + 1
    return Source(SourceKind.FILE_LIST, tuple(p for p, _ in files), tuple(k for _, k in files),
                  tuple(str(k) for k in range(n)))


@dataclass(frozen=True)
class VolumeLabel(SoftTarget):
    """Soft targets from the reader's ``source_info`` (each sample's path, zero-padded bytes
    ``(N, L)``): DALI's numpy reader has no labels, so the path names the class.

    Args:
        paths: ``{path: class id}`` of the source.
    """

    paths: Dict[str, int] = field(default_factory=dict, hash=False, compare=False)

    def prepare(self, name, value):
        rows = value.cpu().numpy().reshape(value.shape[0], -1)
        ids = []
        for row in rows:
            path = bytes(row).rstrip(b"\x00").decode()
            if path not in self.paths:
                raise ValueError(f"field {name!r}: the reader served {path!r}, which is not in the source")
            ids.append(self.paths[path])
        return super().prepare(name, torch.tensor(ids, dtype=torch.int64))


def volume_pipeline(source: Source, *, batch_size: int, crop: Sequence[int], num_threads: int = 2,
                    device: str = "cpu", reader_device: str = "cpu", device_id: Optional[int] = None,
                    seed: int = 0, shard_id: int = 0, num_shards: int = 1, shuffle: bool = True, flip: bool = True,
                    dtype: str = "float32", checkpoint=None):
    """The DALI pipeline: ``fn.readers.numpy`` (``reader_device="gpu"`` reads straight to GPU
    memory with GPUDirect Storage) -> random crop ``crop = (D, H, W)`` (zero-padded where a
    volume is smaller) -> random flips along D, H and W (p = 0.5 each, with ``flip``) -> cast to
    ``dtype``. Outputs ``(volume (C, D, H, W), path bytes)``; on the GPU with
    ``device="gpu"``."""
    from nvidia.dali import fn, pipeline_def, types

    d, h, w = crop
    dali_types = {"float32": types.FLOAT, "float16": types.FLOAT16, "uint8": types.UINT8}
    longest = max(len(os.fsencode(p)) for p in source.files)

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, enable_checkpointing=True,
                  device_id=device_id if device == "gpu" or reader_device == "gpu" else None, seed=seed)
    def pipe():
        vol = fn.readers.numpy(device=reader_device, files=list(source.files), random_shuffle=shuffle,
                               shard_id=shard_id, num_shards=num_shards, pad_last_batch=True, name=READER_NAME)
        info = fn.pad(fn.get_property(vol, key="source_info"), fill_value=0, shape=[longest])
        vol = fn.reshape(vol, layout="CDHW")
        if device == "gpu" and reader_device == "cpu":
            vol = vol.gpu()
        pos = {f"crop_pos_{a}": fn.random.uniform(range=(0.0, 1.0)) for a in "zyx"}
        vol = fn.crop(vol, crop_d=d, crop_h=h, crop_w=w, out_of_bounds_policy="pad", fill_values=0.0, **pos)
        if flip:
            coin = lambda: fn.random.coin_flip(probability=0.5)  # noqa: E731
            vol = fn.flip(vol, depthwise=coin(), vertical=coin(), horizontal=coin())
        vol = fn.cast(vol, dtype=dali_types[dtype])
        return vol, info

    return pipe(checkpoint=checkpoint)


def create_volume_loader(root=None, file_list=None, files=None, *, batch_size: int, crop: Sequence[int],
                         mixup: Optional[MixupConfig] = None, num_classes: Optional[int] = None,
                         device: str = "cpu", reader_device: str = "cpu", device_id: int = 0, num_threads: int = 2,
                         seed: int = 0, shard_id: int = 0, num_shards: int = 1, shuffle: bool = True,
                         flip: bool = True, dtype: str = "float32", check_values: bool = False):
    """A ``DALIMixupIterator`` over ``.npy`` volumes with mixup and cuboid CutMix.

    Args:
        root / file_list / files: the volumes (``volume_source``).
        batch_size: volumes per batch.
        crop: ``(D, H, W)`` of the random crop every volume is cut (or zero-padded) to.
        mixup: a ``MixupConfig`` (CutMix draws cuboids); ``None``: no mixing.
        num_classes: C (default: ``mixup.num_classes``, else the source's).
        device: ``"cpu"`` or ``"gpu"``: where the crop, flips and the mix run.
        reader_device: ``"cpu"`` or ``"gpu"`` (GPUDirect Storage, needs cuFile).
        device_id, num_threads, seed, shard_id, num_shards, shuffle: as DALI's.
        flip: random flips along each spatial axis.
        dtype: ``"float32"``, ``"float16"`` or ``"uint8"`` (the cast after cropping).
        check_values: read every file up front and reject NaN/inf (``scan_volumes``).

    Returns:
        the iterator; each batch ``{"data": (N, C, D, H, W), "label": (N, num_classes) float32,
        "label_index", "lam", "perm"}`` (+ ``"cutmix"``, ``"boxes"`` (N, 6) with CutMix on).
    """
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy

    from .iterator import DALIMixupIterator

    for name, value in (("device", device), ("reader_device", reader_device)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be 'cpu' or 'gpu', got {type(value).__name__}")
        if value not in ("cpu", "gpu"):
            raise ValueError(f"{name} must be 'cpu' or 'gpu', got {value!r}")
    if reader_device == "gpu" and device == "cpu":
        raise ValueError("reader_device='gpu' reads into GPU memory: use device='gpu' too")
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be one of {sorted(_OUT_DTYPES)}, got {type(dtype).__name__}")
    if dtype not in _OUT_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_OUT_DTYPES)}, got {dtype!r}")
    if isinstance(crop, (str, bytes)) or not hasattr(crop, "__len__") or len(crop) != 3:
        raise TypeError(f"crop must be three ints (D, H, W), got {crop!r}")
    crop = tuple(check_int(f"crop[{k}]", c, 1) for k, c in enumerate(crop))
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_seed("seed", seed)
    shuffle, flip, check_values = (check_bool(n, v) for n, v in
                                   (("shuffle", shuffle), ("flip", flip), ("check_values", check_values)))
    if mixup is not None and not isinstance(mixup, MixupConfig):
        raise TypeError(f"mixup must be a MixupConfig or None, got {type(mixup).__name__}")
    source = volume_source(root, file_list, files)
    scan_volumes(source.files, check_values=check_values)
    c = num_classes if num_classes is not None else (mixup.num_classes if mixup and mixup.num_classes else None)
    c = check_int("num_classes", c if c is not None else source.num_classes, 1)
    if c < source.num_classes:
        raise ValueError(f"num_classes={c} is smaller than the source's {source.num_classes} classes")
    def make_pipeline(checkpoint=None):
        return volume_pipeline(source, batch_size=batch_size, crop=crop, num_threads=num_threads, device=device,
                               reader_device=reader_device, device_id=device_id, seed=seed, shard_id=shard_id,
                               num_shards=num_shards, shuffle=shuffle, flip=flip, dtype=dtype, checkpoint=checkpoint)

    fields = {"data": Blend(layout="NCDHW"),  # label_smoothing None: the MixupConfig's
              "label": VolumeLabel(num_classes=c, label_smoothing=None,
                                   paths={p: k for p, k in zip(source.files, source.labels)})}
    return DALIMixupIterator(make_pipeline(), reader_name=READER_NAME, mixup=mixup, seed=seed, fields=fields,
                             last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True, source=source,
                             pipeline_factory=make_pipeline)
