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
  CUDA) + ``transforms.v2.MixUp``: the CPU baseline every ratio is taken against;
* ``timm``: timm's ``create_dataset`` + ``create_loader`` with ``FastCollateMixup`` (same α,
  batch, image size and workers as ``torchvision``); on a GPU with timm's prefetcher (a
  normalised batch on the device), on the CPU without it (uint8, not normalised).

Method: every row is built first; then the rows run in rounds, in turn, so background load that
drifts reaches all rows alike. The first ``--warmup`` rounds are not timed, then ``--epochs``
timed rounds. A round is whole epochs, repeated until it has delivered at least
``MIN_BATCHES_BEYOND_PREFETCH`` batches more than the row can hold ready before the round starts
(its prefetch depth: DALI's queue, or a DataLoader's workers x prefetch factor) and has lasted
``--min-seconds`` (default 2 s on a GPU, 1 s on the CPU). A data set smaller than one batch is
refused (exit 2). An epoch's time runs from the iterator's reset to its last batch (synchronised
on a GPU). Reported: median images/s over the timed rounds, min and max, spread, and the ratios
of the medians to the baseline and to plain DALI; a row with fewer than two timed rounds or a
spread above ``UNTRUSTED_SPREAD_PCT`` is marked untrusted, and no target verdict is drawn from
it. For our row also the host time per batch spent in DALI's ``next`` and in mixing (sampling,
copies of λ/partners/labels, kernel launches; on a GPU the mix is queued, not waited for).
Results go to ``<out>/bench-<hardware>.json`` (rewritten after every round, ``"complete":
false`` until the end) and ``.png``.

Logs: a progress bar on a terminal; elsewhere (a file, a CI log) one line per stage and per
row and round with the same figures; ``--quiet``: the table alone.

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

#: /2: rows carry ``trusted``/``trust_note``/``prefetch_depth``/``min_batches``, targets a
#: ``verdict`` (``met``/``missed``/``withheld``/``not measured``; ``met`` is None unless a verdict
#: was drawn), the file a ``complete`` flag (it is rewritten after every round)
SCHEMA = "dali-mixup-bench/2"
ROWS = ("ours", "dali", "dali-mixup", "dali-torch", "torchvision", "timm")
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
    "timm": "timm create_loader+FastCollateMixup",
}
#: what a row's label adds on a device where it delivers something else than the others
LABEL_SUFFIX = {("timm", "cpu"): " (uint8, not normalised)", ("timm", "gpu"): " + prefetcher"}
#: labels of the rows run only when asked for (``EXTRA_ROWS``)
EXTRA_LABELS = {"ours-fused": "ours, fused normalize (uint8 crops in)"}
ALL_LABELS = {**LABELS, **EXTRA_LABELS}
#: what --quick means, and the defaults otherwise
QUICK = dict(images=1024, epochs=5, warmup=2)
FULL = dict(images=2048, epochs=5, warmup=2)
#: default --min-seconds per device: a timed round is whole epochs lasting at least this
MIN_SECONDS = {"gpu": 2.0, "cpu": 1.0}
#: a timed round delivers at least this many batches more than the row's prefetch depth (the
#: batches it may have made ready before the round started, in the background)
MIN_BATCHES_BEYOND_PREFETCH = 8
#: a row whose timed rounds spread more than this (% of the median, max - min) is untrusted
UNTRUSTED_SPREAD_PCT = 25.0
#: the issues' targets (4 and 26), checked and written to the JSON
TARGETS = {
    "cpu": [("ours", BASELINE, 1.5), ("ours", "dali", 0.90), ("ours", "timm", 1.5)],
    "gpu": [("ours", BASELINE, 5.0), ("ours", "dali", 0.97), ("ours", "dali-mixup", 1.0), ("ours", "dali-torch", 1.0),
            ("ours-fused", "dali", 1.0), ("ours", "timm", 5.0)],
}


