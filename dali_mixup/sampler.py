"""Sampling mixup parameters, apart from applying them (see ``dali_mixup.mix``).

``MixupSampler`` draws from a NumPy PCG64 generator: the same seed gives the same sequence of
``MixupParams`` on every machine, with or without a GPU. It draws a block of batches at a time
in a few vectorised calls, packed as they travel to the GPU, and hands out one batch per call:
a few microseconds of the training thread per batch instead of a dozen NumPy calls.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .checks import check_bool, check_int, check_seed
from .config import MixMode, MixupConfig, Pairing


@dataclass(frozen=True)
class MixupParams:
    """The parameters of one mixed batch.

    A mixup sample i gives ``out[i] = lam[i]*x[i] + (1-lam[i])*x[perm[i]]``. A CutMix sample
    (``cutmix[i]``) gives ``out[i] = x[perm[i]]`` inside its box and ``x[i]`` outside it; its
    ``lam[i]`` is what its targets use (with ``correct_lam``, 1 − box area / image area).

    Build it directly to fix λ, partners and boxes (tests, ablations); ``MixupParams(lam, perm)``
    is plain mixup. Inputs are converted to CPU tensors and validated.

    Attributes:
        lam: ``(N,)`` float32 in [0, 1], the weight of sample i itself.
        perm: ``(N,)`` int64 in [0, N), the partner of sample i.
        boxes: ``(N, 4)`` int64 rows ``(y0, y1, x0, x1)``: the half-open box
            ``[y0, y1) x [x0, x1)`` in image rows and columns; zeros where ``cutmix`` is False.
            For volumes ``(N, 6)`` rows ``(z0, z1, y0, y1, x0, x1)``: the cuboid
            ``[z0, z1) x [y0, y1) x [x0, x1)`` in slices, rows and columns.
            Default: no boxes (``(N, 4)`` zeros, ``(N, 6)`` with a 3-D ``image_size``).
        cutmix: ``(N,)`` bool, which samples use CutMix. Default: none. ``boxes`` and ``cutmix``
            are given together or not at all.
        image_size: ``(H, W)`` (or ``(D, H, W)`` for volumes) the boxes were drawn for, or
            ``None``; when given, boxes must fit in it and ``mix_images`` checks that the images
            have that size.
    """

    lam: torch.Tensor
    perm: torch.Tensor
    boxes: Optional[torch.Tensor] = None
    cutmix: Optional[torch.Tensor] = None
    image_size: Optional[Tuple[int, int]] = None

    def __post_init__(self):
        lam = torch.as_tensor(np.asarray(self.lam, dtype=np.float32) if not torch.is_tensor(self.lam) else self.lam)
        perm = torch.as_tensor(self.perm) if torch.is_tensor(self.perm) else torch.from_numpy(np.asarray(self.perm))
        if perm.is_floating_point() or perm.is_complex() or perm.dtype == torch.bool:
            raise TypeError(f"MixupParams.perm must hold integers, got {perm.dtype}")
        if lam.requires_grad:  # detaching it would leave lam.grad None without a word
            raise ValueError("MixupParams.lam requires grad: the mix is differentiable in x, not in λ "
                             "(dali_mixup.autograd.mix); pass lam.detach()")
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
        image_size = _check_image_size(self.image_size, "MixupParams.image_size")
        object.__setattr__(self, "image_size", image_size)
        boxes, cutmix = _check_boxes(self.boxes, self.cutmix, n, image_size)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "cutmix", cutmix)

    @classmethod
    def _trusted(cls, lam, perm, boxes=None, cutmix=None, image_size=None) -> "MixupParams":
        """Params the sampler drew (valid by construction) or their device copies: no checks,
        which cost more host time per batch than the GPU kernel does."""
        n = lam.shape[0]
        self = object.__new__(cls)
        if boxes is None:
            boxes = torch.zeros((n, _box_width(image_size)), dtype=torch.int64)
        if cutmix is None:
            cutmix = torch.zeros(n, dtype=torch.bool)
        self.__dict__.update(lam=lam, perm=perm, boxes=boxes, cutmix=cutmix, image_size=image_size)
        return self

    def on(self, device: torch.device) -> "MixupParams":
        """These params with their tensors on ``device``: one host-to-device copy (see
        ``to_device``), queued on the current CUDA stream, and cached, so the image and target
        kernels of a batch share it."""
        return self.on_with(device)[0]

    def on_with(self, device: torch.device, *tensors: torch.Tensor) -> Tuple["MixupParams", Tuple[torch.Tensor, ...]]:
        """``(self.on(device), tensors on device)``: other CPU tensors of the batch (its labels)
        travel in the same host-to-device copy as the params when these are not there yet.
        Params the sampler drew travel a block of batches at a time (``_Block.on``): for most
        batches only ``tensors`` are copied."""
        if type(device) is not torch.device:
            device = torch.device(device)
        d = self.__dict__
        source = d.get("_block")  # (block, row): the sampler's params, a row of a block of batches
        if source is not None and device.type == "cpu":
            return self, to_device(device, *tensors)
        cache = d.get("_on_device")
        if cache is None:
            cache = d["_on_device"] = {}
        elif device in cache:
            return cache[device], to_device(device, *tensors)
        if source is not None:  # the block went to the device whole: this batch's rows of it
            cache[device] = source[0].on(device, source[1], self.image_size)
            return cache[device], to_device(device, *tensors)
        if self.lam.device == device:
            return self, to_device(device, *tensors)
        moved = to_device(device, self.lam, self.perm, self.boxes, self.cutmix, *tensors)
        cache[device] = MixupParams._trusted(*moved[:4], image_size=self.image_size)
        return cache[device], moved[4:]

    def __getstate__(self):
        """Pickled or copied without the sampler's block and the device copies (their values are
        the tensors themselves)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_block", "_on_device")}

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def batch_size(self) -> int:
        return int(self.lam.shape[0])

    @property
    def has_cutmix(self) -> bool:
        """True when at least one sample uses CutMix (``mix_images`` then needs the layout)."""
        known = self.__dict__.get("_has_cutmix")  # the sampler's blocks know it for each batch
        return bool(self.cutmix.any()) if known is None else known

    @classmethod
    def identity(cls, batch_size: int) -> "MixupParams":
        """λ = 1 and perm = identity: the batch unchanged (``is_identity`` is True)."""
        params = cls._trusted(torch.ones(batch_size, dtype=torch.float32), torch.arange(batch_size, dtype=torch.int64))
        object.__setattr__(params, "_identity", True)
        return params

    @property
    def is_identity(self) -> bool:
        """True for ``MixupParams.identity`` (mixup off): a rule may hand its input out as it is."""
        return self.__dict__.get("_identity", False)


