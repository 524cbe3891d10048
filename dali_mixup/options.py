"""The options every sample kind shares, resolved once: ``LoaderOptions.resolve``.

Every loader (``build_loader`` and the ``create_*`` functions) takes these under the same names
with the same defaults (``SHARED_DEFAULTS``), and resolves them here, the one place that knows
the machine and the launcher:

* ``device``: ``"auto"`` (the GPU when torch sees one), ``"gpu"`` or ``"cpu"``.
* ``device_id``: the CUDA device; default the local rank (``LOCAL_RANK`` under torchrun).
* ``shard_id``, ``num_shards``: default the **global** rank and world size (``RANK``,
  ``WORLD_SIZE`` under torchrun, several nodes included, or ``torch.distributed`` when it is
  initialised): each rank reads its own shard.
* ``num_threads``: DALI's CPU threads; default the cores this process may use divided among the
  node's ranks (``LOCAL_WORLD_SIZE``).
* ``seed``, ``last_batch_policy`` (``LastBatch``), ``prefetch_queue_depth``, ``on_error``
  (``OnError``), ``validate``, ``auto_reset``.

Example:
    >>> opts = LoaderOptions.resolve(device="cpu", seed=3)
    >>> opts.shard_id, opts.num_shards      # (0, 1) in one process; (RANK, WORLD_SIZE) under torchrun
    (0, 1)
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from .checks import check_bool, check_choice, check_int, check_seed
from .constants import PREFETCH_QUEUE_DEPTH
from .scan import OnError

__all__ = ["Device", "LastBatch", "LoaderOptions", "SHARED_DEFAULTS", "check_shard_count", "distributed_defaults",
           "resolve_device", "resolve_shards"]


class Device(str, enum.Enum):
    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"


class LastBatch(str, enum.Enum):
    """What happens to the samples of a shard that do not fill the last batch (DALI's
    ``LastBatchPolicy`` by name; DALI is imported only when the pipeline is built).

    Worked example, 7 samples ``1..7``, batch 2, one shard, no shuffle:

    * ``PARTIAL`` (the default): ``[1,2] [3,4] [5,6] [7]``: every sample once, the last batch short.
    * ``FILL``: ``[1,2] [3,4] [5,6] [7,7]``: the last batch padded by repeating its last sample.
    * ``DROP``: ``[1,2] [3,4] [5,6]``: sample 7 is not served this epoch.

    Under every policy all ranks run the same number of batches (``len(loader)``).
    """

    FILL = "FILL"
    DROP = "DROP"
    PARTIAL = "PARTIAL"

    @classmethod
    def of(cls, value) -> "LastBatch":
        """A ``LastBatch`` from itself, DALI's ``LastBatchPolicy`` or a name in any case."""
        if isinstance(value, cls):
            return value
        if isinstance(value, enum.Enum) and type(value).__name__ == "LastBatchPolicy":
            return cls[value.name]
        if isinstance(value, str):
            if value.upper() in cls.__members__:
                return cls[value.upper()]
            raise ValueError(f"last_batch_policy must be FILL, DROP or PARTIAL, got {value!r}")
        raise TypeError(f"last_batch_policy must be a LastBatchPolicy or its name, got {value!r}")

    def dali(self):
        """DALI's ``LastBatchPolicy`` member."""
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy

        return LastBatchPolicy[self.value]


#: the shared options' defaults: the same for every sample kind (``validate=None``: the kind's
#: own default, see ``LoaderOptions.validate``)
SHARED_DEFAULTS = dict(device="auto", device_id=None, shard_id=None, num_shards=None, num_threads=None, seed=0,
                       last_batch_policy="PARTIAL", prefetch_queue_depth=PREFETCH_QUEUE_DEPTH, on_error="raise",
                       validate=None, auto_reset=True)


