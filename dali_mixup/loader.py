"""``create_loader``: the mixup iterator for the common case, in one call."""

from __future__ import annotations

import dataclasses
import enum
import numbers
import os
from typing import Optional, Sequence, Tuple, Union

import torch

from .config import MixupConfig
from .sources import Source, SourceKind, resolve_source

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "uint8": torch.uint8}


class Device(str, enum.Enum):
    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"


def distributed_defaults() -> Tuple[int, int, int]:
    """(rank, world_size, local_rank) from ``torch.distributed`` when initialised, else from the
    torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), else (0, 1, 0)."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), local
    return 0, 1, 0


def _check_int(name, value, low, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_pair(name, value, low, high):
    if not (isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, numbers.Real) for v in value)):
        raise TypeError(f"{name} must be a pair of numbers, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (low < a <= b <= high):
        raise ValueError(f"{name} must satisfy {low} < {name}[0] <= {name}[1] <= {high}, got {value!r}")
    return (a, b)


def resolve_device(device: Union[str, Device]) -> str:
    """'gpu' or 'cpu'; 'auto' picks the GPU when torch sees one."""
    try:
        device = Device(device)
    except ValueError:
        raise ValueError(f"device must be 'auto', 'gpu' or 'cpu', got {device!r}") from None
    if device is Device.AUTO:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device is Device.GPU and not torch.cuda.is_available():
        raise ValueError("device='gpu' but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return device.value


def create_loader(
    root=None,
    file_list=None,
    shards=None,
    *,
    batch_size: int,
    image_size: int = 224,
    mixup: Optional[MixupConfig] = None,
    train: bool = True,
    device: Union[str, Device] = "auto",
    num_threads: Optional[int] = None,
    seed: int = 0,
    shard_id: Optional[int] = None,
    num_shards: Optional[int] = None,
    dtype: str = "float32",
    layout: str = "NCHW",
    last_batch_policy=None,
    auto_reset: bool = True,
    scale: Tuple[float, float] = (0.08, 1.0),
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    resize_shorter: Optional[int] = None,
    hw_decoder_load: float = 0.65,
    num_classes: Optional[int] = None,
    device_id: Optional[int] = None,
    prefetch_queue_depth: int = 2,
    validate: bool = False,
    on_error: str = "raise",
    max_pixels: Optional[int] = None,
):
    """Build the pipeline and the ``DALIMixupIterator`` over it.

    Args:
        root / file_list / shards: the data, exactly one (see ``dali_mixup.sources``).
        batch_size: samples per batch (per process).
        image_size: output height and width.
        mixup: ``MixupConfig``; ``None`` = no mixup (one-hot targets). Ignored when
            ``train=False`` (validation never mixes).
        train: training augmentation (random resized crop, flip, shuffle) or validation
            (resize shorter side, center crop, file order).
        device: 'auto' (GPU when there is one), 'gpu' (nvJPEG + GPU augmentation + CuPy kernel),
            'cpu' (DALI CPU backend + CPU twin).
        num_threads: DALI CPU threads; default: the CPU cores divided among local ranks.
        seed: seeds DALI (shuffle, crops, flips) and the mixup sampler: same seed, same batches.
        shard_id, num_shards: default to rank and world size under ``torch.distributed``/torchrun.
        dtype: 'float32', 'float16', 'bfloat16' (cast by the mixup kernel) or 'uint8' (no
            normalisation).
        layout: 'NCHW' or 'NHWC'.
        last_batch_policy: DALI ``LastBatchPolicy`` or its name; default PARTIAL: every sample
            exactly once per epoch, the last batch may be short. All ranks run the same number
            of batches (``len(loader)``) whatever the policy.
        auto_reset: start the next epoch when one ends (``for epoch ...: for batch in loader``).
        scale, ratio: RandomResizedCrop's area and aspect-ratio ranges.
        flip_prob: chance of a horizontal flip in training (0 for digits, text, ...).
        mean, std: normalisation, in [0, 1] units.
        resize_shorter: validation resize (default ``image_size / 0.875``).
        hw_decoder_load: share of JPEGs sent to the A100/H100 hardware decoder (GPU only).
        num_classes: C; default: ``mixup.num_classes``, else the dataset's class count.
        device_id: CUDA device; default the local rank.
        prefetch_queue_depth: batches DALI prepares ahead.
        validate: scan every file's header before training (``dali_mixup.validate``): missing,
            empty, truncated, not an image, too many pixels. Bad files raise or are skipped as
            ``on_error`` says. Without it, a bad file raises at the batch that meets it, naming
            the file.
        on_error: 'raise' (default): an exception naming each bad file; 'skip': bad files are
            left out up front (this scans, whatever ``validate`` says) with one warning listing
            them and their count.
        max_pixels: the decompression-bomb limit of the scan (default: Pillow's, ~89 Mpx).

    Returns:
        ``DALIMixupIterator``, with ``.source`` (the resolved ``Source``) and ``.classes``;
        ``state_dict()``/``load_state_dict()`` resume it mid-epoch.
    """
    from .iterator import DALIMixupIterator, LastBatchPolicy
    from .pipeline import READER_NAME, train_pipeline, val_pipeline

    batch_size = _check_int("batch_size", batch_size, 1)
    image_size = _check_int("image_size", image_size, 1)
    seed = _check_int("seed", seed, 0)
    prefetch_queue_depth = _check_int("prefetch_queue_depth", prefetch_queue_depth, 1)
    if mixup is not None and not isinstance(mixup, MixupConfig):
        raise TypeError(f"mixup must be a MixupConfig or None, got {type(mixup).__name__}")
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {train!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    scale = _check_pair("scale", scale, 0.0, 1.0)
    ratio = _check_pair("ratio", ratio, 0.0, float("inf"))
    for name, v in (("mean", mean), ("std", std)):
        if not (isinstance(v, Sequence) and len(v) == 3 and all(isinstance(c, numbers.Real) for c in v)):
            raise TypeError(f"{name} must be 3 numbers (RGB), got {v!r}")
    if any(float(s) <= 0 for s in std):
        raise ValueError(f"std must be > 0, got {std!r}")
    if isinstance(flip_prob, bool) or not isinstance(flip_prob, numbers.Real) or not 0 <= flip_prob <= 1:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}")
    if isinstance(hw_decoder_load, bool) or not isinstance(hw_decoder_load, numbers.Real) or not 0 <= hw_decoder_load <= 1:
        raise ValueError(f"hw_decoder_load must be in [0, 1], got {hw_decoder_load!r}")
    if last_batch_policy is None:
        last_batch_policy = LastBatchPolicy.PARTIAL
    elif isinstance(last_batch_policy, str):
        try:
            last_batch_policy = LastBatchPolicy[last_batch_policy.upper()]
        except KeyError:
            raise ValueError(f"last_batch_policy must be FILL, DROP or PARTIAL, got {last_batch_policy!r}") from None
    elif not isinstance(last_batch_policy, LastBatchPolicy):
        raise TypeError(f"last_batch_policy must be a LastBatchPolicy or its name, got {last_batch_policy!r}")

    rank, world, local_rank = distributed_defaults()
    num_shards = _check_int("num_shards", num_shards if num_shards is not None else world, 1)
    shard_id = _check_int("shard_id", shard_id if shard_id is not None else (rank if num_shards == world else 0), 0)
    if shard_id >= num_shards:
        raise ValueError(f"shard_id must be < num_shards ({num_shards}), got {shard_id}")
    dev = resolve_device(device)
    if dev == "gpu":
        try:
            import cupy  # noqa: F401
        except ImportError as e:
            raise ValueError("device='gpu' needs CuPy: pip install 'dali-mixup[cuda13]' (or [cuda12])") from e
        device_id = _check_int("device_id", device_id if device_id is not None else local_rank, 0)
    else:
        device_id = None
    local_world = max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1)
    if num_threads is None:
        num_threads = max(1, (os.cpu_count() or 1) // local_world)
    num_threads = _check_int("num_threads", num_threads, 1)

    from .validate import DEFAULT_MAX_PIXELS, OnError, filter_files

    try:
        on_error = OnError(on_error)
    except ValueError:
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}") from None
    if not isinstance(validate, bool):
        raise TypeError(f"validate must be a bool, got {validate!r}")
    max_pixels = _check_int("max_pixels", DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels, 1)

    wanted_classes = num_classes if num_classes is not None else (mixup.num_classes if mixup else None)
    source: Source = resolve_source(root, file_list, shards, num_classes=wanted_classes)
    if validate or on_error is OnError.SKIP:
        if source.kind is SourceKind.WEBDATASET:
            raise ValueError("validate=True / on_error='skip' need image files; for WebDataset shards DALI "
                             "reports a bad sample at the batch that holds it")
        files, labels = filter_files(source.files, source.labels, on_error=on_error, max_pixels=max_pixels)
        source = dataclasses.replace(source, files=tuple(files), labels=tuple(labels))
    if wanted_classes is None:
        wanted_classes = source.num_classes
    wanted_classes = _check_int("num_classes", wanted_classes, 1)
    if wanted_classes < source.num_classes:
        raise ValueError(f"num_classes={wanted_classes} is smaller than the dataset's {source.num_classes} classes")
    if mixup is not None and (mixup.num_classes != wanted_classes):
        mixup = dataclasses.replace(mixup, num_classes=wanted_classes)
    if not train:
        mixup = None

    common = dict(source=source, device=dev, image_size=image_size, mean=tuple(mean), std=tuple(std),
                  dtype="float32" if dtype == "bfloat16" else dtype, layout=layout, hw_decoder_load=float(hw_decoder_load),
                  shard_id=shard_id, num_shards=num_shards, batch_size=batch_size, num_threads=num_threads,
                  device_id=device_id, seed=seed, prefetch_queue_depth=prefetch_queue_depth)
    def make_pipeline(checkpoint=None):
        if train:
            return train_pipeline(scale=scale, ratio=ratio, flip_prob=float(flip_prob), checkpoint=checkpoint, **common)
        return val_pipeline(resize_shorter=resize_shorter, checkpoint=checkpoint, **common)

    it = DALIMixupIterator(
        make_pipeline(),
        reader_name=READER_NAME,
        auto_reset=auto_reset,
        last_batch_policy=last_batch_policy,
        mixup=mixup,
        seed=seed,
        num_classes=wanted_classes,
        dtype=_DTYPES[dtype],
        pipeline_factory=make_pipeline,
        source=source,
        layout=layout,
    )
    return it
