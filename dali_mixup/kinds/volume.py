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

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..checks import check_bool, check_int, resolve_num_classes, warn_user
from ..config import MixupConfig
from ..constants import PREFETCH_QUEUE_DEPTH, READER_NAME
from ..fields import Blend, SoftTarget
from ..front import Kind, build_loader
from ..options import LoaderOptions
from ..sources import Source, SourceKind, folder_source, list_source, numbered_classes, utf8_path
from ..scan import (BadDataError, BadFilesWarning, OnError, Problem, ProblemKind, ValidationError, _describe,
                   bad_data_error, error_cause, filter_paths, scan_paths)

__all__ = ["DEFAULT_MAX_VOXELS", "VolumeLabel", "VolumeSpec", "create_volume_loader", "scan_volumes",
           "volume_pipeline", "volume_source"]

#: file dtypes the pipeline reads (then casts to the loader's dtype)
READABLE_DTYPES = ("uint8", "int8", "int16", "uint16", "int32", "float16", "float32", "float64")
_OUT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8}
#: voxels (C·D·H·W) a header may claim: 2**30 is 4 GiB of float32, far above a 512^3 CT scan;
#: a (sparse) file claiming more is refused before DALI allocates it
DEFAULT_MAX_VOXELS = 2**30


def _npy_identify(max_voxels: int, check_values: bool):
    """The volume format's scanner for ``dali_mixup.scan.scan_path``: a NumPy ``.npy`` of format 1.0
    (what DALI reads), 4 dims ``(C, D, H, W)``, a readable little-endian dtype, C order, not
    empty, at most ``max_voxels``, as long as its header says; with ``check_values``, no NaN or
    inf (a full read)."""

    def identify(f, size: int):
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
        except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
            return ProblemKind.CORRUPT_HEADER, f"not a readable .npy file ({e})"
        shape, offset = tuple(shape), f.tell()
        if version != (1, 0):
            return (ProblemKind.UNSUPPORTED_FORMAT, f"NumPy format {version[0]}.{version[1]}; DALI's numpy reader "
                                                    "reads 1.0 (np.save writes it)")
        if len(shape) != 4:
            return ProblemKind.CORRUPT_HEADER, f"shape {shape} has {len(shape)} dims; a volume is (C, D, H, W)"
        if dtype.name not in READABLE_DTYPES or dtype.byteorder == ">":
            return (ProblemKind.UNSUPPORTED_FORMAT, f"dtype {dtype.str} ({dtype.name}); readable: "
                                                    f"{', '.join(READABLE_DTYPES)} (little-endian)")
        if fortran:
            return ProblemKind.UNSUPPORTED_FORMAT, "Fortran order; save it C-contiguous (np.ascontiguousarray)"
        if min(shape) < 1:
            return ProblemKind.ZERO_SIZE, f"shape {shape} is empty"
        voxels = int(np.prod(shape, dtype=np.int64))
        if voxels > max_voxels:
            return (ProblemKind.TOO_LARGE, f"shape {shape} is {voxels:,} voxels, over max_voxels={max_voxels:,} "
                                           "(a huge or sparse file; raise max_voxels if it is meant)")
        if size < offset + voxels * dtype.itemsize:
            return (ProblemKind.TRUNCATED, f"truncated: {size - offset} data bytes, the header promises "
                                           f"{voxels * dtype.itemsize} for {shape} {dtype.name}")
        if check_values and dtype.kind == "f":
            f.seek(offset)
            data = np.fromfile(f, dtype=dtype, count=voxels)
            if not np.isfinite(data).all():
                return ProblemKind.NON_FINITE, "holds NaN or inf values"
        return None

    return identify


