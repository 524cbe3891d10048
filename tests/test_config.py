import dataclasses

import pytest

from dali_mixup import MixMode, MixupConfig, Pairing


def test_defaults_and_enums():
    cfg = MixupConfig(alpha=0.4)
    assert cfg.beta == 0.4 and cfg.prob == 1.0 and cfg.enabled
    assert cfg.mode is MixMode.BATCH and cfg.pairing is Pairing.DERANGEMENT
    cfg = MixupConfig(alpha=2, beta=5, mode="elem", pairing="flip", num_classes=10)
    assert cfg.mode is MixMode.ELEM and cfg.pairing is Pairing.FLIP and cfg.beta == 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.alpha = 1.0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(alpha=0), "alpha"),
        (dict(alpha=-1), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(alpha=float("inf")), "alpha"),
        (dict(beta=0), "beta"),
        (dict(prob=1.5), "prob"),
        (dict(prob=-0.1), "prob"),
        (dict(mode="row"), "mode"),
        (dict(pairing="shuffle"), "pairing"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(label_smoothing=-0.1), "label_smoothing"),
        (dict(num_classes=0), "num_classes"),
        (dict(mode="pair", pairing="roll"), "mode"),
        (dict(cutmix_alpha=-0.5), "cutmix_alpha"),
        (dict(cutmix_alpha=float("nan")), "cutmix_alpha"),
        (dict(cutmix_minmax=(0.8, 0.2)), "cutmix_minmax"),
        (dict(cutmix_minmax=(0.5, 0.5)), "cutmix_minmax"),
        (dict(cutmix_minmax=(-0.1, 0.5)), "cutmix_minmax"),
        (dict(cutmix_minmax=(0.2, 1.5)), "cutmix_minmax"),
        (dict(switch_prob=1.5), "switch_prob"),
        (dict(switch_prob=-0.1), "switch_prob"),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MixupConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(alpha="1"), "alpha"),
        (dict(alpha=True), "alpha"),
        (dict(prob=None), "prob"),
        (dict(num_classes=2.5), "num_classes"),
        (dict(num_classes=True), "num_classes"),
        (dict(enabled=1), "enabled"),
        (dict(cutmix_alpha="1"), "cutmix_alpha"),
        (dict(cutmix_minmax=0.5), "cutmix_minmax"),
        (dict(cutmix_minmax=(0.2, 0.5, 0.8)), "cutmix_minmax"),
        (dict(cutmix_minmax="ab"), "cutmix_minmax"),
        (dict(cutmix_minmax=(0.2, "0.8")), "cutmix_minmax"),
        (dict(switch_prob=None), "switch_prob"),
        (dict(correct_lam=1), "correct_lam"),
    ],
)
def test_wrong_types_name_the_field(kwargs, field):
    with pytest.raises(TypeError, match=field):
        MixupConfig(**kwargs)


def test_cutmix_fields():
    cfg = MixupConfig()
    assert cfg.cutmix_alpha == 0.0 and cfg.cutmix_minmax is None and cfg.switch_prob == 0.5
    assert cfg.correct_lam is True and not cfg.cutmix_on
    assert MixupConfig(cutmix_alpha=1).cutmix_on
    assert not MixupConfig(cutmix_alpha=1, switch_prob=0).cutmix_on  # mixup only
    mm = MixupConfig(cutmix_minmax=[0.2, 0.8])  # minmax turns CutMix on, as in timm
    assert mm.cutmix_minmax == (0.2, 0.8) and mm.cutmix_on
