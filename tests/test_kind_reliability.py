"""Issue 22, the reliability cases of each sample kind (cases 1-21, 26, 27, 31-35; 22-25 and 28-30
are in ``test_autograd.py`` and ``test_fields.py``): one test per case, each failing on the code
before the one loader front and passing after it. Every data set is written here (JPEGs with
PIL, WAVs with the stdlib ``wave`` module or by hand, volumes with ``np.save``, COCO JSON by
hand); everything runs on the CPU backend. Cases that hold for several kinds (resume, shards) are
parametrised over the kinds of ``build_loader`` (``kinds.KINDS``).
"""

import base64
import json
import math
import os
import struct
import tempfile
import warnings

import numpy as np
import pytest
import torch

from kinds import KINDS, loader_options, make_audio, make_coco, make_volumes

# --------------------------------------------------------------------------------- helpers


def build(kind, **options):
    from dali_mixup import build_loader

    return build_loader(kind, **options)


def batches(loader):
    return [b[0] for b in loader]


def image_ids(loader):
    """The COCO image ids a detection loader serves in one epoch, in order."""
    return [i for b in batches(loader) for i in b["image_ids"].reshape(-1).tolist()]


def coco_loader(data, **overrides):
    opts = dict(batch_size=2, canvas=64, device="cpu", num_threads=1, mixup=None, shuffle=False, flip_prob=0.0)
    opts.update(data)
    opts.update(overrides)
    return build("detection", **opts)


def coco(tmp_path, edit=None, n=3):
    """``kinds.make_coco``'s data set of ``n`` images, its JSON passed through ``edit(data)``
    (which may change it in place); returns ``(options, parsed JSON)``."""
    made = make_coco(str(tmp_path), n)
    path = made.options["annotations"]
    with open(path) as f:
        data = json.load(f)
    if edit is not None:
        edit(data)
    with open(path, "w") as f:
        json.dump(data, f)  # NaN is written as NaN (what a careless exporter writes)
    return dict(made.options), data


def bad_annotation():
    from dali_mixup.kinds.detection import BadAnnotationError

    return BadAnnotationError


def one_line(err):
    """The error's message, checked to name things on its first line."""
    return str(err).splitlines()[0]


# ---------------------------------------------------------------------------- 1-14 detection


def _exif_rotated_jpeg(path, w=60, h=30):
    """A JPEG stored ``w`` x ``h`` with EXIF Orientation 6 (displayed rotated by 90 degrees)."""
    from PIL import Image

    im = Image.new("RGB", (w, h), (30, 30, 30))
    im.paste((230, 230, 230), (5, 5, 25, 15))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, "JPEG", quality=95, exif=exif.tobytes())


def test_case01_exif_rotated_image_refused_and_boxes_match_the_pixels(tmp_path):
    """The rule: an EXIF-rotated image is refused saying "EXIF orientation" (DALI rotates its pixels,
    not the JSON's boxes); on_error='skip' leaves it out; the upright image's boxes lie on its
    pixels after the canvas fit."""
    from PIL import Image

    root = tmp_path / "images"
    root.mkdir()
    _exif_rotated_jpeg(str(root / "rotated.jpg"))
    # upright 64x48 (WxH): dark, one bright rectangle exactly where the box is
    pixels = np.full((48, 64, 3), 20, np.uint8)
    box = [10, 8, 24, 16]  # x, y, w, h
    pixels[8:24, 10:34] = 235
    Image.fromarray(pixels).save(root / "upright.png")
    data = dict(images=[dict(id=1, file_name="rotated.jpg", width=60, height=30),
                        dict(id=2, file_name="upright.png", width=64, height=48)],
                annotations=[dict(id=11, image_id=1, category_id=1, bbox=[5, 5, 20, 10], area=200, iscrowd=0),
                             dict(id=12, image_id=2, category_id=1, bbox=box, area=384, iscrowd=0)],
                categories=[dict(id=1, name="thing")])
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    opts = dict(root=str(root), annotations=str(ann))

    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts)
    assert "EXIF orientation" in str(e.value) and "rotated.jpg" in str(e.value) and "image id 1" in str(e.value)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = coco_loader(opts, on_error="skip", canvas=96, dtype="uint8")
        (batch,) = batches(loader)
    assert sum("EXIF orientation" in str(w.message) for w in caught) == 1
    assert batch["image_ids"].reshape(-1).tolist() == [2]
    assert int(batch["box_counts"][0]) == 1
    img = batch["images"][0].float().mean(0)  # (H, W) of the 96x96 canvas; the image is 96x72
    x0, y0, x1, y1 = batch["bboxes"][0, 0].tolist()
    assert [x0, y0, x1, y1] == pytest.approx([15, 12, 51, 36], abs=0.01)  # the box x 1.5
    inside = img[round(y0) + 2:round(y1) - 2, round(x0) + 2:round(x1) - 2]
    outside = torch.ones(72, 96, dtype=torch.bool)
    outside[round(y0) - 2:round(y1) + 2, round(x0) - 2:round(x1) + 2] = False
    assert inside.mean() > 200 and img[:72][outside].mean() < 40, (inside.mean(), img[:72][outside].mean())


