"""Training-step overhead: images/s of a real training step fed by each loader, as % of the ceiling.

What users feel: a model trains on the batches; a loader that keeps up costs nothing, one that
does not shows as a lower rate. For each model (default a torchvision ResNet-50 at 224 px and a
ResNet-18 at 160 px, random init, ``channels_last``, bf16 autocast, SGD with momentum, batch 256)
the step is the same and only the feed changes:

* ``ceiling``: one fixed batch already on the device (random images, soft targets), the same
  number of steps as an epoch of the others: the model's own rate;
* ``ours``: ``dali_mixup.create_loader`` with mixup (soft targets);
* ``dali``: DALI's ``DALIClassificationIterator`` over the same pipeline, no mixup (hard labels);
* ``dali-torch``: DALI's iterator + eager torch mixup (DeepLearningExamples' ``MixUpWrapper``);
* ``torchvision``: ``ImageFolder`` + ``DataLoader`` (all cores as workers, pinned memory) +
  ``v2.MixUp`` in the collate function;
* ``timm``: timm's ``create_dataset`` + ``create_loader`` with ``FastCollateMixup`` (uint8 mixed
  in the collate, same α and workers) and timm's ``PrefetchLoader`` (copy and normalisation on a
  side stream), as timm's ``train.py`` feeds a model; on the CPU the prefetcher normalises in
  the main process.

The loaders are the rows of ``dali-mixup bench`` (``dali_mixup.tools.bench.build_row``, peers in
``dali_mixup/tools/bench_peers.py``), on the same files (default: the built-in synthetic
ImageNet-like set, ``dali_mixup.tools.datasets.synthetic_imagenet``), so the two benchmarks
differ only by the model.

Method: every feed is built first; then rounds: each feed in turn runs whole epochs (training
steps) until ``--min-seconds`` have passed (2 s on a GPU; one epoch on the CPU), so load that
drifts reaches every feed alike. The first ``--warmup`` rounds are not timed (cuDNN autotuning,
DALI's first epoch). A measurement runs from the loader's reset to the last step's end with the
device synchronised at both ends; images/s = images trained on / seconds. Each step converts the
batch to ``channels_last`` (a copy for every feed, the ceiling included), runs forward and loss
under ``torch.autocast(bfloat16)``, ``backward`` and ``SGD.step``. Soft targets: cross-entropy
against the target distribution; hard labels: ``F.cross_entropy``. Reported per model and feed:
median images/s over the timed rounds, min..max, % of the ceiling, ratio to plain DALI; for ours
also the host milliseconds per batch in DALI's ``next`` and in mixing (``host_seconds``). Targets
(issues 12 and 26): ours >= 99 % of the ceiling on ResNet-50 and >= plain DALI on ResNet-18,
ours >= timm's loader on both.

Writes ``<out>/train-step-<hardware>[-tag].json`` with ``dali_mixup.tools.meta.metadata()``
inside (git commit, versions, CPU, GPU). On the CPU ``--model tiny`` (a 2-layer CNN), tiny
images and a few steps exercise the same code (tests/test_gpu_check.py).

    python benchmarks/train_step.py                             # GPU: ResNet-50@224 and ResNet-18@160
    python benchmarks/train_step.py --device cpu --models tiny:32 --images 16 --batch-size 8 \\
        --warmup 0 --rounds 1 --workers 1                       # CPU smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

SCHEMA = "dali-mixup-train-step/1"
FEEDS = ("ceiling", "ours", "dali", "dali-torch", "torchvision", "timm")
LABELS = {
    "ceiling": "one fixed batch on the device (ceiling)",
    "ours": "dali-mixup iterator (ours)",
    "dali": "plain DALI iterator, no mixup",
    "dali-torch": "DALI + eager torch mixup",
    "torchvision": "torchvision DataLoader + v2.MixUp",
    "timm": "timm create_loader + FastCollateMixup + prefetcher",
}
#: (model, against, minimum ratio of the medians), checked where both were measured
TARGETS = {"resnet50": [("ours", "ceiling", 0.99), ("ours", "timm", 1.0)],
           "resnet18": [("ours", "dali", 1.0), ("ours", "timm", 1.0)]}


def _model_list(text: str) -> List[Tuple[str, int]]:
    out = []
    for item in text.split(","):
        name, _, size = item.strip().partition(":")
        if name not in ("resnet50", "resnet18", "tiny") or not size.isdigit() or int(size) < 8:
            raise argparse.ArgumentTypeError(f"expected MODEL:SIZE with MODEL resnet50|resnet18|tiny, got {item!r}")
        out.append((name, int(size)))
    return out


def _feed_list(text: str) -> List[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in FEEDS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown feed(s) {bad or text!r}; choose from {', '.join(FEEDS)}")
    return names


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", metavar="PATH", help="ImageFolder root, file list or shards (default: the built-in set)")
    p.add_argument("--images", type=int, default=4096, help="size of the built-in set (default 4096)")
    p.add_argument("--classes", type=int, default=10, help="classes of the built-in set (default 10)")
    p.add_argument("--models", type=_model_list, default=_model_list("resnet50:224,resnet18:160"),
                   help="MODEL:SIZE,... (default resnet50:224,resnet18:160; tiny:32 for a CPU smoke run)")
    p.add_argument("--feeds", type=_feed_list, default=list(FEEDS), help=f"comma-separated, from {','.join(FEEDS)}")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto")
    p.add_argument("--workers", type=int, help="DALI threads and DataLoader workers (default: all cores)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    p.add_argument("--min-seconds", type=float, help="a measurement runs whole epochs lasting at least this "
                   "(default 2 on a GPU, 0 = one epoch on the CPU)")
    p.add_argument("--alpha", type=float, default=1.0, help="mixup Beta(alpha, alpha) (default 1.0, as the bench)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench-out", help="where the JSON goes (default bench-out)")
    p.add_argument("--tag", default="")
    return p.parse_args(argv)


# --- model and step ----------------------------------------------------------------------------


def build_model(name: str, num_classes: int, device):
    import torch

    if name == "tiny":
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, num_classes))
    else:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    return model.to(device=device, memory_format=torch.channels_last).train()


class Trainer:
    """One model, its optimizer and its step: channels_last, bf16 autocast, SGD."""

    def __init__(self, name: str, num_classes: int, device, lr: float):
        import torch

        self.device = device
        self.model = build_model(name, num_classes, device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-5)
        self.num_classes = num_classes

    def step(self, x, y) -> None:
        import torch
        import torch.nn.functional as F

        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
            logits = self.model(x)
        logits = logits.float()
        if y.dim() == 2 and y.shape[1] == self.num_classes and y.is_floating_point():
            loss = torch.sum(-y * F.log_softmax(logits, dim=1), dim=1).mean()
        else:
            loss = F.cross_entropy(logits, y.reshape(-1).long())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


# --- feeds -------------------------------------------------------------------------------------


class FixedBatch:
    """The ceiling: the same batch, already on the device, ``batches`` times per epoch."""

    def __init__(self, batch_size: int, image_size: int, num_classes: int, batches: int, device, seed: int):
        import torch

        g = torch.Generator().manual_seed(seed)
        x = torch.randn((batch_size, 3, image_size, image_size), generator=g)
        y = torch.nn.functional.one_hot(torch.randint(0, num_classes, (batch_size,), generator=g), num_classes).float()
        y = 0.7 * y + 0.3 * y.roll(1, 0)
        self.x, self.y, self.batches = x.to(device), y.to(device), batches

    def __len__(self):
        return self.batches

    def __iter__(self):
        for _ in range(self.batches):
            yield [{"data": self.x, "label": self.y}]


class Feed:
    """A row's loader run one epoch at a time (DALI iterators reset at the next epoch's start,
    inside the timed region, as ``dali-mixup bench`` does)."""

    def __init__(self, name: str, loader, device):
        self.name, self.loader, self.device = name, loader, device
        self.epochs_run = 0

    def epoch(self, trainer: Trainer) -> Tuple[int, int]:
        if self.epochs_run and hasattr(self.loader, "reset"):
            self.loader.reset()
        images = steps = 0
        for batch in self.loader:
            b = batch[0]
            x, y = b["data"], b["label"]
            if y.device != x.device:
                y = y.to(x.device, non_blocking=True)
            trainer.step(x, y)
            images += int(x.shape[0])
            steps += 1
        self.epochs_run += 1
        return images, steps

    def measure(self, trainer: Trainer, min_seconds: float) -> Dict[str, Any]:
        host = getattr(self.loader, "host_seconds", None)
        host0 = dict(host) if host is not None else None
        _sync(self.device)
        t0 = time.perf_counter()
        images = steps = epochs = 0
        while epochs == 0 or time.perf_counter() - t0 < min_seconds:
            i, s = self.epoch(trainer)
            images, steps, epochs = images + i, steps + s, epochs + 1
        _sync(self.device)
        seconds = time.perf_counter() - t0
        m = {"images": images, "steps": steps, "epochs": epochs, "seconds": seconds,
             "images_per_s": images / seconds, "ms_per_step": 1e3 * seconds / max(steps, 1)}
        if host0 is not None:
            n = max(host["batches"] - host0["batches"], 1)
            m["host_ms_per_batch"] = {k: 1e3 * (host[k] - host0[k]) / n for k in ("dali", "mix")}
        return m


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _bench_args(args, image_size: int, workers: int) -> argparse.Namespace:
    """What ``dali_mixup.tools.bench.build_row`` and ``resolve_data`` read (timm's feed with its
    prefetcher on every device: a float batch the model can take)."""
    return argparse.Namespace(data=args.data, images=args.images, classes=args.classes, seed=args.seed,
                              progress=False, workers=workers, image_size=image_size, batch_size=args.batch_size,
                              dtype="float32", alpha=args.alpha, cutmix=None, timm_prefetcher=True)


def run_model(args, model: str, image_size: int, data, dev: str, device, workers: int) -> Dict[str, Any]:
    import torch

    from dali_mixup.tools import bench

    num_classes = data["source"].num_classes
    bargs = _bench_args(args, image_size, workers)
    result: Dict[str, Any] = {"model": model, "image_size": image_size, "feeds": {}}
    feeds: Dict[str, Feed] = {}
    batches = None
    for name in args.feeds:
        row: Dict[str, Any] = {"label": LABELS[name], "status": "ok", "note": "", "rounds": []}
        result["feeds"][name] = row
        if name == "ceiling":
            continue
        t0 = time.perf_counter()
        try:
            loader = bench.build_row(name, bargs, data, dev, num_classes)
        except ImportError as e:
            row.update(status="skipped", note=f"not installed: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - one broken feed is reported, the others still run
            row.update(status="failed", note=f"{type(e).__name__}: {e}")
            continue
        if isinstance(loader, str):
            row.update(status="skipped", note=loader)
            continue
        row["build_seconds"] = time.perf_counter() - t0
        feeds[name] = Feed(name, loader, device)
        if batches is None and hasattr(loader, "__len__"):
            batches = len(loader)
    if "ceiling" in args.feeds:
        n_img = data["info"].get("num_images") or args.batch_size
        batches = batches or max(1, n_img // args.batch_size)
        feeds = {"ceiling": Feed("ceiling", FixedBatch(args.batch_size, image_size, num_classes, batches, device,
                                                         args.seed), device), **feeds}
    torch.manual_seed(args.seed)
    trainer = Trainer(model, num_classes, device, args.lr)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    for rnd in range(args.warmup + args.rounds):
        for name, feed in list(feeds.items()):
            try:
                m = feed.measure(trainer, args.min_seconds)
            except Exception as e:  # noqa: BLE001
                result["feeds"][name].update(status="failed", note=f"{type(e).__name__}: {e}")
                del feeds[name]
                continue
            m["round"] = rnd
            print(f"  {model}@{image_size} round {rnd + 1}/{args.warmup + args.rounds}"
                  f"{' (warm-up)' if rnd < args.warmup else ''} {name:<12} {m['images_per_s']:9.0f} img/s "
                  f"({m['steps']} steps, {m['seconds']:.2f} s)", flush=True)
            if rnd >= args.warmup:
                result["feeds"][name]["rounds"].append(m)
    feeds.clear()
    del trainer
    _summarize(result)
    return result


def _summarize(result: Dict[str, Any]) -> None:
    med = {}
    for name, row in result["feeds"].items():
        if row["status"] == "ok" and row["rounds"]:
            rates = [r["images_per_s"] for r in row["rounds"]]
            m = statistics.median(rates)
            row["images_per_s"] = {"median": m, "min": min(rates), "max": max(rates),
                                   "spread_pct": 100.0 * (max(rates) - min(rates)) / m}
            med[name] = m
            hosts = [r["host_ms_per_batch"] for r in row["rounds"] if "host_ms_per_batch" in r]
            if hosts:
                row["host_ms_per_batch"] = {k: statistics.median(h[k] for h in hosts) for k in ("dali", "mix")}
        elif row["status"] == "ok":
            row.update(status="failed", note=row["note"] or "no timed round")
    for name, row in result["feeds"].items():
        if name in med:
            row["share_of_ceiling"] = med[name] / med["ceiling"] if "ceiling" in med else None
            row["ratio_to_dali"] = med[name] / med["dali"] if "dali" in med else None
    checks = []
    for a, b, ratio in TARGETS.get(result["model"], []):
        got = med[a] / med[b] if a in med and b in med else None
        checks.append({"row": a, "against": b, "target_ratio": ratio, "ratio": got,
                       "met": None if got is None else got >= ratio})
    result["targets"] = checks


def format_table(result: Dict[str, Any]) -> str:
    lines = [f"{result['model']} @ {result['image_size']} px:",
             f"  {'feed':<42} {'images/s':>9} {'min..max':>15} {'% ceiling':>9} {'x DALI':>7}"]
    for name, row in result["feeds"].items():
        if row["status"] != "ok":
            lines.append(f"  {row['label']:<42} {row['status']}: {row['note']}")
            continue
        s = row["images_per_s"]
        sc = f"{100 * row['share_of_ceiling']:.1f}%" if row.get("share_of_ceiling") else "-"
        rd = f"{100 * row['ratio_to_dali']:.1f}%" if row.get("ratio_to_dali") else "-"
        lines.append(f"  {row['label']:<42} {s['median']:9.0f} {s['min']:7.0f}..{s['max']:<7.0f} {sc:>9} {rd:>7}")
    for c in result["targets"]:
        got = "not measured" if c["ratio"] is None else f"{c['ratio']:.3f} {'met' if c['met'] else 'MISSED'}"
        lines.append(f"  target {c['row']} >= {c['target_ratio']:g} x {c['against']}: {got}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from dali_mixup.options import resolve_device
    from dali_mixup.tools import bench
    from dali_mixup.tools.meta import cpu_cores, hardware_slug, metadata, slug

    dev = resolve_device(args.device)
    device = torch.device("cuda", torch.cuda.current_device()) if dev == "gpu" else torch.device("cpu")
    if args.min_seconds is None:
        args.min_seconds = 2.0 if dev == "gpu" else 0.0
    workers = args.workers or cpu_cores()
    data = bench.resolve_data(_bench_args(args, 224, workers))
    meta = metadata()
    print(f"train_step: {data['info'].get('num_images', '?')} images, batch {args.batch_size}, device {dev}, "
          f"{workers} workers; {args.warmup} warm-up + {args.rounds} timed rounds (whole epochs lasting >= "
          f"{args.min_seconds:g} s)", flush=True)
    options = {k: v for k, v in vars(args).items()}
    options.update(device_resolved=dev, workers_resolved=workers)
    out = {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "method": __doc__, "options": options, "metadata": meta, "hardware": hardware_slug(meta),
           "dataset": data["info"], "models": []}
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    path = path / (f"train-step-{out['hardware']}" + (f"-{slug(args.tag)}" if args.tag else "") + ".json")
    results = out["models"]
    for model, size in args.models:
        results.append(run_model(args, model, size, data, dev, device, workers))
        print(format_table(results[-1]), flush=True)
        # written after each model, so a run stopped in the second keeps the first
        path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {path}")
    failed = any(r["status"] == "failed" for m in results for r in m["feeds"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