def _channels(path: str) -> Tuple[int, int]:
    """(channels, bytes the file must hold) from a header the scan accepted."""
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        return int(shape[0]), f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def filter_volumes(files: Sequence[str], labels: Optional[Sequence] = None, *, on_error="raise",
                   max_voxels: int = DEFAULT_MAX_VOXELS, check_values: bool = False
                   ) -> Tuple[List[str], Optional[list], Dict[str, int]]:
    """The volume scan (``dali_mixup.scan.filter_paths`` with ``.npy`` headers), then the channel counts,
    which must agree across files. Returns ``(kept files, kept labels, {file: bytes it must
    hold})``; bad files raise ``ValidationError`` naming each, or are left out with one warning
    (``on_error``)."""
    files, labels = filter_paths(files, labels, _npy_identify(max_voxels, check_values), on_error=on_error,
                                 noun="volume")
    info = {p: _channels(p) for p in files}
    odd = _channel_problems({p: c for p, (c, _) in info.items()})
    if odd:
        if OnError(on_error) is OnError.RAISE:
            raise ValidationError(odd, total=len(files), what="volume files")
        bad = {p.path for p in odd}
        keep = [i for i, p in enumerate(files) if p not in bad]
        warn_user(_describe(odd, len(files), "files left out (bad volume files)"), BadFilesWarning)
        files, labels = [files[i] for i in keep], (None if labels is None else [labels[i] for i in keep])
    return files, labels, {p: info[p][1] for p in files}


def _channel_problems(channels: Dict[str, int]) -> List[Problem]:
    """The files whose channel count is not the first file's."""
    if not channels:
        return []
    first, c = next(iter(channels.items()))
    return [Problem(p, ProblemKind.UNSUPPORTED_FORMAT, f"{ci} channels, {first} has {c}")
            for p, ci in channels.items() if ci != c]


def scan_volumes(files: Sequence[str], check_values: bool = False,
                 max_voxels: int = DEFAULT_MAX_VOXELS) -> Tuple[int, ...]:
    """Check ``.npy`` volume files from their headers; returns the channel count of each file
    (all equal).

    Args:
        files: the paths.
        check_values: also read each file and reject NaN or inf (floating dtypes): a full read.
        max_voxels: the most voxels a header may claim.

    Raises:
        ValidationError: naming every bad file and what is wrong with it: not a regular file,
            not a NumPy file, format other than 1.0 (DALI reads 1.0 only), ndim != 4
            ``(C, D, H, W)``, a dtype outside ``READABLE_DTYPES``, Fortran order, over
            ``max_voxels``, fewer bytes than the header promises (truncated), NaN/inf values, a
            channel count other than the first file's.
    """
    files = [os.fspath(p) for p in files]
    problems = scan_paths(files, _npy_identify(max_voxels, check_values))
    bad = {p.path for p in problems}
    channels = {p: _channels(p)[0] for p in files if p not in bad}
    problems += _channel_problems(channels)
    if problems:
        raise ValidationError(problems, total=len(files), what="volume files")
    return tuple(channels.values())


