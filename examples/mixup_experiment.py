"""Does mixup help on real data? Train with and without it on scikit-learn's handwritten digits.

Every arm gets the same budget (model, epochs, batch size, learning rate schedule, augmentation)
and the same seeds; the only difference is the mixup setting. Each run is ``dali-mixup train``
(``dali_mixup/tools/train.py``) in its own process, so the numbers are what a user of that command
gets. The metrics are those of the last epoch on the held-out test split (450 images):
accuracy, negative log-likelihood (NLL) and expected calibration error (ECE, 15 bins).

Writes to ``--out`` (default ``examples/results/``):

* ``mixup_digits.md``: the table, mean ± sample standard deviation over seeds, and [min, max];
* ``mixup_digits.json``: every run's per-epoch history, the summary, the exact settings, the
  machine (CPU model, cores, versions, git commit) and the wall time;
* ``mixup_digits.png``: test accuracy, NLL and ECE per epoch (mean line, min-max band) and the
  reliability diagram of the last epoch, pooled over seeds.

Reproduce (10.4 minutes for the committed results, on 2 CPU cores shared with other work)::

    python examples/mixup_experiment.py
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent

# The shared budget. Small CNN on 32x32 digits; chosen so that the whole experiment runs on
# 2 CPU cores in under 15 minutes.
COMMON = [
    "--model", "small-cnn", "--width", "16", "--image-size", "32", "--scale", "0.5", "1.0", "--flip-prob", "0",
    "--epochs", "30", "--batch-size", "64", "--lr", "0.1", "--weight-decay", "5e-4",
    "--warmup-epochs", "1", "--val-resize", "32", "--device", "cpu", "--threads", "1", "--torch-threads", "1", "--quiet",
]
# The arms: name -> the extra train options. α = 0.2 is the ImageNet setting of the mixup paper,
# α = 1.0 its CIFAR setting.
ARMS = {
    "no mixup": ["--mixup-alpha", "0"],
    "mixup α=0.2": ["--mixup-alpha", "0.2"],
    "mixup α=1.0": ["--mixup-alpha", "1.0"],
}
METRICS = (("accuracy", "test accuracy", True), ("nll", "test NLL", False), ("ece", "test ECE (15 bins)", False))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=pathlib.Path, default=None, help="digits ImageFolder, written if missing (default: ~/.cache/dali-mixup/datasets/digits-32)")
    p.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    p.add_argument("--runs-dir", type=pathlib.Path, default=None, help="per-run checkpoints and logs (default: a new temporary folder)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one CPU core each (default 2)")
    p.add_argument("--epochs", type=int, default=None, help="override the shared epoch budget (for a quick look)")
    return p.parse_args(argv)


def one_run(arm: str, seed: int, args) -> dict:
    out = args.runs_dir / f"{arm.replace(' ', '_').replace('=', '')}_seed{seed}"
    cmd = [sys.executable, "-m", "dali_mixup", "train", str(args.data), "--out", str(out), "--seed", str(seed), *COMMON, *ARMS[arm]]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    (out / "log.txt").parent.mkdir(parents=True, exist_ok=True)
    (out / "log.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{arm} seed {seed} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"arm": arm, "seed": seed, "seconds": seconds, "command": cmd[1:], **metrics}


def summarize(values):
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def machine() -> dict:
    import nvidia.dali
    import torch

    from dali_mixup.tools.meta import cpu_model, git_commit

    commit = git_commit()["commit"] or ""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dali": nvidia.dali.__version__,
        "git_commit": commit,
    }


def write_table(summary: dict, meta: dict, path: pathlib.Path) -> str:
    n = len(meta["seeds"])
    lines = [
        f"Digits (scikit-learn, 1,347 train / 450 test, 32x32), small CNN, {meta['epochs']} epochs, "
        f"{n} seeds per arm; last-epoch test metrics, mean ± std [min, max].",
        "",
        "| arm | " + " | ".join(label for _, label, _ in METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for arm, s in summary.items():
        cells = []
        for key, _, _ in METRICS:
            m = s[key]
            scale, fmt = (100.0, "{:.2f}") if key == "accuracy" else (1.0, "{:.4f}")
            f = lambda v: fmt.format(v * scale)  # noqa: E731
            cells.append(f"{f(m['mean'])} ± {f(m['std'])} [{f(m['min'])}, {f(m['max'])}]")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracy in %. Lower NLL and ECE are better.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def plot(runs: list, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms = list(dict.fromkeys(r["arm"] for r in runs))
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    colors = dict(zip(arms, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, (key, label, _) in zip(axes, METRICS):
        for arm in arms:
            curves = np.array([[h[key] for h in r["history"]] for r in runs if r["arm"] == arm])
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(epochs, curves.mean(0), label=arm, color=colors[arm])
            ax.fill_between(epochs, curves.min(0), curves.max(0), color=colors[arm], alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        if key == "accuracy":
            ax.set_ylim(max(0.0, ax.get_ylim()[0]), 1.0)
        else:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    ax = axes[3]
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    for arm in arms:
        bins = [r["final"]["bins"] for r in runs if r["arm"] == arm]
        count = np.sum([b["count"] for b in bins], 0)
        correct = np.sum([b["correct"] for b in bins], 0)
        conf = np.sum([b["confidence"] for b in bins], 0)
        keep = count > 0
        ax.plot(conf[keep] / count[keep], correct[keep] / count[keep], "o-", ms=4, label=arm, color=colors[arm])
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability, last epoch (seeds pooled)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from dali_mixup.tools.datasets import default_cache_dir
    from dali_mixup.tools.digits import prepare_digits

    t0 = time.perf_counter()
    args.data = args.data or default_cache_dir() / "digits-32"
    args.runs_dir = args.runs_dir or pathlib.Path(tempfile.mkdtemp(prefix="mixup_experiment_"))
    prepare_digits(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(arm, seed) for seed in args.seeds for arm in ARMS]
    runs = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(one_run, arm, seed, args): (arm, seed) for arm, seed in jobs}
        for fut in concurrent.futures.as_completed(futures):
            r = fut.result()
            f = r["final"]
            print(f"{r['arm']:>12} seed {r['seed']}: acc {f['accuracy']:.4f} nll {f['nll']:.4f} ece {f['ece']:.4f} ({r['seconds']:.0f}s)", flush=True)
            runs.append(r)
    runs.sort(key=lambda r: (list(ARMS).index(r["arm"]), r["seed"]))
    summary = {arm: {key: summarize([r["final"][key] for r in runs if r["arm"] == arm]) for key, _, _ in METRICS} for arm in ARMS}
    epochs = args.epochs if args.epochs is not None else int(COMMON[COMMON.index("--epochs") + 1])
    meta = {
        "dataset": "sklearn.datasets.load_digits, 32x32 JPEG ImageFolder (dali-mixup prepare-digits)",
        "seeds": args.seeds,
        "epochs": epochs,
        "common_options": COMMON if args.epochs is None else COMMON + ["--epochs", str(args.epochs)],
        "arms": ARMS,
        "machine": machine(),
        "wall_seconds": time.perf_counter() - t0,
        "command": " ".join(["python examples/mixup_experiment.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    table = write_table(summary, meta, args.out / "mixup_digits.md")
    (args.out / "mixup_digits.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1) + "\n")
    plot(runs, args.out / "mixup_digits.png")
    print(table)
    print(f"wrote {args.out}/mixup_digits.{{md,json,png}} in {meta['wall_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