def distributed_defaults() -> Tuple[int, int, int]:
    """(global rank, world size, local rank) from ``torch.distributed`` when initialised, else
    from the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else (0, 1, 0)."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), local
    return 0, 1, 0


def resolve_device(device: Union[str, Device]) -> str:
    """'gpu' or 'cpu'; 'auto' picks the GPU when torch sees one."""
    device = check_choice("device", Device, device)
    if device is Device.AUTO:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device is Device.GPU and not torch.cuda.is_available():
        raise ValueError("device='gpu' but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return device.value


def resolve_shards(shard_id: Optional[int], num_shards: Optional[int]) -> Tuple[int, int]:
    """``(shard_id, num_shards)``: both default to the global rank and world size. With an
    explicit ``num_shards`` in a distributed run, ``shard_id`` must be given too (a rank cannot
    be mapped to one of another number of shards)."""
    rank, world, _ = distributed_defaults()
    num_shards = check_int("num_shards", world if num_shards is None else num_shards, 1)
    if shard_id is None:
        if num_shards != world:
            if world > 1:
                raise ValueError(
                    f"num_shards={num_shards} in a run of {world} ranks: give shard_id too (each rank reads "
                    f"its own shard), or leave both unset to shard by rank"
                )
            shard_id = 0
        else:
            shard_id = rank
    shard_id = check_int("shard_id", shard_id, 0)
    if shard_id >= num_shards:
        raise ValueError(f"shard_id must be < num_shards ({num_shards}), got {shard_id}")
    return shard_id, num_shards


def _default_threads() -> int:
    """The cores this process may use, divided among the node's ranks."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_world = max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1)
    return max(1, cores // local_world)


def check_shard_count(options: "LoaderOptions", samples: int, what: str = "samples") -> None:
    """Every shard must get at least one sample: ``num_shards`` larger than the data set is an
    error naming both (DALI's reader would stop on an internal assert)."""
    if options.num_shards > samples:
        raise ValueError(f"num_shards={options.num_shards} is larger than the data set ({samples} {what}): "
                         f"shard {samples} and above would be empty; use at most {samples} shards (ranks)")


@dataclass(frozen=True)
class LoaderOptions:
    """The shared options of one loader, resolved (see the module docstring).

    Attributes:
        device: 'gpu' or 'cpu'.
        device_id: the CUDA device this rank uses (the local rank by default) — also on the CPU,
            where DALI is given none (``dali_device_id``).
        validate: scan every file up front. ``None`` given: the kind's default (images: off, a bad
            file is named at the batch that meets it; audio, volumes, COCO: on, their header
            scans are cheap and DALI reads some bad files of theirs without an error).
    """

    device: str
    device_id: int
    shard_id: int
    num_shards: int
    num_threads: int
    seed: int
    last_batch_policy: LastBatch
    prefetch_queue_depth: int
    on_error: OnError
    validate: bool
    auto_reset: bool

    @property
    def dali_device_id(self) -> Optional[int]:
        """What DALI's pipeline gets: the device on the GPU, ``None`` (no CUDA) on the CPU."""
        return self.device_id if self.device == "gpu" else None

    @property
    def scan(self) -> bool:
        """Whether the files are scanned up front (``validate``, or ``on_error='skip'``, which
        must find the bad files to leave them out)."""
        return self.validate or self.on_error is OnError.SKIP

    @classmethod
    def resolve(cls, *, default_validate: bool, device=SHARED_DEFAULTS["device"], device_id=None, shard_id=None,
                num_shards=None, num_threads=None, seed=SHARED_DEFAULTS["seed"],
                last_batch_policy=SHARED_DEFAULTS["last_batch_policy"],
                prefetch_queue_depth=SHARED_DEFAULTS["prefetch_queue_depth"], on_error=SHARED_DEFAULTS["on_error"],
                validate=None, auto_reset=SHARED_DEFAULTS["auto_reset"]) -> "LoaderOptions":
        """Check each shared option and fill the machine's and the launcher's defaults."""
        dev = resolve_device(device)
        _, _, local_rank = distributed_defaults()
        device_id = check_int("device_id", local_rank if device_id is None else device_id, 0)
        if dev == "gpu":
            try:
                import cupy  # noqa: F401
            except ImportError as e:
                raise ValueError("device='gpu' needs CuPy: pip install 'dali-mixup[cuda13]' (or [cuda12])") from e
        shard_id, num_shards = resolve_shards(shard_id, num_shards)
        num_threads = check_int("num_threads", _default_threads() if num_threads is None else num_threads, 1)
        return cls(
            device=dev, device_id=device_id, shard_id=shard_id, num_shards=num_shards, num_threads=num_threads,
            seed=check_seed("seed", seed), last_batch_policy=LastBatch.of(last_batch_policy),
            prefetch_queue_depth=check_int("prefetch_queue_depth", prefetch_queue_depth, 1),
            on_error=check_choice("on_error", OnError, on_error),
            validate=default_validate if validate is None else check_bool("validate", validate),
            auto_reset=check_bool("auto_reset", auto_reset),
        )
