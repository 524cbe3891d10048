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
    ],
)
def test_wrong_types_name_the_field(kwargs, field):
    with pytest.raises(TypeError, match=field):
        MixupConfig(**kwargs)
