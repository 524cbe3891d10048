"""``DALIMixupIterator``: a drop-in for DALI's ``DALIClassificationIterator`` that hands out
mixed batches and soft targets.

It is DALI's own PyTorch iterator (same constructor, epoch accounting, shards,
``last_batch_policy``, ``len()``, ``reset()``) with mixup applied to each batch it yields. With
DALI's default (dynamic) executor the plain iterator hands out DALI's buffers through DLPack;
here the mixup kernel reads that buffer in place (stream-ordered: DALI's ``__dlpack__`` makes
torch's current stream wait for the producer) and writes the tensor handed out, so mixing is
the one pass over the batch. Tensors handed out are owned by torch and stay valid.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import time
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch
from nvidia.dali.pipeline import Pipeline
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from .config import MixupConfig
from .mix import IMAGE_DTYPES, _targets, mix_images
from .sampler import MixupParams, MixupSampler
from .sources import Source

__all__ = ["BadDataError", "DALIMixupIterator", "LastBatchPolicy"]


class BadDataError(RuntimeError):
    """DALI failed on the data; the message names the bad files where a header scan finds them."""


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


def _encode_checkpoint(cp) -> str:
    return base64.b64encode(cp if isinstance(cp, bytes) else cp.encode()).decode("ascii")


def _decode_checkpoint(text: str):
    return base64.b64decode(text.encode("ascii"))


def _label_indices(label: torch.Tensor) -> torch.Tensor:
    """(N,) int64 class indices from the reader's labels: int32 (N, 1) for files, or the
    zero-padded ASCII bytes (N, L) of WebDataset ``cls`` members."""
    if label.dtype == torch.uint8:  # WebDataset .cls text
        rows = label.cpu().numpy()
        out = []
        for row in rows:
            text = bytes(row).rstrip(b"\x00").strip()
            try:
                out.append(int(text))
            except ValueError:
                raise ValueError(f"a WebDataset 'cls' member is not an ASCII integer: {text[:20]!r}") from None
        return torch.tensor(out, dtype=torch.int64)
    if label.is_floating_point():
        raise TypeError(f"labels must be integers, the pipeline produced {label.dtype}")
    return label.reshape(label.shape[0], -1)[:, 0].to(torch.int64).contiguous()


class DALIMixupIterator(DALIGenericIterator):
    """DALI classification iterator with mixup.

    Takes the arguments of ``nvidia.dali.plugin.pytorch.DALIClassificationIterator`` (the
    pipelines must return ``(images, labels)``), plus:

    Args:
        mixup: a ``MixupConfig`` (its ``num_classes`` or ``num_classes`` here is required);
            ``None`` or ``enabled=False`` gives DALI's iterator with one-hot soft targets.
        seed: seeds the mixup sampler (one independent stream per pipeline and shard).
        num_classes: C; overrides ``mixup.num_classes``.
        dtype: dtype of the images handed out (default: what the pipeline produces); e.g.
            ``torch.bfloat16``, which DALI cannot produce, is cast by the mixup kernel.
        pipeline_factory: ``checkpoint -> Pipeline``; lets ``load_state_dict`` rebuild the
            pipelines from DALI checkpoints (``create_loader`` passes one).
        source: the ``Source`` the pipelines read; lets a decode error name the bad files.
        layout: 'NCHW' or 'NHWC', the pipeline's image layout (where CutMix boxes go).

    Yields:
        ``[{"data": (N, ...) mixed images, "label": (N, C) float32 soft targets,
        "lam": (N,) float32, "perm": (N,) int64, "label_index": (N,) int64}]``, one dict per
        pipeline. ``data``, ``label`` and ``label_index`` are on the pipeline's device (CUDA
        for a GPU pipeline); ``lam`` and ``perm`` are the CPU tensors the sampler drew, as used
        by the kernel. Two-loss form: ``lam*CE(out, y) + (1-lam)*CE(out, y[perm])``. With
        CutMix configured, also ``"cutmix"`` (N,) bool and ``"boxes"`` (N, 4) int64
        (y0, y1, x0, x1), and ``lam`` is the box-corrected λ.

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
        source: Optional[Source] = None,
        layout: str = "NCHW",
    ) -> None:
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
        self._layout = layout
        self.source = source
        self.classes = source.classes if source is not None else None
        self._init_kwargs = dict(
            size=size, reader_name=reader_name, auto_reset=auto_reset, fill_last_batch=fill_last_batch,
            dynamic_shape=dynamic_shape, last_batch_padded=last_batch_padded, last_batch_policy=last_batch_policy,
            prepare_first_batch=prepare_first_batch, mixup=mixup, seed=seed, num_classes=num_classes, dtype=dtype,
            pipeline_factory=pipeline_factory, source=source, layout=layout,
        )
        self._pipeline_factory = pipeline_factory
        #: host (CPU) seconds spent in ``__next__`` since construction (or ``load_state_dict``,
        #: which starts a new dict): waiting for and taking DALI's outputs ("dali"), sampling and
        #: launching the mix ("mix"), and batches served. On a GPU the mix is launched, not waited
        #: for, so "mix" is the host cost of mixup. DALI prepares the first batch inside the
        #: constructor: its DALI time is not counted, the batch is.
        self.host_seconds: Dict[str, float] = {"dali": 0.0, "mix": 0.0, "batches": 0}
        if mixup is None:
            mixup = MixupConfig(enabled=False, num_classes=num_classes)
        if not isinstance(mixup, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig or None, got {type(mixup).__name__}")
        num_classes = num_classes if num_classes is not None else mixup.num_classes
        if num_classes is None:
            raise ValueError("num_classes: give it here or in MixupConfig.num_classes")
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if dtype is not None and dtype not in IMAGE_DTYPES:
            raise TypeError(f"dtype must be one of {IMAGE_DTYPES}, got {dtype!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        pipes = pipelines if isinstance(pipelines, list) else [pipelines]
        self.num_classes = int(num_classes)
        self._mixup = mixup = self._with_classes(mixup)
        self._dtype = dtype
        self._seed = int(seed)
        self._samplers = [
            MixupSampler(mixup, _shard_seed(self._seed, self._pipe_shard(p, reader_name, i))) for i, p in enumerate(pipes)
        ]
        with self._naming_bad_files():  # the first batch is prepared here
            super().__init__(
                pipelines,
                ["data", "label"],
                size=size,
                reader_name=reader_name,
                auto_reset=auto_reset,
                fill_last_batch=fill_last_batch,
                dynamic_shape=dynamic_shape,
                last_batch_padded=last_batch_padded,
                last_batch_policy=last_batch_policy,
                prepare_first_batch=prepare_first_batch,
            )

    @contextlib.contextmanager
    def _naming_bad_files(self):
        """DALI's decode errors do not always name the file ("nvImageCodec failure: '#4'"): scan
        the source's files and raise ``BadDataError`` naming the bad ones."""
        try:
            yield
        except RuntimeError as e:
            if self.source is None or not self.source.files:
                raise
            from .validate import scan_files

            problems = scan_files(self.source.files)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if problems:
                listed = "\n  ".join(str(p) for p in problems[:20])
                more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
                raise BadDataError(
                    f"DALI could not read a batch ({first}). Bad files in the dataset:\n  {listed}{more}\n"
                    "Fix or remove them, or build the loader with on_error='skip'. This iterator is no "
                    "longer usable; build a new one."
                ) from e
            raise BadDataError(
                f"DALI could not read a batch: {first}. The header scan finds no bad file, so the damage is "
                "inside an image's data. This iterator is no longer usable; build a new one."
            ) from e

    def _with_classes(self, mixup: MixupConfig) -> MixupConfig:
        if not isinstance(mixup, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig, got {type(mixup).__name__}")
        if mixup.num_classes is not None and mixup.num_classes != self.num_classes:
            raise ValueError(f"mixup.num_classes={mixup.num_classes} but the iterator has num_classes={self.num_classes}")
        return dataclasses.replace(mixup, num_classes=self.num_classes)

    @property
    def mixup(self) -> MixupConfig:
        """The ``MixupConfig`` in force. Assign a new one between epochs, e.g.
        ``loader.mixup = dataclasses.replace(loader.mixup, enabled=False)`` for the last
        epochs; the samplers keep their random streams."""
        return self._mixup

    @mixup.setter
    def mixup(self, config: MixupConfig) -> None:
        self._mixup = self._with_classes(config)
        for sampler in self._samplers:
            sampler.config = self._mixup

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
        mixed = [self._mix(i, b) for i, b in enumerate(batches)]
        times = self.host_seconds
        times["dali"] += t1 - t0
        times["mix"] += time.perf_counter() - t1
        times["batches"] += 1
        return mixed

    def _mix(self, index: int, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x = batch["data"]
        labels = _label_indices(batch["label"])
        n = x.shape[0]
        if labels.shape[0] != n:
            raise RuntimeError(f"the pipeline returned {n} images but {labels.shape[0]} labels")
        # Labels from the reader are CPU tensors: checked here, on the host, so the targets
        # kernel skips its device-side assert. A pipeline that moved them to the GPU has them
        # checked there (no host sync).
        checked = not labels.is_cuda
        if checked and n and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            bad = sorted(set(labels[(labels < 0) | (labels >= self.num_classes)].tolist()))
            raise ValueError(f"labels {bad[:10]} are outside [0, num_classes={self.num_classes})")
        hw = None
        if self.mixup.cutmix_on and x.dim() == 4:
            hw = tuple(x.shape[2:4]) if self._layout == "NCHW" else tuple(x.shape[1:3])
        params = self._samplers[index].sample(n, image_size=hw)
        out_dtype = self._dtype or x.dtype
        if x.is_cuda and labels.device != x.device:  # one copy with λ/partners, queued, not waited for
            _, (labels,) = params.on_with(x.device, labels.cpu())
        # On the CPU, DALI's worker threads already occupy the cores: torch's own thread pool
        # would spin against them (mixing in the iterator measured 2x slower on 2 cores).
        with contextlib.nullcontext() if x.is_cuda else _torch_threads(1):
            if self.mixup.enabled or out_dtype != x.dtype:
                images = mix_images(x, params, dtype=out_dtype, layout=self._layout)
            else:
                images = x
            targets = _targets(labels, params, self.num_classes, self.mixup.label_smoothing, checked=checked)
        out = {"data": images, "label": targets, "lam": params.lam, "perm": params.perm, "label_index": labels}
        if self.mixup.cutmix_on:
            out.update(cutmix=params.cutmix, boxes=params.boxes)
        return out

    # -- resume ------------------------------------------------------------------------------
    STATE_FORMAT = "dali-mixup/1"

    def state_dict(self) -> Dict[str, Any]:
        """Where the iterator is: DALI's pipeline checkpoints (reader position, random state,
        epoch accounting) and the mixup samplers' generator states. JSON-serialisable.

        After ``load_state_dict`` the next batch is the one the saved iterator would have
        yielded next: nothing repeated, nothing lost.
        """
        return {
            "format": self.STATE_FORMAT,  # DALI checkpoints as base64 text: the state is JSON
            "dali": [_encode_checkpoint(cp) for cp in self.checkpoints()],
            "samplers": [s.state_dict() for s in self._samplers],
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume from ``state_dict()``. Iterators made by ``create_loader`` rebuild their
        pipelines from the checkpoints; for your own pipelines, build them with
        ``checkpoint=state["dali"][i]`` (and ``enable_checkpointing=True``) before constructing
        the iterator, then call this to restore the mixup samplers."""
        if not isinstance(state, dict) or state.get("format") != self.STATE_FORMAT:
            raise ValueError(f"state is not a {self.STATE_FORMAT} state_dict (got keys {sorted(state) if isinstance(state, dict) else type(state).__name__})")
        checkpoints, samplers = [_decode_checkpoint(cp) for cp in state["dali"]], state["samplers"]
        if len(checkpoints) != len(self._pipes) or len(samplers) != len(self._samplers):
            raise ValueError(
                f"state is for {len(checkpoints)} pipeline(s), this iterator has {len(self._pipes)}"
            )
        if self._pipeline_factory is not None:
            pipes = [self._pipeline_factory(cp) for cp in checkpoints]
            kwargs = dict(self._init_kwargs, mixup=self._mixup)
            self._pipes = None  # drop the old pipelines (and their threads) before building new ones
            DALIMixupIterator.__init__(self, pipes if len(pipes) > 1 else pipes[0], **kwargs)
        elif not all(p.is_restored_from_checkpoint for p in self._pipes):
            raise ValueError(
                "load_state_dict: these pipelines were not built from the checkpoints; build each with "
                "checkpoint=state['dali'][i] before constructing the iterator"
            )
        for sampler, st in zip(self._samplers, samplers):
            sampler.load_state_dict(st)
