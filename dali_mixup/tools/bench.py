"""``dali-mixup bench``: end-to-end loader throughput, the mixup iterator against its peers.

One run, the same files, image size and batch size for every row; each row is a complete
training input: decode, random resized crop, flip, normalise, mixup, soft targets, on the
device the model would use.

Rows (``--peers``):

* ``ours``: ``dali_mixup.create_loader`` with mixup (GPU when there is one, else DALI's CPU
  backend and the CPU twin);
* ``ours-fused`` (asked for with ``--peers``): the same with ``fused_normalize=True``: DALI hands
  over uint8 crops and the kernel normalises, mirrors, lays out, casts and mixes in one pass;
* ``dali``: DALI's ``DALIClassificationIterator`` over the same pipeline, no mixup (the ceiling);
* ``dali-mixup``: mixup written in DALI's graph (``fn.batch_permutation``,
  ``fn.permute_batch``, ``fn.random.beta``, arithmetic);
* ``dali-torch``: DALI's iterator + eager torch mixup (DeepLearningExamples' ``MixUpWrapper``);
  a GPU row, on the CPU only when asked for;
* ``torchvision``: ``ImageFolder`` + ``DataLoader`` (all cores as workers, pinned memory with
  CUDA) + ``transforms.v2.MixUp``: the CPU baseline every ratio is taken against.

Method: every row is built first; then the rows run in rounds, one epoch each per round, in
turn, so background load that drifts reaches all rows alike. The first ``--warmup`` rounds are
not timed, then ``--epochs`` timed rounds. A round is one epoch, or on a GPU (where an epoch of
the built-in set lasts a fraction of a second) whole epochs until ``--min-seconds`` (default 2)
have passed. An epoch's time runs from the iterator's reset to its last batch (synchronised on
a GPU); no row works in the background while another is timed. Reported: median images/s over
the timed rounds, min and max, and the ratios of the medians to the baseline and to plain DALI;
for our row also the host time per batch spent in DALI's ``next`` and in mixing (sampling,
copies of λ/partners/labels, kernel launches; on a GPU the mix is queued, not waited for). Results go to
``<out>/bench-<hardware>.json`` and ``.png``.

Without ``--data`` the built-in synthetic ImageNet-like set is used (``dali_mixup.tools.datasets``),
generated once into the user's cache directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .meta import cpu_busy, cpu_cores, hardware_slug, metadata, slug

SCHEMA = "dali-mixup-bench/1"
ROWS = ("ours", "dali", "dali-mixup", "dali-torch", "torchvision")
#: rows run only when named in --peers (after ``ours`` in the table)
EXTRA_ROWS = ("ours-fused",)
ALL_ROWS = ("ours", "ours-fused") + ROWS[1:]
BASELINE = "torchvision"
LABELS = {
    "ours": "dali-mixup iterator (ours)",
    "dali": "plain DALI iterator, no mixup",
    "dali-mixup": "DALI-native mixup (in the graph)",
    "dali-torch": "DALI + eager torch mixup",
    "torchvision": "torchvision ImageFolder+DataLoader+MixUp",
}
#: labels of the rows run only when asked for (``EXTRA_ROWS``)
EXTRA_LABELS = {"ours-fused": "ours, fused normalize (uint8 crops in)"}
ALL_LABELS = {**LABELS, **EXTRA_LABELS}
#: what --quick means, and the defaults otherwise
QUICK = dict(images=1024, epochs=5, warmup=2)
FULL = dict(images=2048, epochs=5, warmup=2)
#: default --min-seconds per device: a timed measurement is whole epochs lasting at least this
MIN_SECONDS = {"gpu": 2.0, "cpu": 0.0}
#: the issue's targets, checked and written to the JSON
TARGETS = {
    "cpu": [("ours", BASELINE, 1.5), ("ours", "dali", 0.90)],
    "gpu": [("ours", BASELINE, 5.0), ("ours", "dali", 0.97), ("ours", "dali-mixup", 1.0), ("ours", "dali-torch", 1.0),
            ("ours-fused", "dali", 1.0)],
}


class BenchError(Exception):
    """A usage error: printed as one line, exit code 2."""


# --- CLI ---------------------------------------------------------------------------------------


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {v}")
        return v

    return parse


_positive_int, _nonneg_int = _int_at_least(1), _int_at_least(0)


def _float_from(low: float, inclusive: bool):
    """An argparse type: a finite number > ``low`` (>= with ``inclusive``)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(v) and (v >= low if inclusive else v > low)):
            raise argparse.ArgumentTypeError(f"expected a number {'>=' if inclusive else '>'} {low:g}, got {v}")
        return v

    return parse