def volume_source(root=None, file_list=None, files: Optional[Sequence[Tuple[str, int]]] = None,
                  allow_repeats: bool = False) -> Source:
    """Exactly one of:

    Args:
        root: ``root/<class>/<name>.npy``; classes are the sorted folder names (as ImageFolder).
        file_list: a text file of ``<path> <label>`` lines (relative paths are relative to it;
            ``dali_mixup.sources.parse_file_list``).
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
        return list_source(os.fspath(file_list), allow_repeats=allow_repeats, not_a_list=((".npy",), "a volume"))
    pairs = []
    for k, item in enumerate(files):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"files[{k}] must be (path, label), got {item!r}")
        pairs.append((utf8_path(os.fspath(item[0]), f"files[{k}]"), check_int(f"files[{k}] label", item[1], 0)))
    if not pairs:
        raise ValueError("no volume files given")
    n = max(k for _, k in pairs) + 1
    return Source(SourceKind.FILE_LIST, tuple(p for p, _ in pairs), tuple(k for _, k in pairs), numbered_classes(n))


@dataclass(frozen=True)
class VolumeLabel(SoftTarget):
    """Soft targets from the reader's ``source_info`` (each sample's path, zero-padded bytes
    ``(N, L)``): DALI's numpy reader has no labels, so the path names the class. A file served
    that is now shorter than its header promised when it was scanned (truncated since) is a
    ``BadDataError`` naming it (a read of the truncated file fails in DALI, and the volume scan of
    ``VolumeSpec.diagnose`` names it the same way).

    Args:
        paths: ``{path: class id}`` of the source.
        sizes: ``{path: bytes the file must hold}`` (from the scan); empty: not checked.
    """

    paths: Dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    sizes: Dict[str, int] = field(default_factory=dict, hash=False, compare=False)

    def prepare(self, name, value):
        rows = value.cpu().numpy().reshape(value.shape[0], -1)
        ids = []
        for row in rows:
            path = bytes(row).rstrip(b"\x00").decode()
            if path not in self.paths:
                raise ValueError(f"field {name!r}: the reader served {path!r}, which is not in the source")
            want = self.sizes.get(path)
            if want is not None:
                try:
                    have = os.stat(path).st_size
                except OSError as e:
                    raise BadDataError(f"{path}: cannot be read any more ({e.strerror or e}): it changed after the "
                                       "scan. This iterator is no longer usable; build a new one.") from None
                if have < want:
                    raise BadDataError(f"{path}: truncated after the scan: {have} bytes, its header promises {want}. "
                                       "This iterator is no longer usable; build a new one.")
            ids.append(self.paths[path])
        return super().prepare(name, torch.tensor(ids, dtype=torch.int64))


def volume_graph(source: Source, *, crop: Sequence[int], device: str = "cpu", reader_device: str = "cpu",
                 shard_id: int = 0, num_shards: int = 1, shuffle: bool = True, flip: bool = True,
                 dtype: str = "float32", mmap: bool = True) -> Dict[str, Any]:
    """The DALI graph (inside a pipeline definition): ``fn.readers.numpy`` (plain reads on the CPU;
    ``reader_device="gpu"`` reads straight to GPU memory with GPUDirect Storage) -> random crop
    ``crop = (D, H, W)`` (zero-padded where a volume is smaller) -> random flips along D, H and W
    (p = 0.5 each, with ``flip``) -> cast to ``dtype``. Outputs ``{"data": (C, D, H, W),
    "label": path bytes}``; on the GPU with ``device="gpu"``."""
    from nvidia.dali import fn, types

    d, h, w = crop
    dali_types = {"float32": types.FLOAT, "float16": types.FLOAT16, "uint8": types.UINT8}
    longest = max(len(os.fsencode(p)) for p in source.files)
    # mmap (DALI's default) or plain reads: a file truncated by whole pages while mapped kills the
    # process with SIGBUS when DALI touches a page past its new end, before VolumeLabel can name it
    io = dict(dont_use_mmap=True) if reader_device == "cpu" and not mmap else {}
    vol = fn.readers.numpy(device=reader_device, files=list(source.files), random_shuffle=shuffle,
                           shard_id=shard_id, num_shards=num_shards, pad_last_batch=True, name=READER_NAME, **io)
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
    return {"data": vol, "label": info}


def volume_pipeline(source: Source, *, batch_size: int, crop: Sequence[int], num_threads: int = 2,
                    device: str = "cpu", reader_device: str = "cpu", device_id: Optional[int] = None,
                    seed: int = 0, shard_id: int = 0, num_shards: int = 1, shuffle: bool = True, flip: bool = True,
                    dtype: str = "float32", checkpoint=None):
    """``volume_graph`` as a DALI ``Pipeline`` of its own (outputs ``(volume, path bytes)``)."""
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, enable_checkpointing=True,
                  device_id=device_id if device == "gpu" or reader_device == "gpu" else None, seed=seed)
    def pipe():
        return tuple(volume_graph(source, crop=crop, device=device, reader_device=reader_device,
                                  shard_id=shard_id, num_shards=num_shards, shuffle=shuffle, flip=flip,
                                  dtype=dtype).values())

    return pipe(checkpoint=checkpoint)


# --- the kind ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeSpec:
    """The resolved options of one volume loader (see ``create_volume_loader``); the shared ones
    are ``options``."""

    options: LoaderOptions
    source: Source
    sizes: Dict[str, int]
    batch_size: int
    crop: Tuple[int, int, int]
    mixup: Optional[MixupConfig]
    num_classes: int
    reader_device: str
    shuffle: bool
    flip: bool
    dtype: str
    max_voxels: int
    check_values: bool
    mmap: bool = True

    @property
    def num_samples(self) -> int:
        return len(self.source.files)

    def fields(self):
        return {"data": Blend(layout="NCDHW"),  # label_smoothing None: the MixupConfig's
                "label": VolumeLabel(num_classes=self.num_classes, label_smoothing=None,
                                     paths={p: k for p, k in zip(self.source.files, self.source.labels)},
                                     sizes=self.sizes)}

    def graph(self):
        o = self.options
        return volume_graph(self.source, crop=self.crop, device=o.device, reader_device=self.reader_device,
                            shard_id=o.shard_id, num_shards=o.num_shards, shuffle=self.shuffle, flip=self.flip,
                            dtype=self.dtype, mmap=self.mmap)

    def diagnose(self, error: BaseException) -> BadDataError:
        """The volume scan over the source, naming what DALI's error came from."""
        found = [str(p) for p in scan_paths(self.source.files, _npy_identify(self.max_voxels, False))]
        return bad_data_error(error_cause(error), found, "Bad volume files", "The volume header scan finds no bad file.")

    def config(self):
        return dict(crop=list(self.crop), shuffle=self.shuffle, flip=self.flip, dtype=self.dtype,
                    reader_device=self.reader_device)

    @classmethod
    def resolve(cls, options: LoaderOptions, root=None, file_list=None, files=None, *, batch_size: int,
                crop: Sequence[int], mixup: Optional[MixupConfig] = None, num_classes: Optional[int] = None,
                reader_device: str = "cpu", shuffle: bool = True, flip: bool = True, dtype: str = "float32",
                check_values: bool = False, max_voxels: int = DEFAULT_MAX_VOXELS,
                allow_repeats: bool = False, mmap: bool = True) -> "VolumeSpec":
        """Check every volume option, resolve the source and scan it (``options.scan``: on by
        default: the header scan reads a few hundred bytes a file and names every bad file before
        training, not one batch at a time)."""
        if not isinstance(reader_device, str):
            raise TypeError(f"reader_device must be 'cpu' or 'gpu', got {type(reader_device).__name__}")
        if reader_device not in ("cpu", "gpu"):
            raise ValueError(f"reader_device must be 'cpu' or 'gpu', got {reader_device!r}")
        if reader_device == "gpu" and options.device == "cpu":
            raise ValueError("reader_device='gpu' reads into GPU memory: use device='gpu' too")
        if not isinstance(dtype, str):
            raise TypeError(f"dtype must be one of {sorted(_OUT_DTYPES)}, got {type(dtype).__name__}")
        if dtype not in _OUT_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_OUT_DTYPES)}, got {dtype!r}")
        if isinstance(crop, (str, bytes)) or not hasattr(crop, "__len__") or len(crop) != 3:
            raise TypeError(f"crop must be three ints (D, H, W), got {crop!r}")
        crop = tuple(check_int(f"crop[{k}]", c, 1) for k, c in enumerate(crop))
        batch_size = check_int("batch_size", batch_size, 1)
        shuffle, flip, check_values, allow_repeats = (check_bool(n, v) for n, v in (
            ("shuffle", shuffle), ("flip", flip), ("check_values", check_values), ("allow_repeats", allow_repeats)))
        max_voxels = check_int("max_voxels", max_voxels, 1)
        if mixup is not None and not isinstance(mixup, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig or None, got {type(mixup).__name__}")
        wanted = resolve_num_classes(num_classes, mixup.num_classes if mixup is not None else None, required=False)
        source = volume_source(root, file_list, files, allow_repeats=allow_repeats)
        sizes: Dict[str, int] = {}
        if options.scan or check_values:
            kept, labels, sizes = filter_volumes(source.files, source.labels, on_error=options.on_error,
                                                 max_voxels=max_voxels, check_values=check_values)
            source = Source(source.kind, tuple(kept), tuple(labels), source.classes)
        c = resolve_num_classes(wanted, None, source.num_classes)
        if mixup is not None and mixup.num_classes != c:
            mixup = dataclasses.replace(mixup, num_classes=c)
        return cls(options=options, source=source, sizes=sizes, batch_size=batch_size, crop=crop, mixup=mixup,
                   num_classes=c, reader_device=reader_device, shuffle=shuffle, flip=flip, dtype=dtype,
                   max_voxels=max_voxels, check_values=check_values, mmap=check_bool("mmap", mmap))


#: the volume kind as the front knows it (its header scan is on by default)
KIND = Kind("volume", VolumeSpec.resolve, default_validate=True, samples="volumes")


def create_volume_loader(root=None, file_list=None, files=None, *, batch_size: int, crop: Sequence[int],
                         mixup: Optional[MixupConfig] = None, num_classes: Optional[int] = None,
                         reader_device: str = "cpu", shuffle: bool = True, flip: bool = True,
                         dtype: str = "float32", check_values: bool = False, max_voxels: int = DEFAULT_MAX_VOXELS,
                         allow_repeats: bool = False, mmap: bool = True, device: str = "auto",
                         device_id: Optional[int] = None,
                         shard_id: Optional[int] = None, num_shards: Optional[int] = None,
                         num_threads: Optional[int] = None, seed: int = 0, last_batch_policy="PARTIAL",
                         prefetch_queue_depth: int = PREFETCH_QUEUE_DEPTH, on_error: str = "raise",
                         validate: Optional[bool] = None, auto_reset: bool = True):
    """A ``DALIMixupIterator`` over ``.npy`` volumes with mixup and cuboid CutMix:
    ``build_loader("volume", ...)``.

    Args:
        root / file_list / files: the volumes (``volume_source``).
        batch_size: volumes per batch.
        crop: ``(D, H, W)`` of the random crop every volume is cut (or zero-padded) to.
        mixup: a ``MixupConfig`` (CutMix draws cuboids); ``None``: no mixing.
        num_classes: C (default: ``mixup.num_classes``, else the source's).
        reader_device: ``"cpu"`` or ``"gpu"`` (GPUDirect Storage, needs cuFile).
        shuffle: read in random order. flip: random flips along each spatial axis.
        dtype: ``"float32"``, ``"float16"`` or ``"uint8"`` (the cast after cropping).
        check_values: read every file up front and reject NaN/inf.
        mmap: read the files through a memory map (DALI's default, the fastest: plain reads
            measured 2.5x slower on small cached files). A file truncated during training by
            less than a page is served zero-filled by either and named at the batch
            (``BadDataError``); by whole pages, a mapped read ends the process (SIGBUS) before
            it can be named: ``mmap=False`` names it instead.
        max_voxels: the most voxels a file's header may claim (``DEFAULT_MAX_VOXELS``).
        allow_repeats: a file list may list a volume more than once on purpose.
        device, device_id, shard_id, num_shards, num_threads, seed, last_batch_policy,
            prefetch_queue_depth, on_error, validate, auto_reset: the shared options
            (``dali_mixup.options``), as ``create_loader``'s: ``device="auto"`` (crop, flips and mix on
            the GPU when there is one), shards by global rank under torchrun, ``on_error="skip"``
            leaves bad volumes out with one warning; ``validate`` (default ``None``: on for
            volumes) scans every file's header first, and checks at each batch that no file
            served has been truncated since.

    Returns:
        the iterator; each batch ``{"data": (N, C, D, H, W), "label": (N, num_classes) float32,
        "label_index", "lam", "perm"}`` (+ ``"cutmix"``, ``"boxes"`` (N, 6) with CutMix on).
    """
    return build_loader("volume", **locals())
