"""Manifold mixup with the differentiable mix, on scikit-learn's handwritten digits.

Manifold mixup (Verma et al. 2019, https://arxiv.org/abs/1806.05236) mixes the hidden state of a
layer picked at random per batch (the input counts as layer 0) and trains on the mixed soft
targets. Here the mix is ``dali_mixup.autograd.mix`` (the CPU twin of the CUDA kernel forward,
one-pass backward) and the targets ``mix_targets``, with the params of one ``MixupSampler``.

Arms, same model (MLP 64-128-128-10 on the raw 8x8 digits, scaled to [0, 1]), same budget and
seeds: no mixup; input mixup (layer 0 only); manifold mixup (layer 0, 1 or 2). α = 2.0 as in
the paper's manifold mixup runs. The split is the project's (``dali_mixup.tools.digits``:
1,347 train / 450 test, stratified, seed 0). Reported: last-epoch test accuracy and NLL, mean ±
sample std over seeds, and each run — as measured, whichever arm wins.

Usage::

    python examples/manifold_mixup.py [--out examples/results] [--epochs 60] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dali_mixup import MixupConfig  # noqa: E402
from dali_mixup.autograd import mix  # noqa: E402
from dali_mixup.mix import mix_targets  # noqa: E402
from dali_mixup.sampler import MixupSampler  # noqa: E402
from dali_mixup.tools.digits import split_indices  # noqa: E402

ARMS = {"no mixup": None, "input mixup": (0,), "manifold mixup": (0, 1, 2)}


class MLP(torch.nn.Module):
    def __init__(self, width=128):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(64, width), torch.nn.Linear(width, width)])
        self.head = torch.nn.Linear(width, 10)

    def forward(self, x, params=None, layer=None):
        """``layer`` k: mix the input of ``self.layers[k]`` (k = 2: the head's input)."""
        h = x
        for k, lin in enumerate(self.layers):
            if params is not None and k == layer:
                h = mix(h, params)
            h = F.relu(lin(h))
        if params is not None and layer == len(self.layers):
            h = mix(h, params)
        return self.head(h)


def load():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.int64)
    train, test = split_indices(d.target)
    return x[train], y[train], x[test], y[test]


def run(arm, seed, data, epochs, batch_size, alpha):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    sampler = MixupSampler(MixupConfig(alpha=alpha), seed=seed)
    layers = ARMS[arm]
    rng = np.random.default_rng(seed)
    n = len(xtr)
    for _ in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(n))
        for s in range(0, n - batch_size + 1, batch_size):
            idx = order[s : s + batch_size]
            x, y = xtr[idx], ytr[idx]
            if layers is None:
                loss = F.cross_entropy(model(x), y)
            else:
                params = sampler.sample(len(idx))
                layer = int(rng.choice(layers))
                logits = model(x, params, layer)
                target = mix_targets(y, params, 10)
                loss = -(target * F.log_softmax(logits, 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        logits = model(xte)
    return {"arm": arm, "seed": seed, "accuracy": float((logits.argmax(1) == yte).float().mean()),
            "nll": float(F.cross_entropy(logits, yte))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load()
    t0 = time.perf_counter()
    runs = [run(arm, seed, data, args.epochs, args.batch_size, args.alpha) for arm in ARMS for seed in args.seeds]
    wall = time.perf_counter() - t0
    summary = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        summary[arm] = {k: {"mean": statistics.fmean(r[k] for r in rs),
                            "std": statistics.stdev(r[k] for r in rs) if len(rs) > 1 else 0.0,
                            "min": min(r[k] for r in rs), "max": max(r[k] for r in rs)} for k in ("accuracy", "nll")}
    try:
        from dali_mixup.tools.meta import metadata

        meta = metadata()
    except Exception as e:  # pragma: no cover
        meta = {"error": str(e)}
    lines = [f"Digits (scikit-learn 8x8, 1,347 train / 450 test), MLP 64-128-128-10, {args.epochs} epochs, "
             f"batch {args.batch_size}, α = {args.alpha}, seeds {args.seeds}; last-epoch test metrics, "
             "mean ± std [min, max].", "", "| arm | test accuracy (%) | test NLL |", "|---|---|---|"]
    for arm, s in summary.items():
        a, l = s["accuracy"], s["nll"]
        lines.append(f"| {arm} | {100 * a['mean']:.2f} ± {100 * a['std']:.2f} [{100 * a['min']:.2f}, "
                     f"{100 * a['max']:.2f}] | {l['mean']:.4f} ± {l['std']:.4f} [{l['min']:.4f}, {l['max']:.4f}] |")
    lines += ["", f"Wall time {wall:.0f} s on {meta.get('cpu', {}).get('model', '?')} "
              f"({meta.get('cpu', {}).get('cores', '?')} cores, 1 torch thread).", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "manifold_mixup.md").write_text("\n".join(lines))
    (args.out / "manifold_mixup.json").write_text(json.dumps(
        {"settings": vars(args) | {"out": str(args.out)}, "arms": {k: list(v) if v else None for k, v in ARMS.items()},
         "runs": runs, "summary": summary, "wall_s": wall, "meta": meta}, indent=2, default=str))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
