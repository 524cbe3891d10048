"""Audio benchmark: clips/s of ``create_audio_loader`` against a CPU ``DataLoader`` baseline, same run.

Run::

    python benchmarks/bench_audio.py --out benchmarks/results            # full size
    python benchmarks/bench_audio.py --out /tmp/r --quick                # < 1 minute

Data: synthetic clips the script writes (tones, chirps, noise; 3 classes; half WAV 16-bit, half
FLAC; 22.05 kHz, 1.2 s), so both loaders resample to 16 kHz and crop 1.0 s.

Work per clip, the same for both: decode, mono, resample 22.05 → 16 kHz, random 1 s window;
per batch: mixup (α = 0.4, one λ per clip, soft targets with smoothing 0.1), then the log-mel
of the *mixed* waveforms (n_fft 400, hop 160, 64 mels, top_db 80).

* ``ours``: ``create_audio_loader(..., mix_stage="waveform")`` — DALI decodes, resamples and
  crops in its threads (``num_threads`` = the cores), the iterator mixes and computes the
  log-mels (``LogMel``: ``torch.stft`` + DALI's mel matrix) on the batch's device.
* ``baseline``: ``torch.utils.data.DataLoader`` with ``num_workers`` = the cores: ``soundfile``
  decode, ``scipy.signal.resample_poly``, random window in the dataset; the collate stacks,
  mixes and computes the log-mel (the same ``torch.stft`` + mel matrix: torchaudio is not
  installed beside this torch). Missing soundfile/scipy: the baseline is skipped with a note.

Method: fixed seeds; one warm-up epoch per loader (worker start-up, DALI's first batches), then
``--repeats`` timed epochs; clips/s is the median, with min and max. On a GPU each timed epoch
ends with ``torch.cuda.synchronize()``. The JSON (``bench_audio-<hardware>[-quick].json``)
records git commit, versions, CPU model and core count (``dali_mixup.tools.meta``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

SR_IN, SR, SECONDS_IN, SECONDS = 22050, 16000, 1.2, 1.0
FEAT = dict(n_fft=400, hop_length=160, n_mels=64, top_db=80.0)
ALPHA, EPS, CLASSES = 0.4, 0.1, 3


def make_data(root: str, per_class: int) -> str:
    from audio_data import KINDS, clip, write

    for c, kind in enumerate(KINDS):
        for j in range(per_class):
            ext = ".wav" if j % 2 == 0 else ".flac"
            path = os.path.join(root, kind, f"{j:04d}{ext}")
            if not os.path.exists(path):
                write(path, clip(kind, j % 16, SECONDS_IN, SR_IN, seed=j), SR_IN)
    return root


class ClipDataset(torch.utils.data.Dataset):
    """soundfile decode → mono → resample_poly → random 1 s window (zero-padded if short)."""

    def __init__(self, files, labels, seed=0):
        self.files, self.labels, self.seed = files, labels, seed
        self.length = int(SECONDS * SR)
        self.epoch = 0

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import soundfile as sf
        from scipy.signal import resample_poly

        x, rate = sf.read(self.files[i], dtype="float32", always_2d=True)
        x = x.mean(1)
        if rate != SR:
            g = np.gcd(rate, SR)
            x = resample_poly(x, SR // g, rate // g).astype(np.float32)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        n, L = len(x), self.length
        start = int(np.floor(rng.random() * (n - L)))
        out = np.zeros(L, np.float32)
        lo, hi = max(start, 0), min(start + L, n)
        out[lo - start:hi - start] = x[lo:hi]
        return torch.from_numpy(out), self.labels[i]


class MixCollate:
    """Stack, mixup (λ ~ Beta(α, α) per clip, random partners), soft targets, log-mel of the mix."""

    def __init__(self, logmel, num_classes):
        self.logmel, self.num_classes = logmel, num_classes
        self.gen = None

    def __call__(self, items):
        if self.gen is None:
            info = torch.utils.data.get_worker_info()
            self.gen = np.random.default_rng(info.id if info else 0)
        x = torch.stack([w for w, _ in items])
        y = torch.tensor([c for _, c in items])
        n = len(items)
        lam = torch.from_numpy(self.gen.beta(ALPHA, ALPHA, n).astype(np.float32))
        perm = torch.from_numpy(self.gen.permutation(n))
        x = lam[:, None] * x + (1 - lam[:, None]) * x[perm]
        on = torch.nn.functional.one_hot(y, self.num_classes).float() * (1 - EPS) + EPS / self.num_classes
        t = lam[:, None] * on + (1 - lam[:, None]) * on[perm]
        return self.logmel(x), t


def _timed_epochs(run_epoch, repeats, cuda):
    run_epoch()  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        clips = run_epoch()
        if cuda:
            torch.cuda.synchronize()
        rates.append(clips / (time.perf_counter() - t0))
    return {"clips_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "runs": rates}


def bench_ours(root, batch_size, cores, repeats, device):
    from dali_mixup import MixupConfig
    from dali_mixup.kinds.audio import create_audio_loader

    ld = create_audio_loader(root, batch_size=batch_size, sample_rate=SR, duration=SECONDS, device=device,
                             num_threads=cores, seed=0, mixup=MixupConfig(alpha=ALPHA, mode="elem",
                                                                           label_smoothing=EPS), **FEAT)

    def epoch():
        n = 0
        for b in ld:
            n += b[0]["features"].shape[0]
        return n

    out = _timed_epochs(epoch, repeats, ld.spec.options.device == "gpu")
    out["host_seconds"] = dict(ld.host_seconds)
    out["device"] = ld.spec.options.device
    return out, ld.source


def bench_baseline(source, batch_size, cores, repeats):
    try:
        import scipy.signal  # noqa: F401
        import soundfile  # noqa: F401
    except ImportError as e:
        return {"skipped": f"baseline needs soundfile and scipy: {e}"}
    from dali_mixup.kinds.audio import LogMel, LogMelConfig

    logmel = LogMel(LogMelConfig(SR, **FEAT))
    ds = ClipDataset(list(source.files), list(source.labels))
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=cores,
                                     collate_fn=MixCollate(logmel, source.num_classes), persistent_workers=True,
                                     generator=torch.Generator().manual_seed(0))

    def epoch():
        n = 0
        for x, _ in dl:
            n += x.shape[0]
        return n

    return _timed_epochs(epoch, repeats, False)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for the result JSON")
    p.add_argument("--quick", action="store_true", help="small set (96 clips), 2 timed epochs: < 1 minute")
    p.add_argument("--data", help="folder for the synthetic clips (default: a temporary one)")
    p.add_argument("--per-class", type=int, help="clips per class (default 32 quick, 256 full)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, help="timed epochs (default 2 quick, 5 full)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    args = p.parse_args(argv)
    from dali_mixup.tools.meta import cpu_cores, hardware_slug, metadata

    per_class = args.per_class or (32 if args.quick else 256)
    repeats = args.repeats or (2 if args.quick else 5)
    cores = cpu_cores()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_data(args.data or tmp, per_class)
        ours, source = bench_ours(root, args.batch_size, cores, repeats, args.device)
        base = bench_baseline(source, args.batch_size, cores, repeats)
    meta = metadata()
    meta["versions"].update({"soundfile": _version("soundfile"), "scipy": _version("scipy")})
    ratio = ours["clips_per_s"] / base["clips_per_s"] if "clips_per_s" in base else None
    result = {
        "benchmark": "audio", "quick": args.quick, "meta": meta,
        "setup": {"clips": len(source), "classes": CLASSES, "batch_size": args.batch_size, "cores": cores,
                  "input": f"{SECONDS_IN} s at {SR_IN} Hz, half WAV PCM16, half FLAC",
                  "output": f"{SECONDS} s at {SR} Hz",
                  "features": FEAT, "mixup": {"alpha": ALPHA, "mode": "elem", "label_smoothing": EPS},
                  "repeats": repeats, "baseline_workers": cores},
        "ours": ours, "baseline": base, "speedup": ratio,
        "target": "ours >= 1.5x baseline on 2 CPU cores; >= 5x on a GPU",
        "load_average_1_5_15min": list(os.getloadavg()),  # a shared machine: other jobs widen the spread
    }
    os.makedirs(args.out, exist_ok=True)
    meta["git"]["commit"] = meta["git"].get("commit") or os.environ.get("GIT_COMMIT")  # a tree copied without history
    name = f"bench_audio-{hardware_slug(meta)}{'-quick' if args.quick else ''}.json"
    path = os.path.join(args.out, name)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    b = f"{base['clips_per_s']:.0f}" if "clips_per_s" in base else base.get("skipped")
    print(f"ours ({ours['device']}): {ours['clips_per_s']:.0f} clips/s [{ours['min']:.0f}-{ours['max']:.0f}]; "
          f"baseline: {b} clips/s; speedup {ratio:.2f}x" if ratio else f"ours: {ours['clips_per_s']:.0f}; {b}")
    print(f"wrote {path}")
    return result


def _version(name):
    from dali_mixup.tools.meta import version

    return version(name)


if __name__ == "__main__":
    main()
