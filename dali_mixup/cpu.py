"""The CPU twin of ``dali_mixup.kernels``: the same semantics, bit for bit, with torch ops.

Each output sample is computed from two input samples in float32 as the CUDA kernel does: one
rounded product ``lam*x[i]``, then ``add_(x[j], alpha=1-lam)``, which torch's vectorised CPU
kernels compute as a fused multiply-add (PTX ``fma.rn.f32`` on the GPU, without flush-to-zero:
subnormal values are kept on both sides). Per-sample work keeps the
batch streamed once: two reads and one write per element. A CutMix sample is two copies (the
sample, then the partner's box over it), so its bits match the kernel's trivially.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch


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
    """
    n, s = x2d.shape
    if n == 0 or s == 0:
        return
    lam_np = lam.numpy()
    mu_np = np.float32(1.0) - lam_np  # float32 arithmetic, as the kernel's 1.0f - l
    perm_list = perm.tolist()
    cut_list = cutmix.tolist() if cutmix is not None else [False] * n
    box_list = boxes.tolist() if cutmix is not None else None
    f32_in = x2d.dtype == torch.float32
    f32_out = out2d.dtype == torch.float32
    tmp = None if f32_in else torch.empty(s, dtype=torch.float32)
    acc = None if f32_out else torch.empty(s, dtype=torch.float32)
    # copies are plain conversions, except float -> uint8, which must round and saturate
    plain_copy = out2d.dtype != torch.uint8 or x2d.dtype == torch.uint8
    if any(cut_list):
        x5, out5 = x2d.view(n, *grid), out2d.view(n, *grid)
    for i in range(n):
        l = float(lam_np[i])
        j = perm_list[i]
        if cut_list[i]:
            # the box is a copy of the partner, the rest a copy of the sample: no arithmetic
            _convert(out5[i], x5[i], plain_copy)
            box = box_list[i]
            if all(hi > lo for lo, hi in zip(box[0::2], box[1::2])):
                inside = (i, slice(None)) + tuple(slice(lo, hi) for lo, hi in zip(box[0::2], box[1::2]))
                _convert(out5[inside], x5[(j,) + inside[1:]], plain_copy)
            continue
        if l == 1.0:  # the sample itself, converted as the kernel stores it
            _convert(out2d[i], x2d[i], plain_copy)
            continue
        mu = float(mu_np[i])
        a = out2d[i] if f32_out else acc
        if f32_in:
            torch.mul(x2d[i], l, out=a)
            a.add_(x2d[j], alpha=mu)
        else:
            a.copy_(x2d[i]).mul_(l)
            a.add_(tmp.copy_(x2d[j]), alpha=mu)
        if not f32_out:
            if out2d.dtype == torch.uint8:
                a.round_().clamp_(0.0, 255.0)
            out2d[i].copy_(a)


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
