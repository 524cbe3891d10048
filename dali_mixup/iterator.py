"""``DALIMixupIterator``: DALI's generic PyTorch iterator plus a pure batch mixer.

It is DALI's own iterator (same constructor, epoch accounting, shards, ``last_batch_policy``,
``len()``, ``reset()``); each batch it yields goes through a ``BatchMixer`` that applies each
named field's rule (``dali_mixup.fields``) with one set of params drawn per batch.
Classification — a drop-in for ``DALIClassificationIterator`` — is one configuration of it:
``{"data": Blend(layout, dtype), "label": SoftTarget(num_classes)}``.

With DALI's default (dynamic) executor the plain iterator hands out DALI's buffers through
DLPack; here the mixup kernel reads that buffer in place (stream-ordered: DALI's ``__dlpack__``
makes torch's current stream wait for the producer) and writes the tensor handed out, so mixing
is the one pass over the batch. Tensors handed out are owned by torch and stay valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import numpy as np
import torch
from nvidia.dali.pipeline import Pipeline
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from . import state as state_codec
from .checks import IMAGE_LAYOUTS, check_layout, check_seed, resolve_num_classes
from .config import MixupConfig
from .fields import BatchMixer, Blend, LabelEncoding, Rule, SoftTarget, bind_smoothing
from .mix import IMAGE_DTYPES
from .sampler import MixupSampler
from .state import StateError
from .scan import BadDataError, DataError, error_cause

__all__ = ["BadDataError", "DALIMixupIterator", "LastBatchPolicy", "StateError"]


def _shard_seed(seed: int, index: int) -> int:
    """Independent sampler seeds for the pipelines/shards of one run, derived from ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> np.uint64(1))


@contextlib.contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def classification_fields(num_classes: int, *, layout: str = "NCHW", dtype: Optional[torch.dtype] = None,
                          label_smoothing: Optional[float] = 0.0,
                          encoding: LabelEncoding = LabelEncoding.INDEX) -> Dict[str, Rule]:
    """``{"data": Blend, "label": SoftTarget}``: what ``DALIClassificationIterator`` users get
    (labels as class ids; ``LabelEncoding.ASCII`` for WebDataset's ``cls`` text)."""
    return {"data": Blend(layout=layout, dtype=dtype),
            "label": SoftTarget(num_classes, label_smoothing, encoding=encoding)}


