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


# --- the CPU twin against another commit's, interleaved (issue 23) ----------------------------


def twin_ab(argv=None) -> int:
    """``python benchmarks/bench_kernels.py --ref REF``: the ``ours-cpu`` peer (sample +
    ``mix_images(x, params, out=out)``) with this checkout's CPU twin and with ``dali_mixup/cpu.py``
    at git ``REF``, and the ``copy`` peer, in interleaved rounds (the order rotating each round),
    on the issue-2 case (128, 3, 224, 224) float32 NCHW by default. Reported as this file's
    session summary does: median time over 1.5 copies' median; also the median of the per-round
    ratios (each round's time over the same round's copy: steadier when the load drifts). Both
    twins are checked to give the same bits first. Writes ``results/cpu-twin-<machine>.json``."""
    import argparse
    import json
    import os
    import statistics
    import subprocess
    import sys
    import time
    import types
    from pathlib import Path

    import dali_mixup.mix as mix_module
    from dali_mixup.tools.meta import hardware_slug, metadata

    ap = argparse.ArgumentParser(description=twin_ab.__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True, help="git commit whose dali_mixup/cpu.py to compare with")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dtype", default="float32", choices=list(DTYPES))
    ap.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repo = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "show", f"{args.ref}:dali_mixup/cpu.py"], cwd=repo, capture_output=True, text=True,
                         check=True).stdout
    name = f"dali_mixup._cpu_at_{args.ref}"
    ref_cpu = types.ModuleType(name)
    ref_cpu.__package__ = "dali_mixup"
    sys.modules[name] = ref_cpu
    exec(compile(src, f"{args.ref}:dali_mixup/cpu.py", "exec"), ref_cpu.__dict__)
    this_cpu = mix_module.cpu

    meta = metadata()
    meta["load_average_before"] = os.getloadavg()
    n = args.batch
    x, _ = _batch(n, args.dtype, args.layout)
    out = torch.empty_like(x)
    sampler = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), seed=0)

    def ours(module):
        def fn():
            mix_module.cpu = module
            try:
                mix_images(x, sampler.sample(n), out=out)
            finally:
                mix_module.cpu = this_cpu

        return fn

    peers = {"copy": lambda: out.copy_(x), "ours-cpu": ours(this_cpu), f"ours-cpu@{args.ref}": ours(ref_cpu)}
    params = sampler.sample(n)
    got = []
    for module in (this_cpu, ref_cpu):
        mix_module.cpu = module
        got.append(mix_images(x, params).contiguous().view(torch.uint8))
    mix_module.cpu = this_cpu
    assert torch.equal(got[0], got[1]), "the two twins differ"
    for fn in peers.values():
        fn()  # warm-up
    times = {p: [] for p in peers}
    order = list(peers)
    for r in range(args.rounds):
        for p in order[r % len(order):] + order[: r % len(order)]:
            t0 = time.perf_counter()
            peers[p]()
            times[p].append(time.perf_counter() - t0)
    meta["load_average_after"] = os.getloadavg()
    copy = statistics.median(times["copy"])
    rows = []
    print(f"CPU twin, ({n}, 3, 224, 224) {args.dtype} {args.layout}, {torch.get_num_threads()} torch threads, "
          f"{args.rounds} interleaved rounds; load average {meta['load_average_before'][0]:.1f} -> "
          f"{meta['load_average_after'][0]:.1f} on {meta['cpu']['cores']} cores ({meta['cpu']['model']})")
    for p, ts in times.items():
        med = statistics.median(ts)
        row = {"peer": p, "median_ms": round(1e3 * med, 3), "spread": round((max(ts) - min(ts)) / med, 3),
               "rounds_ms": [round(1e3 * t, 3) for t in ts]}
        if p != "copy":
            row["over_1_5_copies"] = round(med / (1.5 * copy), 3)
            row["per_round_over_1_5_copies"] = round(statistics.median(
                t / (1.5 * c) for t, c in zip(ts, times["copy"])), 3)
        rows.append(row)
        extra = (f"  / 1.5 copies = {row['over_1_5_copies']:.2f} (per round: {row['per_round_over_1_5_copies']:.2f})"
                 if p != "copy" else "")
        print(f"  {p:<22} {row['median_ms']:8.2f} ms  spread {100 * row['spread']:4.0f}%{extra}")
    path = Path(args.out) if args.out else repo / "benchmarks" / "results" / f"cpu-twin-{hardware_slug(meta)}.json"
    path.write_text(json.dumps({"benchmark": "bench_kernels twin_ab", "method": twin_ab.__doc__, "ref": args.ref,
                                "case": {"batch": n, "dtype": args.dtype, "layout": args.layout,
                                         "torch_threads": torch.get_num_threads()},
                                "metadata": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(twin_ab())