def test_case02_two_images_with_one_file_name_refused(tmp_path):
    def edit(d):
        d["images"][1]["file_name"] = d["images"][0]["file_name"]
        d["images"][1]["width"], d["images"][1]["height"] = d["images"][0]["width"], d["images"][0]["height"]
        d["annotations"][1]["bbox"] = [1, 1, 5, 5]

    opts, _ = coco(tmp_path, edit)
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts)
    assert "file_name" in str(e.value) and "image id 2" in str(e.value), e.value


def test_case03_float_category_id_refused(tmp_path):
    opts, data = coco(tmp_path, lambda d: d["annotations"][0].update(category_id=float(d["annotations"][0]
                                                                                       ["category_id"])))
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts)
    assert "category_id" in str(e.value) and "must be an int" in str(e.value)
    assert f"annotation id {data['annotations'][0]['id']}" in str(e.value)


def test_case04_category_zero_with_masks_refused(tmp_path):
    def edit(d):
        d["categories"].append(dict(id=0, name="zero"))
        d["annotations"][0]["category_id"] = 0

    opts, _ = coco(tmp_path, edit)
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts, masks=True)
    assert "category id 0" in str(e.value) and "background" in str(e.value)


@pytest.mark.parametrize("seg", [[[]], [[1, 1, 9, 1]]], ids=["empty_polygon", "two_points"])
def test_case05_polygon_of_fewer_than_three_points_refused(tmp_path, seg):
    opts, data = coco(tmp_path, lambda d: d["annotations"][0].update(segmentation=seg))
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts, masks=True)
    assert f"annotation id {data['annotations'][0]['id']}" in str(e.value)
    assert "segmentation" in str(e.value), e.value


@pytest.mark.parametrize("wrong", ["size", "counts"])
def test_case06_rle_of_the_wrong_size_refused(tmp_path, wrong):
    def edit(d):
        im = d["images"][0]
        h, w = im["height"], im["width"]
        rle = dict(size=[h, w], counts=[h * w - 20, 20])
        if wrong == "size":
            rle["size"] = [h + 1, w]
        else:
            rle["counts"] = [h * w - 20, 19]
        d["annotations"][0]["segmentation"] = rle

    opts, data = coco(tmp_path, edit)
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts, masks=True)
    assert f"annotation id {data['annotations'][0]['id']}" in str(e.value)
    assert ("RLE 'size'" if wrong == "size" else "sum to") in str(e.value), e.value


def test_case07_non_finite_bbox_refused(tmp_path):
    opts, data = coco(tmp_path, lambda d: d["annotations"][1]["bbox"].__setitem__(0, math.nan))
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts)
    assert "finite" in str(e.value) and f"annotation id {data['annotations'][1]['id']}" in str(e.value)


def test_case08_image_id_beyond_int32_refused_up_front(tmp_path):
    def edit(d):
        d["images"][0]["id"] = d["annotations"][0]["image_id"] = 5000000001

    opts, _ = coco(tmp_path, edit)
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts)
    assert "5000000001" in str(e.value) and "int32" in str(e.value)


def test_case09_bbox_value_of_400_digits_is_a_bad_annotation(tmp_path):
    opts, data = coco(tmp_path)
    path = opts["annotations"]
    text = open(path).read()
    x = data["annotations"][0]["bbox"][0]
    with open(path, "w") as f:
        f.write(text.replace(f'"bbox": [{x},', '"bbox": [1' + "0" * 400 + ",", 1))
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts)
    assert f"annotation id {data['annotations'][0]['id']}" in str(e.value) and "bbox" in str(e.value)


def test_case10_deeply_nested_json_is_a_bad_annotation(tmp_path):
    opts, _ = coco(tmp_path)
    with open(opts["annotations"], "w") as f:
        f.write("[" * 100_000)
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts)
    assert os.path.basename(opts["annotations"]) in one_line(e.value)