class BenchError(Exception):
    """A usage error: printed as one line, exit code 2."""


class TooFewImages(Exception):
    """An epoch delivered less than one batch: no round of this data set measures batches of
    the asked size (the bench refuses, exit code 2)."""


def row_label(name: str, device: str) -> str:
    """The row's name in the table: ``ALL_LABELS`` plus what it delivers where that differs."""
    return ALL_LABELS[name] + LABEL_SUFFIX.get((name, device), "")


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
    parser.add_argument("--epochs", type=_positive_int, help=f"timed rounds per row (default {FULL['epochs']}; "
                        f"--quick {QUICK['epochs']})")
    parser.add_argument("--warmup", type=_nonneg_int, help="untimed warm-up rounds per row (default 2)")
    parser.add_argument("--min-seconds", type=_nonneg_float, help="a timed round runs whole epochs until this many "
                        f"seconds have passed (default {MIN_SECONDS['gpu']:g} on a GPU, {MIN_SECONDS['cpu']:g} on the "
                        f"CPU) and it has delivered {MIN_BATCHES_BEYOND_PREFETCH} batches more than the row's "
                        "prefetch depth")
    parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK['images']} images, "
                        f"{QUICK['epochs']} timed rounds (a few minutes on 2 CPU cores)")
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
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar, one line per "
                        "stage and per row and round instead (the default where stderr is not a terminal)")
    parser.add_argument("--quiet", action="store_true", help="print the table only (errors still go to stderr)")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="no PNG chart")


# --- logs --------------------------------------------------------------------------------------


class Log:
    """Where the bench says what it is doing, on stderr.

    ``mode``: ``"bars"`` (a tqdm bar; on a terminal only), ``"lines"`` (one line per stage and
    per row and round, with the figures the bar shows: for files and CI logs, where a bar's
    carriage-return redraws pile up), ``"quiet"`` (nothing: ``--quiet`` prints the table alone).
    """

    def __init__(self, mode: str):
        if mode not in ("bars", "lines", "quiet"):
            raise ValueError(f"Log mode {mode!r}: expected bars, lines or quiet")
        self.mode = mode

    @classmethod
    def for_args(cls, args) -> "Log":
        """``--quiet`` -> quiet; ``--no-progress``, stderr not a terminal, or no tqdm -> lines;
        else bars."""
        if getattr(args, "quiet", False):
            return cls("quiet")
        if not getattr(args, "progress", True) or not _isatty(sys.stderr):
            return cls("lines")
        try:
            import tqdm  # noqa: F401
        except ImportError:
            return cls("lines")
        return cls("bars")

    def line(self, text: str) -> None:
        """One line (written above a running bar in bars mode), unless quiet."""
        if self.mode == "quiet":
            return
        if self.mode == "bars":
            from tqdm.auto import tqdm

            tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def bar(self, total, desc: str, unit: str):
        """A tqdm bar in bars mode; else an object whose methods do nothing."""
        if self.mode != "bars":
            return _NullBar()
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=True, dynamic_ncols=True, file=sys.stderr)


class _NullBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


# --- data --------------------------------------------------------------------------------------


def resolve_data(args, log: Optional[Log] = None) -> Dict[str, Any]:
    """The bench's data: ``{"kwargs": create_loader's source kwarg, "source": Source, ...}``.

    Raises:
        BenchError: the path does not exist or is not a usable data set.
    """
    from dali_mixup.sources import resolve_source

    log = log or Log.for_args(args)
    if args.data is None:
        from .datasets import MANIFEST, synthetic_imagenet

        bar, t0 = [None], [0.0]

        def progress(n, total):  # only when the set is generated, not when cached
            if bar[0] is None:
                t0[0] = time.perf_counter()
                log.line(f"generating the built-in data set: {total} images (once; cached for later runs)")
                bar[0] = log.bar(total=total, desc="generating the built-in data set", unit="img")
            bar[0].update(1)

        root = synthetic_imagenet(args.images, args.classes, args.seed, progress=progress)
        if bar[0] is not None:
            bar[0].close()
            log.line(f"generated the built-in data set in {time.perf_counter() - t0[0]:.1f} s: {root}")
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


