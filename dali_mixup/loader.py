"""The image kind: ``create_loader``, the mixup iterator for image classification in one call.

A thin wrapper of the one front: ``create_loader(...)`` is ``build_loader("image", ...)``. The
image options are resolved once by ``dali_mixup.spec.LoaderSpec``, the shared ones by
``dali_mixup.options.LoaderOptions``; ``dali_mixup.front`` builds the pipeline and the iterator.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

from .config import MixupConfig
from .constants import IMAGENET_MEAN, IMAGENET_STD, PREFETCH_QUEUE_DEPTH
from .front import Kind, build_loader
from .options import Device
from .spec import LoaderSpec

__all__ = ["KIND", "create_loader"]

#: the image kind as the front knows it
KIND = Kind("image", LoaderSpec.resolve, default_validate=False, samples="images")


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
        validate: scan every file's header before training (``dali_mixup.validate``; default
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
        ``.options`` (the resolved shared options) and ``.spec`` (the ``LoaderSpec``);
        ``state_dict()``/``load_state_dict()`` resume it mid-epoch.
    """
    return build_loader("image", **locals())
