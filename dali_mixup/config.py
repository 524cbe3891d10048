"""Mixup configuration: the policies (enums) and one frozen, validated dataclass.

Mixup: Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018,
https://arxiv.org/abs/1710.09412
CutMix: Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
Features", ICCV 2019, https://arxiv.org/abs/1905.04899
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from .checks import check_bool, check_choice, check_num_classes, check_real


class MixMode(str, enum.Enum):
    """How many λ values a batch draws (the names and meanings are timm's).

    Worked example, batch of 4, pairing ``flip`` (partners 3, 2, 1, 0):

    * ``BATCH``: one λ for the whole batch, e.g. λ = [0.7, 0.7, 0.7, 0.7].
    * ``ELEM``: one λ per sample, e.g. λ = [0.7, 0.2, 0.9, 0.4].
    * ``PAIR``: one λ per mutual pair (i, perm[i]), both members weight themselves by it,
      e.g. λ = [0.7, 0.2, 0.2, 0.7]. Needs a pairing that is its own inverse (``flip`` or
      ``derangement``, which in this mode draws a random perfect matching).
    """

    BATCH = "batch"
    ELEM = "elem"
    PAIR = "pair"


class Pairing(str, enum.Enum):
    """How each sample i finds its partner perm[i].

    Worked example, batch of 4:

    * ``DERANGEMENT``: a uniformly random permutation with no fixed point, e.g. [2, 0, 3, 1];
      nobody mixes with itself. A batch of 1 is left as it is (perm = [0]).
    * ``FLIP``: perm = [3, 2, 1, 0], as timm (``x.flip(0)``); with an odd batch the middle
      sample is its own partner, i.e. unmixed.
    * ``ROLL``: perm = [3, 0, 1, 2], as torchvision's ``MixUp`` (``x.roll(1, 0)``).
    """

    DERANGEMENT = "derangement"
    FLIP = "flip"
    ROLL = "roll"


def _check_real(name: str, value, **bounds) -> float:
    return check_real(f"MixupConfig.{name}", value, **bounds)


def _check_minmax(value):
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"MixupConfig.cutmix_minmax must be None or a pair (lo, hi), got {value!r}")
    lo = _check_real("cutmix_minmax", value[0], low=0.0, high=1.0)
    hi = _check_real("cutmix_minmax", value[1], low=0.0, high=1.0)
    if not lo < hi:
        raise ValueError(f"MixupConfig.cutmix_minmax must have lo < hi, got {value!r}")
    return (lo, hi)


@dataclass(frozen=True)
class MixupConfig:
    """What mixup does to each batch. Validated when constructed.

    Args:
        alpha: first Beta parameter, > 0.
        beta: second Beta parameter, > 0; defaults to ``alpha``. λ ~ Beta(alpha, beta) is the
            weight a sample keeps of itself.
        prob: chance that a sample (``elem``/``pair``) or the whole batch (``batch``) is mixed;
            applied exactly once. An unmixed sample has λ = 1.
        mode: ``MixMode`` or its string value.
        pairing: ``Pairing`` or its string value.
        label_smoothing: ε in [0, 1); targets are 1 − ε + ε/C on the class and ε/C elsewhere,
            as ``torch.nn.CrossEntropyLoss`` and timm.
        num_classes: number of classes C (>= 1); ``None`` lets ``create_loader`` take it from
            the dataset.
        enabled: ``False`` switches mixup off (λ = 1, perm = identity), e.g. for the last epochs.
        cutmix_alpha: CutMix's Beta parameter, >= 0; 0 (the default) switches CutMix off. A CutMix
            sample draws λ ~ Beta(cutmix_alpha, cutmix_alpha) and a box of area about (1 − λ) of
            the image (timm's ``rand_bbox``); inside the box it takes its partner's pixels.
        cutmix_minmax: ``(lo, hi)`` with 0 <= lo < hi <= 1, or ``None``. When given, CutMix is on
            (whatever ``cutmix_alpha`` is, as timm) and a box's height and width are drawn
            uniformly between ``lo`` and ``hi`` of the image's (timm's ``rand_bbox_minmax``);
            λ then always comes from the box area.
        switch_prob: chance in [0, 1] that a mixed sample (or batch, in ``batch`` mode) uses
            CutMix instead of mixup when CutMix is on. 0: mixup only, the very same draws as
            with CutMix off; 1: CutMix only. ``prob`` still decides whether a sample is mixed at
            all, so a sample uses CutMix with probability ``prob * switch_prob``.
        correct_lam: recompute a CutMix sample's λ from its box after clipping to the image,
            λ = 1 − box area / image area (default ``True``, as timm); targets follow this λ.

    Worked example, ``MixupConfig(alpha=0.2, cutmix_alpha=1.0, switch_prob=0.5, mode="elem")``
    on a batch of 4 images of 224x224: each sample is mixed (``prob`` = 1); about half draw
    λ ~ Beta(0.2, 0.2) and blend, the others draw λ ~ Beta(1, 1), get a box such as rows
    [40, 190) x columns [12, 170) and λ = 1 − 150*158/224² ≈ 0.528.
    """

    alpha: float = 1.0
    beta: Optional[float] = None
    prob: float = 1.0
    mode: Union[MixMode, str] = MixMode.BATCH
    pairing: Union[Pairing, str] = Pairing.DERANGEMENT
    label_smoothing: float = 0.0
    num_classes: Optional[int] = None
    enabled: bool = True
    cutmix_alpha: float = 0.0
    cutmix_minmax: Optional[Tuple[float, float]] = None
    switch_prob: float = 0.5
    correct_lam: bool = True

    @property
    def cutmix_on(self) -> bool:
        """True when a batch may use CutMix (so ``MixupSampler.sample`` needs the image size)."""
        return (self.cutmix_alpha > 0.0 or self.cutmix_minmax is not None) and self.switch_prob > 0.0

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "alpha", _check_real("alpha", self.alpha, low=0.0, low_open=True))
        beta = self.alpha if self.beta is None else self.beta
        set_(self, "beta", _check_real("beta", beta, low=0.0, low_open=True))
        set_(self, "prob", _check_real("prob", self.prob, low=0.0, high=1.0))
        set_(self, "mode", check_choice("MixupConfig.mode", MixMode, self.mode))
        set_(self, "pairing", check_choice("MixupConfig.pairing", Pairing, self.pairing))
        set_(
            self,
            "label_smoothing",
            _check_real("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True),
        )
        if self.num_classes is not None:
            set_(self, "num_classes", check_num_classes("MixupConfig.num_classes", self.num_classes))
        check_bool("MixupConfig.enabled", self.enabled)
        set_(self, "cutmix_alpha", _check_real("cutmix_alpha", self.cutmix_alpha, low=0.0))
        set_(self, "cutmix_minmax", _check_minmax(self.cutmix_minmax))
        set_(self, "switch_prob", _check_real("switch_prob", self.switch_prob, low=0.0, high=1.0))
        check_bool("MixupConfig.correct_lam", self.correct_lam)
        if self.mode is MixMode.PAIR and self.pairing is Pairing.ROLL:
            raise ValueError(
                "MixupConfig.mode='pair' needs mutual partners; pairing='roll' is not its own "
                "inverse. Use pairing='flip' or 'derangement'."
            )

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable fields (enums as their values); ``MixupConfig(**d)`` rebuilds it."""
        d = dataclasses.asdict(self)
        d["mode"], d["pairing"] = self.mode.value, self.pairing.value
        if d["cutmix_minmax"] is not None:
            d["cutmix_minmax"] = list(d["cutmix_minmax"])
        return d