def too_few_images(images: int, batch_size: int) -> str:
    """Why a data set of ``images`` cannot be measured at ``batch_size`` (one line)."""
    return (f"the data set has {images} images, fewer than one batch of {batch_size}: no batch of that size "
            "would be measured; use more images (--images, --data) or a smaller --batch-size")


# --- measuring ---------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device == "gpu":
        import torch

        torch.cuda.synchronize()


class EpochRunner:
    """One row's loader, run one epoch at a time.

    DALI iterators are built with ``auto_reset=False`` and reset here when the next epoch
    starts (inside the timed region). A DALI pipeline still prepares up to its prefetch depth of
    batches of the next epoch in the background once an epoch ends; a torch ``DataLoader``'s
    persistent workers start an epoch when it is iterated. ``min_batches`` (the prefetch depth
    plus ``MIN_BATCHES_BEYOND_PREFETCH``) bounds the share of a round's batches that can have
    been made before the round started.
    """

    def __init__(self, name: str, loader, device: str, batch_size: int, prefetch_depth: int):
        self.name, self.loader, self.device, self.batch_size = name, loader, device, batch_size
        self.prefetch_depth = prefetch_depth
        self.min_batches = prefetch_depth + MIN_BATCHES_BEYOND_PREFETCH
        self.epochs_run = 0

    def epoch(self, bar) -> Dict[str, Any]:
        """One epoch, timed.

        Raises:
            TooFewImages: the epoch delivered less than one batch of ``batch_size``.
        """
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
        if seen < self.batch_size:
            raise TooFewImages(too_few_images(seen, self.batch_size))
        return {"images": seen, "batches": batches, "seconds": seconds}

    def measure(self, bar, min_seconds: float) -> Dict[str, Any]:
        """Whole epochs until at least ``min_seconds`` have passed and ``min_batches`` batches
        were delivered: images/s over them, and for our iterator the host time per batch it spent
        waiting for DALI and mixing (``DALIMixupIterator.host_seconds``)."""
        host = getattr(self.loader, "host_seconds", None)
        host0 = dict(host) if host is not None else None
        total = {"images": 0, "batches": 0, "seconds": 0.0, "epochs": 0}
        while total["epochs"] == 0 or total["seconds"] < min_seconds or total["batches"] < self.min_batches:
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


def trust(stats: Dict[str, Any], rounds: int) -> Tuple[bool, str]:
    """Whether a row's median can be taken at its word, and if not why (one phrase).

    Args:
        stats: ``summarize``'s dict.
        rounds: the row's timed rounds.
    """
    if rounds < 2:
        return False, "one timed round: no spread to judge it by"
    if stats["spread_pct"] > UNTRUSTED_SPREAD_PCT:
        return False, (f"spread {stats['spread_pct']:.0f}% > {UNTRUSTED_SPREAD_PCT:g}%: the rounds disagree "
                       "(a busy machine, or rounds too short)")
    return True, ""


def summarize_host(epochs: List[Dict[str, Any]]) -> Optional[Dict[str, float]]:
    """Median host milliseconds per batch (DALI's ``next``, mixing, the whole batch) over the
    timed measurements, for a row that records them; else None."""
    if not epochs or any("host_ms_per_batch" not in e for e in epochs):
        return None
    out = {k: statistics.median(e["host_ms_per_batch"][k] for e in epochs) for k in ("dali", "mix")}
    out["batch"] = statistics.median(e["ms_per_batch"] for e in epochs)
    return out


