"""The image kind: ``LoaderSpec``, every option of ``create_loader`` resolved and validated once.

``LoaderSpec.resolve(options, ...)`` checks each image argument (with ``dali_mixup.checks``),
resolves the source (folder, file list or WebDataset shards; scanned when the options say so)
and the class count, and returns a frozen spec; the front (``dali_mixup.front``) builds the
pipeline (``graph``) and the iterator from it and checks nothing again. The shared options
(device, shards, threads, seed, ...) are ``spec.options`` (``dali_mixup.options``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from .checks import (IMAGE_LAYOUTS, MAX_IMAGE_SIZE, check_bool, check_int, check_layout, check_pair, check_real,
                     check_rgb, resolve_num_classes)
from .config import MixupConfig
from .constants import IMAGENET_MEAN, IMAGENET_STD
from .options import LoaderOptions
from .sources import Source, SourceKind, resolve_source

#: output dtypes: DALI produces float32/float16/uint8; bfloat16 is written by the mixup kernel
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "uint8": torch.uint8}


@dataclass(frozen=True)
class LoaderSpec:
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
        from .fields import LabelEncoding, MirrorFlags, NormalizeBlend
        from .iterator import classification_fields

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
        from .pipeline import decode_augment, decode_center, read_source

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
        from .validate import diagnose_read_error, diagnose_shards

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
    ) -> "LoaderSpec":
        """Check every image argument and resolve the source (scanned when ``options.scan``)."""
        from .validate import DEFAULT_MAX_PIXELS, filter_files

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

