"""GPU measurements in one short run (used on a lent H100; the full suite is `dali-mixup bench`).

Method:
* Kernel bandwidth: CUDA events around 50 launches after 10 warm-up launches, median of 5
  repeats. The mixup kernel moves 3 x batch bytes (reads x[i] and x[perm[i]], writes out; every
  λ < 1 so the partner is always read); a device-to-device copy moves 2 x batch bytes.
  Reported: GB/s of each and their ratio. Eager torch mixup (``lam*x + (1-lam)*x[perm]``) timed
  the same way.
* Iterator throughput: images/s over 3 timed epochs after 1 warm-up epoch, median, on the same
  generated JPEGs; rows: ours (DALIMixupIterator, GPU), plain DALI iterator (same pipeline, no
  mixup), DALI + eager torch mixup. torch.cuda.synchronize() at the end of each epoch.
Writes ``gpu-quick-<hardware>.json`` (with ``dali_mixup.tools.meta.metadata()``, the commit from
``$GIT_COMMIT`` where the tree has no git history) to $OUT (or ./bench-out). Superseded by
``gpu_check.py`` (the GPU check); kept for comparison with the H100 files it wrote.
"""

import json
import os
import statistics
import sys
import time

import torch


def kernel_bandwidth(n=256, shape=(3, 224, 224)):
    from dali_mixup import MixupConfig, MixupSampler, mix_images

    res = {}
    for dtype in (torch.float32, torch.float16, torch.uint8):
        x = (torch.rand((n, *shape), device="cuda") * 255).to(dtype)
        out = torch.empty_like(x)
        params = MixupSampler(MixupConfig(alpha=1.0, mode="elem"), 0).sample(n)
        lam_d = params.lam.cuda().view(-1, 1, 1, 1)
        perm_d = params.perm.cuda()
        nbytes = x.numel() * x.element_size()

        def timed(fn, reps=50):
            for _ in range(10):
                fn()
            meds = []
            for _ in range(5):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                for _ in range(reps):
                    fn()
                e.record()
                e.synchronize()
                meds.append(s.elapsed_time(e) / reps / 1e3)
            return statistics.median(meds)

        t_copy = timed(lambda: out.copy_(x))
        t_mix = timed(lambda: mix_images(x, params, out=out))
        xf = x.float() if dtype == torch.uint8 else x
        t_eager = timed(lambda: lam_d.to(xf.dtype) * xf + (1 - lam_d.to(xf.dtype)) * xf[perm_d])
        bw_copy, bw_mix = 2 * nbytes / t_copy / 1e9, 3 * nbytes / t_mix / 1e9
        res[str(dtype).replace("torch.", "")] = {
            "batch": [n, *shape], "copy_s": t_copy, "mix_s": t_mix, "eager_torch_s": t_eager,
            "copy_GBps": bw_copy, "mix_GBps": bw_mix, "mix_bandwidth_ratio": bw_mix / bw_copy,
            "mix_speedup_vs_eager": t_eager / t_mix,
        }
        print(dtype, json.dumps(res[str(dtype).replace("torch.", "")]), flush=True)
    return res


def iterator_throughput(root, batch_size=128, image_size=224, epochs=3):
    from nvidia.dali.plugin.pytorch import DALIClassificationIterator, LastBatchPolicy

    from dali_mixup import MixupConfig, create_loader
    from dali_mixup.kinds.image_pipeline import READER_NAME, train_pipeline
    from dali_mixup.sources import resolve_source

    threads = min(os.cpu_count() or 4, 16)
    src = resolve_source(root)

    def plain():
        pipe = train_pipeline(source=src, device="gpu", image_size=image_size, batch_size=batch_size,
                              num_threads=threads, device_id=0, seed=1)
        return DALIClassificationIterator(pipe, reader_name=READER_NAME, auto_reset=True,
                                          last_batch_policy=LastBatchPolicy.PARTIAL)

    def ours():
        return create_loader(root, batch_size=batch_size, image_size=image_size, device="gpu",
                             num_threads=threads, mixup=MixupConfig(alpha=0.2), seed=1)

    def eager_after(it, c):
        def run_epoch():
            n = 0
            for b in it:
                x, y = b[0]["data"], b[0]["label"].view(-1).long().cuda()
                lam = float(torch.distributions.Beta(0.2, 0.2).sample())
                perm = torch.randperm(x.shape[0], device=x.device)
                x = lam * x + (1 - lam) * x[perm]
                t = torch.nn.functional.one_hot(y, c).float()
                t = lam * t + (1 - lam) * t[perm]
                n += x.shape[0]
            return n
        return run_epoch

    def consume(it):
        def run_epoch():
            n = 0
            for b in it:
                n += b[0]["data"].shape[0]
            return n
        return run_epoch

    rows = {}
    for name, make in (("plain_dali", lambda: consume(plain())), ("ours_mixup_gpu", lambda: consume(ours())),
                       ("dali_plus_eager_torch_mixup", lambda: eager_after(plain(), src.num_classes))):
        run_epoch = make()
        run_epoch()
        rates = []
        for _ in range(epochs):
            torch.cuda.synchronize()
            t = time.perf_counter()
            n = run_epoch()
            torch.cuda.synchronize()
            rates.append(n / (time.perf_counter() - t))
        rows[name] = {"images_per_s_median": statistics.median(rates), "all": rates}
        print(name, rows[name], flush=True)
    base = rows["plain_dali"]["images_per_s_median"]
    for r in rows.values():
        r["ratio_to_plain_dali"] = r["images_per_s_median"] / base
    return rows


def main():
    out = os.environ.get("OUT", "bench-out")
    os.makedirs(out, exist_ok=True)
    from dali_mixup.tools.meta import hardware_slug, metadata

    meta = metadata()  # git commit, versions (torch, DALI, CuPy, ...), CPU model and cores, GPU
    meta["git"]["commit"] = meta["git"].get("commit") or os.environ.get("GIT_COMMIT")  # a tree copied without history
    result = {"meta": meta, "kernel": kernel_bandwidth()}
    if len(sys.argv) > 1:
        result["iterator"] = iterator_throughput(sys.argv[1], int(os.environ.get("BS", 128)))
    with open(os.path.join(out, f"gpu-quick-{hardware_slug(meta)}.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
