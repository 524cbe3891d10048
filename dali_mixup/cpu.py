"""The CPU twin of ``dali_mixup.kernels``: the same semantics, bit for bit, with torch ops.

Each output sample is computed from two input samples in float32 as the CUDA kernel does: one
rounded product ``lam*x[i]``, then ``add_(x[j], alpha=1-lam)``, which torch's vectorised CPU
kernels compute as a fused multiply-add (PTX ``fma.rn.f32`` on the GPU, without flush-to-zero:
subnormal values are kept on both sides). A CutMix sample is two copies (the sample, then the
partner's box over it), so its bits match the kernel's trivially.

One pass over the batch, as the kernels: each sample is read from memory once and each output
written once. The samples are taken along the cycles of ``perm`` (i, then perm[i], ...), so the
sample an output reads as itself is the one the previous output read as its partner, still in
the cache; and the two ops of a sample (product, then FMA) run back to back over one sample,
which stays in the core's cache between them. With torch on several threads the cycles are
shared among that many threads, each running its ops on one thread: no OpenMP team started and
joined per op (that cost as much as the memory traffic on 2 cores, and far more when they are
oversubscribed). Which thread computes a sample does not change its bits.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

import numpy as np
import torch

_pool: Optional[Tuple[int, int, ThreadPoolExecutor]] = None  # (pid, workers, pool): a new one after a fork


def _workers(count: int) -> ThreadPoolExecutor:
    """A pool of at least ``count`` threads, shared by every call (made again after a fork)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid() or _pool[1] < count:
        _pool = (os.getpid(), count, ThreadPoolExecutor(max_workers=count, thread_name_prefix="dali-mixup-cpu"))
    return _pool[2]


def cycle_order(perm: List[int]) -> List[int]:
    """Every sample once, along the cycles of ``perm``: i, perm[i], perm[perm[i]], ... from the
    lowest index not yet taken. Consecutive samples i, perm[i] share one operand."""
    taken = [False] * len(perm)
    order = []
    for start in range(len(perm)):
        i = start
        while not taken[i]:
            taken[i] = True
            order.append(i)
            i = perm[i]
    return order