_positive_float, _nonneg_float = _float_from(0.0, False), _float_from(0.0, True)


def _peer_list(text: str) -> List[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ALL_ROWS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown row(s) {bad or text!r}; choose from {', '.join(ALL_ROWS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's options (cheap: no heavy import here)."""
    parser.add_argument("--data", metavar="PATH", help="ImageFolder root, a file list ('<path> <label>' lines), or "
                        "WebDataset shards (a .tar, a directory of .tar files, or a glob); default: the built-in "
                        "synthetic ImageNet-like set")
    parser.add_argument("--images", type=_positive_int, help=f"size of the built-in set (default {FULL['images']}; "
                        f"--quick {QUICK['images']})")
    parser.add_argument("--classes", type=_positive_int, default=10, help="classes of the built-in set (default 10)")
    parser.add_argument("--batch-size", type=_positive_int, default=64, help="samples per batch (default 64)")
    parser.add_argument("--image-size", type=_positive_int, default=224, help="output height and width (default 224)")
    parser.add_argument("--epochs", type=_positive_int, help=f"timed epochs per row (default {FULL['epochs']}; "
                        f"--quick {QUICK['epochs']})")
    parser.add_argument("--warmup", type=_nonneg_int, help="untimed warm-up epochs per row (default 2)")
    parser.add_argument("--min-seconds", type=_nonneg_float, help="a timed measurement runs whole epochs until this "
                        f"many seconds have passed (default {MIN_SECONDS['gpu']:g} on a GPU, where an epoch of the "
                        f"built-in set is a fraction of a second; {MIN_SECONDS['cpu']:g}, one epoch, on the CPU)")
    parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK['images']} images, "
                        f"{QUICK['epochs']} timed epochs (a few minutes on 2 CPU cores)")
    parser.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto",
                        help="where the batches are delivered (default: the GPU when there is one)")
    parser.add_argument("--workers", type=_positive_int, help="DALI threads and DataLoader workers "
                        "(default: all cores)")
    parser.add_argument("--out", metavar="DIR", default="bench-out", help="where the JSON and PNG go (default bench-out)")
    parser.add_argument("--alpha", type=_positive_float, default=1.0, help="mixup's Beta(alpha, alpha) (default 1.0)")
    parser.add_argument("--cutmix", type=_positive_float, metavar="ALPHA", help="also CutMix with this alpha (switch "
                        "p=0.5) in our row and the torchvision baseline; needs MixupConfig.cutmix_alpha")
    parser.add_argument("--peers", type=_peer_list, metavar="ROWS", help=f"comma-separated rows to run, from "
                        f"{','.join(ALL_ROWS)} (default: all that apply but {','.join(EXTRA_ROWS)}; dali-torch on "
                        "a GPU only)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="image dtype (default float32)")
    parser.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the data set, crops and mixup (default 0)")
    parser.add_argument("--tag", default="", help="appended to the result file names")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="no PNG chart")


# --- data --------------------------------------------------------------------------------------


def resolve_data(args) -> Dict[str, Any]:
    """The bench's data: ``{"kwargs": create_loader's source kwarg, "source": Source, ...}``.

    Raises:
        BenchError: the path does not exist or is not a usable data set.
    """
    from dali_mixup.sources import resolve_source

    if args.data is None:
        from .datasets import MANIFEST, synthetic_imagenet

        bar = [None]

        def progress(n, total):  # a bar only when the set is generated, not when cached
            if bar[0] is None:
                bar[0] = _bar(total=total, desc="generating the built-in data set", unit="img", enabled=args.progress)
            bar[0].update(1)

        root = synthetic_imagenet(args.images, args.classes, args.seed, progress=progress)
        if bar[0] is not None:
            bar[0].close()
        kwargs = {"root": str(root)}
        meta = json.loads((root / MANIFEST).read_text())
        info = {"kind": "synthetic", "path": str(root), "synthetic": meta["spec"], "mean_bytes": meta["mean_bytes"]}
    else:
        path = os.path.expanduser(args.data)
        if any(c in path for c in "*?["):
            kwargs = {"shards": path}
        elif os.path.isdir(path):
            has_tars = any(e.name.endswith(".tar") and e.is_file() for e in os.scandir(path))
            has_dirs = any(e.is_dir() for e in os.scandir(path))
            kwargs = {"shards": path} if has_tars and not has_dirs else {"root": path}
        elif os.path.isfile(path):
            kwargs = {"shards": path} if path.endswith(".tar") else {"file_list": path}
        elif os.path.exists(path):
            raise BenchError(f"--data {args.data!r}: not a regular file or a directory (a FIFO, socket or device?)")
        else:
            raise BenchError(f"--data {args.data!r}: no such file or directory")
        info = {"kind": next(iter(kwargs)), "path": os.path.abspath(path) if "*" not in path else path}
    try:
        source = resolve_source(**kwargs)
    except (ValueError, OSError) as e:
        raise BenchError(f"--data {args.data!r}: {e}") from None
    if source.kind.value != "webdataset":
        info["num_images"] = len(source)
    info["num_classes"] = source.num_classes
    return {"kwargs": kwargs, "source": source, "info": info}


