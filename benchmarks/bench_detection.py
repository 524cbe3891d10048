"""Images/s of the DALI detection loader with mixup against a CPU baseline, in one run.

Ours: ``create_detection_loader`` (COCO reader, decode, resize to the canvas, flip with boxes,
normalise in DALI; mixup with box weights by the core's ``BatchMixer``; GPU when there is
one). Baseline: a ``torch.utils.data.DataLoader`` with one worker per core running torchvision
v2 detection transforms (``decode_image``, ``Resize``, ``RandomHorizontalFlip`` on
``tv_tensors.BoundingBoxes``, ``ToDtype``, ``Normalize``) and YOLOv5-style mixup in the collate
(r ~ Beta(32, 32), images blended, box lists concatenated).

Method: synthetic JPEGs with drawn boxes and their COCO JSON written to a temporary folder (fixed
seed); both loaders produce the same canvas and dtype; per loader one warm-up epoch, then
``--repeats`` timed epochs (on a GPU the device is synchronised inside the timed region);
median and spread of images/s. The JSON carries git commit, versions, CPU model, cores, GPU.

    python benchmarks/bench_detection.py --out benchmarks/results [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dali_mixup import MixupConfig  # noqa: E402
from dali_mixup.tools import meta  # noqa: E402


def write_data(folder: str, count: int, seed: int = 0):
    """``count`` JPEGs of 320..480 x 240..360 px with 1-6 filled boxes, and instances.json."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = os.path.join(folder, "images")
    os.makedirs(root, exist_ok=True)
    images, anns = [], []
    for i in range(count):
        w, h = int(rng.integers(320, 481)), int(rng.integers(240, 361))
        a = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        for j in range(int(rng.integers(1, 7))):
            bw, bh = int(rng.integers(16, w // 3)), int(rng.integers(16, h // 3))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            a[y:y + bh, x:x + bw] = rng.integers(100, 256, 3)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=int(rng.integers(1, 11)),
                             bbox=[x, y, bw, bh], area=bw * bh, iscrowd=0))
        Image.fromarray(a).save(os.path.join(root, f"{i:05d}.jpg"), quality=90)
        images.append(dict(id=i + 1, file_name=f"{i:05d}.jpg", width=w, height=h))
    path = os.path.join(folder, "instances.json")
    with open(path, "w") as f:
        json.dump(dict(images=images, annotations=anns, categories=[dict(id=c, name=str(c)) for c in range(1, 11)]), f)
    return root, path


class _CocoDataset(torch.utils.data.Dataset):
    def __init__(self, root, path, canvas):
        from torchvision.transforms import v2

        data = json.load(open(path))
        self.root, self.images = root, data["images"]
        self.anns = {im["id"]: [] for im in self.images}
        for a in data["annotations"]:
            self.anns[a["image_id"]].append(a)
        self.tf = v2.Compose([v2.Resize((canvas, canvas), antialias=True), v2.RandomHorizontalFlip(0.5),
                              v2.ToDtype(torch.float32, scale=True),
                              v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from torchvision import tv_tensors
        from torchvision.io import decode_image, read_file

        im = self.images[i]
        img = tv_tensors.Image(decode_image(read_file(os.path.join(self.root, im["file_name"]))))
        anns = self.anns[im["id"]]
        boxes = tv_tensors.BoundingBoxes([a["bbox"] for a in anns], format="XYWH", canvas_size=img.shape[-2:])
        img, boxes = self.tf(img, boxes)
        from torchvision.ops import box_convert

        return img, box_convert(boxes.as_subclass(torch.Tensor), "xywh", "xyxy"), \
            torch.tensor([a["category_id"] for a in anns])


def _yolov5_collate(samples):
    """Stack, then YOLOv5 mixup: r ~ Beta(32, 32), x = r·x + (1−r)·x[perm], boxes concatenated."""
    images = torch.stack([s[0] for s in samples])
    n = images.shape[0]
    perm = torch.roll(torch.arange(n), 1)
    r = torch.from_numpy(np.random.beta(32.0, 32.0, size=n).astype(np.float32)).view(n, 1, 1, 1)
    images = images * r + images[perm] * (1 - r)
    boxes = [torch.cat([samples[i][1], samples[int(perm[i])][1]]) for i in range(n)]
    labels = [torch.cat([samples[i][2], samples[int(perm[i])][2]]) for i in range(n)]
    return images, boxes, labels


def _time_epochs(make_iter, repeats, images_per_epoch, sync):
    rates = []
    for r in range(repeats + 1):  # the first epoch warms up
        sync()
        t0 = time.perf_counter()
        seen = 0
        for images in make_iter():
            seen += images.shape[0]
        sync()
        dt = time.perf_counter() - t0
        assert seen == images_per_epoch, (seen, images_per_epoch)
        if r:
            rates.append(seen / dt)
    return rates


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for the JSON result")
    ap.add_argument("--quick", action="store_true", help="small run (< 1 min on 2 cores)")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--canvas", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    args = ap.parse_args(argv)
    count = args.images or (64 if args.quick else 256)
    repeats = args.repeats or (2 if args.quick else 4)
    busy_before = meta.cpu_busy(1.0)  # other work on the machine skews both rows
    cores = meta.cpu_cores()
    from dali_mixup.kinds.detection import create_detection_loader, yolov5_preset

    with tempfile.TemporaryDirectory() as tmp:
        root, path = write_data(tmp, count)
        ours = create_detection_loader(root, path, batch_size=args.batch_size, canvas=args.canvas, fit="stretch",
                                       device=args.device, num_threads=cores, seed=0, **yolov5_preset())
        cuda = ours._pipes[0].device_id is not None
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        rows = {}
        rows["dali_mixup"] = _time_epochs(lambda: (b[0]["images"] for b in ours), repeats, count, sync)
        ds = _CocoDataset(root, path, args.canvas)
        dl = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=cores,
                                         collate_fn=_yolov5_collate, persistent_workers=True)
        torch.manual_seed(0)
        np.random.seed(0)
        rows["torchvision_v2_dataloader"] = _time_epochs(lambda: (b[0] for b in dl), repeats, count, lambda: None)
        del ours, dl
    md = meta.metadata()
    result = {
        "benchmark": "detection loader with mixup, images/s",
        "method": "one warm-up epoch then timed epochs, median and min/max; synthetic JPEGs 320-480 x 240-360",
        "config": dict(images=count, batch_size=args.batch_size, canvas=args.canvas, repeats=repeats,
                       device="gpu" if cuda else "cpu", quick=args.quick, mixup="yolov5 preset Beta(32,32)"),
        "results": {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v} for k, v in rows.items()},
        "meta": md,
        "load": {"cpu_busy_before": busy_before, "loadavg_after": list(os.getloadavg())},
    }
    result["speedup"] = result["results"]["dali_mixup"]["median"] / result["results"]["torchvision_v2_dataloader"]["median"]
    os.makedirs(args.out, exist_ok=True)
    md["git"]["commit"] = md["git"].get("commit") or os.environ.get("GIT_COMMIT")  # a tree copied without history
    name = f"bench_detection-{meta.hardware_slug(md)}{'-quick' if args.quick else ''}.json"
    with open(os.path.join(args.out, name), "w") as f:
        json.dump(result, f, indent=2)
    for k, v in result["results"].items():
        print(f"{k:28s} {v['median']:8.1f} img/s  (min {v['min']:.1f}, max {v['max']:.1f})")
    print(f"speedup {result['speedup']:.2f}x -> {os.path.join(args.out, name)}")
    return result


if __name__ == "__main__":
    main()
