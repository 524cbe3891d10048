"""The DALI pipelines: one definition for GPU (``device="gpu"``: nvJPEG ``mixed`` decode, GPU
augmentation) and CPU (``device="cpu"``: CPU decode and augmentation, ``device_id=None``).

Training: read -> decode only a random crop (``decoders.image_random_crop``, the area/aspect
sampling of torchvision's RandomResizedCrop) -> resize to ``image_size`` -> random horizontal
flip + normalize + layout in one ``crop_mirror_normalize``. Validation: decode -> resize the
shorter side -> center crop -> normalize. Mixup is not here: the iterator applies it to the
finished batch (``dali_mixup.iterator``).

Output dtypes from DALI: float32, float16, uint8 (no normalisation). DALI has no bfloat16:
ask the iterator for ``dtype=torch.bfloat16`` and the mixup kernel casts as it writes.

``fused_normalize=True``: the pipeline stops before ``crop_mirror_normalize`` and hands over the
uint8 crops in HWC and, in training, the per-sample mirror coin it drew (outputs ``(images,
labels, mirror)``; validation ``(images, labels)``, the center crop still cut by DALI, uint8, no
normalisation). The mixup kernel then normalises, mirrors, lays out, casts and mixes in one pass
(``fields.NormalizeBlend``): one full float pass over the batch less on the GPU. The random
operators are made in the same order as in the default form, so the same seed gives the same
crops and flips.
"""

from __future__ import annotations

from typing import Sequence, Tuple

from nvidia.dali import fn, pipeline_def, types

from ..checks import IMAGE_LAYOUTS, check_layout
from ..constants import IMAGENET_MEAN, IMAGENET_STD, READER_NAME
from ..sources import WDS_IMAGE_EXT, WDS_LABEL_EXT, Source, SourceKind

DALI_DTYPES = {"float32": types.FLOAT, "float16": types.FLOAT16, "uint8": types.UINT8}
LAYOUTS = {"NCHW": "CHW", "NHWC": "HWC"}


def read_source(source: Source, *, shard_id: int = 0, num_shards: int = 1, shuffle: bool = True,
                pad_last_batch: bool = True):
    """The reader (named ``READER_NAME``). Returns ``(encoded, labels)``: labels are int32 (1,)
    per sample for files, and the raw ASCII bytes of the ``cls`` member, zero-padded to the
    batch's longest, for WebDataset (parsed by the iterator)."""
    common = dict(shard_id=shard_id, num_shards=num_shards, random_shuffle=shuffle,
                  pad_last_batch=pad_last_batch, name=READER_NAME)
    if shuffle:
        common["initial_fill"] = 1024
    if source.kind is SourceKind.WEBDATASET:
        encoded, cls = fn.readers.webdataset(
            paths=list(source.shards), ext=[WDS_IMAGE_EXT, WDS_LABEL_EXT],
            missing_component_behavior="error", **common,
        )
        return encoded, fn.pad(cls, fill_value=0)
    return fn.readers.file(files=list(source.files), labels=list(source.labels), **common)


def _normalize(images, *, device, dtype, layout, mean, std, mirror=None, crop=None):
    if dtype not in DALI_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DALI_DTYPES)} in the DALI pipeline, got {dtype!r}")
    check_layout(layout, allowed=IMAGE_LAYOUTS)
    if dtype == "uint8":
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        mean, std = [m * 255 for m in mean], [s * 255 for s in std]
    kwargs = dict(device=device, dtype=DALI_DTYPES[dtype], output_layout=LAYOUTS[layout], mean=mean, std=std)
    if mirror is not None:
        kwargs["mirror"] = mirror
    if crop is not None:
        kwargs["crop"] = crop
    return fn.crop_mirror_normalize(images, **kwargs)


def _decoder_args(device: str, hw_decoder_load: float):
    if device == "gpu":
        return dict(device="mixed", hw_decoder_load=hw_decoder_load)
    if device == "cpu":
        return dict(device="cpu")
    raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")