# --- measuring ---------------------------------------------------------------------------------


def _bar(total, desc, unit, enabled, leave=True):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None or not enabled:
        class _Null:
            def update(self, n=1): pass
            def set_postfix_str(self, s): pass
            def close(self): pass
        return _Null()
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, file=sys.stderr)


def _sync(device: str) -> None:
    if device == "gpu":
        import torch

        torch.cuda.synchronize()


class EpochRunner:
    """One row's loader, run one epoch at a time.

    DALI iterators are built with ``auto_reset=False`` and reset here when the next epoch
    starts (inside the timed region), so a row does no work in the background while another
    row is timed. A torch ``DataLoader``'s persistent workers start an epoch when it is iterated.
    """

    def __init__(self, name: str, loader, device: str):
        self.name, self.loader, self.device = name, loader, device
        self.epochs_run = 0

    def epoch(self, bar) -> Dict[str, Any]:
        t0 = time.perf_counter()
        if self.epochs_run and hasattr(self.loader, "reset"):
            self.loader.reset()
        seen = batches = 0
        for batch in self.loader:
            b = batch[0]
            n = int(b["data"].shape[0])
            if b["label"].shape[0] != n:
                raise RuntimeError(f"{self.name}: {n} images but {b['label'].shape[0]} targets in a batch")
            seen += n
            batches += 1
            bar.update(n)
        _sync(self.device)
        seconds = time.perf_counter() - t0
        self.epochs_run += 1
        return {"images": seen, "batches": batches, "seconds": seconds}

    def measure(self, bar, min_seconds: float) -> Dict[str, Any]:
        """Whole epochs until at least ``min_seconds`` have passed (one epoch when 0): images/s
        over them, and for our iterator the host time per batch it spent waiting for DALI and
        mixing (``DALIMixupIterator.host_seconds``)."""
        host = getattr(self.loader, "host_seconds", None)
        host0 = dict(host) if host is not None else None
        total = {"images": 0, "batches": 0, "seconds": 0.0, "epochs": 0}
        while total["epochs"] == 0 or total["seconds"] < min_seconds:
            ep = self.epoch(bar)
            for k in ("images", "batches", "seconds"):
                total[k] += ep[k]
            total["epochs"] += 1
        total["images_per_s"] = total["images"] / total["seconds"]
        if host0 is not None and total["batches"]:
            batches = host["batches"] - host0["batches"]
            total["host_ms_per_batch"] = {k: 1e3 * (host[k] - host0[k]) / max(batches, 1) for k in ("dali", "mix")}
            total["ms_per_batch"] = 1e3 * total["seconds"] / total["batches"]
        return total


def summarize(epochs: List[Dict[str, Any]]) -> Dict[str, Any]:
    rates = [r["images_per_s"] for r in epochs]
    med = statistics.median(rates)
    return {"median": med, "min": min(rates), "max": max(rates), "spread_pct": 100.0 * (max(rates) - min(rates)) / med}


def summarize_host(epochs: List[Dict[str, Any]]) -> Optional[Dict[str, float]]:
    """Median host milliseconds per batch (DALI's ``next``, mixing, the whole batch) over the
    timed measurements, for a row that records them; else None."""
    if not epochs or any("host_ms_per_batch" not in e for e in epochs):
        return None
    out = {k: statistics.median(e["host_ms_per_batch"][k] for e in epochs) for k in ("dali", "mix")}
    out["batch"] = statistics.median(e["ms_per_batch"] for e in epochs)
    return out


