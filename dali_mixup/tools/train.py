"""``dali-mixup train``: an image classifier trained end to end on the mixup DALI loader.

This module is the example to copy. Read it top to bottom:

1. ``setup_distributed``: one process per GPU under ``torchrun`` (NCCL on GPUs, Gloo on CPU);
   a single process otherwise.
2. ``create_loader``: decode, random-resized-crop, normalize and mixup in the DALI pipeline.
   Under ``torchrun`` each process reads its own shard. The labels arrive as ``(N, C)`` soft
   targets that already carry the mixup weights.
3. ``build_model``: torchvision's ResNet-18, or a small CNN for tiny images (e.g. 32x32 digits).
4. ``train_one_epoch``: soft-target cross-entropy, SGD with momentum, a per-step cosine
   schedule with optional linear warm-up, autocast (bf16, or fp16 with a gradient scaler) and
   channels_last on a GPU.
5. ``evaluate``: accuracy, negative log-likelihood and expected calibration error (15 equal-width
   confidence bins, Guo et al. 2017, https://arxiv.org/abs/1706.04599), summed over all processes.
6. ``save_checkpoint`` / ``load_checkpoint``: model, optimizer, schedule, gradient scaler, epoch
   and the loader's state, written by rank 0 after every epoch; ``--resume`` continues from it.

Mixup: Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018,
https://arxiv.org/abs/1710.09412

Examples::

    dali-mixup prepare-digits data/digits
    dali-mixup train data/digits --model small-cnn --image-size 32 --epochs 30 --out runs/digits
    torchrun --nproc_per_node=8 -m dali_mixup train /imagenet --epochs 90 --batch-size 128 --out runs/in1k
    dali-mixup train data/digits --model small-cnn --image-size 32 --epochs 40 --out runs/digits --resume auto
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

ECE_BINS = 15
MODELS = ("resnet18", "small-cnn")  # the built-ins; any other name is a timm model
MAX_IMAGE_SIZE = 16384  # dali_mixup.checks.MAX_IMAGE_SIZE


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` options. Cheap: imports nothing heavy. A value out of range (``--lr nan``,
    ``--mixup-alpha -1``, ``--batch-size 0``) is a usage error: one line naming the option, exit 2."""
    from .argtypes import float_in, int_in, nonneg_int, positive_int, seed

    unit = float_in(0.0, 1.0)
    parser.add_argument("data", type=pathlib.Path, help="ImageFolder root holding train/ and val/ (or test/)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/train"), help="checkpoint and metrics folder (default runs/train)")
    parser.add_argument("--model", default="resnet18", metavar="NAME", help="resnet18 (torchvision), small-cnn (tiny images) or any timm model name, e.g. resnet50, vit_small_patch16_224, random init (default resnet18)")
    parser.add_argument("--width", type=positive_int, default=32, help="small-cnn: channels of the first stage (default 32)")
    parser.add_argument("--image-size", type=int_in(1, MAX_IMAGE_SIZE), default=224, help="side of the training crop and validation crop (default 224)")
    parser.add_argument("--val-resize", type=int_in(1, MAX_IMAGE_SIZE), default=None, help="validation: resize the shorter side to this, then center-crop --image-size (default image-size/0.875)")
    parser.add_argument("--scale", type=float_in(0.0, 1.0, low_open=True), nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"), help="random-resized-crop area range (default 0.08 1.0)")
    parser.add_argument("--flip-prob", type=unit, default=0.5, help="horizontal-flip probability in training (default 0.5; 0 for digits and text)")
    parser.add_argument("--epochs", type=positive_int, default=90)
    parser.add_argument("--batch-size", type=positive_int, default=256, help="per process (default 256)")
    parser.add_argument("--lr", type=float_in(0.0, low_open=True), default=0.1, help="peak learning rate for the whole batch of all processes (default 0.1)")
    parser.add_argument("--momentum", type=float_in(0.0, 1.0, high_open=True), default=0.9)
    parser.add_argument("--weight-decay", type=float_in(0.0), default=5e-4)
    parser.add_argument("--warmup-epochs", type=float_in(0.0), default=0.0, help="linear warm-up before the cosine decay (default 0)")
    # mixup and CutMix: timm's train.py flags, names and meanings (dali_mixup.integrations.timm)
    parser.add_argument("--mixup", "--mixup-alpha", dest="mixup", type=float_in(0.0), default=0.2, help="mixup alpha: λ ~ Beta(α, α), mixup on when > 0 (timm's --mixup; default 0.2)")
    parser.add_argument("--cutmix", type=float_in(0.0), default=0.0, help="CutMix alpha, CutMix on when > 0 (default 0)")
    parser.add_argument("--cutmix-minmax", type=unit, nargs=2, default=None, metavar=("MIN", "MAX"), help="CutMix box side drawn between MIN and MAX of the image's; turns CutMix on and overrides --cutmix (default: off)")
    parser.add_argument("--mixup-prob", type=unit, default=1.0, help="chance a batch (or element or pair, see --mixup-mode) is mixed with mixup or CutMix (default 1)")
    parser.add_argument("--mixup-switch-prob", type=unit, default=0.5, help="chance of CutMix instead of mixup when both are on (default 0.5)")
    parser.add_argument("--mixup-mode", choices=("batch", "elem", "pair"), default="batch", help="one draw per batch, element or pair (default batch)")
    parser.add_argument("--mixup-pairing", choices=("derangement", "flip", "roll"), default="derangement", help="partner of each sample: derangement (never itself), flip (timm's x.flip(0)), roll (torchvision) (default derangement)")
    parser.add_argument("--mixup-off-epoch", type=nonneg_int, default=0, help="turn mixup and CutMix off from this epoch on (counted from 0), label smoothing stays (default 0: never)")
    parser.add_argument("--smoothing", "--label-smoothing", dest="smoothing", type=float_in(0.0, 1.0, high_open=True), default=0.0, help="label smoothing ε (timm's --smoothing; default 0)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: CUDA when available (default)")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto", help="autocast dtype on CUDA; auto = bf16 where supported, else fp16; always off on CPU")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="channels_last memory format (default: on for CUDA, off on CPU)")
    parser.add_argument("--threads", type=positive_int, default=None, help="DALI worker threads per process (default: the loader's choice)")
    parser.add_argument("--torch-threads", type=positive_int, default=None, help="torch intra-op threads on CPU (default: torch's choice)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--resume", default=None, help="a checkpoint to continue from, or 'auto' for OUT/checkpoint.pt when it exists")
    parser.add_argument("--log-every", type=nonneg_int, default=0, help="print the training loss every N steps (default 0: once per epoch)")
    parser.add_argument("--quiet", action="store_true", help="print only the device line and the final metrics")


def check_args(args: argparse.Namespace) -> None:
    """What argparse cannot see: the data layout, the output folder, the checkpoint to resume.
    Raises ``UsageError`` (one line, exit 2) before anything is built."""
    from .argtypes import UsageError, writable_dir

    lo, hi = args.scale
    if lo > hi:
        raise UsageError(f"--scale: MIN {lo:g} is larger than MAX {hi:g}")
    if args.cutmix_minmax is not None and not args.cutmix_minmax[0] < args.cutmix_minmax[1]:
        raise UsageError(f"--cutmix-minmax: MIN {args.cutmix_minmax[0]:g} must be smaller than MAX {args.cutmix_minmax[1]:g}")
    if args.mixup_mode == "pair" and args.mixup_pairing == "roll":
        raise UsageError("--mixup-mode pair needs mutual partners: use --mixup-pairing flip or derangement, not roll")
    try:
        check_model_name(args.model)
    except ValueError as e:
        raise UsageError(f"--model: {e}") from None
    data = args.data
    if not data.is_dir():
        raise UsageError(f"data {str(data)!r}: " + ("not a directory" if data.exists() else "no such directory"))
    if not (data / "train").is_dir():
        raise UsageError(f"data {str(data)!r} has no train/ folder (expected DATA/train/<class>/<image>)")
    try:
        find_val_root(data)
    except FileNotFoundError as e:
        raise UsageError(f"data {str(data)!r}: {e}") from None
    if args.resume not in (None, "auto"):
        resume = pathlib.Path(args.resume)
        if not resume.is_file():
            raise UsageError(f"--resume {str(resume)!r}: no such checkpoint")
    writable_dir(args.out, "--out")


def run(args: argparse.Namespace) -> int:
    """Train; a bad argument or data layout is one line on stderr and exit status 2."""
    from .argtypes import UsageError

    try:
        check_args(args)
        train(args)
    except UsageError as e:
        print(f"dali-mixup train: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from .cli import _Parser

    parser = _Parser(prog="dali-mixup train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


# --------------------------------------------------------------------------- processes and device


class Dist:
    """Where this process stands: rank, world size, device, and whether it talks to others."""

    def __init__(self, rank: int, world_size: int, local_rank: int, device: torch.device):
        self.rank, self.world_size, self.local_rank, self.device = rank, world_size, local_rank, device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t


def setup_distributed(device: str = "auto") -> Dist:
    """Pick the device and, under ``torchrun`` (``WORLD_SIZE`` > 1), join the process group.

    Args:
        device: ``"auto"`` (CUDA when available), ``"cuda"`` or ``"cpu"``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch.cuda.is_available() is False")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        torch.distributed.init_process_group(backend=backend, **kwargs)
    return Dist(rank, world_size, local_rank, dev)


def autocast_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``--amp`` on ``device``; ``None`` means full float32."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def describe_device(dist: Dist, amp_dtype, channels_last: bool) -> str:
    if dist.device.type == "cuda":
        where = f"cuda:{dist.device.index} ({torch.cuda.get_device_name(dist.device)})"
    else:
        where = f"cpu ({torch.get_num_threads()} torch threads)"
    amp = {None: "float32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + grad scaler"}[amp_dtype]
    mode = f"DDP over {dist.world_size} processes ({torch.distributed.get_backend()})" if dist.enabled else "1 process"
    return f"device: {where}, {amp}, {'channels_last' if channels_last else 'NCHW'}, {mode}"


# --------------------------------------------------------------------------- model


class SmallCNN(nn.Module):
    """Three conv stages (width, 2·width, 4·width channels) with BatchNorm, global average pool
    and a linear head. For 8x8 to 64x64 inputs: ``(N, 3, H, W)`` → ``(N, num_classes)`` logits.
    About 0.3 M parameters at width 32."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        w = width
        self.features = nn.Sequential(
            *block(3, w), *block(w, w), nn.MaxPool2d(2),
            *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def build_model(name: str, num_classes: int, width: int = 32) -> nn.Module:
    """``resnet18`` (torchvision, random init), ``small-cnn`` (``SmallCNN``), or any timm model
    (``timm.create_model(name, pretrained=False, num_classes=num_classes)``; timm is imported only
    for such a name)."""
    if name == "resnet18":
        import torchvision

        return torchvision.models.resnet18(num_classes=num_classes)
    if name == "small-cnn":
        return SmallCNN(num_classes, width)
    check_model_name(name)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def check_model_name(name: str) -> None:
    """A built-in or a model timm knows. Raises ``ValueError`` naming close timm names otherwise
    (and saying so when timm is not installed)."""
    if name in MODELS:
        return
    try:
        import timm
    except ImportError:
        raise ValueError(f"unknown model {name!r}: the built-ins are {', '.join(MODELS)}; other names are timm "
                         f"models, and timm is not installed (pip install timm)") from None
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:12]}*")[:8]
        hint = f"; timm has {', '.join(close)}" if close else "; see timm.list_models()"
        raise ValueError(f"unknown model {name!r}: neither a built-in ({', '.join(MODELS)}) nor a timm model{hint}")


# --------------------------------------------------------------------------- loss, schedule, metrics


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c target[n, c] * log_softmax(logits)[n, c]``, in float32.

    Args:
        logits: ``(N, C)`` any float dtype (autocast output is upcast first).
        target: ``(N, C)`` float32 rows summing to 1: mixup and label smoothing already applied.
    """
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def warmup_cosine(total_steps: int, warmup_steps: int = 0):
    """``step -> lr factor``: linear from 1/warmup to 1 over ``warmup_steps``, then cosine to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class ClassificationMetrics:
    """Sums for accuracy, NLL and expected calibration error, reducible across processes.

    ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b| over ``bins`` equal-width bins of the
    top-1 softmax probability, bin b = (b/bins, (b+1)/bins].
    """

    def __init__(self, bins: int = ECE_BINS, device="cpu"):
        self.bins = bins
        # rows: count, correct, confidence sum per bin; plus [count, correct, nll sum] overall
        self.per_bin = torch.zeros(3, bins, dtype=torch.float64, device=device)
        self.total = torch.zeros(3, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Args: logits ``(N, C)``; labels ``(N,)`` integer class ids."""
        logp = F.log_softmax(logits.float(), dim=1)
        labels = labels.to(logp.device, torch.int64).view(-1)
        conf, pred = logp.exp().max(dim=1)
        correct = (pred == labels).double()
        nll = -logp.gather(1, labels[:, None]).squeeze(1).double()
        b = (conf.double() * self.bins).ceil().long().clamp_(1, self.bins) - 1
        self.per_bin[0].index_add_(0, b, torch.ones_like(correct))
        self.per_bin[1].index_add_(0, b, correct)
        self.per_bin[2].index_add_(0, b, conf.double())
        self.total[0] += labels.numel()
        self.total[1] += correct.sum()
        self.total[2] += nll.sum()

    def reduce(self, dist: "Dist") -> None:
        dist.all_reduce_sum(self.per_bin)
        dist.all_reduce_sum(self.total)

    def compute(self) -> Dict[str, object]:
        n, correct, nll = self.total.tolist()
        count, bin_correct, bin_conf = self.per_bin.tolist()
        ece = sum(abs(c - k) for c, k in zip(bin_correct, bin_conf)) / max(n, 1.0)
        return {
            "count": int(n),
            "accuracy": correct / max(n, 1.0),
            "nll": nll / max(n, 1.0),
            "ece": ece,
            "bins": {"count": [int(c) for c in count], "correct": bin_correct, "confidence": bin_conf},
        }


# --------------------------------------------------------------------------- data


def find_val_root(data: pathlib.Path) -> pathlib.Path:
    for name in ("val", "test"):
        if (data / name).is_dir():
            return data / name
    raise FileNotFoundError(f"{data} has no val/ or test/ folder")


def val_file_list(val_root: pathlib.Path, classes, out) -> int:
    """Write ``val_root``'s images as ``<path> <label>`` lines to the open text file ``out``,
    labelled with the TRAINING classes ``classes`` (a val/ folder that lacks a class must not
    shift the others' numbers). Returns the number of files.

    Raises:
        UsageError: val/ has a class folder that training does not know (named), or nothing.
    """
    from dali_mixup.sources import resolve_source

    from .argtypes import UsageError

    try:
        source = resolve_source(root=val_root, classes=classes)
    except ValueError as e:
        raise UsageError(f"validation data: {e}") from None
    for path, label in zip(source.files, source.labels):
        path = os.path.abspath(path)
        if "\n" in path or "\r" in path:
            raise UsageError(f"validation data: {path!r} has a line break in its name")
        out.write(f"{path} {label}\n")
    return len(source.files)


def mixup_from_args(args):
    """The ``MixupConfig`` of the mixup flags, as timm's ``Mixup(**mixup_args)`` from the same
    values (``dali_mixup.integrations.timm.mixup_config``; the partners as ``--mixup-pairing``
    says, timm's being ``flip``). ``None`` when nothing is mixed nor smoothed; neither mixup nor
    CutMix on but ``--smoothing`` > 0: a config with ``enabled=False`` (λ = 1, smoothed targets)."""
    from dali_mixup.integrations.timm import mixup_active, mixup_config

    if not mixup_active(args.mixup, args.cutmix, args.cutmix_minmax) and args.smoothing == 0:
        return None
    return mixup_config(
        mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax, prob=args.mixup_prob,
        switch_prob=args.mixup_switch_prob, mode=args.mixup_mode, label_smoothing=args.smoothing, num_classes=None,
        pairing=args.mixup_pairing,
    )


def describe_mixup(config) -> str:
    """One line: what the training loader mixes."""
    if config is None or not config.enabled:
        return "mixup off" + (f", smoothing {config.label_smoothing:g}" if config is not None and config.label_smoothing else "")
    parts = []
    if not (config.cutmix_on and config.switch_prob == 1.0):
        parts.append(f"mixup alpha={config.alpha:g}")
    if config.cutmix_on:
        box = f"minmax={list(config.cutmix_minmax)}" if config.cutmix_minmax is not None else f"alpha={config.cutmix_alpha:g}"
        parts.append(f"cutmix {box}" + (f" switch={config.switch_prob:g}" if config.switch_prob < 1.0 else ""))
    text = ", ".join(parts) + f", p={config.prob:g} {config.mode.value} {config.pairing.value}"
    return text + (f", smoothing {config.label_smoothing:g}" if config.label_smoothing else "")


def make_loaders(args, dist: Dist):
    """The training loader (mixup in the pipeline) and the validation loader (no mixup).

    The validation loader numbers its classes with the training loader's class map: val/ is
    read through a file list labelled with the training class indices."""
    import tempfile

    import dali_mixup

    from .argtypes import UsageError

    mixup = mixup_from_args(args)
    device = "gpu" if dist.device.type == "cuda" else "cpu"
    common = dict(
        batch_size=args.batch_size,
        image_size=args.image_size,
        device=device,
        num_threads=args.threads,
        seed=args.seed,
    )
    if dist.enabled:
        common.update(shard_id=dist.rank, num_shards=dist.world_size)
    try:
        train_loader = dali_mixup.create_loader(
            args.data / "train", mixup=mixup, train=True, scale=tuple(args.scale), flip_prob=args.flip_prob, **common
        )
    except ValueError as e:
        raise UsageError(f"training data: {e}") from None
    # PARTIAL (the default): every validation image exactly once over all processes
    with tempfile.TemporaryDirectory(prefix="dali-mixup-train-") as tmp:
        listing = pathlib.Path(tmp) / "val.txt"
        with open(listing, "w", encoding="utf-8") as f:
            val_file_list(find_val_root(args.data), train_loader.classes, f)
        try:
            val_loader = dali_mixup.create_loader(file_list=listing, num_classes=train_loader.num_classes, train=False,
                                                  resize_shorter=args.val_resize, **common)
        except ValueError as e:
            raise UsageError(f"validation data: {e}") from None
    return train_loader, val_loader


def to_model_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """``(N, C, H, W)`` float images on ``device``, in channels_last when asked for."""
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


# --------------------------------------------------------------------------- one epoch


def train_one_epoch(model, loader, optimizer, scheduler, scaler, dist, amp_dtype, channels_last, log_every=0, epoch=0):
    """One pass over this process's shard. Returns the mean training loss over all processes."""
    model.train()
    loss_sum = torch.zeros(2, dtype=torch.float64, device=dist.device)  # loss sum, samples
    step = 0
    for step, batch in enumerate(loader):
        batch = batch[0]
        images = to_model_input(batch["data"], dist.device, channels_last)
        targets = batch["label"].to(dist.device, torch.float32, non_blocking=True)
        with torch.autocast(dist.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
        loss = soft_target_cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        loss_sum[0] += loss.detach().double() * images.shape[0]
        loss_sum[1] += images.shape[0]
        if log_every and step % log_every == 0 and dist.is_main:
            print(f"epoch {epoch} step {step}/{len(loader)} loss {loss.item():.4f} lr {scheduler.get_last_lr()[0]:.4g}", flush=True)
    dist.all_reduce_sum(loss_sum)
    return (loss_sum[0] / loss_sum[1].clamp(min=1)).item()


@torch.no_grad()
def evaluate(model, loader, dist, amp_dtype, channels_last) -> Dict[str, object]:
    """Accuracy, NLL and ECE on the validation loader, over all processes' shards."""
    model.eval()
    metrics = ClassificationMetrics(device=dist.device)
    for batch in loader:
        batch = batch[0]
        images = to_model_input(batch["data"], dist.device, channels_last)
        with torch.autocast(dist.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
        metrics.update(logits, batch["label_index"])
    metrics.reduce(dist)
    return metrics.compute()


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: pathlib.Path, state: dict) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def gather_loader_states(loader, dist: Dist) -> Optional[list]:
    """Every process's loader state, in rank order (each reads its own shard, so each has its own)."""
    if not hasattr(loader, "state_dict"):
        return None
    states = [None] * dist.world_size
    if dist.enabled:
        torch.distributed.all_gather_object(states, loader.state_dict())
    else:
        states[0] = loader.state_dict()
    return states


def load_checkpoint(path: pathlib.Path, model, optimizer, scheduler, scaler, train_loader, dist: Dist) -> dict:
    """Restore everything ``train`` saved; returns the checkpoint (``epoch`` is the last finished)
    with ``loader_restored`` set to whether the data stream continues exactly where it stopped."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    states = ckpt.get("loader")
    ckpt["loader_restored"] = bool(states) and len(states) == dist.world_size and hasattr(train_loader, "load_state_dict")
    if ckpt["loader_restored"]:
        train_loader.load_state_dict(states[dist.rank])
    return ckpt


# --------------------------------------------------------------------------- the loop


def train(args: argparse.Namespace) -> dict:
    """Train, validate every epoch, checkpoint every epoch. Returns ``{"history": [...], "final": {...}}``
    (also written to ``OUT/metrics.json`` by rank 0)."""
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    dist = setup_distributed(args.device)
    try:
        return _train(args, dist)
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()


def _train(args, dist: Dist) -> dict:
    say = print if dist.is_main and not args.quiet else (lambda *a, **k: None)
    amp_dtype = autocast_dtype(args.amp, dist.device)
    channels_last = dist.device.type == "cuda" if args.channels_last is None else args.channels_last
    if dist.is_main:
        print(describe_device(dist, amp_dtype, channels_last), flush=True)

    train_loader, val_loader = make_loaders(args, dist)
    num_classes = train_loader.num_classes

    torch.manual_seed(args.seed)  # same initial weights in every process (DDP also broadcasts them)
    model = build_model(args.model, num_classes, args.width).to(dist.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None) if dist.enabled else model

    # no weight decay on BatchNorm and biases
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, momentum=args.momentum, nesterov=True,
    )
    steps_per_epoch = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(args.epochs * steps_per_epoch, int(args.warmup_epochs * steps_per_epoch))
    )
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    ckpt_path = args.out / "checkpoint.pt"
    start_epoch, history = 0, []
    resume = ckpt_path if args.resume == "auto" else (pathlib.Path(args.resume) if args.resume else None)
    if resume is not None and resume.exists():
        from .argtypes import UsageError

        try:
            ckpt = load_checkpoint(resume, model, optimizer, scheduler, scaler, train_loader, dist)
        except Exception as e:  # noqa: BLE001 - not a checkpoint, or another run's (model, classes, data)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UsageError(f"--resume {str(resume)!r}: cannot continue from it ({type(e).__name__}: {first[:300]})") from None
        start_epoch, history = ckpt["epoch"] + 1, ckpt.get("history", [])
        say(f"resumed from {resume}: epoch {ckpt['epoch']} done, continuing at epoch {start_epoch}")
        if not ckpt["loader_restored"]:
            saved = len(ckpt["loader"]) if ckpt.get("loader") else 0
            say(f"note: loader state not restored (saved for {saved} process(es), now {dist.world_size}); "
                "the data order restarts from --seed")
    elif resume is not None and args.resume != "auto":
        from .argtypes import UsageError

        raise UsageError(f"--resume {str(resume)!r}: no such checkpoint")

    say(
        f"data: {args.data} ({num_classes} classes), {steps_per_epoch} steps/epoch of {args.batch_size} per process, "
        f"{describe_mixup(train_loader.mixup)}"
        + (f", off from epoch {args.mixup_off_epoch}" if args.mixup_off_epoch and train_loader.mixup.enabled else "")
    )
    for epoch in range(start_epoch, args.epochs):
        if args.mixup_off_epoch and epoch >= args.mixup_off_epoch and train_loader.mixup.enabled:
            # timm's --mixup-off-epoch: no more mixing, the same label smoothing (kept across a resume)
            train_loader.mixup = dataclasses.replace(train_loader.mixup, enabled=False)
            say(f"epoch {epoch + 1}: mixup and CutMix off (--mixup-off-epoch {args.mixup_off_epoch})")
        t0 = time.perf_counter()
        train_loss = train_one_epoch(net, train_loader, optimizer, scheduler, scaler, dist, amp_dtype, channels_last, args.log_every, epoch)
        val = evaluate(model, val_loader, dist, amp_dtype, channels_last)
        seconds = time.perf_counter() - t0
        history.append({
            "epoch": epoch, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0], "seconds": seconds,
            "accuracy": val["accuracy"], "nll": val["nll"], "ece": val["ece"], "val_count": val["count"],
        })
        say(
            f"epoch {epoch + 1}/{args.epochs}  train loss {train_loss:.4f}  val acc {val['accuracy']:.4f}  "
            f"nll {val['nll']:.4f}  ece {val['ece']:.4f}  ({val['count']} images, {seconds:.1f}s)", flush=True
        )
        loader_states = gather_loader_states(train_loader, dist)  # a collective: every process calls it
        if dist.is_main:
            save_checkpoint(ckpt_path, {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "loader": loader_states,
                "history": history,
                "args": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items() if not k.startswith("_")},
            })
        if dist.enabled:
            torch.distributed.barrier()

    if start_epoch < args.epochs:
        final = val
    else:  # nothing left to train (resumed a finished run): just measure
        final = evaluate(model, val_loader, dist, amp_dtype, channels_last) if history else None
    result = {"history": history, "final": final}
    if dist.is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
        if result["final"] is not None:
            f = result["final"]
            print(f"final: val acc {f['accuracy']:.4f}  nll {f['nll']:.4f}  ece {f['ece']:.4f}", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
