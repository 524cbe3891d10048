"""``LoaderSpec``: every option of ``create_loader``, resolved and validated once.

``LoaderSpec.resolve(...)`` checks each argument (with ``dali_mixup.checks``), fills the
defaults that depend on the machine (device, shards under torchrun, threads, class count) and
returns a frozen spec; the pipeline and the iterator are built from it and check nothing again.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch

from .checks import (IMAGE_LAYOUTS, MAX_IMAGE_SIZE, check_bool, check_choice, check_int, check_layout, check_pair, check_real,
                     check_rgb, check_seed, resolve_num_classes)
from .config import MixupConfig
from .sources import Source, SourceKind, resolve_source

#: output dtypes: DALI produces float32/float16/uint8; bfloat16 is written by the mixup kernel
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "uint8": torch.uint8}


class Device(str, enum.Enum):
    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"


class LastBatch(str, enum.Enum):
    """DALI's ``LastBatchPolicy`` by name (DALI is imported only when the pipeline is built)."""

    FILL = "FILL"
    DROP = "DROP"
    PARTIAL = "PARTIAL"


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


def resolve_device(device: Union[str, Device]) -> str:
    """'gpu' or 'cpu'; 'auto' picks the GPU when torch sees one."""
    device = check_choice("device", Device, device)
    if device is Device.AUTO:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device is Device.GPU and not torch.cuda.is_available():
        raise ValueError("device='gpu' but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return device.value


def resolve_shards(shard_id: Optional[int], num_shards: Optional[int]) -> Tuple[int, int]:
    """``(shard_id, num_shards)``: both default to rank and world size under torchrun or
    ``torch.distributed``. With an explicit ``num_shards`` in a distributed run, ``shard_id``
    must be given too (a rank cannot be mapped to one of another number of shards)."""
    rank, world, _ = distributed_defaults()
    num_shards = check_int("num_shards", world if num_shards is None else num_shards, 1)
    if shard_id is None:
        if num_shards != world:
            if world > 1:
                raise ValueError(
                    f"num_shards={num_shards} in a run of {world} ranks: give shard_id too (each rank reads "
                    f"its own shard), or leave both unset to shard by rank"
                )
            shard_id = 0
        else:
            shard_id = rank
    shard_id = check_int("shard_id", shard_id, 0)
    if shard_id >= num_shards:
        raise ValueError(f"shard_id must be < num_shards ({num_shards}), got {shard_id}")
    return shard_id, num_shards


@dataclass(frozen=True)
class LoaderSpec:
    """The resolved options of one loader (see ``create_loader`` for each one's meaning)."""

    source: Source
    batch_size: int
    image_size: int
    mixup: Optional[MixupConfig]
    train: bool
    device: str
    num_threads: int
    seed: int
    shard_id: int
    num_shards: int
    dtype: str
    layout: str
    last_batch_policy: LastBatch
    auto_reset: bool
    scale: Tuple[float, float]
    ratio: Tuple[float, float]
    flip_prob: float
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    resize_shorter: Optional[int]
    hw_decoder_load: float
    num_classes: int
    device_id: Optional[int]
    prefetch_queue_depth: int
    fused_normalize: bool = False

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def pipeline_kwargs(self) -> Dict[str, Any]:
        """The arguments of ``train_pipeline`` / ``val_pipeline`` (DALI makes float32 for bfloat16)."""
        common = dict(source=self.source, device=self.device, image_size=self.image_size, mean=self.mean,
                      std=self.std, dtype="float32" if self.dtype == "bfloat16" else self.dtype, layout=self.layout,
                      hw_decoder_load=self.hw_decoder_load, shard_id=self.shard_id, num_shards=self.num_shards,
                      batch_size=self.batch_size, num_threads=self.num_threads, device_id=self.device_id,
                      seed=self.seed, prefetch_queue_depth=self.prefetch_queue_depth)
        if self.fused_normalize:  # DALI hands over uint8 HWC crops: normalised by the mixup kernel
            common.update(fused_normalize=True, dtype="uint8", layout="NHWC")
        if self.train:
            common.update(scale=self.scale, ratio=self.ratio, flip_prob=self.flip_prob)
        else:
            common.update(resize_shorter=self.resize_shorter)
        return common

    @classmethod
    def resolve(
        cls, root=None, file_list=None, shards=None, *, batch_size: int, image_size: int = 224,
        mixup: Optional[MixupConfig] = None, train: bool = True, device: Union[str, Device] = "auto",
        num_threads: Optional[int] = None, seed: int = 0, shard_id: Optional[int] = None,
        num_shards: Optional[int] = None, dtype: str = "float32", layout: str = "NCHW", last_batch_policy=None,
        auto_reset: bool = True, scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_prob: float = 0.5, mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225), resize_shorter: Optional[int] = None,
        hw_decoder_load: float = 0.65, num_classes: Optional[int] = None, device_id: Optional[int] = None,
        prefetch_queue_depth: int = 2, validate: bool = False, on_error: str = "raise",
        max_pixels: Optional[int] = None, allow_repeats: bool = False, fused_normalize: bool = False,
    ) -> "LoaderSpec":
        """Check every argument, resolve the source (and scan it when ``validate`` or
        ``on_error='skip'``), and fill the machine-dependent defaults."""
        from .validate import DEFAULT_MAX_PIXELS, OnError, filter_files

        batch_size = check_int("batch_size", batch_size, 1)
        image_size = check_int("image_size", image_size, 1, MAX_IMAGE_SIZE)
        seed = check_seed("seed", seed)
        prefetch_queue_depth = check_int("prefetch_queue_depth", prefetch_queue_depth, 1)
        if mixup is not None and not isinstance(mixup, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig or None, got {type(mixup).__name__}")
        check_bool("train", train)
        check_bool("auto_reset", auto_reset)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(sorted(DTYPES))}; got {dtype!r}")
        check_layout(layout, allowed=IMAGE_LAYOUTS)
        check_bool("fused_normalize", fused_normalize)
        if fused_normalize and dtype == "uint8":
            raise ValueError("fused_normalize=True normalises in the mixup kernel: dtype must be 'float32', "
                             "'float16' or 'bfloat16' ('uint8' means no normalisation)")
        scale = check_pair("scale", scale, 0.0, 1.0)
        ratio = check_pair("ratio", ratio, 0.0, float("inf"))
        mean = check_rgb("mean", mean)
        std = check_rgb("std", std, positive=True)
        flip_prob = check_real("flip_prob", flip_prob, low=0.0, high=1.0)
        hw_decoder_load = check_real("hw_decoder_load", hw_decoder_load, low=0.0, high=1.0)
        if resize_shorter is not None:
            resize_shorter = check_int("resize_shorter", resize_shorter, 1, MAX_IMAGE_SIZE)
        policy = LastBatch.PARTIAL if last_batch_policy is None else _policy(last_batch_policy)
        shard_id, num_shards = resolve_shards(shard_id, num_shards)
        dev = resolve_device(device)
        _, _, local_rank = distributed_defaults()
        if dev == "gpu":
            try:
                import cupy  # noqa: F401
            except ImportError as e:
                raise ValueError("device='gpu' needs CuPy: pip install 'dali-mixup[cuda13]' (or [cuda12])") from e
            device_id = check_int("device_id", local_rank if device_id is None else device_id, 0)
        else:
            device_id = None
        local_world = max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1)
        num_threads = check_int("num_threads", max(1, (os.cpu_count() or 1) // local_world)
                                if num_threads is None else num_threads, 1)
        on_error = check_choice("on_error", OnError, on_error)
        check_bool("validate", validate)
        max_pixels = check_int("max_pixels", DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels, 1)
        from_mixup = mixup.num_classes if mixup is not None else None
        wanted = resolve_num_classes(num_classes, from_mixup, required=False)

        check_bool("allow_repeats", allow_repeats)
        source = resolve_source(root, file_list, shards, num_classes=wanted, allow_repeats=allow_repeats)
        if validate or on_error is OnError.SKIP:
            if source.kind is SourceKind.WEBDATASET:
                raise ValueError("validate=True / on_error='skip' need image files; for WebDataset shards DALI "
                                 "reports a bad sample at the batch that holds it")
            files, labels = filter_files(source.files, source.labels, on_error=on_error, max_pixels=max_pixels)
            source = dataclasses.replace(source, files=tuple(files), labels=tuple(labels))
        num_classes = resolve_num_classes(wanted, None, source.num_classes)
        if mixup is not None and mixup.num_classes != num_classes:
            mixup = dataclasses.replace(mixup, num_classes=num_classes)
        return cls(
            source=source, batch_size=batch_size, image_size=image_size, mixup=mixup if train else None,
            train=train, device=dev, num_threads=num_threads, seed=seed, shard_id=shard_id, num_shards=num_shards,
            dtype=dtype, layout=layout, last_batch_policy=policy, auto_reset=auto_reset, scale=scale, ratio=ratio,
            flip_prob=flip_prob, mean=mean, std=std, resize_shorter=resize_shorter,
            hw_decoder_load=hw_decoder_load, num_classes=num_classes, device_id=device_id,
            prefetch_queue_depth=prefetch_queue_depth, fused_normalize=fused_normalize,
        )


def _policy(value) -> LastBatch:
    """A ``LastBatch`` from DALI's ``LastBatchPolicy`` or its name, any case."""
    if isinstance(value, LastBatch):
        return value
    if isinstance(value, enum.Enum) and type(value).__name__ == "LastBatchPolicy":
        return LastBatch[value.name]
    if isinstance(value, str) and value.upper() in LastBatch.__members__:
        return LastBatch[value.upper()]
    if isinstance(value, str):
        raise ValueError(f"last_batch_policy must be FILL, DROP or PARTIAL, got {value!r}")
    raise TypeError(f"last_batch_policy must be a LastBatchPolicy or its name, got {value!r}")