def build_row(name: str, args, data, dev: str, num_classes: int):
    """The iterable of batches of one row, or a string: why it is skipped."""
    import torch

    source = data["source"]
    workers = args.workers or cpu_cores()
    common = dict(device=dev, image_size=args.image_size, batch_size=args.batch_size, num_threads=workers,
                  seed=args.seed, dtype=args.dtype, layout="NCHW")
    if name in ("ours", "ours-fused"):
        from dali_mixup.config import MixupConfig
        from dali_mixup.loader import create_loader

        kw = dict(alpha=args.alpha, num_classes=num_classes)
        if args.cutmix is not None:
            kw.update(cutmix_alpha=args.cutmix)
        return create_loader(**data["kwargs"], batch_size=args.batch_size, image_size=args.image_size,
                             mixup=MixupConfig(**kw), device=dev, num_threads=workers, seed=args.seed,
                             dtype=args.dtype, num_classes=num_classes, shard_id=0, num_shards=1, auto_reset=False,
                             fused_normalize=name == "ours-fused")
    from . import bench_peers

    if name == "dali":
        return bench_peers.dali_plain(source, num_classes=num_classes, **common)
    if name == "dali-mixup":
        return bench_peers.dali_native_mixup(source, alpha=args.alpha, num_classes=num_classes, **common)
    if name == "dali-torch":
        return bench_peers.dali_torch_mixup(source, alpha=args.alpha, num_classes=num_classes, **common)
    if name == "torchvision":
        try:
            import torchvision  # noqa: F401
        except ImportError as e:
            return f"torchvision is not installed ({e}); pip install 'dali-mixup[bench]'"
        device = torch.device("cuda", torch.cuda.current_device()) if dev == "gpu" else torch.device("cpu")
        return bench_peers.torchvision_baseline(source, image_size=args.image_size, batch_size=args.batch_size,
                                                workers=workers, alpha=args.alpha, num_classes=num_classes,
                                                device=device, seed=args.seed, dtype=args.dtype,
                                                root=data["kwargs"].get("root"), cutmix_alpha=args.cutmix)
    raise AssertionError(name)


# --- reporting ---------------------------------------------------------------------------------


def add_ratios(rows: List[Dict[str, Any]]) -> None:
    med = {r["name"]: r["images_per_s"]["median"] for r in rows if r["status"] == "ok"}
    for r in rows:
        if r["status"] != "ok":
            r["ratio_to_baseline"] = r["ratio_to_dali"] = None
            continue
        m = r["images_per_s"]["median"]
        r["ratio_to_baseline"] = m / med[BASELINE] if BASELINE in med else None
        r["ratio_to_dali"] = m / med["dali"] if "dali" in med else None


def check_targets(rows: List[Dict[str, Any]], dev: str) -> List[Dict[str, Any]]:
    med = {r["name"]: r["images_per_s"]["median"] for r in rows if r["status"] == "ok"}
    checks = []
    for a, b, ratio in TARGETS[dev]:
        if a in med and b in med:
            got = med[a] / med[b]
            checks.append({"row": a, "against": b, "target_ratio": ratio, "ratio": got, "met": got >= ratio})
        else:
            checks.append({"row": a, "against": b, "target_ratio": ratio, "ratio": None, "met": None})
    return checks


def _ratio_cells(row: Dict[str, Any]) -> Tuple[str, str]:
    """The row's ratio to the CPU baseline ("2.31x") and to plain DALI ("95%"), "-" if unknown."""
    rb = f"{row['ratio_to_baseline']:.2f}x" if row["ratio_to_baseline"] else "-"
    rd = f"{100 * row['ratio_to_dali']:.0f}%" if row["ratio_to_dali"] else "-"
    return rb, rd


def format_table(result: Dict[str, Any]) -> str:
    lines = []
    head = f"{'row':<44} {'device':<6} {'images/s':>9} {'min..max':>15} {'spread':>7} {'x baseline':>10} {'x DALI':>7}"
    lines.append(head)
    lines.append("-" * len(head))
    for r in result["rows"]:
        label = ALL_LABELS[r["name"]]
        if r["status"] != "ok":
            lines.append(f"{label:<44} {r['device']:<6} {r['status']}: {r['note']}")
            continue
        s = r["images_per_s"]
        rb, rd = _ratio_cells(r)
        lines.append(f"{label:<44} {r['device']:<6} {s['median']:9.0f} {s['min']:7.0f}..{s['max']:<7.0f} "
                     f"{s['spread_pct']:6.1f}% {rb:>10} {rd:>7}")
    for r in result["rows"]:
        h = r.get("host_ms_per_batch")
        if h:
            lines.append(f"{r['name']}: {h['batch']:.2f} ms per batch; host time in DALI's next {h['dali']:.2f} ms, "
                         f"in mixing {h['mix']:.2f} ms")
    for c in result["targets"]:
        if c["ratio"] is None:
            lines.append(f"target {c['row']} >= {c['target_ratio']:g} x {c['against']}: not measured")
        else:
            lines.append(f"target {c['row']} >= {c['target_ratio']:g} x {c['against']}: {c['ratio']:.2f} "
                         f"{'met' if c['met'] else 'MISSED'}")
    return "\n".join(lines)


