"""A sample as named fields with mix rules: ``BatchMixer`` is a pure function of (batch, params),
and each rule is the operation it names (``mix_images`` / ``mix_targets``)."""

import pytest
import torch

from dali_mixup import (BatchMixer, Blend, Keep, LabelEncoding, MixupConfig, MixupParams, MixupSampler, SoftTarget,
                        mix_images, mix_targets)
from dali_mixup.fields import class_indices


def batch(n=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"data": torch.rand((n, 3, 8, 8), generator=g),
            "label": torch.randint(0, c, (n, 1), generator=g, dtype=torch.int32),
            "meta": torch.arange(n)}


def test_each_field_follows_its_rule_with_one_set_of_params():
    b = batch()
    mixer = BatchMixer({"data": Blend(), "label": SoftTarget(5, 0.1), "meta": Keep()})
    cfg = MixupConfig(alpha=0.4, mode="elem", cutmix_alpha=1.0)
    params = mixer.sample(MixupSampler(cfg, seed=3), b)
    out = mixer(b, params)
    assert params.has_cutmix and params.image_size == (8, 8)  # the CutMix size came from the data field
    assert torch.equal(out["data"], mix_images(b["data"], params))
    assert torch.equal(out["label"], mix_targets(b["label"], params, 5, 0.1))
    assert torch.equal(out["label_index"], b["label"].view(-1).long())
    assert out["meta"] is b["meta"]
    assert torch.equal(out["lam"], params.lam) and torch.equal(out["perm"], params.perm)
    assert torch.equal(out["boxes"], params.boxes) and torch.equal(out["cutmix"], params.cutmix)
    again = mixer(b, params)  # pure: the same batch and params, the same outputs
    assert all(torch.equal(out[k], again[k]) for k in out)


def test_identity_params_hand_the_field_out_unchanged():
    b = batch()
    out = BatchMixer({"data": Blend(), "label": SoftTarget(5)})(b, MixupParams.identity(6))
    assert out["data"] is b["data"]  # no pass over the batch when mixup is off
    assert torch.equal(out["label"], torch.nn.functional.one_hot(b["label"].view(-1).long(), 5).float())
    cast = BatchMixer({"data": Blend(dtype=torch.bfloat16)})(b, MixupParams.identity(6))["data"]
    assert cast.dtype == torch.bfloat16 and torch.equal(cast, b["data"].to(torch.bfloat16))


def test_fields_must_agree_on_the_batch_size():
    b = batch()
    b["label"] = b["label"][:5]
    with pytest.raises(ValueError, match="'label' has 5 samples"):
        BatchMixer({"data": Blend(), "label": SoftTarget(5)})(b, MixupParams.identity(6))


@pytest.mark.parametrize("rule, exc, match", [
    (lambda: Blend(layout="CHW"), ValueError, "layout"),
    (lambda: Blend(dtype=torch.float64), TypeError, "dtype"),
    (lambda: SoftTarget(0), ValueError, "num_classes"),
    (lambda: SoftTarget(2.5), TypeError, "num_classes"),
    (lambda: SoftTarget(3, label_smoothing=1.0), ValueError, "label_smoothing"),
    (lambda: BatchMixer({"data": "blend"}), TypeError, "Rule"),
    (lambda: BatchMixer({}), ValueError, "field"),
])
def test_rule_options_are_checked_when_made(rule, exc, match):
    with pytest.raises(exc, match=match):
        rule()


def test_labels_are_parsed_by_their_encoding_not_their_dtype():
    """uint8 class ids are ids (51 is class 51); WebDataset 'cls' text is ASCII (b"51" is 51)."""
    ids = torch.tensor([[51], [52], [53], [57]], dtype=torch.uint8)
    assert class_indices(ids).tolist() == [51, 52, 53, 57]
    assert class_indices(torch.tensor([0, 7, 3, 51], dtype=torch.uint8)).tolist() == [0, 7, 3, 51]
    text = torch.tensor([[ord("5"), ord("1")], [ord("7"), 0]], dtype=torch.uint8)
    assert class_indices(text, LabelEncoding.ASCII).tolist() == [51, 7]
    with pytest.raises(ValueError, match="not an ASCII integer"):
        class_indices(torch.tensor([[255, 0]], dtype=torch.uint8), LabelEncoding.ASCII)


def test_a_label_that_is_not_one_id_per_sample_is_refused():
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        class_indices(torch.zeros((4, 2), dtype=torch.int32))
    with pytest.raises(TypeError, match="integer"):
        class_indices(torch.zeros(4))
    assert class_indices(torch.zeros((0, 1), dtype=torch.int32)).shape == (0,)  # an empty last batch


def test_labels_outside_the_classes_name_the_field():
    b = batch()
    b["label"][2] = 9
    with pytest.raises(ValueError, match=r"'label': labels \[9\] are outside \[0, num_classes=5\)"):
        BatchMixer({"data": Blend(), "label": SoftTarget(5)})(b, MixupParams.identity(6))


@pytest.mark.parametrize("cfg", [MixupConfig(alpha=1.0, pairing="flip"), MixupConfig(alpha=1.0, mode="elem", pairing="flip"),
                                 MixupConfig(alpha=1.0, mode="elem", pairing="flip", cutmix_alpha=1.0, switch_prob=1.0)])
def test_a_sample_that_is_its_own_partner_reports_lam_one(cfg):
    """The middle of an odd batch under flip, and a batch of one, are unmixed: lam 1, no box."""
    s = MixupSampler(cfg, seed=0)
    for n in (1, 5):
        p = s.sample(n, image_size=(8, 8))
        alone = p.perm == torch.arange(n)
        assert alone.any() and bool((p.lam[alone] == 1).all()) and not bool(p.cutmix[alone].any())
