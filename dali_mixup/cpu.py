"""The CPU twin of ``dali_mixup.kernels``: the same semantics, bit for bit, with torch ops.

Each output sample is computed from two input samples in float32 as the CUDA kernel does: one
rounded product ``lam*x[i]``, then ``add_(x[j], alpha=1-lam)``, which torch's vectorised CPU
kernels compute as a fused multiply-add (``__fmaf_rn`` on the GPU). Per-sample work keeps the
batch streamed once: two reads and one write per element.
"""

from __future__ import annotations

import numpy as np
import torch


def mix_images_cpu(x2d: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor, out2d: torch.Tensor) -> None:
    """``out2d[i] = lam[i]*x2d[i] + (1-lam[i])*x2d[perm[i]]``; x2d, out2d: (N, S) dense views."""
    n, s = x2d.shape
    if n == 0 or s == 0:
        return
    lam_np = lam.numpy()
    mu_np = np.float32(1.0) - lam_np  # float32 arithmetic, as the kernel's 1.0f - l
    perm_list = perm.tolist()
    f32_in = x2d.dtype == torch.float32
    f32_out = out2d.dtype == torch.float32
    tmp = None if f32_in else torch.empty(s, dtype=torch.float32)
    acc = None if f32_out else torch.empty(s, dtype=torch.float32)
    # λ = 1 is a plain conversion, except float -> uint8, which must round and saturate
    plain_copy = out2d.dtype != torch.uint8 or x2d.dtype == torch.uint8
    for i in range(n):
        l = float(lam_np[i])
        if l == 1.0 and plain_copy:
            out2d[i].copy_(x2d[i])
            continue
        j = perm_list[i]
        mu = float(mu_np[i])
        a = out2d[i] if f32_out else acc
        if l == 1.0:
            a.copy_(x2d[i])
        elif f32_in:
            torch.mul(x2d[i], l, out=a)
            a.add_(x2d[j], alpha=mu)
        else:
            a.copy_(x2d[i]).mul_(l)
            a.add_(tmp.copy_(x2d[j]), alpha=mu)
        if not f32_out:
            if out2d.dtype == torch.uint8:
                a.round_().clamp_(0.0, 255.0)
            out2d[i].copy_(a)


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