def build_row(name: str, args, data, dev: str, num_classes: int):
    """The iterable of batches of one row, or a string: why it is skipped.

    ``args.timm_prefetcher`` (absent: None) puts timm's ``PrefetchLoader`` on the CPU too
    (``benchmarks/train_step.py``); by default it runs on a GPU only."""
    import torch

    from . import bench_peers

    source = data["source"]
    workers = args.workers or cpu_cores()
    common = dict(device=dev, image_size=args.image_size, batch_size=args.batch_size, num_threads=workers,
                  seed=args.seed, dtype=args.dtype, layout="NCHW")
    if name in ("ours", "ours-fused"):
        from dali_mixup.config import MixupConfig
        from dali_mixup.kinds.image import create_loader

        kw = dict(alpha=args.alpha, num_classes=num_classes)
        if args.cutmix is not None:
            kw.update(cutmix_alpha=args.cutmix)
        return create_loader(**data["kwargs"], batch_size=args.batch_size, image_size=args.image_size,
                             mixup=MixupConfig(**kw), device=dev, num_threads=workers, seed=args.seed,
                             dtype=args.dtype, num_classes=num_classes, shard_id=0, num_shards=1, auto_reset=False,
                             fused_normalize=name == "ours-fused", prefetch_queue_depth=bench_peers.DALI_PREFETCH)
    if name == "dali":
        return bench_peers.dali_plain(source, num_classes=num_classes, **common)
    if name == "dali-mixup":
        return bench_peers.dali_native_mixup(source, alpha=args.alpha, num_classes=num_classes, **common)
    if name == "dali-torch":
        return bench_peers.dali_torch_mixup(source, alpha=args.alpha, num_classes=num_classes, **common)
    device = torch.device("cuda", torch.cuda.current_device()) if dev == "gpu" else torch.device("cpu")
    if name == "torchvision":
        try:
            import torchvision  # noqa: F401
        except ImportError as e:
            return f"torchvision is not installed ({e}); pip install 'dali-mixup[bench]'"
        return bench_peers.torchvision_baseline(source, image_size=args.image_size, batch_size=args.batch_size,
                                                workers=workers, alpha=args.alpha, num_classes=num_classes,
                                                device=device, seed=args.seed, dtype=args.dtype,
                                                root=data["kwargs"].get("root"), cutmix_alpha=args.cutmix)
    if name == "timm":
        try:
            import timm  # noqa: F401
        except ImportError as e:
            return f"timm is not installed ({e}); pip install 'dali-mixup[bench]'"
        return bench_peers.timm_loader(source, image_size=args.image_size, batch_size=args.batch_size,
                                       workers=workers, alpha=args.alpha, num_classes=num_classes, device=device,
                                       dtype=args.dtype, root=data["kwargs"].get("root"), cutmix_alpha=args.cutmix,
                                       prefetcher=getattr(args, "timm_prefetcher", None))
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
    """Each target of ``TARGETS[dev]``: the ratio of the medians where both rows were measured,
    and a verdict (``met``/``missed``) only where both rows are trusted (``withheld`` else, with
    the reason in ``note``; ``not measured`` where a row is missing)."""
    ok = {r["name"]: r for r in rows if r["status"] == "ok"}
    checks = []
    for a, b, ratio in TARGETS[dev]:
        c = {"row": a, "against": b, "target_ratio": ratio, "ratio": None, "met": None, "verdict": "not measured",
             "note": ""}
        if a in ok and b in ok:
            c["ratio"] = ok[a]["images_per_s"]["median"] / ok[b]["images_per_s"]["median"]
            doubtful = [f"{n} untrusted ({ok[n]['trust_note']})" for n in (a, b) if not ok[n].get("trusted", True)]
            if doubtful:
                c.update(verdict="withheld", note="; ".join(doubtful))
            else:
                c["met"] = c["ratio"] >= ratio
                c["verdict"] = "met" if c["met"] else "missed"
        checks.append(c)
    return checks


