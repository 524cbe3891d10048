"""Volumes/s of the volume loader against a MONAI-style CPU baseline, and forward+backward time
of the differentiable mix against eager torch autograd. Both in the same run, same data.

Method:

* Data: ``--volumes`` ``.npy`` files ``(1, S, S, S)`` float32 written to a temporary folder
  (seeded), two classes; every arm crops ``--crop`` cubes, flips each axis with p = 0.5 and
  mixes with mixup α = 0.4 / CutMix α = 1 (switch 0.5).
* ``dali_mixup``: ``create_volume_loader`` (DALI numpy reader + crop + flips on the CPU, cuboid
  CutMix by the CPU twin), ``num_threads`` = all cores.
* baseline: a torch ``DataLoader`` with ``num_workers`` = all cores over a ``Dataset`` that does
  ``np.load`` + random crop + flips (what a MONAI ``Compose`` of ``LoadImage``, ``RandSpatialCrop``,
  ``RandFlip`` does per sample), then per batch MONAI's ``MixUp``/``CutMix`` when MONAI is
  installed, eager torch ``λ·x + (1−λ)·x[perm]`` and a box paste otherwise (recorded).
* Each arm: one warm-up epoch, then ``--epochs`` timed epochs; volumes/s per epoch, median and
  [min, max] reported.
* Differentiable mix: ``(N, L, E)`` float32 embeddings requiring grad; ``autograd.mix`` +
  ``backward`` against eager ``lam*x + (1-lam)*x[perm]`` + ``backward``; ``--repeats`` timings
  after 3 warm-ups, median; CUDA (when present) synchronised inside the timed region.

Usage::

    python benchmarks/bench_volume.py --out benchmarks/results [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dali_mixup import MixupConfig  # noqa: E402
from dali_mixup.autograd import mix  # noqa: E402
from dali_mixup.sampler import MixupSampler  # noqa: E402


def _meta():
    try:
        from dali_mixup.tools import meta

        m = meta.metadata()
        return m, meta.hardware_slug(m)
    except Exception as e:  # the tools package is optional for this script
        import platform

        m = {"error": f"dali_mixup.tools.meta unavailable: {e}", "python": platform.python_version(),
             "cpu": {"model": platform.processor(), "cores": os.cpu_count()},
             "versions": {"torch": torch.__version__, "numpy": np.__version__}}
        return m, f"{os.cpu_count()}c"


def write_volumes(root: pathlib.Path, n: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    files = []
    for k in range(n):
        d = root / f"c{k % 2}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"v{k:04d}.npy"
        np.save(p, rng.random((1, size, size, size), dtype=np.float32))
        files.append((str(p), k % 2))
    return files


class NumpyVolumes(torch.utils.data.Dataset):
    """The MONAI-style per-sample path: load, random crop, random flips (NumPy)."""

    def __init__(self, files, crop):
        self.files, self.crop = files, crop

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path, label = self.files[i]
        rng = np.random.default_rng()
        v = np.load(path)
        starts = [int(rng.integers(0, s - c + 1)) for s, c in zip(v.shape[1:], self.crop)]
        v = v[(slice(None),) + tuple(slice(s, s + c) for s, c in zip(starts, self.crop))]
        for axis in (1, 2, 3):
            if rng.random() < 0.5:
                v = np.flip(v, axis)
        return torch.from_numpy(np.ascontiguousarray(v)), label


def baseline_mixer(batch_size):
    try:
        from monai.transforms import CutMix, MixUp

        mixup, cutmix = MixUp(batch_size, alpha=0.4), CutMix(batch_size, alpha=1.0)

        def apply(x, y):
            m = cutmix if np.random.random() < 0.5 else mixup
            m.randomize(x)
            return m.apply(x), y

        return apply, "monai.transforms MixUp/CutMix (one draw per batch, switch 0.5)"
    except ImportError:
        def apply(x, y):
            n = x.shape[0]
            lam = torch.distributions.Beta(0.4, 0.4).sample((n,)).view(-1, 1, 1, 1, 1)
            perm = torch.randperm(n)
            return lam * x + (1 - lam) * x[perm], y

        return apply, "eager torch mixup (MONAI not installed)"


def epochs_rate(make_epoch, epochs, count):
    make_epoch()  # warm-up
    rates = []
    for _ in range(epochs):
        t = time.perf_counter()
        make_epoch()
        rates.append(count / (time.perf_counter() - t))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "per_epoch": rates}


def bench_loaders(files, crop, batch_size, epochs, cores, device="cpu"):
    from dali_mixup.kinds.volume import create_volume_loader

    cfg = MixupConfig(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, num_classes=2)
    it = create_volume_loader(files=files, batch_size=batch_size, crop=crop, mixup=cfg, num_threads=cores, seed=0,
                              device=device)

    def ours():
        for (b,) in it:
            b["data"].sum().item()  # touch (and, on a GPU, wait for the batch)

    mixer, mixer_name = baseline_mixer(batch_size)
    dl = torch.utils.data.DataLoader(NumpyVolumes(files, crop), batch_size=batch_size, shuffle=True,
                                     num_workers=cores, persistent_workers=True, drop_last=True)

    def baseline():
        for x, y in dl:
            out, _ = mixer(x, y)
            torch.as_tensor(out).sum()

    n_ours = len(files)
    n_base = len(files) // batch_size * batch_size
    res = {"dali_mixup": epochs_rate(ours, epochs, n_ours), "baseline": epochs_rate(baseline, epochs, n_base)}
    res["baseline"]["mixer"] = mixer_name
    res["ratio_median"] = res["dali_mixup"]["median"] / res["baseline"]["median"]
    return res


def time_fn(fn, repeats, device):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ts.append(time.perf_counter() - t)
    return {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts)}


def bench_autograd(shape, repeats, device):
    params = MixupSampler(MixupConfig(alpha=0.4), seed=0).sample(shape[0])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(device).requires_grad_()
    grad = torch.randn(shape, generator=g).to(device)
    lam = params.lam.to(device).view(-1, *([1] * (len(shape) - 1)))
    perm = params.perm.to(device)

    def ours():
        x.grad = None
        mix(x, params).backward(grad)

    def eager():
        x.grad = None
        (lam * x + (1 - lam) * x[perm]).backward(grad)

    res = {"shape": list(shape), "dtype": "float32", "device": str(device),
           "dali_mixup": time_fn(ours, repeats, device), "eager_torch": time_fn(eager, repeats, device)}
    res["speedup_median"] = res["eager_torch"]["median_ms"] / res["dali_mixup"]["median_ms"]
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true", help="small data, few epochs: under a minute")
    p.add_argument("--volumes", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="S of the (1, S, S, S) files")
    p.add_argument("--crop", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"],
                   help="where our loader crops, flips and mixes (the reader stays on the CPU)")
    args = p.parse_args(argv)
    if args.device == "gpu" and not torch.cuda.is_available():
        p.error("--device gpu: torch sees no CUDA GPU")
    device = ("gpu" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    volumes = args.volumes or (32 if args.quick else 128)
    size = args.size or (40 if args.quick else 80)
    crop = args.crop or (32 if args.quick else 64)
    epochs = args.epochs or (2 if args.quick else 5)
    repeats = args.repeats or (10 if args.quick else 30)
    meta, slug = _meta()
    cores = meta.get("cpu", {}).get("cores") or os.cpu_count()
    result = {"benchmark": "bench_volume", "quick": args.quick, "meta": meta,
              "settings": {"device": device, "volumes": volumes, "file_shape": [1, size, size, size], "crop": [crop] * 3,
                           "batch_size": args.batch_size, "epochs": epochs, "repeats": repeats, "workers": cores}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        files = write_volumes(pathlib.Path(tmp), volumes, size)
        result["loader_volumes_per_s"] = bench_loaders(files, (crop, crop, crop), args.batch_size, epochs, cores,
                                                     device)
    emb = (64, 128, 256) if args.quick else (256, 128, 512)
    result["mix_forward_backward"] = [bench_autograd(emb, repeats, torch.device("cpu"))]
    if torch.cuda.is_available():
        result["mix_forward_backward"].append(bench_autograd((1024, 128, 768), repeats, torch.device("cuda")))
    else:
        result["mix_forward_backward_cuda"] = "skipped: no CUDA GPU"
    result["wall_s"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    git = meta.setdefault("git", {})
    git["commit"] = git.get("commit") or os.environ.get("GIT_COMMIT")  # a tree copied without history
    name = f"bench_volume-{slug}-{str(git['commit'] or 'nogit')[:7]}{'-quick' if args.quick else ''}.json"
    (args.out / name).write_text(json.dumps(result, indent=2, default=str))
    lv = result["loader_volumes_per_s"]
    print(f"loader: dali_mixup {lv['dali_mixup']['median']:.1f} vol/s, baseline {lv['baseline']['median']:.1f} vol/s "
          f"({lv['baseline']['mixer']}), ratio {lv['ratio_median']:.2f}")
    for r in result["mix_forward_backward"]:
        print(f"mix fwd+bwd {r['shape']} {r['device']}: dali_mixup {r['dali_mixup']['median_ms']:.2f} ms, "
              f"eager {r['eager_torch']['median_ms']:.2f} ms (x{r['speedup_median']:.2f})")
    print(f"wrote {args.out / name} ({result['wall_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
