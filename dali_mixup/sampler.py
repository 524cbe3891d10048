"""Sampling mixup parameters, apart from applying them (see ``dali_mixup.mix``).

``MixupSampler`` owns a NumPy PCG64 generator: the same seed gives the same sequence of
``MixupParams`` on every machine, with or without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import numpy as np
import torch

from .config import MixMode, MixupConfig, Pairing


@dataclass(frozen=True)
class MixupParams:
    """The parameters of one mixed batch: ``out[i] = lam[i]*x[i] + (1-lam[i])*x[perm[i]]``.

    Build it directly to fix λ and partners (tests, ablations). Inputs are converted to
    CPU tensors and validated.

    Attributes:
        lam: ``(N,)`` float32 in [0, 1], the weight of sample i itself.
        perm: ``(N,)`` int64 in [0, N), the partner of sample i.
    """

    lam: torch.Tensor
    perm: torch.Tensor

    def __post_init__(self):
        lam = torch.as_tensor(np.asarray(self.lam, dtype=np.float32) if not torch.is_tensor(self.lam) else self.lam)
        perm = torch.as_tensor(self.perm) if torch.is_tensor(self.perm) else torch.from_numpy(np.asarray(self.perm))
        if perm.is_floating_point() or perm.is_complex() or perm.dtype == torch.bool:
            raise TypeError(f"MixupParams.perm must hold integers, got {perm.dtype}")
        lam = lam.detach().to("cpu", torch.float32).contiguous()
        perm = perm.detach().to("cpu", torch.int64).contiguous()
        if lam.dim() != 1 or perm.dim() != 1 or lam.shape != perm.shape:
            raise ValueError(
                f"MixupParams.lam and .perm must both have shape (N,); got {tuple(lam.shape)} "
                f"and {tuple(perm.shape)}"
            )
        n = lam.shape[0]
        if n and not bool(torch.isfinite(lam).all() and (lam >= 0).all() and (lam <= 1).all()):
            raise ValueError(f"MixupParams.lam must be finite and in [0, 1]; got {lam.tolist()}")
        if n and not bool((perm >= 0).all() and (perm < n).all()):
            raise ValueError(f"MixupParams.perm must index the batch [0, {n}); got {perm.tolist()}")
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "perm", perm)

    @property
    def batch_size(self) -> int:
        return int(self.lam.shape[0])

    @classmethod
    def identity(cls, batch_size: int) -> "MixupParams":
        """λ = 1 and perm = identity: the batch unchanged."""
        return cls(torch.ones(batch_size, dtype=torch.float32), torch.arange(batch_size, dtype=torch.int64))


def _derangement(rng: np.random.Generator, n: int) -> np.ndarray:
    """A uniformly random permutation without fixed points (rejection, ~e draws on average)."""
    if n < 2:
        return np.arange(n, dtype=np.int64)
    idx = np.arange(n)
    while True:
        p = rng.permutation(n)
        if not np.any(p == idx):
            return p.astype(np.int64)


def _matching(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random perfect matching as an involution; with odd n one sample is its own partner."""
    order = rng.permutation(n)
    perm = np.arange(n, dtype=np.int64)
    a, b = order[0 : n - 1 : 2], order[1:n:2]
    perm[a], perm[b] = b, a
    return perm


class MixupSampler:
    """Draws ``MixupParams`` for each batch from a seeded generator.

    Args:
        config: the ``MixupConfig``.
        seed: integer seed; the same seed gives the same sequence of params everywhere.

    Example:
        >>> s = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), seed=0)
        >>> p = s.sample(8)   # p.lam: (8,) float32, p.perm: (8,) int64
    """

    def __init__(self, config: MixupConfig, seed: int = 0):
        if not isinstance(config, MixupConfig):
            raise TypeError(f"MixupSampler.config must be a MixupConfig, got {type(config).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"MixupSampler.seed must be a non-negative int, got {seed!r}")
        self.config = config
        self.seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))

    def _partners(self, n: int) -> np.ndarray:
        cfg = self.config
        if cfg.pairing is Pairing.FLIP:
            return np.arange(n - 1, -1, -1, dtype=np.int64)
        if cfg.pairing is Pairing.ROLL:
            return (np.arange(n, dtype=np.int64) - 1) % max(n, 1)
        if cfg.mode is MixMode.PAIR:
            return _matching(self._rng, n)
        return _derangement(self._rng, n)

    def sample(self, batch_size: int) -> MixupParams:
        """Draw the params of one batch of ``batch_size`` samples (0 is allowed)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 0:
            raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
        n = int(batch_size)
        cfg = self.config
        if not cfg.enabled or n == 0:
            return MixupParams.identity(n)
        rng = self._rng
        perm = self._partners(n)
        if cfg.mode is MixMode.BATCH:
            mixed = rng.random() < cfg.prob
            lam_value = rng.beta(cfg.alpha, cfg.beta)
            lam = np.full(n, lam_value if mixed else 1.0)
        elif cfg.mode is MixMode.ELEM:
            mixed = rng.random(n) < cfg.prob
            lam = np.where(mixed, rng.beta(cfg.alpha, cfg.beta, size=n), 1.0)
        else:  # PAIR: one draw per pair, shared by both members
            first = np.arange(n) <= perm  # the lower index of each pair represents it
            reps = np.flatnonzero(first)
            mixed = rng.random(reps.size) < cfg.prob
            draws = np.where(mixed, rng.beta(cfg.alpha, cfg.beta, size=reps.size), 1.0)
            lam = np.empty(n)
            lam[reps] = draws
            lam[perm[reps]] = draws
            lam[perm == np.arange(n)] = 1.0
        return MixupParams(torch.from_numpy(lam.astype(np.float32)), torch.from_numpy(perm))

    def state_dict(self) -> Dict[str, Any]:
        """The generator's state, to resume the same sequence (see ``load_state_dict``)."""
        return {"seed": self.seed, "bit_generator": self._rng.bit_generator.state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self._rng.bit_generator.state = state["bit_generator"]