def test_case11_undecodable_format_refused_up_front_and_skipped(tmp_path):
    from PIL import Image

    opts, data = coco(tmp_path)
    name = data["images"][1]["file_name"]
    gif = os.path.join(opts["root"], name)
    im = Image.open(gif)
    im.convert("P").save(gif, format="GIF")  # a GIF named .jpg: the image scan reads the signature
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts)  # up front, not at the batch
    assert name in str(e.value) and "GIF" in str(e.value), e.value
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        served = image_ids(coco_loader(opts, on_error="skip"))
    assert served == [1, 3]
    assert sum(name in str(w.message) for w in caught) == 1


def test_case12_pad_value_outside_the_dtype_refused(tmp_path):
    opts, _ = coco(tmp_path)
    with pytest.raises(ValueError, match="pad_value"):
        coco_loader(opts, dtype="uint8", pad_value=300)
    with pytest.raises(ValueError, match="pad_value"):
        coco_loader(opts, dtype="uint8", pad_value=-1)


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_case13_file_name_leaving_the_root_refused_unless_allowed(tmp_path, where):
    opts, data = coco(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    src = os.path.join(opts["root"], data["images"][0]["file_name"])
    os.replace(src, elsewhere / "x.jpg")
    data["images"][0]["file_name"] = (str(elsewhere / "x.jpg") if where == "absolute"
                                      else os.path.join("..", "..", "elsewhere", "x.jpg"))
    with open(opts["annotations"], "w") as f:
        json.dump(data, f)
    with pytest.raises(bad_annotation()) as e:
        coco_loader(opts)
    assert "outside the image folder" in str(e.value) and "image id 1" in str(e.value)
    assert image_ids(coco_loader(opts, allow_outside_root=True)) == [1, 2, 3]


def test_case14_skip_leaves_no_new_temp_folder_per_loader(tmp_path):
    from dali_mixup.kinds import detection

    opts, _ = coco(tmp_path, lambda d: d["annotations"][1]["bbox"].__setitem__(2, 1000))  # outside its image
    tmp = tempfile.gettempdir()
    before = {e for e in os.listdir(tmp) if e.startswith("dali_mixup_coco")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaders = [coco_loader(opts, on_error="skip") for _ in range(3)]
    after = {e for e in os.listdir(tmp) if e.startswith("dali_mixup_coco")}
    assert after - before <= {os.path.basename(detection.COCO_CACHE)}, sorted(after - before)
    cleaned = {ld.spec.source.annotations for ld in loaders}
    assert len(cleaned) == 1 and os.path.dirname(cleaned.pop()) == detection.COCO_CACHE


# ---------------------------------------------------------------------------------- 15-17 audio


def write_float_wav(path, samples, rate):
    """A mono IEEE-float (format tag 3) 32-bit WAV, written by hand (the stdlib ``wave`` writes PCM only)."""
    body = np.asarray(samples, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    return path


def audio_loader(data, **overrides):
    return build("audio", **loader_options("audio", data, **overrides))


@pytest.mark.parametrize("features", [None, "log_mel"])
def test_case15_audio_nan_samples_named_up_front_and_at_the_batch(tmp_path, features):
    from dali_mixup import BadDataError, ValidationError

    data = make_audio(str(tmp_path), 4)
    bad = data.files[2]
    x = 0.3 * np.sin(np.arange(2400) * 0.05)
    x[::7] = np.nan
    write_float_wav(bad, x, 8000)
    feats = dict(features=features, n_fft=128, hop_length=64, n_mels=16) if features else dict(features=None)

    with pytest.raises(ValidationError) as e:  # check_values=True: a full read of float WAVs up front
        audio_loader(data, check_values=True, **feats)
    assert bad in str(e.value) and "NaN" in str(e.value)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = audio_loader(data, check_values=True, on_error="skip", train=False, **feats)
        served = sorted(i for b in batches(loader) for i in b["label_index"].tolist())
    assert served == [0, 1, 3] and sum(bad in str(w.message) for w in caught) == 1

    loader = audio_loader(data, train=False, **feats)  # no value scan: the batch's check names it
    with pytest.raises(BadDataError) as e:
        batches(loader)
    assert bad in str(e.value) and "NaN" in str(e.value)


def test_case16_cutmix_refusal_names_what_switches_it_on(tmp_path):
    from dali_mixup import MixupConfig

    data = make_audio(str(tmp_path), 2)
    mixup = MixupConfig(alpha=0.4, cutmix_alpha=0.0, cutmix_minmax=(0.2, 0.8))
    with pytest.raises(ValueError) as e:
        audio_loader(data, mixup=mixup)
    assert "cutmix_minmax=(0.2, 0.8)" in str(e.value)
    assert "set cutmix_alpha=0" not in str(e.value)


def test_case17_log_mel_tolerance_stated_as_measured():
    import dali_mixup.kinds.audio as audio

    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md"), encoding="utf-8").read()
    for where, text in (("dali_mixup.kinds.audio", " ".join(audio.__doc__.split())), ("README.md", " ".join(readme.split()))):
        assert "within 1e-3 dB" not in text, where
        assert "2e-4 dB" in text and "5e-3 dB" in text and "2.9e-3 dB" in text, where


# ---------------------------------------------------------------------------------- 18-21 volumes


def volume_loader(**options):
    opts = dict(batch_size=2, crop=(8, 8, 8), device="cpu", num_threads=1)
    opts.update(options)
    return build("volume", **opts)


def test_case18_float_volume_label_refused(tmp_path):
    data = make_volumes(str(tmp_path), 2)
    with pytest.raises(TypeError) as e:  # files=[(path, label)]: was int(1.7) = 1 without a word
        volume_loader(files=[(data.files[0], 0), (data.files[1], 1.7)])
    assert "files[1] label" in str(e.value) and "1.7" in str(e.value)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{data.files[0]} 0\n{data.files[1]} 1.7\n")
    with pytest.raises(ValueError) as e:  # a file list: the one parser, naming the line
        volume_loader(file_list=str(lst))
    assert "1.7" in str(e.value) and f"{lst}:2" in str(e.value)


@pytest.mark.parametrize("given", ["root", "files"])
def test_case19_non_utf8_file_name_refused_up_front(tmp_path, given):
    data = make_volumes(str(tmp_path), 2)
    folder = os.path.dirname(data.files[1])
    odd = os.path.join(os.fsencode(folder), b"v\xff.npy")
    os.replace(data.files[1], odd)
    if given == "root":
        kw = data.options
    else:
        kw = dict(files=[(data.files[0], 0), (os.fsdecode(odd), 1)])
    with pytest.raises(ValueError) as e:
        volume_loader(**kw)
    assert "UTF-8" in str(e.value) and repr(b"v\xff.npy")[2:-1] in str(e.value)


def _sparse_npy(path, shape=(1, 2048, 2048, 1024)):
    """A .npy whose header claims ``shape`` float32 (16 GiB), written sparse (no data blocks)."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.truncate(f.tell() + int(np.prod(shape)) * 4)


def test_case20_huge_volume_refused_by_max_voxels_and_diagnosed_by_the_volume_scan(tmp_path):
    from dali_mixup import BadDataError, ValidationError
    from dali_mixup.front import kind_of
    from dali_mixup.options import LoaderOptions

    data = make_volumes(str(tmp_path), 3)
    huge = data.files[1]
    _sparse_npy(huge)
    with pytest.raises(ValidationError) as e:
        volume_loader(**data.options)
    assert huge in str(e.value) and "max_voxels" in str(e.value)
    with pytest.raises(ValidationError) as e:  # a tighter limit of one's own
        volume_loader(files=[(data.files[0], 0)], max_voxels=100)
    assert data.files[0] in str(e.value) and "max_voxels=100" in str(e.value)

    # the loader's diagnosis of a DALI failure is the volume scan (not the image scan)
    np.save(huge, np.zeros((1, 8, 8, 8), np.float32))
    spec = kind_of("volume").resolve(LoaderOptions.resolve(default_validate=True, device="cpu"),
                                     **data.options, batch_size=2, crop=(8, 8, 8))
    _sparse_npy(huge)  # grown after the scan
    err = spec.diagnose(RuntimeError("Critical error in pipeline: [numpy_reader] cannot allocate"))
    assert isinstance(err, BadDataError)
    assert huge in str(err) and "max_voxels" in str(err)


TRUNCATE = """
import os, sys
import numpy as np
from dali_mixup import BadDataError, build_loader
root, victim, cut, mmap = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "mmap"
loader = build_loader("volume", root=root, batch_size=2, crop=(8, 8, 8), device="cpu", num_threads=1,
                      shuffle=False, mmap=mmap)
with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) - cut)
try:
    for _ in range(2):  # the first batches may have been read before the truncation
        for _ in loader:
            pass
except BadDataError as e:
    print("BadDataError:", e)
else:
    print("no error")
"""


@pytest.mark.parametrize("cut, mmap", [(72, "mmap"), (60000, "read")], ids=["in-last-page-mmap", "pages-read"])
def test_case21_volume_truncated_after_the_scan_named_at_the_batch(tmp_path, cut, mmap):
    """In a process of its own: a mapped read of whole truncated pages would kill it (SIGBUS), so
    the pages case reads with ``mmap=False``; a cut inside the last page (18 voxels, the issue's
    494 of 512) is served zero-filled by the default mapped read and named at the batch."""
    import subprocess
    import sys

    root = tmp_path / "vols"
    files = []
    for i in range(4):
        (root / f"c{i}").mkdir(parents=True)
        files.append(str(root / f"c{i}" / "v.npy"))
        np.save(files[-1], np.ones((1, 32, 32, 32), np.float32))  # 128 KiB
    run = subprocess.run([sys.executable, "-c", TRUNCATE, str(root), files[2], str(cut), mmap], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}:\n{run.stdout}\n{run.stderr[-2000:]}"
    assert run.stdout.startswith("BadDataError:"), run.stdout
    assert files[2] in run.stdout and "truncated" in run.stdout, run.stdout


# --------------------------------------------------------------------------- 26-27 the rules


def _params(n, seed=0):
    from dali_mixup import MixupConfig, MixupSampler

    return MixupSampler(MixupConfig(alpha=0.4), seed=seed).sample(n)


@pytest.mark.parametrize("counts", [[3, 1], [1, -1]], ids=["above_M", "negative"])
def test_case26_box_counts_outside_0_to_M_refused(counts):
    from dali_mixup import BatchMixer
    from dali_mixup.kinds.detection import detection_fields

    batch = {"images": torch.rand(2, 3, 8, 8), "bboxes": torch.tensor([[[0, 0, 4, 4], [1, 1, 5, 5]]] * 2).float(),
             "labels": torch.tensor([[1, 2], [1, 2]], dtype=torch.int32),
             "counts": torch.tensor(counts).reshape(2, 1), "image_ids": torch.tensor([[1], [2]])}
    mixer = BatchMixer(detection_fields())
    with pytest.raises(ValueError) as e:
        mixer(batch, _params(2))
    bad = 3 if counts[0] == 3 else -1
    assert "counts" in str(e.value) and f"{bad}" in str(e.value) and "M=2" in str(e.value), e.value


@pytest.mark.parametrize("value", [7, -3], ids=["above_C", "negative"])
def test_case27_mask_ids_outside_the_classes_refused(value):
    from dali_mixup import BatchMixer, Blend
    from dali_mixup.kinds.detection import MaskPaste

    mask = torch.zeros(2, 6, 6, dtype=torch.int32)
    mask[0, 1:3, 1:3] = 2
    mask[1, 0, 0] = 255  # ignore_index: fine
    mask[1, 4, 4] = value
    mixer = BatchMixer({"images": Blend(), "mask": MaskPaste(num_classes=4, soft=True)})
    with pytest.raises(ValueError) as e:
        mixer({"images": torch.rand(2, 3, 6, 6), "mask": mask}, _params(2))
    assert "mask" in str(e.value) and str(value) in str(e.value) and "num_classes=4" in str(e.value)
    mask[1, 4, 4] = 3  # in range (and ignore_index) passes; the soft mask keeps its mass
    out = mixer({"images": torch.rand(2, 3, 6, 6), "mask": mask}, _params(2))
    labelled = (out["mask"] != 255) & (out["mask_partner"] != 255)
    torch.testing.assert_close(out["mask_soft"].sum(1)[labelled], torch.ones(int(labelled.sum())))


def test_rules_declare_every_output_they_write():
    """BoxesWithWeights, MaskPaste, BlendThenLogMel and MultiHotTarget declare their outputs
    (``Rule.outputs``), so a field of the same name is refused when the mixer is made."""
    from dali_mixup import BatchMixer, Blend, Keep
    from dali_mixup.kinds.audio import BlendThenLogMel, LogMelConfig, MultiHotTarget
    from dali_mixup.kinds.detection import BoxesWithWeights, MaskPaste, detection_fields

    assert set(detection_fields()["bboxes"].outputs("bboxes")) == {
        "bboxes", "labels", "box_weights", "box_counts", "box_source"}
    assert set(MaskPaste(num_classes=3, soft=True).outputs("mask")) == {"mask", "mask_partner", "mask_soft"}
    assert set(MaskPaste().outputs("seg")) == {"seg", "seg_partner"}
    cfg = LogMelConfig(sample_rate=8000, n_fft=64, hop_length=32, n_mels=8)
    assert set(BlendThenLogMel(cfg).outputs("audio")) == {"audio", "features"}
    assert set(BlendThenLogMel(cfg, keep_waveform=False).outputs("audio")) == {"features"}
    assert set(MultiHotTarget(((0,), (1,)), 2).outputs("label")) == {"label", "label_hot"}
    clashes = [
        {**detection_fields(), "box_weights": Keep()},
        {"images": Blend(), "mask": MaskPaste(), "mask_partner": Keep()},
        {"audio": BlendThenLogMel(cfg), "features": Keep()},
        {"audio": Blend(), "label": MultiHotTarget(((0,), (1,)), 2), "label_hot": Keep()},
    ]
    for fields in clashes:
        with pytest.raises(ValueError, match="rename"):
            BatchMixer(fields)
    assert isinstance(detection_fields()["bboxes"], BoxesWithWeights)


# ---------------------------------------------------------------------------- 31-33 resume


def _state_after_one_batch(kind, data, **overrides):
    loader = build(kind, **loader_options(kind, data, **overrides))
    next(iter(loader))
    return json.loads(json.dumps(loader.state_dict()))


def _data(kind, folder, n=4):
    return KINDS[kind].make(str(folder), n)


@pytest.mark.parametrize("kind, option, saved, loaded", [
    ("detection", "masks", True, False), ("detection", "masks", False, True),
    ("audio", "features", "log_mel", None), ("audio", "features", None, "log_mel"),
])
def test_case31_state_of_another_configuration_is_a_state_error(tmp_path, kind, option, saved, loaded):
    from dali_mixup import BadDataError, StateError

    data = _data(kind, tmp_path)
    state = _state_after_one_batch(kind, data, **{option: saved})
    loader = build(kind, **loader_options(kind, data, **{option: loaded}))
    with pytest.raises(Exception) as e:
        loader.load_state_dict(state)
    assert isinstance(e.value, StateError) and not isinstance(e.value, BadDataError), repr(e.value)
    assert option in str(e.value) and "another loader" in str(e.value), e.value


@pytest.mark.parametrize("kind", list(KINDS))
def test_case32_truncated_dali_checkpoint_is_a_damaged_state(tmp_path, kind):
    from dali_mixup import BadDataError, StateError

    data = _data(kind, tmp_path)
    state = _state_after_one_batch(kind, data)
    raw = base64.b64decode(state["dali"][0])
    state["dali"][0] = base64.b64encode(raw[: len(raw) // 2]).decode("ascii")
    loader = build(kind, **loader_options(kind, data))
    with pytest.raises(Exception) as e:
        loader.load_state_dict(state)
    assert isinstance(e.value, StateError) and not isinstance(e.value, BadDataError), repr(e.value)
    assert "damaged" in str(e.value) and "checkpoint" in str(e.value), e.value


@pytest.mark.parametrize("kind", list(KINDS))
def test_case33_garbage_sampler_entry_is_a_damaged_state(tmp_path, kind):
    from dali_mixup import StateError

    data = _data(kind, tmp_path)
    state = _state_after_one_batch(kind, data)
    state["samplers"][0] = {"garbage": "not a sampler state"}
    loader = build(kind, **loader_options(kind, data))
    with pytest.raises(Exception) as e:
        loader.load_state_dict(state)
    assert isinstance(e.value, StateError), repr(e.value)
    assert "damaged" in str(e.value) and "sampler entry 0" in str(e.value), e.value


# ---------------------------------------------------------------------------- 34-35 shards


@pytest.mark.parametrize("kind", list(KINDS))
def test_case34_more_shards_than_samples_named(tmp_path, kind):
    data = _data(kind, tmp_path, n=2)
    with pytest.raises(ValueError) as e:
        build(kind, **loader_options(kind, data, shard_id=0, num_shards=3))
    assert "num_shards=3" in str(e.value) and "(2 " in str(e.value), e.value


@pytest.mark.parametrize("kind", list(KINDS))
def test_case35_shard_id_out_of_range_named(tmp_path, kind):
    data = _data(kind, tmp_path, n=2)
    with pytest.raises(ValueError) as e:
        build(kind, **loader_options(kind, data, shard_id=2, num_shards=2))
    assert "shard_id" in str(e.value) and "num_shards (2)" in str(e.value), e.value
