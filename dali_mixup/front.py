"""One loader front for every sample kind: ``build_loader(kind, **options)``.

A sample kind is a small declared thing (``Kind``): how its options and source are resolved
into a *spec*, and, on that spec, its DALI graph with named outputs, the fields that say how each
output mixes, how a DALI read error is diagnosed (which file is bad), and the configuration a
saved state must match. The front does everything the kinds share, once:

1. the shared options (``dali_mixup.options.LoaderOptions``: device, device_id, shards under
   torchrun, threads, seed, last-batch policy, prefetch depth, on_error, validate, auto_reset);
2. the shard checks against the resolved data set (``check_shard_count``);
3. the pipeline: the kind's graph inside one ``pipeline_def`` (checkpointing on), its outputs in
   the order of the fields (declared once: ``output_map`` is the fields' names);
4. the ``DALIMixupIterator``, with the kind's diagnosis and state identity.

A kind's spec provides:

* ``options``: the ``LoaderOptions``; ``mixup``: the ``MixupConfig`` or ``None``;
* ``source``: what it reads (``files`` for the diagnosis and the state digest);
  ``num_samples``: how many samples (for the shard check);
* ``fields()``: ``{output name: Rule}``; ``graph()``: ``{output name: DataNode}`` (called inside the
  pipeline definition), the same names;
* ``diagnose(error)``: a ``BadDataError`` naming the bad files (the kind's own scanner);
* ``config()``: the settings the graph was built with (JSON values), recorded in a state;
* ``dynamic_shape``: outputs whose shape varies between batches (detection's boxes).

Example:
    >>> loader = build_loader("volume", root="vols/", batch_size=4, crop=(64, 64, 64),
    ...                       mixup=MixupConfig(alpha=0.4, cutmix_alpha=1.0))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from .options import SHARED_DEFAULTS, LoaderOptions, check_shard_count

__all__ = ["KINDS", "Kind", "build", "build_loader"]


@dataclass(frozen=True)
class Kind:
    """A sample kind.

    Attributes:
        name: its name in ``build_loader``.
        resolve: ``(options: LoaderOptions, **kind arguments) -> spec`` (see the module
            docstring for what a spec provides); checks every kind argument, resolves and scans
            the source.
        default_validate: whether its files are scanned up front by default.
        samples: what its samples are called in messages ("images", "clips", ...).
    """

    name: str
    resolve: Callable[..., Any]
    default_validate: bool
    samples: str = "samples"


#: kind name -> the module that declares it (as ``KIND``), imported on first use
KINDS = {"image": "dali_mixup.kinds.image", "audio": "dali_mixup.kinds.audio", "detection": "dali_mixup.kinds.detection",
         "volume": "dali_mixup.kinds.volume"}


def kind_of(name: str) -> Kind:
    if not isinstance(name, str) or name not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {name!r}")
    return importlib.import_module(KINDS[name]).KIND


def build_loader(kind: str, **options):
    """The mixup loader of one sample kind.

    Args:
        kind: ``"image"``, ``"audio"``, ``"detection"`` or ``"volume"`` (``KINDS``).
        **options: the kind's arguments (those of ``create_loader``, ``create_audio_loader``,
            ``create_detection_loader``, ``create_volume_loader``); the shared ones
            (``SHARED_DEFAULTS``: ``device``, ``device_id``, ``shard_id``, ``num_shards``,
            ``num_threads``, ``seed``, ``last_batch_policy``, ``prefetch_queue_depth``,
            ``on_error``, ``validate``, ``auto_reset``) mean the same and default the same for
            every kind (``dali_mixup.options``).

    Returns:
        a ``DALIMixupIterator`` with ``.options`` (the resolved ``LoaderOptions``) and ``.spec``
        (the kind's resolved spec).
    """
    k = kind_of(kind)
    shared = {name: options.pop(name) for name in list(options) if name in SHARED_DEFAULTS}
    opts = LoaderOptions.resolve(default_validate=k.default_validate, **shared)
    spec = k.resolve(opts, **options)
    return build(spec, k)


def build(spec, kind: Kind):
    """The pipeline and the iterator of a resolved spec."""
    from nvidia.dali import pipeline_def

    from .constants import READER_NAME
    from .iterator import DALIMixupIterator

    opts: LoaderOptions = spec.options
    check_shard_count(opts, spec.num_samples, kind.samples)
    fields = spec.fields()
    names = list(fields)

    def make_pipeline(checkpoint: Optional[str] = None):
        @pipeline_def(enable_checkpointing=True)
        def pipe():
            outputs: Dict[str, Any] = spec.graph()
            if list(outputs) != names:
                raise RuntimeError(f"{type(spec).__name__}: the graph's outputs {list(outputs)} are not its "
                                   f"fields {names}")
            return tuple(outputs.values())

        return pipe(checkpoint=checkpoint, batch_size=spec.batch_size, num_threads=opts.num_threads,
                    device_id=opts.dali_device_id, seed=opts.seed, prefetch_queue_depth=opts.prefetch_queue_depth)

    config = {"kind": kind.name, **spec.config()}
    it = DALIMixupIterator(
        make_pipeline(), reader_name=READER_NAME, auto_reset=opts.auto_reset,
        last_batch_policy=opts.last_batch_policy.dali(), dynamic_shape=getattr(spec, "dynamic_shape", False),
        mixup=spec.mixup, seed=opts.seed, pipeline_factory=make_pipeline, source=spec.source, fields=fields,
        diagnose=spec.diagnose, config=config,
    )
    it.spec, it.options = spec, opts
    if getattr(spec, "num_classes", None) is not None:
        it.num_classes = spec.num_classes
    return it