def format_target(c: Dict[str, Any]) -> str:
    """One line: the target, the measured ratio and the verdict (or why there is none)."""
    head = f"target {c['row']} >= {c['target_ratio']:g} x {c['against']}: "
    if c["ratio"] is None:
        return head + "not measured"
    verdict = {"met": "met", "missed": "MISSED"}.get(c.get("verdict"), f"no verdict: {c.get('note', '')}")
    return head + f"{c['ratio']:.2f} {verdict}"


def _ratio_cells(row: Dict[str, Any]) -> Tuple[str, str]:
    """The row's ratio to the CPU baseline ("2.31x") and to plain DALI ("95%"), "-" if unknown."""
    rb = f"{row['ratio_to_baseline']:.2f}x" if row["ratio_to_baseline"] else "-"
    rd = f"{100 * row['ratio_to_dali']:.0f}%" if row["ratio_to_dali"] else "-"
    return rb, rd


def _label(r: Dict[str, Any]) -> str:
    return r.get("label") or ALL_LABELS[r["name"]]


def format_table(result: Dict[str, Any]) -> str:
    lines = []
    width = max([44] + [len(_label(r)) for r in result["rows"]])
    head = (f"{'row':<{width}} {'device':<6} {'images/s':>9} {'min..max':>15} {'spread':>7} {'x baseline':>10} "
            f"{'x DALI':>7}")
    lines.append(head)
    lines.append("-" * len(head))
    for r in result["rows"]:
        label = _label(r)
        if r["status"] != "ok":
            lines.append(f"{label:<{width}} {r['device']:<6} {r['status']}: {r['note']}")
            continue
        s = r["images_per_s"]
        rb, rd = _ratio_cells(r)
        lines.append(f"{label:<{width}} {r['device']:<6} {s['median']:9.0f} {s['min']:7.0f}..{s['max']:<7.0f} "
                     f"{s['spread_pct']:6.1f}% {rb:>10} {rd:>7}" + ("" if r.get("trusted", True) else "  UNTRUSTED"))
    for r in result["rows"]:
        if r["status"] == "ok" and not r.get("trusted", True):
            lines.append(f"UNTRUSTED {r['name']}: {r['trust_note']}; no target verdict from this row")
    for r in result["rows"]:
        h = r.get("host_ms_per_batch")
        if h:
            lines.append(f"{r['name']}: {h['batch']:.2f} ms per batch; host time in DALI's next {h['dali']:.2f} ms, "
                         f"in mixing {h['mix']:.2f} ms")
    lines.extend(format_target(c) for c in result["targets"])
    return "\n".join(lines)


def format_markdown(result: Dict[str, Any]) -> str:
    """The table as Markdown (for READMEs)."""
    lines = ["| row | device | images/s (median) | min .. max | x CPU baseline | x plain DALI |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {_label(r)} | {r['device']} | {r['status']}: {r['note']} | | | |")
            continue
        s = r["images_per_s"]
        rb, rd = _ratio_cells(r)
        med = f"{s['median']:.0f}" + ("" if r.get("trusted", True) else f" (untrusted: {r['trust_note']})")
        lines.append(f"| {_label(r)} | {r['device']} | {med} | {s['min']:.0f} .. {s['max']:.0f} | {rb} | {rd} |")
    return "\n".join(lines)


