"""Applying mixup: ``mix_images`` and ``mix_targets``, pure functions of a batch and its
``MixupParams``. The device of the tensor picks the implementation: CUDA tensors go to the CuPy
kernels (``dali_mixup.kernels``) on torch's current stream, CPU tensors to the CPU twin
(``dali_mixup.cpu``). Both give the same bits.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from . import cpu
from .checks import SPATIAL_DIMS, check_layout, check_num_classes, check_real
from .sampler import MixupParams

IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)


def _memory_order(t: torch.Tensor) -> Optional[Tuple[int, ...]]:
    """The dims of ``t`` from outermost to innermost in memory when ``t`` is dense with dim 0
    outermost (contiguous, channels_last, channels_last_3d); ``None`` otherwise."""
    if t.is_contiguous():
        return tuple(range(t.dim()))
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return (0, 2, 3, 1)
    if t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d):
        return (0, 2, 3, 4, 1)
    return None


def _memory_order_view(t: torch.Tensor) -> Optional[torch.Tensor]:
    """A 1-D view of ``t`` in memory order, or ``None`` (see ``_memory_order``)."""
    order = _memory_order(t)
    return None if order is None else t.permute(*order).view(-1)


def _cutmix_grid(x: torch.Tensor, layout: str, params: MixupParams) -> Tuple[int, ...]:
    """``(outer, H, W, inner)``: one sample of ``x`` in memory order, with the image rows and
    columns located by ``layout`` (the order of x's dims) and x's strides (a channels_last
    NCHW tensor is NHWC in memory). Checks the boxes fit these H and W.

    With cuboids (``params.boxes`` (N, 6)): ``(outer, D, H, W, inner)`` for a 5-D ``x``, the
    slices, rows and columns located the same way (``"NCDHW"`` or ``"NCHW"``: channels first;
    ``"NDHWC"`` or ``"NHWC"``: channels last)."""
    if params.boxes.shape[1] == 6:
        return _cutmix_grid_3d(x, layout, params)
    if x.dim() != 4:
        raise ValueError(f"CutMix needs 4-D images (N, C, H, W) or (N, H, W, C); got shape {tuple(x.shape)}")
    if x[0].numel() >= 2**31:  # the kernel locates pixels with 32-bit arithmetic
        raise ValueError(f"CutMix needs fewer than 2**31 elements per image; got {x[0].numel()}")
    h_dim, w_dim = (2, 3) if layout == "NCHW" else (1, 2)
    h, w = x.shape[h_dim], x.shape[w_dim]
    order = _memory_order(x)
    ph, pw = order.index(h_dim), order.index(w_dim)
    if pw != ph + 1:
        raise ValueError(
            f"CutMix needs the image rows and columns next to each other in memory; x with layout "
            f"{layout!r} has strides {x.stride()}. Pass x.contiguous()."
        )
    outer = int(np.prod([x.shape[d] for d in order[1:ph]], dtype=np.int64))
    inner = int(np.prod([x.shape[d] for d in order[pw + 1 :]], dtype=np.int64))
    if params.image_size is not None and params.image_size != (h, w):
        raise ValueError(
            f"params were drawn for {params.image_size[0]}x{params.image_size[1]} images, but x "
            f"{tuple(x.shape)} read as {layout} has H={h}, W={w}; is layout={layout!r} right?"
        )
    boxes = params.boxes[params.cutmix]
    if boxes.numel() and (int(boxes[:, 1].max()) > h or int(boxes[:, 3].max()) > w):
        raise ValueError(f"params.boxes reach outside the {h}x{w} images of x ({layout}): {boxes.tolist()}")
    return (outer, h, w, inner)


def _cutmix_grid_3d(x: torch.Tensor, layout: str, params: MixupParams) -> Tuple[int, int, int, int, int]:
    if x.dim() != 5:
        raise ValueError(
            "3-D CutMix (cuboid boxes) needs 5-D volumes (N, C, D, H, W) or (N, D, H, W, C); got shape "
            f"{tuple(x.shape)}"
        )
    if x[0].numel() >= 2**31:  # the kernel locates voxels with 32-bit arithmetic
        raise ValueError(f"CutMix needs fewer than 2**31 elements per volume; got {x[0].numel()}")
    dims = SPATIAL_DIMS[(layout, 5)]
    size = tuple(int(x.shape[d]) for d in dims)
    order = _memory_order(x)
    pos = [order.index(d) for d in dims]
    if pos != list(range(pos[0], pos[0] + 3)):
        raise ValueError(
            f"CutMix needs a volume's slices, rows and columns next to each other in memory; x with layout "
            f"{layout!r} has strides {x.stride()}. Pass x.contiguous()."
        )
    outer = int(np.prod([x.shape[d] for d in order[1 : pos[0]]], dtype=np.int64))
    inner = int(np.prod([x.shape[d] for d in order[pos[2] + 1 :]], dtype=np.int64))
    if params.image_size is not None and tuple(params.image_size) != size:
        raise ValueError(
            f"params were drawn for {'x'.join(map(str, params.image_size))} volumes, but x {tuple(x.shape)} read as "
            f"{layout} has D, H, W = {size}; is layout={layout!r} right?"
        )
    boxes = params.boxes[params.cutmix]
    if boxes.numel() and any(int(boxes[:, 2 * k + 1].max()) > size[k] for k in range(3)):
        raise ValueError(f"params.boxes reach outside the {'x'.join(map(str, size))} volumes of x ({layout}): "
                         f"{boxes.tolist()}")
    return (outer, *size, inner)


_NUMPY_STORAGE = {torch.uint8: np.uint8, torch.float16: np.float16, torch.float32: np.float32, torch.bfloat16: np.int16}


def _empty_like(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new tensor with ``x``'s shape and memory layout. On the CPU its memory comes from NumPy,
    which asks the kernel for transparent huge pages on large buffers: first-touch page faults
    on a fresh 38 MB batch cost ~25 ms with 4 KiB pages (glibc mmaps each such allocation anew),
    more than mixing it."""
    if x.is_cuda or x.numel() * x.element_size() < (1 << 22):
        return torch.empty_like(x, dtype=dtype)
    flat = torch.from_numpy(np.empty(x.numel(), dtype=_NUMPY_STORAGE[dtype]))
    if dtype == torch.bfloat16:
        flat = flat.view(torch.bfloat16)
    return flat.as_strided(x.shape, x.stride())


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
    layout: str = "NCHW",
) -> torch.Tensor:
    """Mix a batch: ``out[i] = lam[i]*x[i] + (1-lam[i])*x[perm[i]]``, computed in float32; a
    CutMix sample (``params.cutmix[i]``) is ``x[perm[i]]`` inside its box and ``x[i]`` outside.

    Args:
        x: ``(N, ...)``: ``(N, C, H, W)``, ``(N, H, W, C)``, spectrograms, volumes; dtype uint8,
            float16, bfloat16 or float32; contiguous or channels_last. CUDA or CPU.
        params: the batch's ``MixupParams`` (N entries).
        out: optional destination, same shape, device and memory layout as ``x``; must not
            overlap ``x``. Its dtype may differ from ``x`` (a fused cast, e.g. float32 → bfloat16).
        dtype: dtype of a newly allocated ``out`` (default: ``x.dtype``); ignored when ``out``
            is given.
        layout: the order of x's dims, ``"NCHW"`` (default) or ``"NHWC"``; used only to find
            the rows and columns of CutMix boxes. Memory order comes from the strides: a
            channels_last ``(N, C, H, W)`` tensor is ``"NCHW"`` here. CutMix needs 4-D ``x``;
            with cuboid boxes (``params.boxes`` (N, 6)) 5-D volumes, ``"NCDHW"`` or ``"NDHWC"``
            (``"NCHW"``/``"NHWC"`` read as channels first/last there).

    Returns:
        ``out``. uint8 results round half to even and saturate; float16/bfloat16 round to
        nearest even. An ``x`` that requires grad (with grad mode on) is mixed by
        ``dali_mixup.autograd.mix``, the same forward with a ``grad_fn``; ``out`` and a ``dtype``
        other than x's are refused there (``TypeError``), as they have no gradient.
    """
    if not torch.is_tensor(x):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError("x must have a batch dimension: shape (N, ...)")
    if x.dtype not in IMAGE_DTYPES:
        raise TypeError(f"x.dtype must be one of uint8, float16, bfloat16, float32; got {x.dtype}")
    _check_params(params, x.shape[0], "x")
    check_layout(layout)
    if x.requires_grad and torch.is_grad_enabled():  # the kernels write out=: no graph of their own
        if out is not None or (dtype is not None and dtype != x.dtype):
            raise TypeError("mix_images: x requires grad, and out=/dtype= have no gradient; call "
                            "dali_mixup.autograd.mix(x, params, layout) (differentiable), or mix x.detach()")
        from .autograd import mix

        return mix(x, params, layout)
    x_flat = _memory_order_view(x)
    if x_flat is None:
        x = x.contiguous()  # a strided view of something else: one copy, then the fast path
        x_flat = x.view(-1)
    if out is None:
        out_dtype = x.dtype if dtype is None else dtype
        if out_dtype not in IMAGE_DTYPES:
            raise TypeError(f"dtype must be one of uint8, float16, bfloat16, float32; got {out_dtype}")
        out = _empty_like(x, out_dtype)
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
        if out.stride() != x.stride():  # same strides as a dense x: dense, same memory order
            raise ValueError(
                f"out must have the same memory layout as x: out strides {out.stride()}, "
                f"x strides {x.stride()}"
            )
    n = x.shape[0]
    if x.numel() == 0:
        return out
    out_flat = _memory_order_view(out)
    sample_size = x.numel() // n
    grid = _cutmix_grid(x, layout, params) if params.has_cutmix else None
    if x.is_cuda:
        from . import kernels

        dp = params.on(x.device)
        if grid is None:
            kernels.launch_mix_images(x_flat, dp.lam, dp.perm, sample_size, out_flat)
        else:
            kernels.launch_mix_cutmix_images(x_flat, dp.lam, dp.perm, dp.cutmix, dp.boxes, grid, out_flat)
    elif grid is None:
        cpu.mix_images_cpu(x_flat.view(n, sample_size), params.lam, params.perm, out_flat.view(n, sample_size))
    else:
        cpu.mix_images_cpu(x_flat.view(n, sample_size), params.lam, params.perm, out_flat.view(n, sample_size),
                           cutmix=params.cutmix, boxes=params.boxes, grid=grid)
    return out