def decode_augment(encoded, *, device: str, image_size: int, scale: Tuple[float, float] = (0.08, 1.0),
                   ratio: Tuple[float, float] = (3 / 4, 4 / 3), mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD, dtype: str = "float32", layout: str = "NCHW",
                   hw_decoder_load: float = 0.65, flip_prob: float = 0.5, fused_normalize: bool = False):
    """Training augmentation on ``device``: random-resized-crop decode, resize, flip, normalize.
    With ``fused_normalize``: ``(uint8 HWC crops, mirror coin)``, flip and normalisation left to
    the mixup kernel."""
    images = fn.decoders.image_random_crop(
        encoded, output_type=types.RGB, random_area=list(scale), random_aspect_ratio=list(ratio),
        num_attempts=10, **_decoder_args(device, hw_decoder_load),
    )
    images = fn.resize(images, device=device, resize_x=image_size, resize_y=image_size, antialias=True)
    mirror = fn.random.coin_flip(probability=flip_prob)
    if fused_normalize:
        return images, mirror
    return _normalize(images, device=device, dtype=dtype, layout=layout, mean=mean, std=std, mirror=mirror)


def decode_center(encoded, *, device: str, image_size: int, resize_shorter: int, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD, dtype: str = "float32", layout: str = "NCHW", hw_decoder_load: float = 0.65,
                  fused_normalize: bool = False):
    """Validation: decode, resize the shorter side to ``resize_shorter``, center crop, normalize.
    With ``fused_normalize``: the uint8 HWC center crops (the same crop window)."""
    images = fn.decoders.image(encoded, output_type=types.RGB, **_decoder_args(device, hw_decoder_load))
    images = fn.resize(images, device=device, resize_shorter=resize_shorter, antialias=True)
    if fused_normalize:
        return fn.crop_mirror_normalize(images, device=device, dtype=types.UINT8, output_layout="HWC",
                                        crop=(image_size, image_size))
    return _normalize(images, device=device, dtype=dtype, layout=layout, mean=mean, std=std,
                      crop=(image_size, image_size))


@pipeline_def(enable_checkpointing=True)
def train_pipeline(source: Source, device: str = "cpu", image_size: int = 224, scale=(0.08, 1.0),
                   ratio=(3 / 4, 4 / 3), mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype: str = "float32",
                   layout: str = "NCHW", hw_decoder_load: float = 0.65, shard_id: int = 0, num_shards: int = 1,
                   shuffle: bool = True, flip_prob: float = 0.5, fused_normalize: bool = False):
    """Training pipeline: ``(images, labels)``, or with ``fused_normalize`` ``(uint8 HWC crops,
    labels, mirror)``. Pipeline arguments (``batch_size``, ``num_threads``, ``device_id`` —
    ``None`` for CPU — ``seed``, ...) as for any ``pipeline_def``."""
    encoded, labels = read_source(source, shard_id=shard_id, num_shards=num_shards, shuffle=shuffle)
    images = decode_augment(encoded, device=device, image_size=image_size, scale=scale, ratio=ratio, mean=mean,
                            std=std, dtype=dtype, layout=layout, hw_decoder_load=hw_decoder_load,
                            flip_prob=flip_prob, fused_normalize=fused_normalize)
    if fused_normalize:
        images, mirror = images
        return images, labels, mirror
    return images, labels


@pipeline_def(enable_checkpointing=True)
def val_pipeline(source: Source, device: str = "cpu", image_size: int = 224, resize_shorter=None,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype: str = "float32", layout: str = "NCHW",
                 hw_decoder_load: float = 0.65, shard_id: int = 0, num_shards: int = 1,
                 fused_normalize: bool = False):
    """Validation pipeline: ``(images, labels)`` in file order (``fused_normalize``: the images
    are uint8 HWC center crops); ``resize_shorter`` defaults to ``round(image_size / 0.875)``
    (256 for 224)."""
    encoded, labels = read_source(source, shard_id=shard_id, num_shards=num_shards, shuffle=False)
    images = decode_center(encoded, device=device, image_size=image_size,
                           resize_shorter=resize_shorter or round(image_size / 0.875), mean=mean, std=std,
                           dtype=dtype, layout=layout, hw_decoder_load=hw_decoder_load,
                           fused_normalize=fused_normalize)
    return images, labels
