"""Applying mixup: ``mix_images`` and ``mix_targets``, pure functions of a batch and its
``MixupParams``. The device of the tensor picks the implementation: CUDA tensors go to the CuPy
kernels (``dali_mixup.kernels``) on torch's current stream, CPU tensors to the CPU twin
(``dali_mixup.cpu``). Both give the same bits.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from . import cpu
from .sampler import MixupParams

IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)


def _memory_order_view(t: torch.Tensor) -> Optional[torch.Tensor]:
    """A 1-D view of ``t`` in memory order when ``t`` is dense with dim 0 outermost
    (contiguous, channels_last, channels_last_3d); ``None`` otherwise."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).view(-1)
    if t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d):
        return t.permute(0, 2, 3, 4, 1).view(-1)
    return None


def _byte_span(t: torch.Tensor):
    if t.numel() == 0:
        return (0, 0)
    start = t.data_ptr()
    extent = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()) if size > 0) + 1
    return (start, start + extent * t.element_size())


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    (a0, a1), (b0, b1) = _byte_span(a), _byte_span(b)
    return a.device == b.device and a0 < b1 and b0 < a1


def _check_params(params: MixupParams, n: int, what: str) -> None:
    if not isinstance(params, MixupParams):
        raise TypeError(f"params must be a MixupParams, got {type(params).__name__}")
    if params.batch_size != n:
        raise ValueError(f"params are for a batch of {params.batch_size}, but {what} has {n} samples")


def mix_images(
    x: torch.Tensor,
    params: MixupParams,
    out: Optional[torch.Tensor] = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Mix a batch: ``out[i] = lam[i]*x[i] + (1-lam[i])*x[perm[i]]``, computed in float32.

    Args:
        x: ``(N, ...)``: ``(N, C, H, W)``, ``(N, H, W, C)``, spectrograms, volumes; dtype uint8,
            float16, bfloat16 or float32; contiguous or channels_last. CUDA or CPU.
        params: the batch's ``MixupParams`` (N entries).
        out: optional destination, same shape, device and memory layout as ``x``; must not
            overlap ``x``. Its dtype may differ from ``x`` (a fused cast, e.g. float32 → bfloat16).
        dtype: dtype of a newly allocated ``out`` (default: ``x.dtype``); ignored when ``out``
            is given.

    Returns:
        ``out``. uint8 results round half to even and saturate; float16/bfloat16 round to
        nearest even.
    """
    if not torch.is_tensor(x):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError("x must have a batch dimension: shape (N, ...)")
    if x.dtype not in IMAGE_DTYPES:
        raise TypeError(f"x.dtype must be one of uint8, float16, bfloat16, float32; got {x.dtype}")
    _check_params(params, x.shape[0], "x")
    if _memory_order_view(x) is None:
        x = x.contiguous()  # a strided view of something else: one copy, then the fast path
    if out is None:
        out_dtype = x.dtype if dtype is None else dtype
        if out_dtype not in IMAGE_DTYPES:
            raise TypeError(f"dtype must be one of uint8, float16, bfloat16, float32; got {out_dtype}")
        out = torch.empty_like(x, dtype=out_dtype)
    else:
        if not torch.is_tensor(out):
            raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
        if out.shape != x.shape or out.device != x.device:
            raise ValueError(
                f"out must match x in shape and device: out {tuple(out.shape)} on {out.device}, "
                f"x {tuple(x.shape)} on {x.device}"
            )
        if out.dtype not in IMAGE_DTYPES:
            raise TypeError(f"out.dtype must be one of uint8, float16, bfloat16, float32; got {out.dtype}")
        if _overlaps(out, x):
            raise ValueError(
                "out must not alias x: mixing in place would read partners that were already "
                "overwritten. Pass a separate out tensor (or none)."
            )
        if out.stride() != x.stride() or _memory_order_view(out) is None:
            raise ValueError(
                f"out must have the same memory layout as x: out strides {out.stride()}, "
                f"x strides {x.stride()}"
            )
    n = x.shape[0]
    if x.numel() == 0:
        return out
    x_flat, out_flat = _memory_order_view(x), _memory_order_view(out)
    sample_size = x.numel() // n
    if x.is_cuda:
        from . import kernels

        kernels.launch_mix_images(
            x_flat,
            params.lam.to(x.device, non_blocking=True),
            params.perm.to(x.device, non_blocking=True),
            sample_size,
            out_flat,
        )
    else:
        cpu.mix_images_cpu(x_flat.view(n, sample_size), params.lam, params.perm, out_flat.view(n, sample_size))
    return out


def smoothing_values(num_classes: int, label_smoothing: float):
    """(on, off) in float32: on = 1 − ε + ε/C, off = ε/C (torch CrossEntropyLoss, timm)."""
    off = np.float32(label_smoothing) / np.float32(num_classes)
    on = np.float32(1.0) - np.float32(label_smoothing) + off
    return np.float32(on), np.float32(off)


def mix_targets(
    labels: torch.Tensor, params: MixupParams, num_classes: int, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Soft targets of a mixed batch: ``lam[i]*onehot(y[i]) + (1-lam[i])*onehot(y[perm[i]])``.

    Args:
        labels: ``(N,)`` or ``(N, 1)`` integer class indices in [0, num_classes); never cast to
            a floating type. CUDA labels give CUDA targets (range checked with a device-side
            assert, no host sync); CPU labels are checked on the host.
        params: the batch's ``MixupParams``.
        num_classes: C >= 1.
        label_smoothing: ε in [0, 1).

    Returns:
        ``(N, C)`` float32 on the labels' device; every row sums to 1.
    """
    if not torch.is_tensor(labels):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of class indices, got {labels.dtype}")
    if labels.dim() == 2 and labels.shape[1] == 1:
        labels = labels.view(-1)
    if labels.dim() != 1:
        raise ValueError(f"labels must have shape (N,) or (N, 1), got {tuple(labels.shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if isinstance(label_smoothing, bool) or not (0.0 <= float(label_smoothing) < 1.0):
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    n = labels.shape[0]
    _check_params(params, n, "labels")
    num_classes = int(num_classes)
    on, off = smoothing_values(num_classes, float(label_smoothing))
    labels = labels.to(torch.int64).contiguous()
    if labels.is_cuda:
        out = torch.empty((n, num_classes), dtype=torch.float32, device=labels.device)
        if n == 0:
            return out
        torch._assert_async(((labels >= 0) & (labels < num_classes)).all(), "label outside [0, num_classes)")
        from . import kernels

        kernels.launch_mix_targets(
            labels,
            params.lam.to(labels.device, non_blocking=True),
            params.perm.to(labels.device, non_blocking=True),
            num_classes,
            on,
            off,
            out,
        )
        return out
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)].tolist()
        raise ValueError(f"labels must be in [0, {num_classes}); got {bad[:10]}")
    return cpu.mix_targets_cpu(labels, params.lam, params.perm, num_classes, on, off)