#: the dtypes ``normalize_mix_images`` writes (normalised values: no uint8)
NORMALIZED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

_NORM_TABLES: dict = {}  # (mean, std, device) -> the (2C,) float32 table on that device


def normalize_table(mean, std, device=None) -> torch.Tensor:
    """``(2C,)`` float32: ``mean[c]*255`` then ``1/(std[c]*255)``, each computed in float64 and
    rounded once to float32 (``mean``/``std`` in [0, 1] units, as DALI's crop_mirror_normalize
    takes them times 255). Made once per (mean, std, device): a CUDA table is copied once."""
    key = (tuple(float(m) for m in mean), tuple(float(v) for v in std), str(device or "cpu"))
    table = _NORM_TABLES.get(key)
    if table is None:
        mean64, std64 = np.asarray(key[0], np.float64), np.asarray(key[1], np.float64)
        if mean64.shape != std64.shape or mean64.ndim != 1 or not mean64.size:
            raise ValueError(f"mean and std must have one entry per channel; got {key[0]} and {key[1]}")
        if not (np.isfinite(mean64).all() and np.isfinite(std64).all() and (std64 > 0).all()):
            raise ValueError(f"mean must be finite and std finite and > 0; got {key[0]} and {key[1]}")
        host = np.concatenate([mean64 * 255.0, 1.0 / (std64 * 255.0)]).astype(np.float32)
        table = torch.from_numpy(host)
        if device is not None and torch.device(device).type != "cpu":
            table = table.to(device)
        _NORM_TABLES[key] = table
    return table