class DALIMixupIterator(DALIGenericIterator):
    """DALI classification iterator with mixup.

    Takes the arguments of ``nvidia.dali.plugin.pytorch.DALIClassificationIterator`` (the
    pipelines must return ``(images, labels)``), plus:

    Args:
        mixup: a ``MixupConfig`` (its ``num_classes`` or ``num_classes`` here is required);
            ``None`` or ``enabled=False`` gives DALI's iterator with one-hot soft targets.
        seed: seeds the mixup sampler (one independent stream per pipeline and shard), in
            [0, 2**63).
        num_classes: C; must agree with ``mixup.num_classes`` when both are given.
        dtype: dtype of the images handed out (default: what the pipeline produces); e.g.
            ``torch.bfloat16``, which DALI cannot produce, is cast by the mixup kernel.
        pipeline_factory: ``checkpoint -> Pipeline``; lets ``load_state_dict`` rebuild the
            pipelines from DALI checkpoints (``create_loader`` passes one).
        source: the ``Source`` the pipelines read: a saved state records its digest.
        layout: 'NCHW' or 'NHWC', the pipeline's image layout (where CutMix boxes go).
        fields: ``{output name: Rule}`` for pipelines with other outputs than
            ``(images, labels)`` (see ``dali_mixup.fields``); replaces ``num_classes``, ``dtype``,
            ``layout``. A ``SoftTarget`` whose ``label_smoothing`` is ``None`` takes the
            ``MixupConfig``'s.
        diagnose: ``error -> BadDataError`` naming the bad files when DALI fails on the data (the
            sample kind's scanner; the loader front passes it). ``None``: DALI's error as it is.
        config: what the pipelines were built with (``{"kind": ..., option: value}``), recorded
            in a saved state; a state with other values is refused naming each one.

    Yields:
        ``[{"data": (N, ...) mixed images, "label": (N, C) float32 soft targets,
        "lam": (N,) float32, "perm": (N,) int64, "label_index": (N,) int64}]``, one dict per
        pipeline. ``data``, ``label`` and ``label_index`` are on the pipeline's device (CUDA
        for a GPU pipeline); ``lam`` and ``perm`` are the CPU tensors the sampler drew, as used
        by the kernel. Two-loss form: ``lam*CE(out, y) + (1-lam)*CE(out, y[perm])``. With
        CutMix configured, also ``"cutmix"`` (N,) bool and ``"boxes"`` (N, 4) int64
        (y0, y1, x0, x1), and ``lam`` is the box-corrected λ. A sample that is its own partner
        (a batch of 1, the middle of an odd batch under ``flip``) is unmixed: ``lam`` 1.

    ``last_batch_policy`` (DALI's ``LastBatchPolicy``), 7 samples, batch 2, one shard:
    PARTIAL yields [1,2] [3,4] [5,6] [7] (mixup never pairs with padding: the short batch is
    mixed within itself); FILL yields [1,2] [3,4] [5,6] [7,7] with a padded reader (or [7,1]
    without); DROP yields [1,2] [3,4] [5,6].
    """

    def __init__(
        self,
        pipelines: Union[List[Pipeline], Pipeline],
        size: int = -1,
        reader_name: Optional[str] = None,
        auto_reset: Union[str, bool, None] = False,
        fill_last_batch: Optional[bool] = None,
        dynamic_shape: Optional[bool] = False,
        last_batch_padded: bool = False,
        last_batch_policy: LastBatchPolicy = LastBatchPolicy.FILL,
        prepare_first_batch: bool = True,
        *,
        mixup: Optional[MixupConfig] = None,
        seed: int = 0,
        num_classes: Optional[int] = None,
        dtype: Optional[torch.dtype] = None,
        pipeline_factory: Optional[Callable[[Optional[str]], Pipeline]] = None,
        source: Optional[Any] = None,
        layout: str = "NCHW",
        fields: Optional[Mapping[str, Rule]] = None,
        diagnose: Optional[Callable[[BaseException], BadDataError]] = None,
        config: Optional[Mapping[str, Any]] = None,
    ) -> None:
        if mixup is not None and not isinstance(mixup, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig or None, got {type(mixup).__name__}")
        self._seed = check_seed("seed", seed)
        self.source = source
        self.classes = source.classes if source is not None else None
        self._pipeline_factory = pipeline_factory
        if fields is None:
            check_layout(layout, allowed=IMAGE_LAYOUTS)
            if dtype is not None and dtype not in IMAGE_DTYPES:
                raise TypeError(f"dtype must be one of {', '.join(map(str, IMAGE_DTYPES))}; got {dtype!r}")
            self.num_classes = resolve_num_classes(num_classes, mixup.num_classes if mixup else None)
            fields = classification_fields(self.num_classes, layout=layout, dtype=dtype, label_smoothing=None)
        else:  # C from the first rule that has a class count (soft, multi-hot, mask targets)
            counts = [c for r in fields.values() if (c := getattr(r, "num_classes", None)) is not None]
            self.num_classes = counts[0] if counts else None
        self._fields = dict(fields)
        self._diagnose = diagnose
        self._config = dict(config) if config is not None else None
        #: DALI's own arguments, kept to attach new pipelines on ``load_state_dict``
        self._dali_kwargs = dict(
            size=size, reader_name=reader_name, auto_reset=auto_reset, fill_last_batch=fill_last_batch,
            dynamic_shape=dynamic_shape, last_batch_padded=last_batch_padded, last_batch_policy=last_batch_policy,
            prepare_first_batch=prepare_first_batch,
        )
        #: host (CPU) seconds spent in ``__next__`` since construction (or ``load_state_dict``,
        #: which starts a new dict): waiting for and taking DALI's outputs ("dali"), sampling and
        #: launching the mix ("mix"), and batches served. On a GPU the mix is launched, not waited
        #: for, so "mix" is the host cost of mixup. DALI prepares the first batch inside the
        #: constructor: its DALI time is not counted, the batch is.
        self.host_seconds: Dict[str, float] = {"dali": 0.0, "mix": 0.0, "batches": 0}
        self._dead: Optional[DataError] = None
        pipes = pipelines if isinstance(pipelines, list) else [pipelines]
        self.mixup = mixup if mixup is not None else MixupConfig(enabled=False, num_classes=self.num_classes)
        self._samplers = [MixupSampler(self._mixup, _shard_seed(self._seed, self._pipe_shard(p, reader_name, i)))
                          for i, p in enumerate(pipes)]
        self._attach(pipelines)

    def _attach(self, pipelines) -> None:
        """Hand the pipelines to DALI's iterator (which prepares the first batch)."""
        self.host_seconds = {"dali": 0.0, "mix": 0.0, "batches": 0}
        with self._naming_bad_files():
            super().__init__(pipelines, list(self._fields), **self._dali_kwargs)

    @contextlib.contextmanager
    def _naming_bad_files(self):
        """DALI's decode errors do not always name the file: a ``BadDataError`` naming them."""
        if self._dead is not None:
            raise self._dead
        try:
            yield
        except RuntimeError as e:
            if self._diagnose is None:
                raise
            self._dead = self._diagnose(e)
            raise self._dead from e

    @property
    def mixup(self) -> MixupConfig:
        """The ``MixupConfig`` in force. Assign a new one between epochs, e.g.
        ``loader.mixup = dataclasses.replace(loader.mixup, enabled=False)`` for the last
        epochs; the samplers keep their random streams (and ``state_dict`` records it)."""
        return self._mixup

    @mixup.setter
    def mixup(self, config: MixupConfig) -> None:
        if not isinstance(config, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig, got {type(config).__name__}")
        if self.num_classes is not None:
            resolve_num_classes(self.num_classes, config.num_classes)
            config = dataclasses.replace(config, num_classes=self.num_classes)
        self._mixup = config
        self._mixer = BatchMixer(bind_smoothing(self._fields, config.label_smoothing))
        for sampler in getattr(self, "_samplers", ()):
            sampler.config = config

    @staticmethod
    def _pipe_shard(pipe: Pipeline, reader_name: Optional[str], index: int) -> int:
        if reader_name:
            pipe.build()
            return int(pipe.reader_meta(reader_name)["shard_id"])
        return index

    def __next__(self) -> List[Dict[str, torch.Tensor]]:
        t0 = time.perf_counter()
        with self._naming_bad_files():
            batches = super().__next__()
        t1 = time.perf_counter()
        cutmix_on = self._mixup.cutmix_on
        mixed = []
        for sampler, batch in zip(self._samplers, batches):
            # On the CPU, DALI's worker threads already occupy the cores: torch's own thread pool
            # would spin against them (mixing in the iterator measured 2x slower on 2 cores).
            cuda = batch[self._mixer.lead].is_cuda
            with contextlib.nullcontext() if cuda else _torch_threads(1):
                try:
                    mixed.append(self._mixer(batch, self._mixer.sample(sampler, batch), with_cutmix=cutmix_on))
                except DataError as e:  # a rule found bad data (a file truncated since the scan, NaN samples)
                    self._dead = e
                    raise
        times = self.host_seconds
        times["dali"] += t1 - t0
        times["mix"] += time.perf_counter() - t1
        times["batches"] += 1
        return mixed

    # -- resume ------------------------------------------------------------------------------
    def identity(self) -> Dict[str, Any]:
        """What a saved state belongs to: the data set's digest, its size, the shard layout,
        batch size, last-batch policy and the configuration the pipelines were built with (see
        ``dali_mixup.state``)."""
        shards, epoch_size = [], None
        reader = self._dali_kwargs["reader_name"]
        for p in self._pipes:
            if reader:
                meta = p.reader_meta(reader)
                shards.append([int(meta["shard_id"]), int(meta["number_of_shards"])])
                epoch_size = int(meta["epoch_size"])
        return {
            "dataset": state_codec.dataset_digest(self.source),
            "epoch_size": epoch_size,
            "shards": shards or None,
            "batch_size": [int(p.max_batch_size) for p in self._pipes],
            "last_batch_policy": self._dali_kwargs["last_batch_policy"].name,
            "pipelines": len(self._pipes),
            "config": self._config,
        }

    def state_dict(self) -> Dict[str, Any]:
        """Where the iterator is: DALI's pipeline checkpoints (reader position, random state,
        epoch accounting), the mixup samplers' generator states, the ``MixupConfig`` in force,
        the seed and what the state belongs to. JSON-serialisable.

        After ``load_state_dict`` the next batch is the one the saved iterator would have
        yielded next: nothing repeated, nothing lost.
        """
        return state_codec.encode(state_codec.IteratorState(
            checkpoints=self.checkpoints(), samplers=[s.state_dict() for s in self._samplers],
            mixup=self._mixup, seed=self._seed, identity=self.identity(),
        ))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume from ``state_dict()``. Iterators made by ``create_loader`` rebuild their
        pipelines from the checkpoints; for your own pipelines, build them with
        ``checkpoint=state["dali"][i]`` (and ``enable_checkpointing=True``) before constructing
        the iterator, then call this to restore the mixup samplers.

        Refused (``StateError``, a ``ValueError``, naming each difference) when the state belongs
        to other data, shards, batch size, policy or configuration (another sample kind, shuffle,
        features, masks, crop, ...), or was saved with another seed; a damaged state (a DALI
        checkpoint or sampler entry that cannot be restored) is ``StateError`` too. The saved ``MixupConfig``
        is restored (e.g. mixup switched off for the last epochs stays off).
        """
        st = state_codec.decode(state)
        if len(st.checkpoints) != len(self._pipes):
            raise StateError(f"load_state_dict: the state is for {len(st.checkpoints)} pipeline(s), this iterator "
                             f"has {len(self._pipes)}")
        state_codec.check_identity(st.identity, self.identity())
        if st.seed is not None and st.seed != self._seed:
            raise StateError(f"load_state_dict: the state was saved with seed={st.seed}, this iterator has "
                             f"seed={self._seed}; build it with seed={st.seed}")
        samplers = []
        for i, saved in enumerate(st.samplers):  # restored aside first: a damaged entry changes nothing
            sampler = MixupSampler(st.mixup or self._mixup, 0, prefetch=False)
            try:
                sampler.load_state_dict(saved)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
                raise StateError(f"load_state_dict: the state is damaged: sampler entry {i} cannot be restored "
                                 f"({type(e).__name__}: {e})") from None
            samplers.append(saved)
        if self._pipeline_factory is not None:
            pipes = []
            for i, cp in enumerate(st.checkpoints):
                try:
                    pipe = self._pipeline_factory(cp)
                    pipe.build()  # DALI restores the checkpoint here
                except RuntimeError as e:
                    raise StateError(f"load_state_dict: the state is damaged or does not fit this pipeline: DALI "
                                     f"cannot restore checkpoint {i}: {error_cause(e)}") from None
                pipes.append(pipe)
            self._pipes = None  # drop the old pipelines (and their threads) before the new ones start
            self._attach(pipes if len(pipes) > 1 else pipes[0])
        elif not all(p.is_restored_from_checkpoint for p in self._pipes):
            raise StateError(
                "load_state_dict: these pipelines were not built from the checkpoints; build each with "
                "checkpoint=state['dali'][i] before constructing the iterator"
            )
        if st.mixup is not None:
            self.mixup = st.mixup
        for sampler, saved in zip(self._samplers, samplers):
            sampler.load_state_dict(saved)
