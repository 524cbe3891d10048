"""``create_loader``: the mixup iterator for the common case, in one call.

The options are resolved and validated once (``dali_mixup.spec.LoaderSpec``); the pipeline and
the iterator are built from that spec.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

from .config import MixupConfig
from .spec import DTYPES as _DTYPES  # noqa: F401  (kept for older imports)
from .spec import Device, LoaderSpec, distributed_defaults, resolve_device

__all__ = ["Device", "LoaderSpec", "create_loader", "distributed_defaults", "loader_from_spec", "resolve_device"]


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
        allow_repeats: a file list may list a file more than once on purpose (else a warning
            names the repeats; one file with two labels is always an error).
        fused_normalize: DALI hands over the uint8 crops (HWC) and the flip coin; one kernel
            normalises, mirrors, lays out, casts and mixes them (``fields.NormalizeBlend``): one
            float pass over the batch less. Same crops, flips, labels and params as the default
            form; the images differ only by DALI's normalisation rounding. Not with
            ``dtype='uint8'``.

    Returns:
        ``DALIMixupIterator``, with ``.source`` (the resolved ``Source``) and ``.classes``;
        ``state_dict()``/``load_state_dict()`` resume it mid-epoch.
    """
    args = dict(locals())
    return loader_from_spec(LoaderSpec.resolve(**args))


def loader_from_spec(spec: LoaderSpec):
    """The pipeline and the ``DALIMixupIterator`` of a resolved ``LoaderSpec``."""
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy

    from .iterator import DALIMixupIterator
    from .pipeline import READER_NAME, train_pipeline, val_pipeline

    build = train_pipeline if spec.train else val_pipeline
    kwargs = spec.pipeline_kwargs()

    def make_pipeline(checkpoint=None):
        return build(checkpoint=checkpoint, **kwargs)

    if spec.fused_normalize:
        from .fields import MirrorFlags, NormalizeBlend
        from .iterator import classification_fields

        fields = classification_fields(spec.num_classes, source=spec.source, label_smoothing=None)
        fields["data"] = NormalizeBlend(mean=spec.mean, std=spec.std, layout=spec.layout, dtype=spec.torch_dtype,
                                        mirror="mirror" if spec.train else None)
        if spec.train:
            fields["mirror"] = MirrorFlags()
        layout_args = dict(fields=fields)
    else:
        layout_args = dict(num_classes=spec.num_classes, dtype=spec.torch_dtype, layout=spec.layout)
    it = DALIMixupIterator(
        make_pipeline(),
        reader_name=READER_NAME,
        auto_reset=spec.auto_reset,
        last_batch_policy=LastBatchPolicy[spec.last_batch_policy.value],
        mixup=spec.mixup,
        seed=spec.seed,
        pipeline_factory=make_pipeline,
        source=spec.source,
        **layout_args,
    )
    it.spec = spec
    return it


#: the sample kinds ``build_loader`` knows, each with its ``create_*`` function
KINDS = ("image", "audio", "detection", "volume")


def build_loader(kind: str, **options):
    """The loader of one sample kind: ``build_loader("image", root=..., batch_size=64, ...)``.

    Args:
        kind: one of ``KINDS`` ('image', 'audio', 'detection', 'volume').
        **options: the arguments of that kind's ``create_*`` function (the shared ones —
            ``device``, ``device_id``, ``shard_id``, ``num_shards``, ``num_threads``, ``seed``,
            ``last_batch_policy``, ``prefetch_queue_depth``, ``on_error``, ``validate``,
            ``auto_reset`` — have the same names and defaults for every kind).
    """
    if kind == "image":
        return create_loader(**options)
    if kind == "audio":
        from .audio import create_audio_loader
        return create_audio_loader(**options)
    if kind == "detection":
        from .detection import create_detection_loader
        return create_detection_loader(**options)
    if kind == "volume":
        from .volume import create_volume_loader
        return create_volume_loader(**options)
    raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
