"""Differentiable mixup and CutMix: ``mix`` mixes tensors that require grad.

``mix_images`` serves input batches (no gradients; given an ``x`` that requires grad it hands
over to ``mix``); ``mix`` is the same forward wrapped in a ``torch.autograd.Function`` so it can
mix what a model computes: word or sentence embeddings
for text classification (mixup on embeddings, Guo et al. 2019, https://arxiv.org/abs/1905.08941)
or the hidden state of a chosen layer (manifold mixup, Verma et al. 2019,
https://arxiv.org/abs/1806.05236).

Forward, for ``out[i] = a_i * x[i] + b_i * x[perm[i]]`` with ``a_i = λ_i, b_i = 1 − λ_i`` for a
mixup sample and ``a_i = 1 − box_i, b_i = box_i`` (the box's indicator) for a CutMix sample:

* float16, bfloat16, float32: ``mix_images`` itself (the CuPy kernel on CUDA, the CPU twin on
  the CPU), the same bits as mixing an input batch;
* float64 (``torch.autograd.gradcheck``): the same formula in torch ops in float64, since the
  kernels take uint8/float16/bfloat16/float32 only.

Backward, one pass over ``g`` whatever the partner map (a permutation, or several samples
sharing one partner): ``grad_x = a ⊙ g`` plus ``b ⊙ g`` scattered onto the partners with
``index_add_``, that is ``grad_x[k] = a_k g[k] + Σ_{i: perm[i]=k} b_i g[i]``; for a
permutation ``λ_k g[k] + (1 − λ_inv[k]) g[inv[k]]``. Computed in float32 (float64 for float64)
and returned in x's dtype. Works on CUDA and CPU tensors alike (torch ops on x's device).

The mix is differentiable in x only: λ, partners and boxes are constants of the batch, and
``MixupParams`` refuses a ``lam`` that requires grad (rather than detaching it, which would
leave ``lam.grad`` None without a word).

Example (manifold mixup)::

    params = sampler.sample(len(x))                  # MixupSampler(MixupConfig(alpha=2.0))
    h = model.features(x)                            # (N, D), requires grad
    h = mix(h, params)                               # differentiable
    loss = soft_cross_entropy(model.head(h), mix_targets(y, params, num_classes))
"""

from __future__ import annotations

from typing import Tuple

import torch

from .checks import SPATIAL_DIMS, check_layout
from .mix import _check_params, _cutmix_grid, mix_images
from .sampler import MixupParams

__all__ = ["MixFunction", "mix", "mix_reference"]

#: dtypes ``mix`` computes with the kernels (``mix_images``); float64 goes through torch ops
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _boxes(x: torch.Tensor, params: MixupParams, layout: str):
    """``[(i, index)]`` for each CutMix sample with a non-empty box: ``x[index]`` is its box
    (every channel), ``index`` in x's dim order."""
    if not params.has_cutmix:
        return []
    spatial = SPATIAL_DIMS[(layout, x.dim())] if (layout, x.dim()) in SPATIAL_DIMS else None
    if spatial is None or len(spatial) * 2 != params.boxes.shape[1]:
        _cutmix_grid(x, layout, params)  # raises the error mix_images gives
        raise ValueError(f"CutMix boxes of shape {tuple(params.boxes.shape)} do not fit x {tuple(x.shape)} ({layout})")
    out = []
    for i in params.cutmix.nonzero().view(-1).tolist():
        box = params.boxes[i].tolist()
        if all(hi > lo for lo, hi in zip(box[0::2], box[1::2])):
            index = [i] + [slice(None)] * (x.dim() - 1)
            for d, lo, hi in zip(spatial, box[0::2], box[1::2]):
                index[d] = slice(lo, hi)
            out.append((i, tuple(index)))
    return out


