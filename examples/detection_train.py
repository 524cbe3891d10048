"""Train a torchvision Faster R-CNN (small MobileNetV3 backbone, random init, nothing downloaded)
for a few steps on generated COCO data through ``create_detection_loader`` with mixup and CutMix.

It shows the loader plugs in: ``to_torchvision`` gives the model its list of images and list of
target dicts; the loss of each box could be weighted by ``target["weights"]`` (λ own, 1 − λ the
partner's), which torchvision's built-in losses do not do, so here they are logged only.

    python examples/detection_train.py [--steps 6] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from bench_detection import write_data  # noqa: E402  (the benchmark's generated COCO set)

from dali_mixup import MixupConfig  # noqa: E402
from dali_mixup.kinds.detection import create_detection_loader, to_torchvision  # noqa: E402


def model(num_classes: int, canvas: int):
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    # weights=None, weights_backbone=None: random init, no download
    return fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=num_classes,
                                                 min_size=canvas, max_size=canvas)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--canvas", type=int, default=192)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root, path = write_data(tmp, args.images)
        loader = create_detection_loader(
            root, path, batch_size=args.batch_size, canvas=args.canvas, fit="letterbox", device=args.device,
            mixup=MixupConfig(alpha=1.5, cutmix_alpha=1.0, switch_prob=0.5, mode="elem"), seed=0,
            last_batch_policy="DROP")
        dev = torch.device("cuda") if loader._pipes[0].device_id is not None else torch.device("cpu")
        net = model(loader.num_classes, args.canvas).to(dev).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        step, t0 = 0, time.perf_counter()
        while step < args.steps:
            for (batch,) in loader:
                images, targets = to_torchvision(batch, device=dev)
                losses = net(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
                loss = sum(losses.values())
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                weights = torch.cat([t["weights"] for t in targets])
                print(f"step {step}: loss {loss.item():.3f} ({', '.join(f'{k} {v.item():.3f}' for k, v in losses.items())}); "
                      f"{int(batch['box_counts'].sum())} boxes, mean weight {weights.mean().item():.2f}, "
                      f"CutMix samples {int(batch['cutmix'].sum())}")
                if step >= args.steps:
                    break
        print(f"{step} steps in {time.perf_counter() - t0:.1f} s on {dev}")
        del loader


if __name__ == "__main__":
    main()
