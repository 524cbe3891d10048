"""Kernel benchmarks: ``mix_images`` and ``mix_targets`` against the peers people use.

Run (the method is in benchmarks/README.md)::

    pytest benchmarks --benchmark-only                       # a few representative cases
    pytest benchmarks --benchmark-only --full-sweep          # batch 32..256, every dtype/layout
    pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/kernels-<machine>.json

Peers, each timed on the same input, with the same batch, one call = one mixed batch:

* ``ours-cpu``: ``MixupSampler.sample`` + ``mix_images(x, params, out=out)`` (the CPU twin);
* ``copy``: ``out.copy_(x)``, the floor (one read, one write per element);
* ``eager``: ``lam*x + (1-lam)*x[perm]`` with a per-sample λ, as hand-written loops do;
* ``torchvision-MixUp``: ``torchvision.transforms.v2.MixUp`` (images and one-hot targets);
* ``timm-Mixup``: ``timm.data.Mixup`` (in place, batch mode, targets included);
* on a GPU, all with ``torch.cuda.synchronize()`` inside the timed call: ``ours-cuda``
  (sample + ``mix_images``: what one call costs, host overhead included), ``d2d-copy``, the
  eager and torchvision peers; and, for device bandwidth, ``ours-cuda-kernel`` (the CuPy kernel
  alone, parameters already on the GPU) and ``d2d-copy-kernel``, each 20 launches per
  synchronisation, reported per launch. The summary gives the kernel's bandwidth (2 reads + 1
  write per element) as a share of the copy's (1 read + 1 write).

A peer that does not support a case (torchvision and timm on uint8) is skipped with the reason.
"""

from __future__ import annotations

import pytest
import torch

from dali_mixup import MixupConfig, MixupSampler, mix_images, mix_targets

NUM_CLASSES = 1000
DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32}
CPU_PEERS = ("ours-cpu", "copy", "eager", "torchvision-MixUp", "timm-Mixup")
GPU_PEERS = ("ours-cuda", "d2d-copy", "eager-cuda", "torchvision-MixUp-cuda", "ours-cuda-kernel", "d2d-copy-kernel")
#: launches per synchronisation in the ``-kernel`` peers (device time, not host overhead)
LAUNCHES = 20


def _cases():
    """(batch, dtype, layout) cases; the default run keeps the first ones, --full-sweep all."""
    default = [(128, "float32", "NCHW")]  # the issue-2 comparison
    default += [(32, d, lay) for d in DTYPES for lay in ("NCHW", "NHWC")]
    cases = [pytest.param(*c, id=f"N{c[0]}-{c[1]}-{c[2]}") for c in default]
    for n in (32, 64, 128, 256):
        for d in DTYPES:
            for lay in ("NCHW", "NHWC"):
                if (n, d, lay) not in default:
                    cases.append(pytest.param(n, d, lay, id=f"N{n}-{d}-{lay}", marks=pytest.mark.full))
    return cases


def _batch(n, dtype, layout, device="cpu"):
    g = torch.Generator().manual_seed(0)
    shape = (n, 3, 224, 224)
    if DTYPES[dtype] == torch.uint8:
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    else:
        x = torch.randn(shape, generator=g).to(DTYPES[dtype])
    if layout == "NHWC":
        x = x.contiguous(memory_format=torch.channels_last)  # (N, C, H, W) view of NHWC memory
    x = x.to(device)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g).to(device)
    return x, labels


def _group(n, dtype, layout, device="cpu"):
    return f"images {device} N={n} {dtype} {layout}"


def _peer_fn(peer, x, labels):
    """The timed callable of one peer on (x, labels), or raise pytest.skip with the reason."""
    n = x.shape[0]
    cuda = x.is_cuda
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sampler = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), seed=0)

    def probed(what, call):
        """``call`` then a sync, timed; tried once first: a peer that refuses this input is skipped."""
        try:
            call()
        except Exception as e:  # noqa: BLE001 - a peer that cannot do this case is skipped
            pytest.skip(f"{what} does not take this input: {type(e).__name__}: {e}")

        def fn():
            y = call()
            sync()
            return y

        return fn

    if peer in ("ours-cpu", "ours-cuda"):
        out = torch.empty_like(x)

        def fn():
            mix_images(x, sampler.sample(n), out=out)
            sync()

        return fn
    if peer == "ours-cuda-kernel":
        from dali_mixup import kernels

        p = sampler.sample(n)
        lam, perm = p.lam.to(x.device), p.perm.to(x.device)
        out = torch.empty_like(x)
        xf = x.view(-1) if x.is_contiguous() else x.permute(0, 2, 3, 1).view(-1)
        of = out.view(-1) if out.is_contiguous() else out.permute(0, 2, 3, 1).view(-1)

        def fn():
            for _ in range(LAUNCHES):
                kernels.launch_mix_images(xf, lam, perm, x.numel() // n, of)
            sync()

        return fn
    if peer == "d2d-copy-kernel":
        out = torch.empty_like(x)

        def fn():
            for _ in range(LAUNCHES):
                out.copy_(x)
            sync()

        return fn
    if peer in ("copy", "d2d-copy"):
        out = torch.empty_like(x)

        def fn():
            out.copy_(x)
            sync()

        return fn
    if peer.startswith("eager"):
        shape = (n,) + (1,) * (x.dim() - 1)

        def fn():
            p = sampler.sample(n)
            lam = p.lam.to(x.device).view(shape)
            y = lam * x + (1 - lam) * x[p.perm.to(x.device)]
            sync()
            return y

        return fn
    if peer.startswith("torchvision-MixUp"):
        try:
            from torchvision.transforms import v2
        except ImportError as e:
            pytest.skip(f"torchvision not installed ({e})")
        mixup = v2.MixUp(alpha=1.0, num_classes=NUM_CLASSES)
        return probed("torchvision MixUp", lambda: mixup(x, labels))
    if peer == "timm-Mixup":
        try:
            from timm.data import Mixup
        except ImportError as e:
            pytest.skip(f"timm not installed ({e})")
        mixup = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=NUM_CLASSES)
        xt = x.clone()  # timm mixes in place
        return probed("timm Mixup", lambda: mixup(xt, labels))
    raise AssertionError(peer)


