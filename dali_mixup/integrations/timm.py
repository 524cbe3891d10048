"""timm's mixup and CutMix arguments as a ``MixupConfig``: the same settings, our sampler and kernels.

``mixup_config`` takes the keyword arguments of ``timm.data.Mixup`` (the ``mixup_args`` dict that
timm's ``train.py`` builds from ``--mixup``, ``--cutmix``, ``--cutmix-minmax``, ``--mixup-prob``,
``--mixup-switch-prob``, ``--mixup-mode``, ``--smoothing``) and returns the ``MixupConfig`` that
mixes as that ``Mixup`` would. timm itself is not imported.

timm's rules, kept here:

* mixup is on when ``mixup_alpha > 0``, CutMix when ``cutmix_alpha > 0`` or ``cutmix_minmax`` is
  given (then CutMix's alpha is forced to 1 and the box side is drawn in ``cutmix_minmax``);
* both on: each draw takes CutMix with probability ``switch_prob``; CutMix alone: every mixed draw
  is CutMix (``switch_prob`` is ignored, here it becomes 1); mixup alone: never CutMix;
* ``prob`` is the chance that a batch / element / pair (``mode``) is mixed at all;
* ``correct_lam``: λ of a CutMix draw is 1 − box area / image area after clipping;
* ``label_smoothing`` (timm's ``--smoothing``) goes into the soft targets: on = 1 − ε + ε/C,
  off = ε/C, as ``timm.data.mixup.mixup_target``;
* the partner of sample i is sample N−1−i (``x.flip(0)``): ``pairing="flip"``.

Neither mixup nor CutMix on (timm's ``train.py`` then builds no ``Mixup``): a config with
``enabled=False`` that still gives the smoothed one-hot targets.

Example (timm's ``train.py``, where it builds ``mixup_args``)::

    from dali_mixup.integrations.timm import mixup_config
    mixup = mixup_config(**mixup_args)          # instead of Mixup(**mixup_args)
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..config import MixupConfig, Pairing

__all__ = ["mixup_active", "mixup_config"]


def mixup_active(mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0, cutmix_minmax: Optional[Sequence[float]] = None) -> bool:
    """timm's ``mixup_active``: ``mixup_alpha > 0 or cutmix_alpha > 0 or cutmix_minmax is not None``."""
    return mixup_alpha > 0 or cutmix_alpha > 0 or cutmix_minmax is not None


def mixup_config(mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0, cutmix_minmax: Optional[Sequence[float]] = None,
                 prob: float = 1.0, switch_prob: float = 0.5, mode: str = "batch", correct_lam: bool = True,
                 label_smoothing: float = 0.1, num_classes: Optional[int] = 1000, multi_label: bool = False,
                 pairing: Pairing | str = Pairing.FLIP) -> MixupConfig:
    """The ``MixupConfig`` of ``timm.data.Mixup(**same arguments)``; the defaults are timm's.

    Args:
        mixup_alpha, cutmix_alpha, cutmix_minmax, prob, switch_prob, mode, correct_lam,
            label_smoothing, num_classes: as ``timm.data.Mixup``.
        multi_label: timm's dense multi-label targets; not supported (``ValueError`` when True).
        pairing: how partners are chosen; ``"flip"`` (timm's ``x.flip(0)``, the default) or
            ``"derangement"`` (no sample is its own partner, also in an odd batch).

    Returns:
        ``MixupConfig``; ``enabled=False`` when neither mixup nor CutMix is on.
    """
    if multi_label:
        raise ValueError("mixup_config: multi_label=True (timm's dense multi-label targets) is not supported")
    if cutmix_minmax is not None:
        if isinstance(cutmix_minmax, (str, bytes)) or len(cutmix_minmax) != 2:
            raise ValueError(f"cutmix_minmax must be two numbers (min, max), got {cutmix_minmax!r}")
        cutmix_minmax = (float(cutmix_minmax[0]), float(cutmix_minmax[1]))
        cutmix_alpha = 1.0  # timm forces 1 when minmax is given
    common = dict(prob=prob, mode=mode, pairing=pairing, label_smoothing=label_smoothing, num_classes=num_classes,
                  correct_lam=correct_lam)
    mix_on, cut_on = mixup_alpha > 0, cutmix_alpha > 0
    if mix_on and cut_on:
        return MixupConfig(alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, cutmix_minmax=cutmix_minmax,
                           switch_prob=switch_prob, **common)
    if mix_on:
        return MixupConfig(alpha=mixup_alpha, **common)
    if cut_on:  # CutMix alone: every mixed draw is CutMix; the mixup alpha is never used
        return MixupConfig(cutmix_alpha=cutmix_alpha, cutmix_minmax=cutmix_minmax, switch_prob=1.0, **common)
    return MixupConfig(enabled=False, **common)
