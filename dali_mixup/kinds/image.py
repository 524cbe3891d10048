"""The image kind: ``ImageSpec`` (every option of ``create_loader`` resolved and validated once),
its DALI graph (``dali_mixup.kinds.image_pipeline``), its file scan
(``dali_mixup.kinds.image_scan``) and ``create_loader``, the mixup iterator for image
classification in one call: ``build_loader("image", ...)``.

``ImageSpec.resolve(options, ...)`` checks each image argument, resolves the source (folder, file
list or WebDataset shards; scanned when the options say so) and the class count; the front
(``dali_mixup.front``) builds the pipeline (``graph``) and the iterator from it and checks nothing
again. The shared options (device, shards, threads, seed, ...) are ``spec.options``
(``dali_mixup.options``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch

from ..checks import (IMAGE_LAYOUTS, MAX_IMAGE_SIZE, check_bool, check_int, check_layout, check_pair, check_real,
                      check_rgb, resolve_num_classes)
from ..config import MixupConfig
from ..constants import IMAGENET_MEAN, IMAGENET_STD, PREFETCH_QUEUE_DEPTH
from ..front import Kind, build_loader
from ..options import Device, LoaderOptions
from ..sources import Source, SourceKind, resolve_source

__all__ = ["DTYPES", "ImageSpec", "KIND", "create_loader"]

#: output dtypes: DALI produces float32/float16/uint8; bfloat16 is written by the mixup kernel
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "uint8": torch.uint8}


@dataclass(frozen=True)
class ImageSpec:
    """The resolved options of one loader (see ``create_loader`` for each one's meaning)."""

    options: LoaderOptions
    source: Source
    batch_size: int
    image_size: int
    mixup: Optional[MixupConfig]
    train: bool
    dtype: str
    layout: str
    scale: Tuple[float, float]
    ratio: Tuple[float, float]
    flip_prob: float
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    resize_shorter: Optional[int]
    hw_decoder_load: float
    num_classes: int
    fused_normalize: bool = False

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def num_samples(self) -> Optional[int]:
        return self.source.num_samples

    def fields(self) -> Dict[str, Any]:
        """``{"data": Blend, "label": SoftTarget}``; fused: ``NormalizeBlend`` (+ ``mirror`` in training)."""
        from ..fields import LabelEncoding, MirrorFlags, NormalizeBlend
        from ..iterator import classification_fields

        encoding = LabelEncoding.ASCII if self.source.kind is SourceKind.WEBDATASET else LabelEncoding.INDEX
        fields = classification_fields(self.num_classes, layout=self.layout, dtype=self.torch_dtype,
                                       label_smoothing=None, encoding=encoding)
        if self.fused_normalize:
            fields["data"] = NormalizeBlend(mean=self.mean, std=self.std, layout=self.layout, dtype=self.torch_dtype,
                                            mirror="mirror" if self.train else None)
            if self.train:
                fields["mirror"] = MirrorFlags()
        return fields

    def graph(self) -> Dict[str, Any]:
        """The DALI graph (inside the pipeline definition): read, decode, augment, normalise."""
        from .image_pipeline import decode_augment, decode_center, read_source

        o = self.options
        dtype = "float32" if self.dtype == "bfloat16" else self.dtype  # DALI has no bfloat16
        common = dict(device=o.device, image_size=self.image_size, mean=self.mean, std=self.std, dtype=dtype,
                      layout=self.layout, hw_decoder_load=self.hw_decoder_load,
                      fused_normalize=self.fused_normalize)
        encoded, labels = read_source(self.source, shard_id=o.shard_id, num_shards=o.num_shards, shuffle=self.train)
        if not self.train:
            images = decode_center(encoded, resize_shorter=self.resize_shorter or round(self.image_size / 0.875),
                                   **common)
            return {"data": images, "label": labels}
        images = decode_augment(encoded, scale=self.scale, ratio=self.ratio, flip_prob=self.flip_prob, **common)
        if self.fused_normalize:
            images, mirror = images
            return {"data": images, "label": labels, "mirror": mirror}
        return {"data": images, "label": labels}

    def diagnose(self, error: BaseException):
        """The bad files (image header scan) or shard members DALI's error came from."""
        from .image_scan import diagnose_read_error, diagnose_shards

        if self.source.kind is SourceKind.WEBDATASET:
            return diagnose_shards(error, self.source.shards, self.num_classes)
        return diagnose_read_error(error, self.source.files)

    def config(self) -> Dict[str, Any]:
        """What the graph was built with (a saved state must match it)."""
        return dict(train=self.train, image_size=self.image_size, dtype=self.dtype, layout=self.layout,
                    fused_normalize=self.fused_normalize, scale=list(self.scale), ratio=list(self.ratio),
                    flip_prob=self.flip_prob, resize_shorter=self.resize_shorter, mean=list(self.mean),
                    std=list(self.std))

    @classmethod
    def resolve(
        cls, options: LoaderOptions, root=None, file_list=None, shards=None, *, batch_size: int,
        image_size: int = 224, mixup: Optional[MixupConfig] = None, train: bool = True, dtype: str = "float32",
        layout: str = "NCHW", scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_prob: float = 0.5, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
        resize_shorter: Optional[int] = None, hw_decoder_load: float = 0.65, num_classes: Optional[int] = None,
        max_pixels: Optional[int] = None, allow_repeats: bool = False, fused_normalize: bool = False,
    ) -> "ImageSpec":
        """Check every image argument and resolve the source (scanned when ``options.scan``)."""
        from .image_scan import DEFAULT_MAX_PIXELS, filter_files

        batch_size = check_int("batch_size", batch_size, 1)
        image_size = check_int("image_size", image_size, 1, MAX_IMAGE_SIZE)
        if mixup is not None and not isinstance(mixup, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig or None, got {type(mixup).__name__}")
        check_bool("train", train)
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
        max_pixels = check_int("max_pixels", DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels, 1)
        from_mixup = mixup.num_classes if mixup is not None else None
        wanted = resolve_num_classes(num_classes, from_mixup, required=False)

        check_bool("allow_repeats", allow_repeats)
        source = resolve_source(root, file_list, shards, num_classes=wanted, allow_repeats=allow_repeats)
        if options.scan:
            if source.kind is SourceKind.WEBDATASET:
                raise ValueError("validate=True / on_error='skip' need image files; for WebDataset shards DALI "
                                 "reports a bad sample at the batch that holds it")
            files, labels = filter_files(source.files, source.labels, on_error=options.on_error,
                                         max_pixels=max_pixels)
            source = dataclasses.replace(source, files=tuple(files), labels=tuple(labels))
        num_classes = resolve_num_classes(wanted, None, source.num_classes)
        if mixup is not None and mixup.num_classes != num_classes:
            mixup = dataclasses.replace(mixup, num_classes=num_classes)
        return cls(
            options=options, source=source, batch_size=batch_size, image_size=image_size,
            mixup=mixup if train else None, train=train, dtype=dtype, layout=layout, scale=scale, ratio=ratio,
            flip_prob=flip_prob, mean=mean, std=std, resize_shorter=resize_shorter,
            hw_decoder_load=hw_decoder_load, num_classes=num_classes, fused_normalize=fused_normalize,
        )

#: the image kind as the front knows it
KIND = Kind("image", ImageSpec.resolve, default_validate=False, samples="images")


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
    last_batch_policy="PARTIAL",
    auto_reset: bool = True,
    scale: Tuple[float, float] = (0.08, 1.0),
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize_shorter: Optional[int] = None,
    hw_decoder_load: float = 0.65,
    num_classes: Optional[int] = None,
    device_id: Optional[int] = None,
    prefetch_queue_depth: int = PREFETCH_QUEUE_DEPTH,
    validate: Optional[bool] = None,
    on_error: str = "raise",
    max_pixels: Optional[int] = None,
    allow_repeats: bool = False,
    fused_normalize: bool = False,
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
        shard_id, num_shards: default to the global rank and world size under torchrun (several
            nodes included) or ``torch.distributed``.
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
        validate: scan every file's header before training (``dali_mixup.kinds.image_scan``; default
            ``None``: off for images): missing,
            empty, truncated, not an image, too many pixels. Bad files raise or are skipped as
            ``on_error`` says. Without it, a bad file raises at the batch that meets it, naming
            the file.
        on_error: 'raise' (default): an exception naming each bad file; 'skip': bad files are
            left out up front (this scans, whatever ``validate`` says) with one warning listing
            them and their count.
        max_pixels: the decompression-bomb limit of the scan (default: Pillow's, ~89 Mpx).
        allow_repeats: a file list may list a file more than once on purpose (else a warning
            names the repeats; one file with two labels is always an error).
        fused_normalize: DALI hands over the uint8 crops (HWC) and the flip coin; one kernel
            normalises, mirrors, lays out, casts and mixes them (``fields.NormalizeBlend``): one
            float pass over the batch less. Same crops, flips, labels and params as the default
            form; the images differ only by DALI's normalisation rounding. Not with
            ``dtype='uint8'``.

    Returns:
        ``DALIMixupIterator``, with ``.source`` (the resolved ``Source``), ``.classes``,
        ``.options`` (the resolved shared options) and ``.spec`` (the ``ImageSpec``);
        ``state_dict()``/``load_state_dict()`` resume it mid-epoch.
    """
    return build_loader("image", **locals())