@pytest.mark.parametrize("peer", CPU_PEERS)
@pytest.mark.parametrize("n,dtype,layout", _cases())
def test_images_cpu(benchmark, kernel_record, peer, n, dtype, layout):
    x, labels = _batch(n, dtype, layout)
    group = _group(n, dtype, layout)
    fn = _peer_fn(peer, x, labels)
    benchmark.group = group
    benchmark.extra_info.update(peer=peer, shape=list(x.shape), dtype=dtype, layout=layout)
    benchmark(fn)
    kernel_record(group, peer, benchmark)


@pytest.mark.gpu
@pytest.mark.parametrize("peer", GPU_PEERS)
@pytest.mark.parametrize("n,dtype,layout", _cases())
def test_images_cuda(benchmark, kernel_record, peer, n, dtype, layout):
    x, labels = _batch(n, dtype, layout, device="cuda")
    group = _group(n, dtype, layout, "cuda")
    fn = _peer_fn(peer, x, labels)
    fn()  # compile / warm the kernel outside the timed rounds
    torch.cuda.synchronize()
    benchmark.group = group
    benchmark.extra_info.update(peer=peer, shape=list(x.shape), dtype=dtype, layout=layout)
    benchmark.pedantic(fn, rounds=50, iterations=5, warmup_rounds=5)
    kernel_record(group, peer, benchmark, nbytes=3 * x.numel() * x.element_size(),
                  scale=1.0 / LAUNCHES if peer.endswith("-kernel") else 1.0)


# --- targets ---------------------------------------------------------------------------------

TARGET_PEERS = ("ours", "eager-one-hot", "timm-mixup_target")


def _targets_fn(peer, labels):
    n = labels.shape[0]
    sampler = MixupSampler(MixupConfig(alpha=1.0, mode="elem", label_smoothing=0.1), seed=0)
    sync = torch.cuda.synchronize if labels.is_cuda else (lambda: None)
    if peer == "ours":

        def fn():
            y = mix_targets(labels, sampler.sample(n), NUM_CLASSES, 0.1)
            sync()
            return y

        return fn
    if peer == "eager-one-hot":
        on, off = 1 - 0.1 + 0.1 / NUM_CLASSES, 0.1 / NUM_CLASSES

        def fn():
            p = sampler.sample(n)
            lam = p.lam.to(labels.device).view(-1, 1)
            oh = torch.nn.functional.one_hot(labels, NUM_CLASSES).float() * (on - off) + off
            y = lam * oh + (1 - lam) * oh[p.perm.to(labels.device)]
            sync()
            return y

        return fn
    if peer == "timm-mixup_target":
        try:
            from timm.data.mixup import mixup_target
        except ImportError as e:
            pytest.skip(f"timm not installed ({e})")

        def fn():
            # timm draws one λ per batch and pairs by flip; the cost is the target arithmetic
            y = mixup_target(labels, NUM_CLASSES, lam=0.7, smoothing=0.1)
            sync()
            return y

        return fn
    raise AssertionError(peer)


def _target_cases():
    return [pytest.param(128, id="N128")] + [
        pytest.param(n, id=f"N{n}", marks=pytest.mark.full) for n in (32, 64, 256)
    ]


@pytest.mark.parametrize("peer", TARGET_PEERS)
@pytest.mark.parametrize("n", _target_cases())
def test_targets_cpu(benchmark, kernel_record, peer, n):
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=torch.Generator().manual_seed(0))
    group = f"targets cpu N={n} C={NUM_CLASSES}"
    benchmark.group = group
    benchmark(_targets_fn(peer, labels))
    kernel_record(group, peer, benchmark)


@pytest.mark.gpu
@pytest.mark.parametrize("peer", TARGET_PEERS)
@pytest.mark.parametrize("n", _target_cases())
def test_targets_cuda(benchmark, kernel_record, peer, n):
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=torch.Generator().manual_seed(0)).cuda()
    group = f"targets cuda N={n} C={NUM_CLASSES}"
    fn = _targets_fn(peer, labels)
    fn()
    benchmark.group = group
    benchmark.pedantic(fn, rounds=50, iterations=5, warmup_rounds=5)
    kernel_record(group, peer, benchmark)