def normalize_mix_images(
    x: torch.Tensor,
    params: MixupParams,
    mean,
    std,
    mirror: Optional[torch.Tensor] = None,
    layout: str = "NCHW",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """DALI's ``crop_mirror_normalize`` and ``mix_images`` in one pass over uint8 crops.

    ``out[i] = λ[i]·v(i) + (1−λ[i])·v(perm[i])`` (CutMix: ``v(perm[i])`` inside the box, ``v(i)``
    outside), where ``v(m)`` is sample m's crop mirrored horizontally where ``mirror[m]``,
    normalised per channel and laid out as ``layout``. Arithmetic, float32, the same bits on the
    GPU kernel (``NORMALIZE_MIX_IMAGES_OP``) and the CPU twin:
    ``v = fl(fl(x − fl32(mean·255)) · fl32(1/(std·255)))`` (two rounded operations, no fma), then
    ``y = fma(1 − λ, v(partner), fl(λ·v(own)))`` as ``mix_images``, stored with round to nearest
    even. Against the unfused path (DALI normalises, ``mix_images`` mixes) the one difference is
    DALI's own normalisation rounding (see ``tests/test_normalize_mix.py``).

    Args:
        x: ``(N, H, W, C)`` uint8 crops (HWC, DALI's resize output), CUDA or CPU.
        params: the batch's ``MixupParams`` (boxes in output rows and columns).
        mean, std: per-channel normalisation in [0, 1] units (C entries each).
        mirror: ``(N,)`` flags (any integer or bool dtype), sample i flipped horizontally where
            nonzero; ``None``: no sample is.
        layout: ``"NCHW"`` (output ``(N, C, H, W)``) or ``"NHWC"`` (``(N, H, W, C)``), dense.
        dtype: float32, float16 or bfloat16.

    Returns:
        The new dense output on x's device.
    """
    if not torch.is_tensor(x):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"x must be uint8 crops (N, H, W, C) in HWC; got {x.dtype} of shape {tuple(x.shape)}")
    if dtype not in NORMALIZED_DTYPES:
        raise TypeError(f"dtype must be one of float32, float16, bfloat16 (normalised values); got {dtype}")
    check_layout(layout, allowed=("NCHW", "NHWC"))
    n, h, w, c = x.shape
    _check_params(params, n, "x")
    if params.boxes.shape[1] != 4:
        raise ValueError("normalize_mix_images takes 2-D CutMix boxes (N, 4); these params hold cuboids")
    if params.image_size is not None and tuple(params.image_size) != (h, w):
        raise ValueError(f"params were drawn for {params.image_size[0]}x{params.image_size[1]} images, but the "
                         f"crops x {tuple(x.shape)} (N, H, W, C) are {h}x{w}")
    if x[0].numel() >= 2**31:
        raise ValueError(f"normalize_mix_images needs fewer than 2**31 elements per image; got {x[0].numel()}")
    if mirror is None:
        mirror = torch.zeros(n, dtype=torch.uint8)
    if not torch.is_tensor(mirror) or mirror.is_floating_point() or mirror.numel() != n:
        raise ValueError(f"mirror must be {n} integer or bool flags, one per sample; got {mirror!r}")
    mirror = mirror.reshape(-1).ne(0).to(torch.uint8) if mirror.dtype != torch.uint8 else mirror.reshape(-1)
    if mean is None or std is None or len(mean) != c or len(std) != c:
        raise ValueError(f"mean and std must have one entry per channel ({c}); got {mean} and {std}")
    channels_last = layout == "NHWC"
    shape = (n, h, w, c) if channels_last else (n, c, h, w)
    x = x.contiguous()
    if x.is_cuda:
        from . import kernels

        out = torch.empty(shape, dtype=dtype, device=x.device)
        if x.numel() == 0:
            return out
        if mirror.device == x.device:
            dp, dm = params.on(x.device), mirror
        else:  # the flags DALI drew on the host travel with λ/partners in one copy
            dp, (dm,) = params.on_with(x.device, mirror.cpu())
        kernels.launch_normalize_mix_images(x.view(-1), dp.lam, dp.perm, dp.cutmix, dp.boxes, dm.contiguous(),
                                            normalize_table(mean, std, x.device), (c, h, w), channels_last,
                                            out.view(-1))
        return out
    if x.numel() == 0:
        return torch.empty(shape, dtype=dtype)
    mirror = mirror.cpu()
    v = cpu.normalize_cpu(x, mirror, normalize_table(mean, std), channels_last)
    if dtype == torch.float32 and params.is_identity:
        return v
    out = _empty_like(v, dtype)
    s = v.numel() // n
    grid = (1, h, w, c) if channels_last else (c, h, w, 1)
    cpu.mix_images_cpu(v.view(n, s), params.lam, params.perm, out.view(n, s), cutmix=params.cutmix,
                       boxes=params.boxes, grid=grid)
    return out


