"""Host-only cost of one batch (issues 12 and 23): what the training loop's thread spends on
drawing λ, partners and CutMix boxes and packing them (with the labels) for the one
host-to-device copy, before any kernel runs. CPU only, no GPU needed.

Run::

    python benchmarks/bench_host.py                  # µs per batch, every mode -> results/host-<machine>.json
    python benchmarks/bench_host.py --ref 6a4efdd    # and the sampler of another commit, interleaved
    pytest benchmarks/bench_host.py --benchmark-only # per-call statistics (pytest-benchmark)

Method of the script (issue 23's figure, target <= 20 µs per batch in every mode): N = 256; a
round is ``--batches`` batches of one mode and one implementation, back to back as the issue's
figures were, each batch ``sampler.sample(N[, (224, 224)])`` then ``params.on_with(device,
labels)``, the packing the iterator does for a GPU batch (``device`` is CUDA where there is one,
else ``"meta"``: the same host work, with no copy); ``--step-us`` adds a sleep standing for the
rest of a training step. A second loop times ``sample`` alone. Three times per batch, each
summed over the round and divided by its batches (block draws are in them, never the median
call): the training thread's CPU time (the verdict: what the training thread spends), the wall
time inside the calls (the training thread's CPU time plus its waits: for a core, and for the
background thread when back-to-back calls outrun the block draws, which a real step leaves
time for) and the process's CPU time (all threads: the background thread's block draws
included, what the machine spends). Rounds of every mode and implementation are interleaved,
after one warm-up round each (which also brings the blocks to their full size: 128 batches at
N = 256); the table gives medians over ``--rounds`` rounds and the spread (max - min) / median
of the training thread's time. The verdict holds whatever the spread: met when the slowest
round is within the target, missed when the fastest is not, none when the rounds straddle it.
Metadata (commit, versions, CPU, load average before and after) goes into the JSON.

Cases of the pytest-benchmark form, each one call per batch (their mean, not their median,
includes the block draws):

* ``sample-mixup-256`` / ``sample-cutmix-256``: ``MixupSampler.sample`` for N = 256 (per-sample
  mixup; mixup/CutMix with 224x224 boxes);
* ``to-device-pack``: ``sampler.to_device`` packing λ, partners, boxes, cutmix flags and labels
  into one staging buffer (on the CPU the copy itself is a no-op: this is the packing);
* ``mixer-tiny-blend`` / ``mixer-tiny-fused``: ``BatchMixer`` on a 4-image 3x8x8 batch (the
  per-batch overhead of the rules with almost no pixels), the classification fields and the
  ``fused_normalize`` ones (uint8 HWC crops + mirror flags).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from dali_mixup import MixupConfig, MixupSampler
from dali_mixup.fields import BatchMixer, Blend, MirrorFlags, NormalizeBlend, SoftTarget
from dali_mixup.sampler import to_device

N = 256
REPO = Path(__file__).resolve().parents[1]
#: the modes of issue 23's target; ``off`` is ``mixup=None`` (the iterator still asks the sampler)
MODES = {
    "mixup (elem)": (MixupConfig(alpha=0.2, mode="elem"), None),
    "mixup (batch)": (MixupConfig(alpha=0.2), None),
    "mixup (pair)": (MixupConfig(alpha=0.2, mode="pair"), None),
    "mixup/CutMix (elem)": (MixupConfig(alpha=0.2, cutmix_alpha=1.0, mode="elem"), (224, 224)),
    "mixup/CutMix (batch)": (MixupConfig(alpha=0.2, cutmix_alpha=1.0), (224, 224)),
    "off": (MixupConfig(enabled=False), None),
}
TARGET_US = 20.0


@pytest.mark.benchmark(group="host-sample")
def test_sample_mixup_256(benchmark):
    s = MixupSampler(MixupConfig(alpha=0.2, mode="elem"), seed=0)
    benchmark(s.sample, N)


@pytest.mark.benchmark(group="host-sample")
def test_sample_batch_mode_256(benchmark):
    s = MixupSampler(MixupConfig(alpha=0.2), seed=0)
    benchmark(s.sample, N)


@pytest.mark.benchmark(group="host-sample")
def test_sample_cutmix_256(benchmark):
    s = MixupSampler(MixupConfig(alpha=0.2, cutmix_alpha=1.0, mode="elem"), seed=0)
    benchmark(s.sample, N, (224, 224))


@pytest.mark.benchmark(group="host-pack")
def test_to_device_pack_256(benchmark):
    p = MixupSampler(MixupConfig(alpha=0.2, cutmix_alpha=1.0, mode="elem"), seed=0).sample(N, (224, 224))
    labels = torch.randint(0, 1000, (N,), dtype=torch.int64)
    benchmark(to_device, "cpu", p.lam, p.perm, p.boxes, p.cutmix, labels)


def _tiny(fused: bool):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (4, 1), generator=g, dtype=torch.int32)
    if fused:
        fields = {"data": NormalizeBlend(), "label": SoftTarget(10), "mirror": MirrorFlags()}
        batch = {"data": torch.randint(0, 256, (4, 8, 8, 3), generator=g, dtype=torch.uint8), "label": labels,
                 "mirror": torch.tensor([0, 1, 1, 0], dtype=torch.int32)}
    else:
        fields = {"data": Blend(), "label": SoftTarget(10)}
        batch = {"data": torch.randn(4, 3, 8, 8, generator=g), "label": labels}
    mixer = BatchMixer(fields)
    params = MixupSampler(MixupConfig(alpha=0.2, mode="elem", num_classes=10), seed=0).sample(4)
    return mixer, batch, params


@pytest.mark.benchmark(group="host-mixer")
def test_mixer_tiny_blend(benchmark):
    mixer, batch, params = _tiny(False)
    benchmark(mixer, batch, params)


@pytest.mark.benchmark(group="host-mixer")
def test_mixer_tiny_fused(benchmark):
    mixer, batch, params = _tiny(True)
    benchmark(mixer, batch, params)


# -- the script: issue 23's figure --------------------------------------------------------------


def _sampler_class(ref):
    """``MixupSampler`` of this checkout (``ref`` None) or of ``dali_mixup/sampler.py`` at git
    ``ref``, loaded as a module of the installed package (its relative imports resolve there)."""
    if ref is None:
        return MixupSampler
    src = subprocess.run(["git", "show", f"{ref}:dali_mixup/sampler.py"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    name = f"dali_mixup._sampler_at_{ref.replace('~', '_').replace('^', '_')}"
    mod = types.ModuleType(name)
    mod.__package__ = "dali_mixup"
    sys.modules[name] = mod  # dataclasses look their module up
    exec(compile(src, f"{ref}:dali_mixup/sampler.py", "exec"), mod.__dict__)
    return mod.MixupSampler


def _round(sampler, size, labels, device, batches: int, pack: bool, step: float):
    """(wall µs inside the calls, training thread CPU µs, process CPU µs) per batch."""
    sample, clock, inside = sampler.sample, time.perf_counter, 0.0
    thread0, process0 = time.thread_time(), time.process_time()
    for _ in range(batches):
        t0 = clock()
        p = sample(N, size)
        if pack:
            p.on_with(device, labels)
        inside += clock() - t0
        if step:
            time.sleep(step)
    thread, process = time.thread_time() - thread0, time.process_time() - process0
    return 1e6 * inside / batches, 1e6 * thread / batches, 1e6 * process / batches


def main(argv=None) -> int:
    from dali_mixup.tools.meta import hardware_slug, metadata

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", help="git commit whose sampler to measure too, interleaved ('before')")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batches", type=int, default=1024, help="batches per round (128 per block at N=256)")
    ap.add_argument("--step-us", type=float, default=0.0, help="sleep between batches: the rest of a step")
    ap.add_argument("--out", help="result JSON (default benchmarks/results/host-<machine>.json)")
    args = ap.parse_args(argv)

    meta = metadata()
    meta["load_average_before"] = os.getloadavg()
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("meta")
    labels = torch.randint(0, 1000, (N,), dtype=torch.int64, generator=torch.Generator().manual_seed(0))
    impls = {"this checkout": _sampler_class(None)}
    if args.ref:
        impls[f"ref {args.ref}"] = _sampler_class(args.ref)
    step = args.step_us * 1e-6
    cells = {}
    for mode, (cfg, size) in MODES.items():
        for impl, cls in impls.items():
            for pack in (False, True):
                sampler = cls(cfg, 0)
                _round(sampler, size, labels, device, args.batches, pack, step)  # warm-up, blocks at full size
                cells[(mode, impl, pack)] = (sampler, size, [])
    for _ in range(args.rounds):
        for (mode, impl, pack), (sampler, size, got) in cells.items():
            got.append(_round(sampler, size, labels, device, args.batches, pack, step))
    meta["load_average_after"] = os.getloadavg()

    rows = []
    for (mode, impl, pack), (_, _, got) in cells.items():
        thread = [g[1] for g in got]
        med = statistics.median(thread)
        spread = (max(thread) - min(thread)) / med
        row = {"mode": mode, "impl": impl, "what": "sample + pack" if pack else "sample",
               "thread_cpu_us_per_batch": round(med, 2), "spread": round(spread, 3),
               "wall_us_per_batch": round(statistics.median(g[0] for g in got), 2),
               "process_cpu_us_per_batch": round(statistics.median(g[2] for g in got), 2),
               "rounds_thread_cpu_us": [round(v, 2) for v in thread]}
        if pack:  # every round within the target, or none: else no verdict
            row["target_met"] = True if max(thread) <= TARGET_US else False if min(thread) > TARGET_US else None
        rows.append(row)

    print(f"host cost per batch, N={N}, device {device.type} ({'copy launched' if device.type == 'cuda' else 'no copy'}), "
          f"{args.rounds} rounds x {args.batches} batches, {args.step_us:.0f} µs step; load average "
          f"{meta['load_average_before'][0]:.1f} -> {meta['load_average_after'][0]:.1f} on {meta['cpu']['cores']} cores "
          f"({meta['cpu']['model']})")
    print(f"{'mode':<22} {'implementation':<16} {'what':<14} {'thread CPU':>10} {'spread':>7} {'wall':>7} "
          f"{'process CPU':>12}  verdict (µs per batch)")
    for r in rows:
        verdict = ""
        if r["what"] == "sample + pack":
            verdict = {True: "<= 20 µs in every round: met", False: "> 20 µs in every round: MISSED",
                       None: "rounds on both sides of 20 µs: no verdict"}[r["target_met"]]
        print(f"{r['mode']:<22} {r['impl']:<16} {r['what']:<14} {r['thread_cpu_us_per_batch']:10.1f} "
              f"{100 * r['spread']:6.0f}% {r['wall_us_per_batch']:7.1f} {r['process_cpu_us_per_batch']:12.1f}  {verdict}")
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"host-{hardware_slug(meta)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "bench_host", "method": __doc__.split("Method of the script")[1].split("\n\n")[0],
                               "batch_size": N, "device": device.type, "rounds": args.rounds, "batches": args.batches,
                               "step_us": args.step_us,
                               "ref": args.ref, "metadata": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