def mix_images_cpu(
    x2d: torch.Tensor,
    lam: torch.Tensor,
    perm: torch.Tensor,
    out2d: torch.Tensor,
    cutmix: Optional[torch.Tensor] = None,
    boxes: Optional[torch.Tensor] = None,
    grid: Optional[Tuple[int, int, int, int]] = None,
) -> None:
    """``out2d[i] = lam[i]*x2d[i] + (1-lam[i])*x2d[perm[i]]``; x2d, out2d: (N, S) dense views.

    With ``cutmix`` ((N,) bool), ``boxes`` ((N, 4) int64 y0, y1, x0, x1) and ``grid``
    (outer, H, W, inner) such that a sample is ``(outer, H, W, inner)`` in memory order, a
    CutMix sample instead copies ``x2d[perm[i]]`` inside its box and ``x2d[i]`` outside. For
    volumes ``boxes`` is (N, 6) (z0, z1, y0, y1, x0, x1) and ``grid`` (outer, D, H, W, inner).

    Runs on ``torch.get_num_threads()`` threads, the calling one among them, each op on one
    thread (torch is set to one thread for the call, and set back).
    """
    n, s = x2d.shape
    if n == 0 or s == 0:
        return
    job = _Mix(x2d, lam, perm, out2d, cutmix, boxes, grid)
    order = cycle_order(job.perm)
    before = torch.get_num_threads()
    threads = max(1, min(before, n))
    if threads == 1:
        job(order)
        return
    bounds = [n * k // threads for k in range(threads + 1)]  # contiguous runs of the cycles
    torch.set_num_threads(1)
    try:
        futures = [_workers(threads - 1).submit(job, order[bounds[k] : bounds[k + 1]], True) for k in range(1, threads)]
        try:
            job(order[bounds[0] : bounds[1]])
        finally:  # every thread done before returning, whatever raised
            errors = [f.exception() for f in futures]
    finally:
        torch.set_num_threads(before)
    for e in errors:
        if e is not None:
            raise e


class _Mix:
    """The mix of one batch, callable on a list of its samples (one thread each)."""

    def __init__(self, x2d, lam, perm, out2d, cutmix, boxes, grid):
        n = x2d.shape[0]
        self.lam = lam.tolist()
        self.mu = (np.float32(1.0) - lam.numpy()).tolist()  # float32 arithmetic, as the kernel's 1.0f - l
        self.perm = perm.tolist()
        self.cut = cutmix.tolist() if cutmix is not None else None
        self.boxes = boxes.tolist() if cutmix is not None else None
        self.x, self.out = x2d.unbind(0), out2d.unbind(0)  # one view per sample, the cheapest way torch makes them
        self.modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        if self.cut is not None and any(self.cut):
            self.x5, self.out5 = x2d.view(n, *grid), out2d.view(n, *grid)
        self.f32_in = x2d.dtype == torch.float32
        self.f32_out = out2d.dtype == torch.float32
        # copies are plain conversions, except float -> uint8, which must round and saturate
        self.plain_copy = out2d.dtype != torch.uint8 or x2d.dtype == torch.uint8
        self.width = x2d.shape[1]

    def __call__(self, samples: List[int], worker: bool = False) -> None:
        if not worker:
            return self._run(samples)
        torch.set_num_threads(1)  # a pool thread: its ops on itself (the setting is per thread under OpenMP)
        grad, inference = self.modes  # thread-local in torch: the caller's, so that its tensors may be written
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return self._run(samples)

    def _run(self, samples: List[int]) -> None:
        tmp = None if self.f32_in else torch.empty(self.width, dtype=torch.float32)  # this thread's own
        acc = None if self.f32_out else torch.empty(self.width, dtype=torch.float32)
        x, out, plain = self.x, self.out, self.plain_copy
        for i in samples:
            j, l = self.perm[i], self.lam[i]
            if self.cut is not None and self.cut[i]:
                # the box is a copy of the partner, the rest a copy of the sample: no arithmetic
                _convert(out[i], x[i], plain)
                box = self.boxes[i]
                if all(hi > lo for lo, hi in zip(box[0::2], box[1::2])):
                    inside = (i, slice(None)) + tuple(slice(lo, hi) for lo, hi in zip(box[0::2], box[1::2]))
                    _convert(self.out5[inside], self.x5[(j,) + inside[1:]], plain)
                continue
            if l == 1.0:  # the sample itself, converted as the kernel stores it
                _convert(out[i], x[i], plain)
                continue
            mu = self.mu[i]
            a = out[i] if self.f32_out else acc
            if self.f32_in:
                torch.mul(x[i], l, out=a)
                a.add_(x[j], alpha=mu)
            else:
                a.copy_(x[i]).mul_(l)
                a.add_(tmp.copy_(x[j]), alpha=mu)
            if not self.f32_out:
                if out[i].dtype == torch.uint8:
                    a.round_().clamp_(0.0, 255.0)
                out[i].copy_(a)


def _convert(dst: torch.Tensor, src: torch.Tensor, plain_copy: bool) -> None:
    """``dst = src`` through float32 as the kernel's ``dm_store(dm_load(v))``: exact widening,
    nearest-even narrowing, and for float -> uint8 round half to even and saturate."""
    if plain_copy:
        dst.copy_(src)
    else:
        dst.copy_(torch.round(src.to(torch.float32)).clamp_(0.0, 255.0))  # never in place on src


def normalize_cpu(x: torch.Tensor, mirror: torch.Tensor, norm: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The normalisation half of ``NORMALIZE_MIX_IMAGES_OP``, bit for bit: uint8 crops ``x``
    (N, H, W, C) -> float32 ``(x - mean255) * inv_std255`` per channel (``norm`` (2C,) float32:
    ``mix.normalize_table``), sample i mirrored horizontally where ``mirror[i]``, returned dense
    as (N, C, H, W) or, with ``channels_last``, (N, H, W, C). Two rounded float32 operations per
    value, as the kernel's ``dm_sub`` then ``dm_mul`` (torch's CPU sub and mul are IEEE, no
    flush-to-zero unless ``torch.set_flush_denormal(True)``)."""
    n, h, w, c = x.shape
    out = torch.empty((n, h, w, c) if channels_last else (n, c, h, w), dtype=torch.float32)
    if channels_last:  # a row of W*C values, C innermost: the constants repeated along the row
        mean, inv = norm[:c].repeat(w), norm[c:].repeat(w)
    else:  # (C, 1, 1) against a (C, H, W) sample
        mean, inv = norm[:c].view(c, 1, 1), norm[c:].view(c, 1, 1)
    flips = mirror.tolist()
    for i in range(n):  # one sample at a time, so that the three passes over it stay in cache
        src = x[i].flip(1) if flips[i] else x[i]
        dst = out[i] if channels_last else out[i].permute(1, 2, 0)  # (H, W, C) view of the output sample
        dst.copy_(src)  # exact widening, transposed as it is written
        (out[i].view(h, w * c) if channels_last else out[i]).sub_(mean).mul_(inv)
    return out


def mix_targets_cpu(labels: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor, num_classes: int,
                    on_value: np.float32, off_value: np.float32) -> torch.Tensor:
    """(N, C) float32 soft targets; ``labels``: (N,) int64 already range-checked."""
    n = labels.shape[0]
    own = torch.full((n, num_classes), float(off_value), dtype=torch.float32)
    own.scatter_(1, labels.view(-1, 1), float(on_value))
    partner = own[perm]
    mu = np.float32(1.0) - lam.numpy()
    own.mul_(lam.view(-1, 1))
    partner.mul_(torch.from_numpy(mu).view(-1, 1))
    return own.add_(partner)