def smoothing_values(num_classes: int, label_smoothing: float):
    """(on, off): on = 1 − ε + ε/C, off = ε/C (torch CrossEntropyLoss, timm), computed in
    float64 and rounded once to float32, as timm's ``one_hot`` does."""
    off = float(label_smoothing) / num_classes
    on = 1.0 - float(label_smoothing) + off
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
    num_classes = check_num_classes("num_classes", num_classes)
    label_smoothing = check_real("label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)
    _check_params(params, labels.shape[0], "labels")
    return _targets(labels.to(torch.int64).contiguous(), params, int(num_classes), float(label_smoothing), checked=False)


def _targets(labels: torch.Tensor, params: MixupParams, num_classes: int, label_smoothing: float,
             checked: bool) -> torch.Tensor:
    """``mix_targets`` on validated arguments: ``labels`` (N,) contiguous int64. ``checked``:
    the caller has already range-checked the labels on the host (the iterator does, on the CPU
    labels DALI returns), so CUDA labels skip the device-side assert and its four launches."""
    n = labels.shape[0]
    on, off = smoothing_values(num_classes, label_smoothing)
    if labels.is_cuda:
        out = torch.empty((n, num_classes), dtype=torch.float32, device=labels.device)
        if n == 0:
            return out
        if not checked:
            torch._assert_async(((labels >= 0) & (labels < num_classes)).all(), "label outside [0, num_classes)")
        from . import kernels

        dp = params.on(labels.device)
        kernels.launch_mix_targets(labels, dp.lam, dp.perm, num_classes, on, off, out)
        return out
    if not checked and n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)].tolist()
        raise ValueError(f"labels must be in [0, {num_classes}); got {bad[:10]}")
    return cpu.mix_targets_cpu(labels, params.lam, params.perm, num_classes, on, off)