_ALIGN = 8  # bytes: every tensor in the staging buffer starts where an int64 may
#: dtypes whose CPU tensors ``Tensor.numpy()`` views directly (not bfloat16)
_NUMPY_VIEWABLE = frozenset({torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                             torch.float16, torch.float32, torch.float64})


def to_device(device, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """CPU tensors on ``device`` in one host-to-device copy.

    The tensors are packed into one staging buffer (pinned when ``device`` is CUDA, so the copy
    is queued on the current stream instead of waited for; torch's pinned-memory cache keeps the
    buffer until the copy has run) at 8-byte aligned offsets, copied once, and returned as views
    of the one device buffer, with their dtypes and shapes. A batch's λ, partners, boxes and
    labels are a few hundred bytes: the cost of moving them is the number of copies, not their
    size.
    """
    if not tensors:  # e.g. ``on_with`` with the params already there: no copy at all
        return ()
    if type(device) is not torch.device:
        device = torch.device(device)
    if len(tensors) == 1 and device.type != "cpu":  # one tensor (a batch's labels): its own copy is the one copy
        t = tensors[0]
        if t.device.type == "cpu" and t.is_contiguous() and not t.requires_grad:
            return (t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device),)
    offsets, total = [], 0
    for t in tensors:
        offsets.append(total)
        total += -(-t.numel() * t.element_size() // _ALIGN) * _ALIGN
    staging = torch.empty(total, dtype=torch.uint8, pin_memory=device.type == "cuda")
    buf = staging.numpy()  # NumPy slicing costs a fraction of torch's per-op overhead
    for t, off in zip(tensors, offsets):
        if t.dtype in _NUMPY_VIEWABLE and t.device.type == "cpu" and not t.requires_grad:
            raw = t.numpy().reshape(-1).view(np.uint8)  # NumPy's views: a third of the torch ops' host time
        else:
            raw = t.detach().reshape(-1).view(torch.uint8).numpy()
        buf[off : off + raw.size] = raw
    moved = staging.to(device, non_blocking=True)
    typed: Dict[torch.dtype, torch.Tensor] = {}  # the buffer seen as each dtype (its size is a multiple of 8)
    out = []
    for t, off in zip(tensors, offsets):
        if t.dtype not in typed:
            typed[t.dtype] = moved.view(t.dtype)
        out.append(typed[t.dtype].as_strided(t.shape, _dense_strides(t.shape), off // t.element_size()))
    return tuple(out)


def _dense_strides(shape) -> Tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _box_width(image_size) -> int:
    """Columns of a boxes row: 4 ``(y0, y1, x0, x1)``, or 6 ``(z0, z1, y0, y1, x0, x1)`` for a
    3-D ``image_size``."""
    return 6 if image_size is not None and len(image_size) == 3 else 4


def _check_image_size(value, what: str) -> Optional[Tuple[int, ...]]:
    if value is None:
        return None
    ok = not isinstance(value, (str, bytes)) and hasattr(value, "__len__") and len(value) in (2, 3)
    ok = ok and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    if not ok:
        if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) and len(value) == 3:
            raise TypeError(f"{what} must be three ints (D, H, W), got {value!r}")
        raise TypeError(f"{what} must be a pair of ints (H, W), got {value!r}")
    size = tuple(int(v) for v in value)
    if min(size) < 1:
        raise ValueError(f"{what} must be positive ({'D, H, W' if len(size) == 3 else 'H, W'}), got {value!r}")
    return size


def _check_boxes(boxes, cutmix, n: int, image_size):
    if (boxes is None) != (cutmix is None):
        raise ValueError("MixupParams.boxes and .cutmix must be given together (or neither, for plain mixup)")
    if boxes is None:
        return torch.zeros((n, _box_width(image_size)), dtype=torch.int64), torch.zeros(n, dtype=torch.bool)
    boxes = torch.as_tensor(boxes) if torch.is_tensor(boxes) else torch.from_numpy(np.asarray(boxes))
    cutmix = torch.as_tensor(cutmix) if torch.is_tensor(cutmix) else torch.from_numpy(np.asarray(cutmix))
    if boxes.is_floating_point() or boxes.is_complex() or boxes.dtype == torch.bool:
        raise TypeError(f"MixupParams.boxes must hold integers, got {boxes.dtype}")
    if cutmix.dtype != torch.bool:
        raise TypeError(f"MixupParams.cutmix must be a bool tensor or array, got {cutmix.dtype}")
    boxes = boxes.detach().to("cpu", torch.int64).contiguous()
    cutmix = cutmix.detach().to("cpu").contiguous()
    if image_size is not None:
        width = _box_width(image_size)
    else:  # no size to tell: rows of 6 are cuboids, anything else is checked as (N, 4)
        width = 6 if boxes.dim() == 2 and boxes.shape[1:] == (6,) else 4
    if boxes.shape != (n, width) or cutmix.shape != (n,):
        raise ValueError(
            f"MixupParams.boxes must have shape ({n}, {width}) and .cutmix ({n},); got {tuple(boxes.shape)} "
            f"and {tuple(cutmix.shape)}"
        )
    if n and width == 6:  # cuboids (z0, z1, y0, y1, x0, x1)
        lo, hi = boxes[:, 0::2], boxes[:, 1::2]
        bad = ((lo < 0) | (hi < lo)).any(1)
        if image_size is not None:
            bad |= (hi > torch.tensor(image_size, dtype=torch.int64)).any(1)
        if bool(bad.any()):
            where = " inside {}x{}x{}".format(*image_size) if image_size is not None else ""
            raise ValueError(
                f"MixupParams.boxes rows must be (z0, z1, y0, y1, x0, x1) with 0 <= z0 <= z1, 0 <= y0 <= y1 and "
                f"0 <= x0 <= x1{where}; got {boxes[bad].tolist()}"
            )
    elif n:
        y0, y1, x0, x1 = boxes.unbind(1)
        bad = (y0 < 0) | (y1 < y0) | (x0 < 0) | (x1 < x0)
        if image_size is not None:
            bad |= (y1 > image_size[0]) | (x1 > image_size[1])
        if bool(bad.any()):
            where = f" inside {image_size[0]}x{image_size[1]}" if image_size is not None else ""
            raise ValueError(
                f"MixupParams.boxes rows must be (y0, y1, x0, x1) with 0 <= y0 <= y1 and "
                f"0 <= x0 <= x1{where}; got {boxes[bad].tolist()}"
            )
    return boxes, cutmix


# -- drawing: a block of batches at a time --------------------------------------------------------

#: a block holds at most this many samples (batches x batch size) and this many batches
_BLOCK_SAMPLES = 32768
_MAX_BLOCK = 256
#: from this block size on, the next block of a run is drawn by a background thread
_PREFETCH_FROM = 4
#: block j draws from the sampler's base generator advanced by j * 2**64: disjoint substreams
_SUBSTREAM = 1 << 64
_NP_DTYPES = {torch.float32: np.float32, torch.int64: np.int64, torch.bool: np.bool_}


def _max_block(n: int) -> int:
    return max(1, min(_MAX_BLOCK, _BLOCK_SAMPLES // max(n, 1)))


def _coin(rng: np.random.Generator, p: float, shape) -> np.ndarray:
    """``random < p`` elementwise; p = 1 and p = 0 are decided without drawing."""
    if p >= 1.0:
        return np.ones(shape, dtype=bool)
    if p <= 0.0:
        return np.zeros(shape, dtype=bool)
    return rng.random(shape) < p


def _beta(rng: np.random.Generator, a: float, b: float, count: int) -> np.ndarray:
    """``count`` draws of Beta(a, b). Beta(1, 1) is the uniform distribution and is drawn as one
    (NumPy's Beta sampler rejects about half its tries there)."""
    if a == 1.0 and b == 1.0:
        return rng.random(count)
    return rng.beta(a, b, count)


def _derangements(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``(count, n)``: uniformly random permutations without fixed points, by rejection (a
    uniform permutation is one with probability ~1/e): candidates are drawn ~3 per row needed, by
    Fisher-Yates (``Generator.permuted``), and the first that qualify are kept, in order."""
    idx = np.arange(n, dtype=np.int64)
    if n < 2:
        return np.broadcast_to(idx, (count, n))
    out = np.empty((count, n), dtype=np.int64)
    got = 0
    while got < count:
        cand = rng.permuted(np.broadcast_to(idx, (3 * (count - got) + 2, n)), axis=1)
        ok = cand[(cand != idx).all(axis=1)][: count - got]
        out[got : got + len(ok)] = ok
        got += len(ok)
    return out


def _matchings(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``(count, n)``: random perfect matchings as involutions (consecutive members of a uniform
    permutation pair up); with odd n one sample is its own partner."""
    idx = np.arange(n, dtype=np.int64)
    order = rng.permuted(np.broadcast_to(idx, (count, n)), axis=1)
    perm = np.tile(idx, (count, 1))
    rows = np.arange(count)[:, None]
    a, b = order[:, 0 : n - 1 : 2], order[:, 1:n:2]
    perm[rows, a], perm[rows, b] = b, a
    return perm


def _draw_boxes(rng: np.random.Generator, lam: np.ndarray, size: Tuple[int, int], minmax) -> np.ndarray:
    """One CutMix box per λ, as timm's ``rand_bbox`` (margin 0) or ``rand_bbox_minmax``.

    ``rand_bbox``: a box of ``int(H*sqrt(1-λ))`` by ``int(W*sqrt(1-λ))`` centred on a uniform
    pixel, then clipped to the image. ``rand_bbox_minmax``: height uniform in
    ``[int(H*lo), int(H*hi))`` (just ``int(H*lo)`` where that range is empty, e.g. 1x1 images),
    width likewise, placed uniformly inside the image (λ is not used).

    Returns:
        ``(len(lam), 4)`` int64 rows ``(y0, y1, x0, x1)`` with 0 <= y0 <= y1 <= H and
        0 <= x0 <= x1 <= W.
    """
    if len(size) == 3:
        return _draw_cuboids(rng, lam, size, minmax)
    h, w = size
    count = lam.shape[0]
    if minmax is None:
        ratio = np.sqrt(1.0 - lam)
        cut_h, cut_w = (h * ratio).astype(np.int64), (w * ratio).astype(np.int64)
        cy, cx = rng.integers(0, h, size=count), rng.integers(0, w, size=count)
        # clipped to [0, H] and [0, W]: a centre is in [0, H) and a half side >= 0, so each edge has
        # one side to clip (np.maximum/np.minimum into the result: a third of np.clip's host time)
        out = np.empty((count, 4), dtype=np.int64)
        np.maximum(cy - cut_h // 2, 0, out=out[:, 0])
        np.minimum(cy + (cut_h + 1) // 2, h, out=out[:, 1])
        np.maximum(cx - cut_w // 2, 0, out=out[:, 2])
        np.minimum(cx + (cut_w + 1) // 2, w, out=out[:, 3])
        return out
    else:
        lo, hi = minmax

        def side(extent):
            a, b = int(extent * lo), int(extent * hi)
            return rng.integers(a, b, size=count) if b > a else np.full(count, a, dtype=np.int64)

        cut_h, cut_w = side(h), side(w)
        y0, x0 = rng.integers(0, h - cut_h + 1), rng.integers(0, w - cut_w + 1)
        y1, x1 = y0 + cut_h, x0 + cut_w
    return np.stack([y0, y1, x0, x1], axis=1).astype(np.int64)
def _draw_cuboids(rng: np.random.Generator, lam: np.ndarray, size: Tuple[int, int, int], minmax) -> np.ndarray:
    """One CutMix cuboid per λ: ``_draw_boxes`` with a third side, for volumes ``(D, H, W)``.

    Without ``minmax``: sides ``int(E*(1-λ)**(1/3))`` for each extent E (the cuboid holds
    1 − λ of the volume before clipping, as timm's box holds 1 − λ of the image), centred on a
    uniform voxel (z, then y, then x), clipped. With ``minmax``: each side uniform in
    ``[int(E*lo), int(E*hi))``, placed uniformly inside the volume. MONAI's ``CutMix`` instead
    uses sides ``E*sqrt(1-λ)`` from a corner shared by the batch; ``mix_images`` applies either
    given the cuboids.

    Returns:
        ``(len(lam), 6)`` int64 rows ``(z0, z1, y0, y1, x0, x1)`` inside the volume.
    """
    count = lam.shape[0]
    if minmax is None:
        ratio = np.cbrt(1.0 - lam)
        cuts = [(e * ratio).astype(np.int64) for e in size]
        centres = [rng.integers(0, e, size=count) for e in size]
        lo = [np.clip(c - k // 2, 0, e) for c, k, e in zip(centres, cuts, size)]
        hi = [np.clip(c + (k + 1) // 2, 0, e) for c, k, e in zip(centres, cuts, size)]
    else:
        a_lo, a_hi = minmax

        def side(extent):
            a, b = int(extent * a_lo), int(extent * a_hi)
            return rng.integers(a, b, size=count) if b > a else np.full(count, a, dtype=np.int64)

        cuts = [side(e) for e in size]
        lo = [rng.integers(0, e - k + 1) for e, k in zip(size, cuts)]
        hi = [a + k for a, k in zip(lo, cuts)]
    return np.stack([lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]], axis=1).astype(np.int64)



def _draw(rng: np.random.Generator, cfg: MixupConfig, size, lam, perm, boxes, cutmix) -> None:
    """Draw the params of a block of batches into its views: ``lam`` (B, N) float32, ``perm``
    (B, N) int64, ``boxes`` (B, N, 4 or 6) int64 and ``cutmix`` (B, N) bool, all zero on entry.

    In this order, for the whole block at once: the partners of every batch; then per draw (one
    per batch, sample or pair: ``mode``) ``mixed`` (random < prob); with CutMix on ``use_cutmix``
    (random < switch_prob); the λ of the blended draws (Beta(alpha, beta)); with CutMix on the
    λ of the CutMix draws (Beta(cutmix_alpha, cutmix_alpha), not drawn with ``cutmix_minmax``)
    and their boxes (``_draw_boxes``). Only what is used is drawn: no λ for an unmixed draw.
    """
    count, n = perm.shape
    idx = np.arange(n, dtype=np.int64)
    if cfg.pairing is Pairing.FLIP:
        perm[:] = idx[::-1]
    elif cfg.pairing is Pairing.ROLL:
        perm[:] = (idx - 1) % n
    elif cfg.mode is MixMode.PAIR:
        perm[:] = _matchings(rng, n, count)
    else:
        perm[:] = _derangements(rng, n, count)
    units = {MixMode.BATCH: 1, MixMode.ELEM: n, MixMode.PAIR: (n + 1) // 2}[cfg.mode]
    mixed = _coin(rng, cfg.prob, (count, units))
    cut = _coin(rng, cfg.switch_prob, (count, units)) & mixed if cfg.cutmix_on else None
    blend = mixed if cut is None else mixed & ~cut
    lam_u = np.ones((count, units))
    lam_u[blend] = _beta(rng, cfg.alpha, cfg.beta, int(np.count_nonzero(blend)))
    if cut is not None:
        boxes_u = np.zeros((count, units, boxes.shape[2]), dtype=np.int64)
        k = int(np.count_nonzero(cut))
        minmax = cfg.cutmix_minmax
        # with cutmix_minmax the box does not depend on λ, which then comes from the box (timm)
        lam_c = _beta(rng, cfg.cutmix_alpha, cfg.cutmix_alpha, k) if minmax is None else np.empty(k)
        box = _draw_boxes(rng, lam_c, size, minmax)
        if cfg.correct_lam or minmax is not None:
            area = (box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])
            if len(size) == 3:  # cuboids: the volume they cover
                area = area * (box[:, 5] - box[:, 4])
            lam_c = 1.0 - area / float(np.prod(size))
        lam_u[cut], boxes_u[cut] = lam_c, box
    if cfg.mode is MixMode.PAIR:  # a sample's draw is its pair's: the rank of the pair's lower index
        owner = np.take_along_axis(np.cumsum(idx <= perm, axis=1) - 1, np.minimum(idx, perm), axis=1)
        lam_u = np.take_along_axis(lam_u, owner, axis=1)
        if cut is not None:
            cut = np.take_along_axis(cut, owner, axis=1)
            boxes_u = np.take_along_axis(boxes_u, owner[:, :, None], axis=1)
    # (with mode BATCH the (B, 1) draws broadcast along each batch in the assignments below)
    alone = perm == idx  # its own partner (batch of 1, middle of an odd flip or matching): unmixed
    lam[:] = lam_u
    lam[alone] = 1.0
    if cut is not None:
        cutmix[:] = cut
        boxes[:] = boxes_u
        cutmix[alone] = False
        boxes[alone] = 0


def _layout(n: int, width: int, boxes: bool):
    """Where a batch's λ, partners and (``boxes``) boxes and CutMix flags lie in its row of a
    block: ``((dtype, shape, byte offset, byte length), ...)`` at 8-byte aligned offsets, and the
    row's length."""
    fields = [(torch.float32, (n,)), (torch.int64, (n,))]
    if boxes:
        fields += [(torch.int64, (n, width)), (torch.bool, (n,))]
    specs, total = [], 0
    for dtype, shape in fields:
        nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        specs.append((dtype, shape, total, nbytes))
        total += -(-nbytes // _ALIGN) * _ALIGN
    return tuple(specs), total


class _Block:
    """The params of ``count`` consecutive batches of ``n`` samples, drawn together: row b of one
    ``(count, row)`` byte buffer holds batch b's λ, partners and, with CutMix on, boxes and CutMix
    flags (``_layout``); the tensors handed out are views of their row, never written again (a
    batch keeps its params as long as it likes). Without CutMix the batches of a block share one
    all-zero ``boxes`` and one all-False ``cutmix`` tensor, which nothing writes or reads for
    mixing. A block goes to a device whole, in one host-to-device copy (``on``), and its batches'
    device params are views of that copy."""

    __slots__ = ("index", "key", "n", "width", "layout", "count", "pos", "buf", "specs", "lam", "perm", "boxes",
                 "cutmix", "has_cutmix", "identity", "devices")

    def __init__(self, index: int, key: Optional[str], n: int, width: int, count: int, fill=None,
                 boxes: bool = True):
        self.index, self.key, self.n, self.width, self.count, self.pos = index, key, n, width, count, 0
        self.layout = (n, width, boxes)
        self.specs, row = _layout(n, width, boxes)
        self.buf = np.zeros((count, row), dtype=np.uint8)
        views = [self.buf[:, off : off + nbytes].view(_NP_DTYPES[dtype]).reshape((count,) + shape)
                 for dtype, shape, off, nbytes in self.specs]
        self.identity = fill is None
        if fill is None:  # λ = 1, perm = identity, no boxes
            views[0][:] = 1.0
            views[1][:] = np.arange(n)
        else:
            fill(*views, *([None, None] if len(views) == 2 else []))
        tensors = [torch.from_numpy(v).unbind(0) for v in views]
        if boxes:
            self.lam, self.perm, self.boxes, self.cutmix = tensors
            self.has_cutmix = views[3].any(axis=1).tolist()
        else:
            self.lam, self.perm = tensors
            self.boxes = (torch.zeros((n, width), dtype=torch.int64),) * count
            self.cutmix = (torch.zeros(n, dtype=torch.bool),) * count
            self.has_cutmix = (False,) * count
        self.devices: Dict[Any, tuple] = {}

    def params(self, i: int, image_size) -> MixupParams:
        p = object.__new__(MixupParams)
        p.__dict__.update(lam=self.lam[i], perm=self.perm[i], boxes=self.boxes[i], cutmix=self.cutmix[i],
                          image_size=image_size, _block=(self, i), _has_cutmix=self.has_cutmix[i])
        if self.identity:
            p.__dict__["_identity"] = True
        return p

    def on(self, device: torch.device, i: int, image_size) -> MixupParams:
        """Batch ``i``'s params on ``device``. The first batch asking for a device sends the whole
        block there, in one copy queued on the current CUDA stream (from pinned memory); the
        others take their rows of it. A batch on another stream sends it again for that stream,
        so that no kernel reads the copy before it has run, nor after its memory went back to
        the allocator for another stream."""
        key = (device, torch.cuda.current_stream(device)) if device.type == "cuda" else device
        rows = self.devices.get(key)
        if rows is None:
            host = torch.from_numpy(self.buf)
            if device.type == "cuda":
                host = torch.empty(host.shape, dtype=torch.uint8, pin_memory=True).copy_(host)
            moved = host.to(device, non_blocking=True)
            rows = [moved[:, off : off + nbytes].view(dtype).view((self.count,) + shape).unbind(0)
                    for dtype, shape, off, nbytes in self.specs]
            if len(rows) == 2:  # no CutMix: one all-zero boxes and one all-False cutmix for the block
                rows.append((torch.zeros((self.n, self.width), dtype=torch.int64, device=device),) * self.count)
                rows.append((torch.zeros(self.n, dtype=torch.bool, device=device),) * self.count)
            self.devices[key] = rows
        return MixupParams._trusted(rows[0][i], rows[1][i], rows[2][i], rows[3][i], image_size=image_size)


_local = threading.local()  # a reusable bit generator per thread (making one costs more than using it)
_worker: Optional[Tuple[int, ThreadPoolExecutor]] = None


def _block_generator(base_state: Dict[str, Any], index: int) -> np.random.Generator:
    bits = getattr(_local, "bits", None)
    if bits is None:
        bits = _local.bits = np.random.PCG64(0)
    bits.state = base_state
    bits.advance(index * _SUBSTREAM)
    return np.random.Generator(bits)


def _make_block(base_state, index: int, key: str, cfg: MixupConfig, n: int, size, count: int) -> _Block:
    """Block ``index`` of a sampler: a pure function of its arguments, wherever it runs."""
    rng = _block_generator(base_state, index)
    return _Block(index, key, n, _box_width(size), count, lambda *views: _draw(rng, cfg, size, *views),
                  boxes=cfg.cutmix_on)


def _background() -> Optional[ThreadPoolExecutor]:
    """The one thread that draws samplers' next blocks (a new one after a fork); ``None`` while
    the interpreter shuts down."""
    global _worker
    pid = os.getpid()
    if _worker is None or _worker[0] != pid:
        _worker = (pid, ThreadPoolExecutor(max_workers=1, thread_name_prefix="dali-mixup-sampler"))
    return _worker[1]


def _draw_key(cfg: MixupConfig, n: int, size) -> str:
    """What a block's draws depend on, as text (it is saved in ``state_dict``)."""
    key: list = [n, cfg.alpha, cfg.beta, cfg.prob, cfg.mode.value, cfg.pairing.value]
    if cfg.cutmix_on:
        key += [list(size), cfg.cutmix_alpha, list(cfg.cutmix_minmax or ()), cfg.switch_prob, cfg.correct_lam]
    else:  # the image size is only recorded, but 3-D sizes get (N, 6) boxes
        key += [_box_width(size)]
    return json.dumps(key)


class MixupSampler:
    """Draws ``MixupParams`` for each batch from a seeded generator.

    Batches are drawn a block at a time, in a few vectorised NumPy calls, and handed out one by
    one: a run of batches of the same size (and image size, with CutMix) and ``config`` draws
    blocks of 1, 2, 4, ... batches (at most 256, and 32768 samples); a block of 4 or more has the
    next one drawn by a background thread meanwhile (``prefetch``). Block j draws from the seed's
    PCG64 generator advanced by j * 2**64, so what it holds depends only on the seed, j, the batch
    and image size and the config: the same seed gives the same sequence everywhere, with or
    without prefetching. A batch of another size, or a ``config`` that draws differently, starts
    block j + 1 (the current one is left unused). ``state_dict`` records the block and the
    position in it, and ``load_state_dict`` resumes exactly there.

    Args:
        config: the ``MixupConfig``; assign a new one at any time, the next batch drawn follows it.
        seed: integer seed; the same seed gives the same sequence of params everywhere.
        prefetch: draw a run's next block in a background thread (the default); ``False`` draws
            every block in the calling thread. The sequence is the same either way.

    Example:
        >>> s = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), seed=0)
        >>> p = s.sample(8)   # p.lam: (8,) float32, p.perm: (8,) int64
        >>> c = MixupSampler(MixupConfig(alpha=0.2, cutmix_alpha=1.0), seed=0)
        >>> q = c.sample(8, image_size=(224, 224))   # + q.boxes (8, 4), q.cutmix (8,)
    """

    def __init__(self, config: MixupConfig, seed: int = 0, *, prefetch: bool = True):
        if not isinstance(config, MixupConfig):
            raise TypeError(f"MixupSampler.config must be a MixupConfig, got {type(config).__name__}")
        self.config = config
        self.seed = check_seed("seed", seed)
        self.prefetch = check_bool("prefetch", prefetch)
        self._base = np.random.PCG64(self.seed).state
        self._block: Optional[_Block] = None  # the current drawn block (None: none yet, or not regenerated)
        #: (index, count, key, pos) of a block loaded by ``load_state_dict`` and not regenerated yet
        self._saved: Optional[Tuple[int, int, Optional[str], int]] = None
        self._next: Optional[Tuple[Tuple[int, str, int], int, Future]] = None  # ((index, key, count), pid, future)
        self._serving: Optional[Tuple[MixupConfig, int, Any, _Block]] = None  # (config, n, size, block): fast path
        self._identity: Optional[_Block] = None
        self._last: Tuple[int, int, Optional[str]] = (-1, 0, None)  # (index, count, key) of the latest block

    def sample(self, batch_size: int, image_size: Optional[Sequence[int]] = None) -> MixupParams:
        """Draw the params of one batch of ``batch_size`` samples (0 is allowed).

        Args:
            batch_size: N >= 0.
            image_size: ``(H, W)`` of the batch's images, or ``(D, H, W)`` of its volumes (CutMix
                cuboids, ``boxes`` (N, 6)). Needed when CutMix is on (``config.cutmix_on``) to
                draw boxes; otherwise optional and only recorded.

        Returns:
            ``MixupParams`` with ``lam`` and ``perm``, and with CutMix on also ``boxes``,
            ``cutmix`` and ``image_size``. With CutMix off the draws are exactly those of a
            mixup-only sampler with the same seed. Its tensors are views of the block's buffer,
            never written again.
        """
        serving = self._serving
        if (serving is not None and self.config is serving[0] and batch_size == serving[1]
                and type(batch_size) is int and (image_size is None if serving[2] is None else (
                    type(image_size) is tuple and image_size == serving[2] and all(type(v) is int for v in image_size)))):
            block = serving[3]
            i = block.pos
            if i < block.count:
                block.pos = i + 1
                return block.params(i, serving[2])
        return self._sample(batch_size, image_size)

    def _sample(self, batch_size, image_size) -> MixupParams:
        """``sample`` when the fast path cannot serve: checks, then the identity block or the
        current drawn block, moving to the next block where needed."""
        n = check_int("batch_size", batch_size, 0)
        cfg = self.config
        size = _check_image_size(image_size, "MixupSampler.sample(image_size=...)")
        if cfg.cutmix_on and size is None:
            raise ValueError(
                "MixupSampler.sample needs image_size=(H, W) when CutMix is on (cutmix_alpha > 0 "
                "or cutmix_minmax set, and switch_prob > 0): CutMix boxes are drawn in pixels"
            )
        if n == 0:
            self._serving = None
            return MixupParams.identity(0)
        if not cfg.enabled:  # λ = 1: nothing drawn, the drawn blocks' position is kept
            block, layout = self._identity, (n, _box_width(size), cfg.cutmix_on)
            if block is None or block.layout != layout or block.pos >= block.count:
                count = min(_max_block(n), 2 * block.count) if block is not None and block.layout == layout else 1
                block = self._identity = _Block(-1, None, *layout[:2], count, boxes=layout[2])
        else:
            block = self._drawn_block(cfg, n, size)
        self._serving = (cfg, n, size, block)
        i = block.pos
        block.pos = i + 1
        return block.params(i, size)

    def _drawn_block(self, cfg: MixupConfig, n: int, size) -> _Block:
        """The block the next batch comes from: the current one, if it has batches left and was
        drawn for this key; else the next (1 batch for a new key, twice the last one's size for the
        same key)."""
        key = _draw_key(cfg, n, size)
        block = self._block
        if self._saved is not None:  # after load_state_dict: regenerate the saved block if it goes on
            index, count, saved_key, pos = self._saved
            self._saved = None
            if saved_key == key and pos < count:
                block = self._block = _make_block(self._base, index, key, cfg, n, size, count)
                block.pos = pos
                self._last = (index, count, key)
            else:
                block = self._block = None
                self._last = (index, count, saved_key)
        if block is not None and block.key == key and block.pos < block.count:
            return block
        last = self._last
        index = last[0] + 1
        count = min(_max_block(n), 2 * last[1]) if last[2] == key else 1
        block = self._block = self._fetch(index, key, cfg, n, size, count)
        self._last = (index, count, key)
        if self.prefetch and count >= _PREFETCH_FROM:
            nxt = (index + 1, key, min(_max_block(n), 2 * count))
            try:
                future = _background().submit(_make_block, self._base, *nxt[:2], cfg, n, size, nxt[2])
            except RuntimeError:  # the interpreter is shutting down: no more threads
                future = None
            self._next = (nxt, os.getpid(), future) if future is not None else None
        return block

    def _fetch(self, index: int, key: str, cfg: MixupConfig, n: int, size, count: int) -> _Block:
        """Block ``index``: the background thread's, if it drew this one (in this process), else
        drawn here."""
        nxt, self._next = self._next, None
        if nxt is not None and nxt[0] == (index, key, count) and nxt[1] == os.getpid():
            return nxt[2].result()
        return _make_block(self._base, index, key, cfg, n, size, count)

    def __getstate__(self):
        """Pickled or copied as ``state_dict`` says (no thread, no block): the copy goes on with
        the same sequence."""
        state = dict(self.__dict__)
        saved = self.state_dict()
        state.update(_block=None, _next=None, _serving=None, _identity=None,
                     _saved=(saved["block"], saved["block_batches"], saved["block_key"], saved["block_drawn"]))
        return state

    def state_dict(self) -> Dict[str, Any]:
        """Where the sequence is, to resume it exactly (see ``load_state_dict``): the seed, the
        generator the blocks draw from, and the current block (index, size in batches, what it
        was drawn for, batches handed out). JSON-serialisable."""
        if self._saved is not None:
            index, count, key, pos = self._saved
        elif self._block is not None:
            b = self._block
            index, count, key, pos = b.index, b.count, b.key, b.pos
        else:
            (index, count, key), pos = self._last, self._last[1]
        return {"seed": self.seed, "bit_generator": copy.deepcopy(self._base), "block": index, "block_batches": count,
                "block_key": key, "block_drawn": pos}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume from ``state_dict()``: the next batch is the one the saved sampler would have
        drawn next (given the same batch size, image size and config), also in the middle of a
        block. A state without a block (saved before sampling in blocks) starts a new sequence
        from its generator."""
        seed = check_seed("seed", state["seed"])
        bits = np.random.PCG64(0)
        bits.state = state["bit_generator"]  # KeyError/TypeError/ValueError when damaged
        index = check_int("block", state.get("block", -1), -1)
        count = check_int("block_batches", state.get("block_batches", 0), 0)
        key = state.get("block_key")
        if key is not None and not isinstance(key, str):
            raise TypeError(f"block_key must be a string or None, got {type(key).__name__}")
        pos = check_int("block_drawn", state.get("block_drawn", count), 0, count)
        self.seed, self._base = seed, bits.state
        self._block, self._next, self._serving = None, None, None
        self._saved = (index, count, key, pos)
        self._last = (index, count, key)
