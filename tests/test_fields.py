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


@pytest.mark.parametrize("fields, match", [
    # case 24: a field named like an output BatchMixer writes itself (the params)
    ({"data": Blend(), "lam": Keep()}, r"field 'lam' \(Keep\) writes the output 'lam', which BatchMixer writes itself"),
    ({"data": Blend(), "perm": Keep()}, "'perm'.*BatchMixer writes itself"),
    ({"data": Blend(), "cutmix": Keep()}, "'cutmix'.*BatchMixer writes itself"),
    ({"boxes": Blend()}, "'boxes'.*BatchMixer writes itself"),
    ({"data": Blend(), "label": SoftTarget(5, index_name="lam")}, r"field 'label' \(SoftTarget\) writes the output 'lam'"),
    # ... or like an output a rule writes: SoftTarget's label_index
    ({"data": Blend(), "label": SoftTarget(5), "label_index": Keep()},
     r"field 'label' \(SoftTarget\) writes the output 'label_index', the name of field 'label_index' \(Keep\)"),
    # case 25: SoftTarget's index_name on another field (either order), or on its own
    ({"data": Blend(), "label": SoftTarget(5, index_name="data")},
     r"fields 'data' \(Blend\) and 'label' \(SoftTarget\) both write the output 'data'; rename one"),
    ({"label": SoftTarget(5, index_name="data"), "data": Blend()},
     r"field 'label' \(SoftTarget\) writes the output 'data', the name of field 'data' \(Blend\)"),
    ({"data": Blend(), "label": SoftTarget(5, index_name="label")}, "field 'label' .* writes 'label' twice"),
])
def test_an_output_name_written_twice_is_refused_when_the_mixer_is_made(fields, match):
    with pytest.raises(ValueError, match=match):
        BatchMixer(fields)


def test_an_undeclared_output_written_twice_is_refused_at_the_batch():
    """A rule whose ``outputs`` does not name all it writes: caught at the batch, not silently."""

    class Sneaky(Keep):
        def apply(self, name, value, params):
            return {name: value, "data": value}

    b = batch()
    with pytest.raises(ValueError, match=r"field 'meta' \(Sneaky\) writes \['data'\], which another field already"):
        BatchMixer({"data": Blend(), "meta": Sneaky()})(b, MixupParams.identity(6))


def test_a_field_missing_from_the_batch_names_the_missing_and_present_fields():
    """Case 28: was a bare KeyError: 'id'."""
    b = batch()
    mixer = BatchMixer({"data": Blend(), "label": SoftTarget(5), "id": Keep()})
    with pytest.raises(KeyError) as err:
        mixer(b, MixupParams.identity(6))
    assert str(err.value) == ("the batch has no field 'id': the mixer's fields are ['data', 'label', 'id'], "
                              "the batch has ['data', 'label', 'meta']")
    sampler = MixupSampler(MixupConfig(alpha=1.0, cutmix_alpha=1.0), seed=0)
    for call in (lambda: mixer({"label": b["label"]}, MixupParams.identity(6)),  # 'data' gives the batch size
                 lambda: mixer.sample(sampler, {"label": b["label"]})):
        with pytest.raises(KeyError, match=r"no field 'data', 'id': .* the batch has \['label'\]"):
            call()


def test_keep_passes_any_object_through():
    """Case 29: Keep on a list of strings was an AttributeError ('list' object has no 'shape')."""
    b = batch()
    b["names"], b["info"] = [f"img{i}.jpg" for i in range(6)], {"epoch": 3}
    b["scalar"] = torch.tensor(7)
    mixer = BatchMixer({"names": Keep(), "data": Blend(), "label": SoftTarget(5), "info": Keep(), "scalar": Keep()})
    cfg = MixupConfig(alpha=1.0, cutmix_alpha=1.0)
    params = mixer.sample(MixupSampler(cfg, seed=0), b)  # batch size and CutMix size from 'data', not 'names'
    assert params.batch_size == 6 and params.image_size == (8, 8)
    out = mixer(b, params)
    assert out["names"] is b["names"] and out["info"] is b["info"] and out["scalar"] is b["scalar"]
    b["meta"] = b["meta"][:4]  # a tensor with a batch dim is still checked
    with pytest.raises(ValueError, match="'meta' has 4 samples, field 'data' has 6"):
        BatchMixer({"data": Blend(), "meta": Keep()})(b, params)


@pytest.mark.parametrize("field, rule", [("data", Blend()), ("label", SoftTarget(5))])
def test_a_rule_that_takes_tensors_refuses_numpy_naming_the_field(field, rule):
    """Case 30: numpy data in a Blend field was AttributeError: 'str' object has no attribute 'type'."""
    np = pytest.importorskip("numpy")
    b = batch()
    b[field] = b[field].numpy()
    mixer = BatchMixer({"data": Blend(), "label": SoftTarget(5)} | {field: rule})
    match = rf"field '{field}': {type(rule).__name__} takes a torch.Tensor \(N, \.\.\.\), got numpy.ndarray; torch.from_numpy"
    with pytest.raises(TypeError, match=match):
        mixer(b, MixupParams.identity(6))
    if field == "data":  # where the batch size and the CutMix size come from
        with pytest.raises(TypeError, match=match):
            mixer.sample(MixupSampler(MixupConfig(alpha=1.0, cutmix_alpha=1.0), seed=0), b)
    assert isinstance(b[field], np.ndarray)
