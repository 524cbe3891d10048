"""Sampling mixup parameters, apart from applying them (see ``dali_mixup.mix``).

``MixupSampler`` owns a NumPy PCG64 generator: the same seed gives the same sequence of
``MixupParams`` on every machine, with or without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .checks import check_int, check_seed
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
        for name, value in (("lam", lam), ("perm", perm), ("image_size", image_size), ("boxes", boxes),
                            ("cutmix", torch.zeros(n, dtype=torch.bool) if cutmix is None else cutmix)):
            object.__setattr__(self, name, value)
        return self

    def on(self, device: torch.device) -> "MixupParams":
        """These params with their tensors on ``device``: one host-to-device copy (see
        ``to_device``), queued on the current CUDA stream, and cached, so the image and target
        kernels of a batch share it."""
        return self.on_with(device)[0]

    def on_with(self, device: torch.device, *tensors: torch.Tensor) -> Tuple["MixupParams", Tuple[torch.Tensor, ...]]:
        """``(self.on(device), tensors on device)``: other CPU tensors of the batch (its labels)
        travel in the same host-to-device copy as the params when these are not there yet."""
        device = torch.device(device)
        cache = self.__dict__.setdefault("_on_device", {})
        if self.lam.device == device:
            return self, to_device(device, *tensors)
        if device in cache:
            return cache[device], to_device(device, *tensors)
        moved = to_device(device, self.lam, self.perm, self.boxes, self.cutmix, *tensors)
        cache[device] = MixupParams._trusted(*moved[:4], image_size=self.image_size)
        return cache[device], moved[4:]

    @property
    def batch_size(self) -> int:
        return int(self.lam.shape[0])

    @property
    def has_cutmix(self) -> bool:
        """True when at least one sample uses CutMix (``mix_images`` then needs the layout)."""
        return bool(self.cutmix.any())

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
    device = torch.device(device)
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


def _draw_boxes(rng: np.random.Generator, lam: np.ndarray, size: Tuple[int, int], minmax) -> np.ndarray:
    """One CutMix box per λ, as timm's ``rand_bbox`` (margin 0) or ``rand_bbox_minmax``.

    ``rand_bbox``: a box of ``int(H*sqrt(1-λ))`` by ``int(W*sqrt(1-λ))`` centred on a uniform
    pixel, then clipped to the image. ``rand_bbox_minmax``: height uniform in
    ``[int(H*lo), int(H*hi))`` (just ``int(H*lo)`` where that range is empty, e.g. 1x1 images),
    width likewise, placed uniformly inside the image.

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


class MixupSampler:
    """Draws ``MixupParams`` for each batch from a seeded generator.

    Args:
        config: the ``MixupConfig``.
        seed: integer seed; the same seed gives the same sequence of params everywhere.

    Example:
        >>> s = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), seed=0)
        >>> p = s.sample(8)   # p.lam: (8,) float32, p.perm: (8,) int64
        >>> c = MixupSampler(MixupConfig(alpha=0.2, cutmix_alpha=1.0), seed=0)
        >>> q = c.sample(8, image_size=(224, 224))   # + q.boxes (8, 4), q.cutmix (8,)
    """

    def __init__(self, config: MixupConfig, seed: int = 0):
        if not isinstance(config, MixupConfig):
            raise TypeError(f"MixupSampler.config must be a MixupConfig, got {type(config).__name__}")
        self.config = config
        self.seed = check_seed("seed", seed)
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
            mixup-only sampler with the same seed.
        """
        n = check_int("batch_size", batch_size, 0)
        cfg = self.config
        size = _check_image_size(image_size, "MixupSampler.sample(image_size=...)")
        if cfg.cutmix_on and size is None:
            raise ValueError(
                "MixupSampler.sample needs image_size=(H, W) when CutMix is on (cutmix_alpha > 0 "
                "or cutmix_minmax set, and switch_prob > 0): CutMix boxes are drawn in pixels"
            )
        if not cfg.enabled or n == 0:
            return MixupParams.identity(n)
        if cfg.cutmix_on:
            return self._sample_with_cutmix(n, size)
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
        lam[perm == np.arange(n)] = 1.0  # its own partner (batch of 1, middle of an odd flip): unmixed
        return MixupParams._trusted(torch.from_numpy(lam.astype(np.float32)), torch.from_numpy(perm.astype(np.int64)),
                                    image_size=size)

    def _sample_with_cutmix(self, n: int, size: Tuple[int, int]) -> MixupParams:
        """Mixup or CutMix per draw. One draw per batch, sample or pair (``mode``), in this
        order: partners; ``mixed`` (random < prob); ``use_cutmix`` (random < switch_prob); λ
        (Beta of the chosen method); the box (``_draw_boxes``)."""
        cfg, rng = self.config, self._rng
        perm = self._partners(n)
        if cfg.mode is MixMode.BATCH:
            owner = np.zeros(n, dtype=np.int64)  # draw d applies to the samples with owner == d
        elif cfg.mode is MixMode.ELEM:
            owner = np.arange(n, dtype=np.int64)
        else:  # PAIR: the lower index of each pair represents it
            reps = np.flatnonzero(np.arange(n) <= perm)
            owner = np.searchsorted(reps, np.minimum(np.arange(n), perm))
        count = int(owner.max()) + 1
        cut_alpha = 1.0 if cfg.cutmix_minmax is not None else cfg.cutmix_alpha  # timm forces 1
        mixed = rng.random(count) < cfg.prob
        use_cutmix = rng.random(count) < cfg.switch_prob
        lam = rng.beta(np.where(use_cutmix, cut_alpha, cfg.alpha), np.where(use_cutmix, cut_alpha, cfg.beta))
        boxes = _draw_boxes(rng, lam, size, cfg.cutmix_minmax)
        use_cutmix &= mixed
        lam = np.where(mixed, lam, 1.0)
        if cfg.correct_lam or cfg.cutmix_minmax is not None:
            area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
            if len(size) == 3:  # cuboids: the volume they cover
                area = area * (boxes[:, 5] - boxes[:, 4])
            lam = np.where(use_cutmix, 1.0 - area / float(np.prod(size)), lam)
        boxes[~use_cutmix] = 0
        lam, use_cutmix, boxes = lam[owner], use_cutmix[owner], boxes[owner]
        alone = perm == np.arange(n)  # its own partner (odd n under flip or pair, n = 1): unmixed
        lam[alone], use_cutmix[alone], boxes[alone] = 1.0, False, 0
        return MixupParams._trusted(
            torch.from_numpy(lam.astype(np.float32)),
            torch.from_numpy(perm.astype(np.int64)),
            boxes=torch.from_numpy(boxes.astype(np.int64)),
            cutmix=torch.from_numpy(use_cutmix.astype(bool)),
            image_size=size,
        )

    def state_dict(self) -> Dict[str, Any]:
        """The generator's state, to resume the same sequence (see ``load_state_dict``)."""
        return {"seed": self.seed, "bit_generator": self._rng.bit_generator.state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self._rng.bit_generator.state = state["bit_generator"]