def format_markdown(result: Dict[str, Any]) -> str:
    """The table as Markdown (for READMEs)."""
    lines = ["| row | device | images/s (median) | min .. max | x CPU baseline | x plain DALI |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {ALL_LABELS[r['name']]} | {r['device']} | {r['status']}: {r['note']} | | | |")
            continue
        s = r["images_per_s"]
        rb, rd = _ratio_cells(r)
        lines.append(f"| {ALL_LABELS[r['name']]} | {r['device']} | {s['median']:.0f} | {s['min']:.0f} .. {s['max']:.0f} "
                     f"| {rb} | {rd} |")
    return "\n".join(lines)


def plot(result: Dict[str, Any], path: Path) -> Optional[str]:
    """A horizontal bar chart of the medians (min..max as error bars); None, or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"matplotlib is not installed ({e}); no chart"
    rows = [r for r in result["rows"] if r["status"] == "ok"]
    if not rows:
        return "no row was measured; no chart"
    names = [ALL_LABELS[r["name"]] for r in rows][::-1]
    med = [r["images_per_s"]["median"] for r in rows][::-1]
    lo = [r["images_per_s"]["median"] - r["images_per_s"]["min"] for r in rows][::-1]
    hi = [r["images_per_s"]["max"] - r["images_per_s"]["median"] for r in rows][::-1]
    colors = ["#76b900" if r["name"].startswith("ours") else ("#888888" if r["name"] == BASELINE else "#4a7ebb")
              for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.6))
    ax.barh(names, med, xerr=[lo, hi], color=colors, capsize=3)
    for i, r in enumerate(rows[::-1]):
        rb = r["ratio_to_baseline"]
        ax.text(med[i] + hi[i], i, f"  {med[i]:,.0f}" + (f"  ({rb:.2f}x)" if rb else ""), va="center", fontsize=9)
    meta = result["metadata"]
    hw = f"{meta['cpu']['model']}, {meta['cpu']['cores']} cores" + (f", {meta['gpu']['name']}" if meta["gpu"] else "")
    o = result["options"]
    ax.set_title(f"dali-mixup bench: images/s, batch {o['batch_size']}, {o['image_size']}px, median of "
                 f"{o['epochs']} epochs\n{hw}", fontsize=10)
    ax.set_xlabel("images/s (bars: median; whiskers: min..max; in brackets: x CPU baseline)")
    ax.set_xlim(0, max(m + h for m, h in zip(med, hi)) * 1.35)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --- main --------------------------------------------------------------------------------------


def _resolve_options(args) -> None:
    base = QUICK if args.quick else FULL
    for k in ("images", "epochs", "warmup"):
        if getattr(args, k) is None:
            setattr(args, k, base[k])
    if args.cutmix is not None:
        from dali_mixup.config import MixupConfig

        if "cutmix_alpha" not in {f.name for f in dataclasses.fields(MixupConfig)}:
            raise BenchError("--cutmix: this build's MixupConfig has no cutmix_alpha field (CutMix is not available)")
        if args.peers is None:
            args.peers = ["ours", "dali", "torchvision"]


def run(args) -> int:
    try:
        _resolve_options(args)
        return _run(args)
    except BenchError as e:
        print(f"dali-mixup bench: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import torch

    from dali_mixup.loader import resolve_device

    from .argtypes import UsageError, writable_dir

    try:
        dev = resolve_device(args.device)
    except ValueError as e:
        raise BenchError(f"--device {args.device}: {e}") from None
    try:  # before the run: results written to nowhere are a whole benchmark lost
        writable_dir(args.out, "--out", create=os.path.isdir(args.out))
    except UsageError as e:
        raise BenchError(str(e)) from None
    data = resolve_data(args)
    source = data["source"]
    num_classes = source.num_classes
    wanted = list(args.peers) if args.peers else list(ROWS)
    meta = metadata()
    options = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func"}
    options["device_resolved"] = dev
    if args.min_seconds is None:
        args.min_seconds = MIN_SECONDS[dev]
    options["min_seconds_resolved"] = args.min_seconds
    options["workers_resolved"] = args.workers or cpu_cores()
    print(f"dali-mixup bench: {data['info'].get('num_images', '?')} images, {num_classes} classes, batch "
          f"{args.batch_size}, {args.image_size}px, {args.dtype}, device {dev}, {options['workers_resolved']} workers; "
          f"{args.warmup} warm-up + {args.epochs} timed rounds per row"
          + (f" (whole epochs lasting >= {args.min_seconds:g} s each)" if args.min_seconds else " (one epoch each)"),
          file=sys.stderr)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    busy = cpu_busy()
    if busy is not None and busy > 0.25:
        print(f"warning: the machine is busy ({100 * busy:.0f}% of the CPU in use by other processes before the "
              f"run): the figures will vary run to run", file=sys.stderr)
    rows: List[Dict[str, Any]] = []
    runners: Dict[str, EpochRunner] = {}
    failed = False
    for name in ALL_ROWS:  # build every row first; they run interleaved below
        if name not in wanted:
            continue
        row: Dict[str, Any] = {"name": name, "label": ALL_LABELS[name], "device": dev, "status": "ok", "note": ""}
        rows.append(row)
        if name == "dali-torch" and dev != "gpu" and not args.peers:
            row.update(status="skipped", note="a GPU row (ask with --peers to run it on the CPU)")
            continue
        t0 = time.perf_counter()
        try:
            loader = build_row(name, args, data, dev, num_classes)
        except ImportError as e:
            row.update(status="skipped", note=f"not installed: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - one broken row is reported, the others still run
            row.update(status="failed", note=f"{type(e).__name__}: {e}")
            failed = True
            continue
        if isinstance(loader, str):
            row.update(status="skipped", note=loader)
            continue
        row["build_seconds"] = time.perf_counter() - t0
        row["batches_per_epoch"] = len(loader) if hasattr(loader, "__len__") else None
        row["epochs"] = []
        runners[name] = EpochRunner(name, loader, dev)

    # rounds: every row runs one measurement (one epoch, or whole epochs lasting --min-seconds)
    # per round, in turn, so drifting background load reaches all rows alike; round 0 ..
    # warmup-1 are not timed
    n_img = data["info"].get("num_images")
    rounds = args.warmup + args.epochs
    bar = _bar(total=rounds * len(runners) * n_img if n_img and not args.min_seconds else None, desc="bench", unit="img",
               enabled=args.progress)
    by_name = {r["name"]: r for r in rows}
    try:
        for rnd in range(rounds):
            for name, runner in list(runners.items()):
                row = by_name[name]
                bar.set_postfix_str(f"round {rnd + 1}/{rounds} {'(warm-up) ' if rnd < args.warmup else ''}{name}")
                try:
                    ep = runner.measure(bar, args.min_seconds)
                except Exception as e:  # noqa: BLE001
                    row.update(status="failed", note=f"{type(e).__name__}: {e}")
                    failed = True
                    del runners[name]
                    continue
                if rnd >= args.warmup:
                    ep["round"] = rnd
                    row["epochs"].append(ep)
    finally:
        bar.close()
        runners.clear()
        gc.collect()
    for row in rows:
        if row["status"] == "ok":
            row["images_per_s"] = summarize(row["epochs"])
            host = summarize_host(row["epochs"])
            if host is not None:
                row["host_ms_per_batch"] = host
    add_ratios(rows)
    meta["load_average"] = {"before": load_before, "after": os.getloadavg() if hasattr(os, "getloadavg") else None}
    meta["cpu_busy_before"] = busy
    result = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "options": options,
        "metadata": meta,
        "hardware": hardware_slug(meta),
        "dataset": data["info"],
        "baseline": BASELINE,
        "rows": rows,
        "targets": check_targets(rows, dev),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{result['hardware']}" + (f"-{slug(args.tag)}" if args.tag else "")
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(format_table(result))
    print(f"wrote {json_path}")
    if args.plot:
        why = plot(result, out / f"{stem}.png")
        print(f"wrote {out / f'{stem}.png'}" if why is None else f"note: {why}")
    for r in rows:
        if r["status"] == "skipped":
            print(f"note: {r['name']} skipped: {r['note']}", file=sys.stderr)
    return 1 if failed else 0