def _weights(params: MixupParams, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` per sample, shaped ``(N, 1, ...)`` for broadcasting over ``like``: λ and
    1 − λ (computed in float32, as the kernel's ``1.0f - l``); 1 and 0 for CutMix samples, whose
    boxes ``_boxes`` then sets."""
    lam = params.lam.to(like.device)
    cut = params.cutmix.to(like.device)
    a = torch.where(cut, torch.ones_like(lam), lam)
    b = torch.where(cut, torch.zeros_like(lam), 1.0 - lam)
    shape = (-1,) + (1,) * (like.dim() - 1)
    return a.to(like.dtype).view(shape), b.to(like.dtype).view(shape)


def mix_reference(x: torch.Tensor, params: MixupParams, layout: str = "NCHW") -> torch.Tensor:
    """The mix in torch ops, in x's dtype (float64 for ``gradcheck``): ``a ⊙ x + b ⊙ x[perm]``
    with CutMix boxes copied from the partner. Differentiable by torch's own autograd; for
    floating dtypes other than float32 the rounding differs from the kernels' fused
    multiply-add."""
    a, b = _weights(params, x)
    perm = params.perm.to(x.device)
    out = a * x + b * x[perm]
    for i, index in _boxes(x, params, layout):
        out[index] = x[(perm[i].item(),) + index[1:]]
    return out


class MixFunction(torch.autograd.Function):
    """``mix`` as an autograd function: ``MixFunction.apply(x, params, layout)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, params: MixupParams, layout: str) -> torch.Tensor:
        ctx.params, ctx.layout, ctx.x_shape = params, layout, x.shape
        if x.dtype in KERNEL_DTYPES:
            return mix_images(x.detach(), params, layout=layout)
        with torch.no_grad():
            return mix_reference(x.detach(), params, layout)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        params, layout = ctx.params, ctx.layout
        compute = torch.float64 if g.dtype == torch.float64 else torch.float32
        gf = g.to(compute)
        a, b = _weights(params, gf)
        own = gf * a
        partner = gf * b
        for i, index in _boxes(gf, params, layout):  # CutMix: the box goes to the partner
            own[index] = 0
            partner[index] = gf[index]
        own.index_add_(0, params.perm.to(g.device), partner)
        return own.to(g.dtype), None, None


def mix(x: torch.Tensor, params: MixupParams, layout: str = "NCHW") -> torch.Tensor:
    """Differentiable ``mix_images``: ``out[i] = λ_i x[i] + (1 − λ_i) x[perm[i]]``, and the
    partner's values inside a CutMix sample's box (cuboid for 5-D volumes).

    Args:
        x: ``(N, ...)`` float16, bfloat16, float32 (computed by the kernels) or float64 (torch
            ops, for ``gradcheck``); embeddings ``(N, L, E)``, hidden states ``(N, D)``, images
            ``(N, C, H, W)``, volumes ``(N, C, D, H, W)``. CUDA or CPU; may require grad.
        params: the batch's ``MixupParams`` (N entries); its partner map need not be a
            permutation. Constants: no gradient flows to λ.
        layout: where CutMix boxes go (see ``mix_images``); unused without CutMix.

    Returns:
        ``(N, ...)`` in x's dtype and memory layout, with a ``grad_fn`` when x requires grad.

    Raises:
        TypeError: x not a tensor, or of a dtype that has no gradient (integers, uint8).
        ValueError: params for another batch size; boxes that do not fit x.
    """
    if not torch.is_tensor(x):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in KERNEL_DTYPES + (torch.float64,):
        raise TypeError(f"x.dtype must be float16, bfloat16, float32 or float64 to be differentiable; got {x.dtype}")
    if x.dim() < 1:
        raise ValueError("x must have a batch dimension: shape (N, ...)")
    _check_params(params, x.shape[0], "x")
    check_layout(layout)
    if params.has_cutmix:
        _cutmix_grid(x, layout, params)  # the same checks (and errors) as mix_images
    return MixFunction.apply(x, params, layout)
