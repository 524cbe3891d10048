"""Device-side bandwidth of the image kernel against a device-to-device copy (GPU only).

pytest-benchmark times what a call costs the host, launch overhead included; this script reads
the kernels' own durations from CUPTI (``torch.profiler``), so the issue's bandwidth target
(the image kernel at >= 85 % of a device-to-device copy, counting 2 reads + 1 write per
element against the copy's 1 read + 1 write) is measured on the device alone. Each row also
times the mixup/CutMix kernel on a batch where about half the samples are CutMix (the packed
kernel for NCHW, the one-element kernel for channels_last).

    python benchmarks/kernel_bandwidth.py [--out benchmarks/results/kernel-bandwidth-<gpu>.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def _device_times(fn, repeats: int):
    """Median device duration (s) of each kernel name launched by ``fn``, over ``repeats`` calls."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    times = {}
    for ev in prof.events():
        if ev.device_type.name == "CUDA" and ev.device_time > 0:
            times.setdefault(ev.name, []).append(ev.device_time * 1e-6)  # us -> s
    return {k: statistics.median(v) for k, v in times.items() if len(v) >= repeats}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("kernel_bandwidth: no CUDA GPU; nothing to measure", file=sys.stderr)
        return 0
    from dali_mixup import MixupConfig, MixupSampler, kernels
    from dali_mixup.mix import _cutmix_grid

    rows = []
    for n in (32, 128, 256):
        for dtype in (torch.uint8, torch.float16, torch.float32):
            for layout in ("NCHW", "NHWC"):
                x = torch.randint(0, 255, (n, 3, 224, 224), device="cuda").to(dtype)
                if layout == "NHWC":
                    x = x.contiguous(memory_format=torch.channels_last)
                out = torch.empty_like(x)
                xf = x.view(-1) if x.is_contiguous() else x.permute(0, 2, 3, 1).view(-1)
                of = out.view(-1) if out.is_contiguous() else out.permute(0, 2, 3, 1).view(-1)
                params = MixupSampler(MixupConfig(mode="elem"), seed=0).sample(n)
                lam, perm = params.lam.cuda(), params.perm.cuda()
                mix = _device_times(lambda: kernels.launch_mix_images(xf, lam, perm, x.numel() // n, of), args.repeats)
                copy = _device_times(lambda: out.copy_(x), args.repeats)
                # the mixup/CutMix kernel on a batch where about half the samples are CutMix
                cp = MixupSampler(MixupConfig(mode="elem", cutmix_alpha=1.0, switch_prob=0.5), seed=0).sample(
                    n, image_size=(224, 224))
                grid = _cutmix_grid(x, "NCHW", cp)
                dcp = cp.on(x.device)
                cut = _device_times(lambda: kernels.launch_mix_cutmix_images(
                    xf, dcp.lam, dcp.perm, dcp.cutmix, dcp.boxes, grid, of), args.repeats)
                t_mix, t_copy = max(mix.values()), max(copy.values())
                nbytes = x.numel() * x.element_size()
                bw_mix, bw_copy = 3 * nbytes / t_mix, 2 * nbytes / t_copy
                rows.append({"batch": n, "dtype": str(dtype).replace("torch.", ""), "layout": layout,
                             "kernel_us": t_mix * 1e6, "copy_us": t_copy * 1e6, "kernel_GBps": bw_mix / 1e9,
                             "copy_GBps": bw_copy / 1e9, "share_of_copy": bw_mix / bw_copy,
                             "kernel_names": sorted(mix), "copy_names": sorted(copy),
                             "cutmix_us": max(cut.values()) * 1e6, "cutmix_kernel_names": sorted(cut),
                             "cutmix_samples": int(cp.cutmix.sum())})
                r = rows[-1]
                print(f"N={n:<4} {r['dtype']:<8} {layout}: kernel {r['kernel_us']:8.1f} us {r['kernel_GBps']:7.0f} GB/s"
                      f" | copy {r['copy_us']:7.1f} us {r['copy_GBps']:7.0f} GB/s | {100 * r['share_of_copy']:5.1f}%"
                      f" | cutmix {r['cutmix_us']:7.1f} us ({r['cutmix_kernel_names'][0]})")
    if args.out:
        from dali_mixup.tools.meta import metadata

        with open(args.out, "w") as f:
            json.dump({"metadata": metadata(), "method": __doc__, "rows": rows}, f, indent=1, default=str)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
