"""Detection and segmentation: COCO data written by the test (white rectangles whose boxes are
known), the DALI CPU backend, and the box/mask rules with fixed params."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dali_mixup import BatchMixer, MixupConfig, MixupParams, mix_images
from dali_mixup.kinds.detection import (BadAnnotationError, BoxesWithWeights, MaskPaste, create_detection_loader,
                                  denormalize_boxes, detection_fields, load_coco, normalize_boxes,
                                  to_torchvision, xywh_to_xyxy, xyxy_to_xywh, yolov5_preset)

SIZES = [(32, 48), (48, 32), (40, 40), (36, 60), (56, 44), (32, 32), (44, 52), (60, 36), (40, 56), (48, 48),
         (34, 50), (52, 38)]  # (H, W)
CANVAS = 64


def write_coco(folder, sizes=SIZES, seed=0):
    """Images with 0-3 white rectangles each on black, in separate thirds of the image, and their
    COCO JSON (polygon segmentations). Returns (image folder, json path, {image id: boxes})."""
    rng = np.random.default_rng(seed)
    root = os.path.join(folder, "images")
    os.makedirs(root, exist_ok=True)
    images, anns, truth = [], [], {}
    for i, (h, w) in enumerate(sizes):
        a = np.zeros((h, w, 3), np.uint8)
        col = w // 3
        boxes = []
        for j in range(i % 4):
            x0 = j * col + 2
            x1 = x0 + int(rng.integers(4, col - 4))
            y0 = int(rng.integers(2, h // 2 - 2))
            y1 = min(y0 + int(rng.integers(4, h // 2)), h - 2)
            a[y0:y1, x0:x1] = 255
            cat = 1 + (i + j) % 3
            anns.append(dict(id=100 * i + j + 1, image_id=i + 1, category_id=cat, bbox=[x0, y0, x1 - x0, y1 - y0],
                             area=(x1 - x0) * (y1 - y0), iscrowd=0,
                             segmentation=[[x0, y0, x1, y0, x1, y1, x0, y1]]))
            boxes.append((x0, y0, x1, y1, cat))
        Image.fromarray(a).save(os.path.join(root, f"{i}.png"))
        images.append(dict(id=i + 1, file_name=f"{i}.png", width=w, height=h))
        truth[i + 1] = boxes
    path = os.path.join(folder, "instances.json")
    with open(path, "w") as f:
        json.dump(dict(images=images, annotations=anns, categories=[dict(id=c, name=f"c{c}") for c in (1, 2, 3)]), f)
    return root, path, truth


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_coco(str(tmp_path_factory.mktemp("coco")))


def loader(coco, **kw):
    root, path, _ = coco
    kw.setdefault("batch_size", 4)
    kw.setdefault("canvas", CANVAS)
    kw.setdefault("device", "cpu")
    kw.setdefault("num_threads", 2)
    kw.setdefault("dtype", "uint8")
    return create_detection_loader(root, path, **kw)


def bright_box(img, box, pad=2):
    """xyxy of the bright pixels of channel 0 within ``box`` grown by ``pad``."""
    h, w = img.shape[-2:]
    x0, y0, x1, y1 = box
    gx0, gy0 = max(int(np.floor(x0)) - pad, 0), max(int(np.floor(y0)) - pad, 0)
    gx1, gy1 = min(int(np.ceil(x1)) + pad, w), min(int(np.ceil(y1)) + pad, h)
    ys, xs = np.nonzero(img[0, gy0:gy1, gx0:gx1] > 127)
    if not len(xs):
        return None
    return (gx0 + xs.min(), gy0 + ys.min(), gx0 + xs.max() + 1, gy0 + ys.max() + 1)


# -- the source ---------------------------------------------------------------------------------
def test_load_coco_reads_every_box(coco):
    root, path, truth = coco
    src = load_coco(root, path)
    assert src.image_ids == tuple(range(1, len(SIZES) + 1))
    assert src.num_boxes == sum(len(b) for b in truth.values()) and src.num_classes == 4
    assert [b[:5] for b in src.boxes[4]] == [tuple(float(v) for v in t[:4]) + (t[4],) for t in truth[4]]


def _bad(tmp_path, coco, change):
    root, path, _ = coco
    data = json.load(open(path))
    change(data)
    out = tmp_path / "bad.json"
    out.write_text(json.dumps(data))
    return root, str(out)


@pytest.mark.parametrize("case, change, where", [
    ("missing image", lambda d: d["images"][1].update(file_name="nope.png"), "image id 2"),
    ("box outside", lambda d: d["annotations"][0]["bbox"].__setitem__(0, 45), "annotation id 101"),
    ("negative size", lambda d: d["annotations"][1]["bbox"].__setitem__(2, -3), "annotation id 201"),
    ("unknown category", lambda d: d["annotations"][2].update(category_id=9), "annotation id 202"),
    ("wrong size", lambda d: d["images"][0].update(width=50), "image id 1"),
])
def test_bad_annotations_name_file_and_id(tmp_path, coco, case, change, where):
    root, bad = _bad(tmp_path, coco, change)
    with pytest.raises(BadAnnotationError, match=where) as e:
        load_coco(root, bad)
    assert "bad.json" in str(e.value)
    with pytest.warns(UserWarning, match="left out 1 bad entry"):
        src = load_coco(root, bad, on_error="skip", cache_dir=str(tmp_path / "cache"))
    assert src.annotations != bad and len(src.skipped) == 1


def test_malformed_json(tmp_path, coco):
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(BadAnnotationError, match="broken.json.*not valid JSON"):
        load_coco(coco[0], str(tmp_path / "broken.json"), on_error="skip")
    (tmp_path / "nokeys.json").write_text('{"images": []}')
    with pytest.raises(BadAnnotationError, match="nokeys.json.*'categories'"):
        load_coco(coco[0], str(tmp_path / "nokeys.json"))


def test_skipped_annotation_is_not_read(tmp_path, coco):
    root, bad = _bad(tmp_path, coco, lambda d: d["annotations"][0]["bbox"].__setitem__(0, 45))
    with pytest.warns(UserWarning):
        ld = create_detection_loader(root, bad, batch_size=4, canvas=CANVAS, device="cpu", num_threads=2,
                                     on_error="skip", shuffle=False)
    total = sum(int(b[0]["box_counts"].sum()) for b in ld)
    assert total == ld.source.num_boxes == load_coco(*coco[:2]).num_boxes - 1


def test_options_checked(coco):
    with pytest.raises(TypeError, match="batch_size"):
        loader(coco, batch_size=2.0)
    with pytest.raises(ValueError, match="fit"):
        loader(coco, fit="crop")
    with pytest.raises(ValueError, match="min_visible"):
        loader(coco, min_visible=1.5)
    with pytest.raises(ValueError, match="on_error"):
        loader(coco, on_error="ignore")


# -- geometry through the pipeline ---------------------------------------------------------------
@pytest.mark.parametrize("fit", ["stretch", "letterbox"])
def test_boxes_and_masks_match_the_pixels(coco, fit):
    _, _, truth = coco
    ld = loader(coco, fit=fit, flip_prob=0.5, masks=True, seed=3, shuffle=True)
    seen = {}
    flipped = 0
    for (b,) in ld:
        imgs = b["images"].numpy()
        for i in range(imgs.shape[0]):
            iid = int(b["image_ids"][i, 0])
            m = int(b["box_counts"][i])
            boxes = b["bboxes"][i, :m]
            assert m == len(truth[iid]) and (b["box_source"][i, :m] == i).all()
            assert sorted(b["labels"][i, :m].tolist()) == sorted(t[4] for t in truth[iid])
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= CANVAS).all() and (boxes[:, 3] <= CANVAS).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            mask = b["mask"][i].numpy()
            for box, label in zip(boxes.tolist(), b["labels"][i, :m].tolist()):
                found = bright_box(imgs[i], box)
                assert found is not None and np.allclose(found, box, atol=1.01), (iid, box, found)
                ys, xs = np.nonzero(mask[max(int(box[1]) - 2, 0):int(box[3]) + 2,
                                         max(int(box[0]) - 2, 0):int(box[2]) + 2] == label)
                assert len(xs)
            # every image's boxes are in its left two thirds before the flip
            if m and boxes[:, 2].max() > CANVAS * 0.75 and fit == "stretch":
                flipped += 1
            if fit == "letterbox":
                h, w = SIZES[iid - 1]
                s = CANVAS / max(h, w)
                assert (mask[int(np.ceil(h * s)) + 1:, :] == 255).all() and (mask[:, int(np.ceil(w * s)) + 1:] == 255).all()
            seen[iid] = seen.get(iid, 0) + 1
    assert seen == {i: 1 for i in truth}
    if fit == "stretch":
        assert flipped > 0


def test_no_box_lost_or_duplicated_with_mixup(coco):
    _, _, truth = coco
    ld = loader(coco, mixup=MixupConfig(alpha=1.0, mode="elem"), seed=4, last_batch_policy="PARTIAL")
    for _ in range(2):
        own = {}
        for (b,) in ld:
            n = b["images"].shape[0]
            assert (b["box_counts"] <= b["bboxes"].shape[1]).all()
            for i in range(n):
                iid = int(b["image_ids"][i, 0])
                m = int(b["box_counts"][i])
                src, w = b["box_source"][i, :m], b["box_weights"][i, :m]
                lam = float(b["lam"][i])
                assert torch.allclose(w[src == i], torch.tensor(lam)) and (src[src != i] == int(b["perm"][i])).all()
                assert torch.allclose(w[src != i], torch.tensor(1 - lam))
                assert (b["labels"][i, m:] == -1).all() and (b["box_weights"][i, m:] == 0).all()
                own[iid] = own.get(iid, 0) + int((src == i).sum())
                assert int((src != i).sum()) == len(truth[int(b["image_ids"][int(b["perm"][i]), 0])])
        assert own == {i: len(t) for i, t in truth.items()}


def test_cutmix_boxes_inside_the_paste_and_the_canvas(coco):
    ld = loader(coco, mixup=MixupConfig(alpha=1.0, cutmix_alpha=1.0, switch_prob=1.0, mode="elem"), seed=5,
                masks=True, min_visible=0.3)
    cut_seen = 0
    for (b,) in ld:
        for i in range(b["images"].shape[0]):
            m = int(b["box_counts"][i])
            boxes, src = b["bboxes"][i, :m], b["box_source"][i, :m]
            assert (boxes >= 0).all() and (boxes <= CANVAS).all() and (b["box_weights"][i, :m] == 1).all()
            if b["cutmix"][i]:
                cut_seen += 1
                y0, y1, x0, x1 = b["boxes"][i].tolist()
                part = boxes[src != i]
                assert (part[:, 0] >= x0).all() and (part[:, 2] <= x1).all()
                assert (part[:, 1] >= y0).all() and (part[:, 3] <= y1).all()
                # the mask took the same box as the image: inside it the partner's mask
                j = int(b["perm"][i])
                assert torch.equal(b["mask"][i, y0:y1, x0:x1], b["mask_partner"][i, y0:y1, x0:x1])
    assert cut_seen > 0


def test_same_seed_same_batches_and_resume(coco):
    cfg = MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="elem")

    def run(seed):  # two epochs of 3 batches
        ld = loader(coco, mixup=cfg, seed=seed)
        return [b[0] for _ in range(2) for b in ld], ld

    a, _ = run(7)
    b, _ = run(7)
    c, _ = run(8)
    keys = ["images", "bboxes", "labels", "box_weights", "lam"]
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in keys)
    assert not all(torch.equal(x["images"], y["images"]) for x, y in zip(a, c))
    ld = loader(coco, mixup=cfg, seed=7)
    it = iter(ld)
    for _ in range(2):
        next(it)
    state = json.loads(json.dumps(ld.state_dict()))
    fresh = loader(coco, mixup=cfg, seed=7)
    fresh.load_state_dict(state)
    rest = [b[0] for b in fresh] + [b[0] for b in fresh]  # the rest of epoch 1, then epoch 2
    assert len(rest) == 4
    for got, want in zip(rest, a[2:]):
        assert all(torch.equal(got[k], want[k]) for k in keys)


# -- the rules with fixed params -----------------------------------------------------------------
def _batch():
    boxes = torch.tensor([[[0, 0, 10, 10], [20, 20, 30, 30]], [[5, 5, 15, 15], [0, 0, 0, 0]],
                          [[0, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.float32)
    labels = torch.tensor([[1, 2], [3, -1], [-1, -1]], dtype=torch.int32)
    counts = torch.tensor([[2], [1], [0]])
    return {"images": torch.zeros(3, 3, 40, 40), "bboxes": boxes, "labels": labels, "counts": counts,
            "image_ids": torch.arange(3).view(3, 1)}


def test_mixup_concatenates_with_weights():
    mixer = BatchMixer(detection_fields())
    out = mixer(_batch(), MixupParams([0.7, 1.0, 0.25], [1, 0, 0]))
    assert out["box_counts"].tolist() == [3, 1, 2]
    assert out["labels"].tolist() == [[1, 2, 3], [3, -1, -1], [1, 2, -1]]
    assert torch.allclose(out["box_weights"], torch.tensor([[0.7, 0.7, 0.3], [1, 0, 0], [0.75, 0.75, 0]]))
    assert out["box_source"].tolist() == [[0, 0, 1], [1, -1, -1], [0, 0, -1]]
    assert torch.equal(out["bboxes"][0, 2], torch.tensor([5.0, 5, 15, 15]))  # never scaled by λ
    yolo = BatchMixer(detection_fields(box_weights=yolov5_preset()["box_weights"]))
    out = yolo(_batch(), MixupParams([0.7, 1.0, 0.25], [1, 0, 0]))
    assert out["box_weights"].tolist()[0] == [1, 1, 1]
    assert yolov5_preset()["mixup"].alpha == yolov5_preset()["mixup"].beta == 32


def test_cutmix_clips_and_drops():
    mixer = BatchMixer(detection_fields(min_visible=0.5))
    # sample 0 takes rows [0, 40) x columns [0, 8) from sample 1: own box [0,0,10,10] keeps
    # columns 8..10 (20% visible: dropped); sample 1's box [5,5,15,15] clipped to [5,5,8,15]
    # (30% of it: dropped at 0.5, kept at 0.2)
    params = MixupParams([0.8, 1.0, 1.0], [1, 0, 2], boxes=[[0, 40, 0, 8], [0, 0, 0, 0], [0, 0, 0, 0]],
                         cutmix=[True, False, False], image_size=(40, 40))
    out = mixer(_batch(), params)
    assert out["box_counts"][0] == 1 and out["bboxes"][0, 0].tolist() == [20, 20, 30, 30]
    out = BatchMixer(detection_fields(min_visible=0.2))(_batch(), params)
    assert out["box_counts"][0] == 3
    assert out["bboxes"][0, :3].tolist() == [[8, 0, 10, 10], [20, 20, 30, 30], [5, 5, 8, 15]]
    assert out["box_weights"][0, :3].tolist() == [1, 1, 1]
    # a paste in the middle of a box: the box stays as it is (its visible part spans it)
    params = MixupParams([0.9, 1, 1], [1, 0, 2], boxes=[[3, 6, 3, 6], [0] * 4, [0] * 4], cutmix=[True, False, False],
                         image_size=(40, 40))
    out = mixer(_batch(), params)
    assert out["bboxes"][0, 0].tolist() == [0, 0, 10, 10]


def test_mask_paste_is_the_image_paste_and_keeps_ignore_index():
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 4, (4, 16, 16), generator=g)
    masks[:, :2] = 255
    params = MixupParams([0.6, 0.8, 1.0, 0.3], [1, 2, 3, 0], boxes=[[2, 9, 3, 12], [0] * 4, [4, 16, 0, 5], [0] * 4],
                         cutmix=[True, False, True, False], image_size=(16, 16))
    rule = MaskPaste(ignore_index=255, num_classes=4, soft=True)
    out = rule.apply("mask", rule.prepare("mask", masks.unsqueeze(-1).to(torch.int32)), params)
    as_image = mix_images(masks.unsqueeze(1).float(), params)[:, 0]  # the image kernel on the mask values
    cut = params.cutmix
    assert torch.equal(out["mask"][cut].float(), as_image[cut])
    assert torch.equal(out["mask"][~cut], masks[~cut]) and torch.equal(out["mask_partner"][~cut], masks[[2, 0]])
    assert (out["mask"][:, :2] == 255).all()
    soft = out["mask_soft"]
    assert soft.shape == (4, 4, 16, 16)
    assert torch.allclose(soft[:, :, 2:].sum(1), torch.ones(4, 14, 16)) and (soft[:, :, :2] == 0).all()


def test_to_torchvision_and_converters():
    out = BatchMixer(detection_fields())(_batch(), MixupParams([0.7, 1.0, 0.25], [1, 0, 0]))
    images, targets = to_torchvision(out)
    assert len(images) == 3 and images[0].shape == (3, 40, 40)
    assert [t["boxes"].shape[0] for t in targets] == [3, 1, 2] and targets[0]["labels"].dtype == torch.int64
    b = torch.tensor([[2.0, 4, 10, 20]])
    assert torch.equal(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    assert torch.allclose(denormalize_boxes(normalize_boxes(b, (40, 20)), (40, 20)), b)
    assert torch.allclose(normalize_boxes(b, (40, 20)), torch.tensor([[0.1, 0.1, 0.5, 0.5]]))


def test_box_rule_options_checked():
    with pytest.raises(ValueError, match="min_visible"):
        BoxesWithWeights(min_visible=-0.1)
    with pytest.raises(TypeError, match="weights"):
        BoxesWithWeights(weights=1)
    with pytest.raises(ValueError, match="num_classes"):
        MaskPaste(soft=True)


@pytest.mark.gpu
def test_gpu_pipeline_matches_the_cpu_one(coco):
    """Same seed on both backends: same reader order, flips and mixing params; boxes and masks
    equal, images within the resize's rounding."""
    cfg = MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="elem")
    cpu = [b[0] for b in loader(coco, mixup=cfg, seed=9, masks=True, dtype="float32")]
    gpu = [b[0] for b in loader(coco, mixup=cfg, seed=9, masks=True, dtype="float32", device="gpu")]
    assert len(cpu) == len(gpu)
    for c, g in zip(cpu, gpu):
        assert g["images"].is_cuda and g["mask"].is_cuda
        for k in ("bboxes", "labels", "box_weights", "box_counts", "image_ids", "lam", "perm"):
            assert torch.equal(c[k], g[k].cpu()), k
        assert torch.equal(c["mask"], g["mask"].cpu())
        assert (c["images"] - g["images"].cpu()).abs().max() < 0.1
