"""``MixupDataModule``: the mixup DALI loaders of any sample kind as a Lightning ``LightningDataModule``.

Lightning lists DALI among the iterables a ``Trainer`` takes as they are; what it cannot know is a
DALI loader's shard, device and resume state. This module supplies them:

* the train and validation loaders come from ``dali_mixup.build_loader(kind, **options)`` (kinds
  'image', 'audio', 'detection', 'volume'; the options are that kind's ``create_*`` arguments);
* each process reads its own shard: ``shard_id`` / ``num_shards`` are the Trainer strategy's
  ``global_rank`` / ``world_size`` (DDP, on one node or several), ``device_id`` its
  ``local_rank``, and ``device`` follows the Trainer's accelerator ('gpu' for CUDA, else 'cpu');
* ``state_dict()`` / ``load_state_dict()`` put every process's loader state into the Lightning
  checkpoint: a checkpoint taken mid-epoch (``ModelCheckpoint(every_n_train_steps=...)``) resumes
  on the batch that follows, none repeated, none lost;
* ``mixup_off_epoch=N`` (timm's ``--mixup-off-epoch``): from epoch N on, the loader stops mixing
  (label smoothing stays), and a resumed run keeps it off.

Batches are the loader's dict for one pipeline: ``batch["data"]`` ``(N, C, H, W)``,
``batch["label"]`` ``(N, C)`` soft targets, ``lam``, ``perm``, ``label_index``, ...

Example::

    import lightning as L
    from dali_mixup import MixupConfig
    from dali_mixup.integrations.lightning import MixupDataModule

    dm = MixupDataModule(
        "image",
        train=dict(root="/data/train", mixup=MixupConfig(alpha=0.2, label_smoothing=0.1)),
        val=dict(root="/data/val"),
        batch_size=256, image_size=224, seed=0, mixup_off_epoch=85,
    )
    L.Trainer(accelerator="gpu", devices=8, strategy="ddp", max_epochs=90).fit(model, datamodule=dm)

Needs ``lightning`` (``pip install "dali-mixup[lightning]"``); ``import dali_mixup`` does not
import this module.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Dict, List, Mapping, Optional

from lightning.pytorch import LightningDataModule

__all__ = ["MixupDataModule", "VAL_DEFAULTS"]

#: what a validation loader of each kind gets unless ``val=`` says otherwise: file order, no
#: random crops, no mixing
VAL_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "image": {"train": False},
    "audio": {"train": False},
    "detection": {"shuffle": False, "flip_prob": 0.0, "mixup": None},
    "volume": {"shuffle": False, "flip": False, "mixup": None},
}


class _Pass:
    """One loader as Lightning iterates it: one pass per ``iter()``, each batch the dict of the
    (single) pipeline.

    Lightning takes a sized iterable's batches one at a time, as the training step needs them, so
    the loader's own state is always the state after the last batch the model was given. After
    the last batch of an epoch this class asks the loader for one more, which ends its epoch
    (DALI's StopIteration, and with ``auto_reset`` the next epoch's start): a checkpoint taken
    there resumes on the next epoch's first batch. A pass Lightning leaves early (the sanity
    check's two validation batches, ``limit_*_batches``) is finished before the next one starts:
    a validation loader goes back to its pass's start (restored from its state), a training loader
    reads the rest of its epoch.
    """

    def __init__(self, loader, train: bool, on_pass_start=None):
        self.loader = loader
        self.train = train
        self.on_pass_start = on_pass_start
        self.served = 0  # batches handed out in the current pass (epoch)
        self._open = False  # the current pass has served batches and not reached its end
        self._continuing = False  # restored mid-epoch: the next pass goes on from ``served``
        self._start_state: Optional[dict] = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        # Lightning may call iter() more than once before taking a batch: only a pass that has
        # served batches counts as started
        if self._open:
            self._finish_abandoned_pass()
        if not self._continuing:
            self.served = 0
        if self.on_pass_start is not None:
            self.on_pass_start(self.loader)
        if not self.train and self.served == 0:
            self._start_state = self.loader.state_dict()
        return self._batches()

    def _batches(self):
        n = len(self.loader)
        while self.served < n:
            try:
                batch = next(self.loader)
            except StopIteration:  # a policy that ends early (DROP): the epoch is over
                break
            self.served += 1
            self._open, self._continuing = True, False
            if self.served == n:
                self._end_epoch()
                self._open = False
            yield batch[0] if len(batch) == 1 else batch
        self._open = False

    def _end_epoch(self) -> None:
        """Ask for the batch after the last: DALI ends the epoch there (and, with auto_reset,
        starts the next), so the loader's state is the next epoch's start."""
        try:
            next(self.loader)
        except StopIteration:
            return
        raise RuntimeError(f"the loader yielded more than len(loader) = {len(self.loader)} batches in one epoch")

    def _finish_abandoned_pass(self) -> None:
        if self.train:
            try:
                while True:  # the rest of this epoch (auto_reset then starts the next)
                    next(self.loader)
            except StopIteration:
                pass
        elif self._start_state is not None:
            self.loader.load_state_dict(self._start_state)
        self._open = False

    def resume(self, served: int) -> None:
        """The loader was restored to the state after ``served`` batches of its epoch."""
        self.served = served
        self._open = False
        self._continuing = True


class MixupDataModule(LightningDataModule):
    """Train and validation loaders of one sample kind, sharded by the Trainer's strategy.

    Args:
        kind: 'image', 'audio', 'detection' or 'volume' (``dali_mixup.build_loader``).
        train: the training loader's own options (the data, ``mixup``, ...): arguments of the
            kind's ``create_*`` function.
        val: the validation loader's own options, or ``None`` for no validation. ``VAL_DEFAULTS``
            are added (e.g. ``train=False`` for images: resize and center crop, never mixed).
        mixup_off_epoch: from this epoch on (counted from 0) the training loader does not mix
            (``MixupConfig.enabled=False``; label smoothing stays). ``None``: mix throughout.
        **shared: options both loaders take (``batch_size``, ``image_size``, ``seed``,
            ``num_threads``, ``device``, ``dtype``, ...). ``shard_id``, ``num_shards``,
            ``device_id`` and ``device`` default to the Trainer's (rank, world size, local rank,
            accelerator); given here they win.

    ``trainer.save_checkpoint`` must run on every process (as Lightning's ``ModelCheckpoint``
    does): ``state_dict()`` gathers the processes' loader states, each reads its own shard.
    """

    def __init__(self, kind: str = "image", *, train: Mapping[str, Any], val: Optional[Mapping[str, Any]] = None,
                 mixup_off_epoch: Optional[int] = None, **shared: Any):
        super().__init__()
        if kind not in VAL_DEFAULTS:
            raise ValueError(f"kind must be one of {', '.join(VAL_DEFAULTS)}; got {kind!r}")
        if not isinstance(train, Mapping):
            raise TypeError(f"train must be a mapping of loader options, got {type(train).__name__}")
        if val is not None and not isinstance(val, Mapping):
            raise TypeError(f"val must be a mapping of loader options or None, got {type(val).__name__}")
        if mixup_off_epoch is not None and (isinstance(mixup_off_epoch, bool) or not isinstance(mixup_off_epoch, int)
                                            or mixup_off_epoch < 0):
            raise ValueError(f"mixup_off_epoch must be an integer >= 0 or None, got {mixup_off_epoch!r}")
        for name, options in (("train", train), ("val", val or {}), ("shared", shared)):
            if options.get("auto_reset", True) is not True:
                raise ValueError(f"{name}: auto_reset must stay True: the DataModule starts each epoch where the "
                                 "last one ended")
        self.kind = kind
        self.train_options = dict(train)
        self.val_options = None if val is None else dict(val)
        self.shared_options = dict(shared)
        self.mixup_off_epoch = mixup_off_epoch
        self._train: Optional[_Pass] = None
        self._val: Optional[_Pass] = None
        self._pending: Optional[dict] = None  # a state loaded before the loaders were built

    # -- where this process stands ------------------------------------------------------------
    def placement(self) -> Dict[str, Any]:
        """``shard_id``, ``num_shards``, ``device`` and (on a GPU) ``device_id`` from the Trainer's
        strategy; a single process (shard 0 of 1, CPU) without a Trainer."""
        trainer = self.trainer
        if trainer is None:
            return {"shard_id": 0, "num_shards": 1, "device": "cpu"}
        strategy = trainer.strategy
        gpu = strategy.root_device.type == "cuda"
        out = {"shard_id": int(strategy.global_rank), "num_shards": int(strategy.world_size),
               "device": "gpu" if gpu else "cpu"}
        if gpu:
            out["device_id"] = int(strategy.local_rank if strategy.root_device.index is None else strategy.root_device.index)
        return out

    def loader_options(self, which: str) -> Dict[str, Any]:
        """The options ``build_loader`` gets for ``'train'`` or ``'val'``."""
        if which == "train":
            own = self.train_options
            defaults: Dict[str, Any] = {}
        elif which == "val":
            if self.val_options is None:
                raise ValueError("this MixupDataModule has no validation loader (val=None)")
            own, defaults = self.val_options, VAL_DEFAULTS[self.kind]
        else:
            raise ValueError(f"which must be 'train' or 'val', got {which!r}")
        return {**self.placement(), "auto_reset": True, **defaults, **self.shared_options, **own}

    # -- Lightning's hooks -----------------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        from .. import build_loader

        if stage in (None, "fit") and self._train is None:
            self._train = _Pass(build_loader(self.kind, **self.loader_options("train")), train=True,
                                on_pass_start=self._switch_mixup)
            if self._pending is not None:
                self._restore(self._pending)
                self._pending = None
        if stage in (None, "fit", "validate") and self.val_options is not None and self._val is None:
            self._val = _Pass(build_loader(self.kind, **self.loader_options("val")), train=False)

    def train_dataloader(self):
        if self._train is None:
            self.setup("fit")
        return self._train

    def val_dataloader(self):
        if self.val_options is None:
            return []
        if self._val is None:
            self.setup("validate")
        return self._val

    def teardown(self, stage: Optional[str] = None) -> None:
        """Drop the loaders (their DALI threads) when the stage that built them ends."""
        if stage in (None, "fit"):
            self._train = None
        if stage in (None, "fit", "validate"):
            self._val = None

    @property
    def train_loader(self):
        """The training ``DALIMixupIterator`` (after ``setup``), e.g. to read ``.mixup``."""
        return None if self._train is None else self._train.loader

    @property
    def val_loader(self):
        return None if self._val is None else self._val.loader

    def _switch_mixup(self, loader) -> None:
        off = self.mixup_off_epoch
        if off is None or self.trainer is None or self.trainer.current_epoch < off:
            return
        if loader.mixup.enabled:
            loader.mixup = dataclasses.replace(loader.mixup, enabled=False)

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Every process's training loader state, in rank order, with how many batches of the
        current epoch each has served. A collective under DDP: every process must call it (as
        ``trainer.save_checkpoint`` does)."""
        if self._train is None:
            return {}
        mine = {"loader": self._train.loader.state_dict(), "served": self._train.served}
        states: List[Optional[dict]] = [mine]
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                states = [None] * dist.get_world_size()
                dist.all_gather_object(states, mine)
        return {"kind": self.kind, "train": states}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore this process's training loader from a ``state_dict()`` (Lightning calls this on
        every process when it resumes from a checkpoint). A state saved by another number of
        processes is not restored (a warning says so): the data order then restarts from the
        seed."""
        if not state_dict:
            return
        if state_dict.get("kind") != self.kind:
            raise ValueError(f"MixupDataModule.load_state_dict: the state is for kind {state_dict.get('kind')!r}, "
                             f"this DataModule reads {self.kind!r}")
        if self._train is None:
            self._pending = state_dict
        else:
            self._restore(state_dict)

    def _restore(self, state_dict: Dict[str, Any]) -> None:
        states = state_dict["train"]
        place = self.placement()
        if len(states) != place["num_shards"]:
            warnings.warn(f"MixupDataModule: the checkpoint holds the loader states of {len(states)} process(es), "
                          f"this run has {place['num_shards']}: the loader is not restored, its data order restarts "
                          "from the seed", stacklevel=2)
            return
        mine = states[place["shard_id"]]
        self._train.loader.load_state_dict(mine["loader"])
        self._train.resume(int(mine["served"]))
        # Lightning warns that a mid-epoch resume repeats or skips data unless the dataloader has
        # state_dict/load_state_dict; this one resumes exactly (its state travels in the DataModule's,
        # not as Lightning's loader state, which would hand rank 0's state to every rank)
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
