"""``MixupNode``: a ``torchdata.nodes`` node that mixes the batches of an upstream node.

torchdata 0.11's nodes (``torchdata.nodes.BaseNode``) are iterators with a checkpoint protocol:
``state_dict()`` returns a state and ``reset(state)`` resumes from it. DALI 2.x's dynamic mode
ships such nodes (``nvidia.dali.experimental.dynamic.pytorch.nodes``: ``Reader`` → ``DictMapper``
→ ``ToTorch``); any node yielding ``(images, labels)`` batches or dicts of named fields will do.
``MixupNode`` draws each batch's params with our ``MixupSampler`` (λ, partners, CutMix boxes) and
applies the fields' rules (``Blend``, ``SoftTarget``, ...) with our kernels (``BatchMixer``): on the
GPU when the upstream's tensors are there, with the CPU twin otherwise.

Example, behind DALI's dynamic-mode nodes::

    import nvidia.dali.experimental.dynamic as ndd
    from nvidia.dali.experimental.dynamic.pytorch import nodes as dali_nodes
    import torchdata.nodes as tn
    from dali_mixup import MixupConfig
    from dali_mixup.integrations.torchdata import MixupNode

    reader = dali_nodes.Reader(ndd.readers.File, batch_size=64, file_root="/data/train",
                               random_shuffle=True, seed=0)
    images = dali_nodes.DictMapper(reader, lambda b: ndd.resize(ndd.decoders.image(b), size=(224, 224)))
    node = MixupNode(dali_nodes.ToTorch(images), MixupConfig(alpha=0.2, cutmix_alpha=1.0),
                     num_classes=1000, layout="NHWC", seed=0)
    loader = tn.Loader(node)
    for batch in loader:   # {"data": (N, 224, 224, 3) uint8 mixed, "label": (N, 1000) soft targets, "lam", "perm", ...}
        ...
    state = loader.state_dict()   # later: loader.load_state_dict(state); the same batches follow

Resuming. The state holds the upstream's own state, the sampler's generator and the
``MixupConfig`` in force. An upstream that keeps no state (its ``state_dict()`` is empty, as DALI
2.4's dynamic-mode nodes are: their ``Reader`` refuses ``reset(state)``) is replayed instead: a
freshly built upstream is reset and read as far as the saved one had been (every epoch since it
was built, then the current one up to the saved batch), which gives the same batches when the
upstream is deterministic from its construction (a seeded reader, seeded random operators), at
the cost of reading that data again.

Needs ``torchdata`` (``pip install "dali-mixup[torchdata]"``); ``import dali_mixup`` does not
import this module.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torchdata.nodes import BaseNode

from ..config import MixupConfig
from ..fields import BatchMixer, Blend, Rule, SoftTarget, bind_smoothing
from ..sampler import MixupSampler

__all__ = ["MixupNode"]


class MixupNode(BaseNode[Dict[str, torch.Tensor]]):
    """Mixes each batch an upstream node yields.

    Args:
        source: the upstream ``torchdata.nodes.BaseNode``. Each item is a dict of named fields, or
            a tuple/list whose entries are named by ``names``.
        mixup: the ``MixupConfig``; assignable later (``node.mixup = ...``, e.g. mixup off for the
            last epochs), and restored with the state.
        num_classes: C of the soft targets (default ``mixup.num_classes``); needed unless
            ``fields`` is given.
        fields: ``{name: Rule}`` for every field of the batch (see ``dali_mixup.fields``);
            default ``{"data": Blend(layout, dtype), "label": SoftTarget(C, mixup's smoothing)}``.
        names: the field names of a tuple item, in order (default ``("data", "label")``).
        layout: the images' layout for the default ``Blend`` (``"NCHW"``, or ``"NHWC"`` as DALI's
            decoders and ``ToTorch`` hand them over); where CutMix boxes go.
        dtype: the default ``Blend``'s output dtype (``None``: the upstream's).
        seed: the sampler's seed: the same seed, the same λ, partners and boxes.

    Each output is the mixer's dict: every field mixed by its rule (images ``(N, ...)`` in the
    upstream's dtype or ``dtype``, labels as ``(N, C)`` float32 soft targets with the class ids
    in ``label_index``), plus ``lam`` ``(N,)`` and ``perm`` ``(N,)`` (and ``cutmix``, ``boxes``
    with CutMix on).
    """

    SOURCE, SAMPLER, MIXUP, SEED, EPOCHS, SERVED, ENDED = ("source", "sampler", "mixup", "seed", "epochs", "served",
                                                          "ended")

    def __init__(self, source: BaseNode, mixup: MixupConfig, *, num_classes: Optional[int] = None,
                 fields: Optional[Mapping[str, Rule]] = None, names: Sequence[str] = ("data", "label"),
                 layout: str = "NCHW", dtype: Optional[torch.dtype] = None, seed: int = 0):
        super().__init__()
        if not isinstance(source, BaseNode):
            raise TypeError(f"source must be a torchdata.nodes.BaseNode, got {type(source).__name__}")
        if not isinstance(mixup, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig, got {type(mixup).__name__}")
        self.source = source
        self.names = tuple(names)
        self._num_classes = None  # C the config is held to, with the default fields
        if fields is None:
            c = num_classes if num_classes is not None else mixup.num_classes
            if c is None:
                raise ValueError("MixupNode needs num_classes (or mixup.num_classes, or fields)")
            self._num_classes = int(c)
            fields = {self.names[0]: Blend(layout=layout, dtype=dtype),
                      self.names[1]: SoftTarget(self._num_classes, label_smoothing=None)}
        self._fields = dict(fields)
        self._sampler = MixupSampler(mixup, seed=seed)
        self.seed = self._sampler.seed
        self.mixup = mixup
        self._epochs: List[List[Any]] = []  # [batches, ended] of each finished epoch since the upstream was built
        self._served = 0
        self._ended = False

    # -- the config in force --------------------------------------------------------------------
    @property
    def mixup(self) -> MixupConfig:
        """The ``MixupConfig`` in force; assign a new one between epochs (e.g.
        ``node.mixup = dataclasses.replace(node.mixup, enabled=False)``)."""
        return self._mixup

    @mixup.setter
    def mixup(self, config: MixupConfig) -> None:
        if not isinstance(config, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig, got {type(config).__name__}")
        if self._num_classes is not None:
            config = dataclasses.replace(config, num_classes=self._num_classes)
        self._mixup = config
        self._mixer = BatchMixer(bind_smoothing(self._fields, config.label_smoothing))
        self._sampler.config = config

    # -- the node protocol ----------------------------------------------------------------------
    def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
        super().reset(initial_state)
        if initial_state is None:
            if self._served or self._ended:  # the epoch just left: kept for a replay
                self._epochs.append([self._served, self._ended])
            self._served, self._ended = 0, False
            self.source.reset(None)
            return
        st = initial_state
        if int(st[self.SEED]) != self.seed:
            raise ValueError(f"MixupNode.reset: the state was saved with seed={st[self.SEED]}, this node has "
                             f"seed={self.seed}")
        if st[self.SOURCE]:
            self.source.reset(st[self.SOURCE])
        else:
            self._replay(st[self.EPOCHS], int(st[self.SERVED]), bool(st[self.ENDED]))
        self._epochs = [list(e) for e in st[self.EPOCHS]]
        self._served, self._ended = int(st[self.SERVED]), bool(st[self.ENDED])
        self.mixup = MixupConfig(**st[self.MIXUP])
        self._sampler.load_state_dict(st[self.SAMPLER])

    def _replay(self, epochs, served: int, ended: bool) -> None:
        """Bring an upstream that keeps no state to where the saved one was, by reading it again."""
        for count, finished in [*epochs, [served, ended]]:
            self.source.reset(None)
            for i in range(count):
                try:
                    next(self.source)
                except StopIteration:
                    raise ValueError(f"MixupNode.reset: replaying the upstream, it ended after {i} batches where the "
                                     f"saved run read {count}: it is not the same upstream, or not deterministic") from None
            if finished:
                try:
                    next(self.source)
                except StopIteration:
                    continue
                raise ValueError(f"MixupNode.reset: replaying the upstream, it went on past {count} batches where the "
                                 "saved run's ended: it is not the same upstream, or not deterministic")

    def next(self) -> Dict[str, torch.Tensor]:
        try:
            item = next(self.source)
        except StopIteration:
            self._ended = True
            raise
        batch = self._as_fields(item)
        out = self._mixer(batch, self._mixer.sample(self._sampler, batch), with_cutmix=self._mixup.cutmix_on)
        self._served += 1
        return out

    def get_state(self) -> Dict[str, Any]:
        return {
            self.SOURCE: self.source.state_dict(),
            self.SAMPLER: self._sampler.state_dict(),
            self.MIXUP: self._mixup.to_dict(),
            self.SEED: self.seed,
            self.EPOCHS: [list(e) for e in self._epochs],
            self.SERVED: self._served,
            self.ENDED: self._ended,
        }

    def _as_fields(self, item) -> Dict[str, torch.Tensor]:
        if isinstance(item, Mapping):
            batch = dict(item)
        elif isinstance(item, (tuple, list)):
            if len(item) != len(self.names):
                raise ValueError(f"MixupNode: the upstream yielded {len(item)} values, names has {len(self.names)} "
                                 f"({', '.join(self.names)})")
            batch = dict(zip(self.names, item))
        else:
            raise TypeError(f"MixupNode: the upstream must yield a dict or a tuple of tensors, got {type(item).__name__}")
        missing = [k for k in self._mixer.fields if k not in batch]
        if missing:
            raise KeyError(f"MixupNode: the upstream's batch has no field {', '.join(map(repr, missing))} "
                           f"(it has {', '.join(map(repr, batch))})")
        extra = [k for k in batch if k not in self._mixer.fields]
        if extra:
            raise KeyError(f"MixupNode: the upstream's batch has fields without a rule: {', '.join(map(repr, extra))}; "
                           "give fields= a rule for each (dali_mixup.Keep() passes one through)")
        for name, value in batch.items():
            if not torch.is_tensor(value):
                raise TypeError(f"MixupNode: field {name!r} is a {type(value).__name__}, not a torch.Tensor "
                                "(DALI's dynamic-mode batches: end the chain with its ToTorch node)")
        return batch