def plot(result: Dict[str, Any], path: Path) -> Optional[str]:
    """A horizontal bar chart of the medians (min..max as error bars, untrusted rows hatched);
    None, or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"matplotlib is not installed ({e}); no chart"
    rows = [r for r in result["rows"] if r["status"] == "ok"]
    if not rows:
        return "no row was measured; no chart"
    names = [_label(r) + ("" if r.get("trusted", True) else " [untrusted]") for r in rows][::-1]
    med = [r["images_per_s"]["median"] for r in rows][::-1]
    lo = [r["images_per_s"]["median"] - r["images_per_s"]["min"] for r in rows][::-1]
    hi = [r["images_per_s"]["max"] - r["images_per_s"]["median"] for r in rows][::-1]
    colors = ["#76b900" if r["name"].startswith("ours") else ("#888888" if r["name"] == BASELINE else "#4a7ebb")
              for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.6))
    bars = ax.barh(names, med, xerr=[lo, hi], color=colors, capsize=3)
    for b, r in zip(bars, rows[::-1]):
        if not r.get("trusted", True):
            b.set_hatch("//")
            b.set_alpha(0.5)
    for i, r in enumerate(rows[::-1]):
        rb = r["ratio_to_baseline"]
        ax.text(med[i] + hi[i], i, f"  {med[i]:,.0f}" + (f"  ({rb:.2f}x)" if rb else ""), va="center", fontsize=9)
    meta = result["metadata"]
    hw = f"{meta['cpu']['model']}, {meta['cpu']['cores']} cores" + (f", {meta['gpu']['name']}" if meta["gpu"] else "")
    o = result["options"]
    ax.set_title(f"dali-mixup bench: images/s, batch {o['batch_size']}, {o['image_size']}px, median of "
                 f"{o['epochs']} rounds\n{hw}", fontsize=10)
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
            args.peers = ["ours", "dali", "torchvision", "timm"]


def run(args) -> int:
    try:
        _resolve_options(args)
        return _run(args)
    except BenchError as e:
        print(f"dali-mixup bench: {e}", file=sys.stderr)
        return 2


def _finish_rows(rows: List[Dict[str, Any]]) -> None:
    """Each measured row's summary, trust and host split, and every row's ratios (from the timed
    rounds so far: called after every round for the partial file, and at the end)."""
    for row in rows:
        if row["status"] == "ok" and row.get("epochs"):
            row["images_per_s"] = summarize(row["epochs"])
            row["trusted"], row["trust_note"] = trust(row["images_per_s"], len(row["epochs"]))
            host = summarize_host(row["epochs"])
            if host is not None:
                row["host_ms_per_batch"] = host
    add_ratios(rows)


def _run(args) -> int:
    from dali_mixup.options import resolve_device

    from . import bench_peers
    from .argtypes import UsageError, writable_dir

    log = Log.for_args(args)
    try:
        dev = resolve_device(args.device)
    except ValueError as e:
        raise BenchError(f"--device {args.device}: {e}") from None
    try:  # before the run: results written to nowhere are a whole benchmark lost
        writable_dir(args.out, "--out", create=os.path.isdir(args.out))
    except UsageError as e:
        raise BenchError(str(e)) from None
    data = resolve_data(args, log)
    n_img = data["info"].get("num_images")
    if n_img is not None and n_img < args.batch_size:
        raise BenchError(too_few_images(n_img, args.batch_size))
    source = data["source"]
    num_classes = source.num_classes
    wanted = list(args.peers) if args.peers else list(ROWS)
    meta = metadata()
    options = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func"}
    options["device_resolved"] = dev
    if args.min_seconds is None:
        args.min_seconds = MIN_SECONDS[dev]
    options["min_seconds_resolved"] = args.min_seconds
    options["min_batches_beyond_prefetch"] = MIN_BATCHES_BEYOND_PREFETCH
    options["untrusted_spread_pct"] = UNTRUSTED_SPREAD_PCT
    workers = options["workers_resolved"] = args.workers or cpu_cores()
    log.line(f"dali-mixup bench: {n_img or '?'} images, {num_classes} classes, batch {args.batch_size}, "
             f"{args.image_size}px, {args.dtype}, device {dev}, {workers} workers; {args.warmup} warm-up + "
             f"{args.epochs} timed rounds per row, each whole epochs lasting >= {args.min_seconds:g} s and "
             f">= {MIN_BATCHES_BEYOND_PREFETCH} batches beyond the row's prefetch depth")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    busy = cpu_busy()
    if busy is not None and busy > 0.25:
        log.line(f"warning: the machine is busy ({100 * busy:.0f}% of the CPU in use by other processes before the "
                 f"run): the figures will vary run to run")
    rows: List[Dict[str, Any]] = []
    runners: Dict[str, EpochRunner] = {}
    failed = False
    built = []
    for name in ALL_ROWS:  # build every row first; they run interleaved below
        if name not in wanted:
            continue
        row: Dict[str, Any] = {"name": name, "label": row_label(name, dev), "device": dev, "status": "ok",
                               "note": ""}
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
        built.append(f"{name} {row['build_seconds']:.1f} s")
        row["batches_per_epoch"] = len(loader) if hasattr(loader, "__len__") else None
        if name == "timm":
            row["output"] = bench_peers.TIMM_OUTPUT[loader.prefetcher]
        depth = bench_peers.prefetch_depth(name, workers, loader)
        runners[name] = EpochRunner(name, loader, dev, args.batch_size, depth)
        row.update(prefetch_depth=depth, min_batches=runners[name].min_batches, epochs=[])
    log.line(f"built {len(runners)} rows: " + (", ".join(built) or "none"))

    result = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
        "options": options,
        "metadata": meta,
        "hardware": hardware_slug(meta),
        "dataset": data["info"],
        "baseline": BASELINE,
        "rows": rows,
        "targets": [],
    }
    meta["load_average"] = {"before": load_before, "after": None}
    meta["cpu_busy_before"] = busy
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{result['hardware']}" + (f"-{slug(args.tag)}" if args.tag else "")
    json_path = out / f"{stem}.json"

    def write() -> None:  # after every round: a run stopped part-way keeps the rounds it measured
        _finish_rows(rows)
        result["targets"] = check_targets(rows, dev)
        json_path.write_text(json.dumps(result, indent=1, default=str) + "\n")

    # rounds: every row runs one measurement (whole epochs, see EpochRunner.measure) per round,
    # in turn, so drifting background load reaches all rows alike; rounds 0 .. warmup-1 are not
    # timed
    rounds = args.warmup + args.epochs
    bar = log.bar(total=None, desc="bench", unit="img")
    by_name = {r["name"]: r for r in rows}
    try:
        for rnd in range(rounds):
            warm = " (warm-up)" if rnd < args.warmup else ""
            for name, runner in list(runners.items()):
                row = by_name[name]
                bar.set_postfix_str(f"round {rnd + 1}/{rounds}{warm} {name}")
                try:
                    ep = runner.measure(bar, args.min_seconds)
                except TooFewImages as e:
                    raise BenchError(str(e)) from None
                except Exception as e:  # noqa: BLE001
                    row.update(status="failed", note=f"{type(e).__name__}: {e}")
                    failed = True
                    del runners[name]
                    log.line(f"round {rnd + 1}/{rounds}{warm} {name}: failed: {type(e).__name__}: {e}")
                    continue
                log.line(f"round {rnd + 1}/{rounds}{warm} {name}: {ep['images_per_s']:.0f} images/s ({ep['images']} "
                         f"images, {ep['batches']} batches, {ep['epochs']} epoch{'s' * (ep['epochs'] > 1)} in "
                         f"{ep['seconds']:.2f} s)")
                if rnd >= args.warmup:
                    ep["round"] = rnd
                    row["epochs"].append(ep)
            if rnd >= args.warmup:
                write()
    finally:
        bar.close()
        runners.clear()
        gc.collect()
    meta["load_average"]["after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["complete"] = True
    write()
    print(format_table(result))
    if not args.quiet:
        print(f"wrote {json_path}")
    if args.plot:
        why = plot(result, out / f"{stem}.png")
        if not args.quiet:
            print(f"wrote {out / f'{stem}.png'}" if why is None else f"note: {why}")
    for r in rows:
        if r["status"] == "skipped":
            log.line(f"note: {r['name']} skipped: {r['note']}")
    return 1 if failed else 0
