"""CutMix benchmark: the CPU twin against timm's CutMix on the same (128, 3, 224, 224) float32
batch, in the same run.

Run (``-s`` shows the summary printed after the last case; the JSON lands in
``benchmarks/results``, or in ``$DALI_MIXUP_BENCH_RESULTS``)::

    pytest benchmarks/bench_cutmix.py --benchmark-only -s

Method: fixed seeds; 3 warm-up rounds, then 20 timed rounds of one call each; the median is
compared (pytest-benchmark also reports min, max and the spread). On a GPU the timed call ends
with ``torch.cuda.synchronize()`` (pytest-benchmark does not synchronise CUDA by itself).

Cases, each one mixed batch per call, images and (N, 1000) targets with smoothing 0.1:

* ``ours-cpu``: ``MixupSampler.sample(128, image_size=(224, 224))`` + ``mix_images(x, params,
  out=out)`` + ``mix_targets`` (CutMix only: ``switch_prob=1``, ``cutmix_alpha=1``);
* ``timm-CutMix``: ``timm.data.Mixup(mixup_alpha=0, cutmix_alpha=1)`` on the same batch
  (in place, as timm works), for ``batch`` mode (timm's default: one box for the batch) and
  ``elem`` mode (a box per sample);
* ``ours-cpu-fixed`` / ``timm-fixed``: the image step alone with the same box covering half the
  image for both (timm's own line ``x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]``),
  which removes the box-size randomness from the comparison;
* ``copy``: ``out.copy_(x)``, the floor;
* on a GPU: ``ours-cuda`` (the CuPy kernel) and ``d2d-copy``.

Target (issue 7): ``ours-cpu`` at least 2x faster than ``timm-CutMix`` in batch mode.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from dali_mixup.tools.gpu import cuda_unavailable_reason
import torch

from dali_mixup import MixupConfig, MixupParams, MixupSampler, mix_images, mix_targets

N, C, H, W = 128, 3, 224, 224
NUM_CLASSES, EPS = 1000, 0.1
MEDIANS = {}  # case -> median seconds, for the summary
PEDANTIC = dict(warmup_rounds=3, rounds=20, iterations=1)


def _batch(device="cpu"):
    g = torch.Generator().manual_seed(0)
    x = torch.randn((N, C, H, W), generator=g)
    labels = torch.randint(0, NUM_CLASSES, (N,), generator=g)
    return x.to(device), labels.to(device)


def _half_box_params():
    """One box of 158x158 (about half of 224x224) for every sample, partner = flip."""
    y0, x0, side = 33, 33, 158
    boxes = torch.tensor([[y0, y0 + side, x0, x0 + side]] * N)
    lam = torch.full((N,), 1.0 - side * side / (H * W))
    return MixupParams(lam, torch.arange(N - 1, -1, -1), boxes=boxes, cutmix=torch.ones(N, dtype=torch.bool),
                       image_size=(H, W))


def _run(benchmark, case, fn):
    benchmark.group = "cutmix-128x3x224x224-float32"
    benchmark.pedantic(fn, **PEDANTIC)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        MEDIANS[case] = stats.stats.median


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_ours_cpu(benchmark, mode):
    x, labels = _batch()
    out = torch.empty_like(x)
    sampler = MixupSampler(
        MixupConfig(alpha=1.0, cutmix_alpha=1.0, switch_prob=1.0, mode=mode, pairing="flip"), seed=0
    )

    def step():
        params = sampler.sample(N, image_size=(H, W))
        mix_images(x, params, out=out)
        return mix_targets(labels, params, NUM_CLASSES, EPS)

    _run(benchmark, f"ours-cpu-{mode}", step)


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_timm_cutmix(benchmark, mode):
    timm_mixup = pytest.importorskip("timm.data.mixup", reason="timm is not installed (pip install .[bench])")
    x, labels = _batch()
    m = timm_mixup.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode=mode, label_smoothing=EPS, num_classes=NUM_CLASSES)
    np.random.seed(0)
    _run(benchmark, f"timm-CutMix-{mode}", lambda: m(x, labels))


def test_ours_cpu_fixed_box(benchmark):
    x, _ = _batch()
    out = torch.empty_like(x)
    params = _half_box_params()
    _run(benchmark, "ours-cpu-fixed", lambda: mix_images(x, params, out=out))


def test_timm_fixed_box(benchmark):
    x, _ = _batch()
    y0, y1, x0, x1 = _half_box_params().boxes[0].tolist()

    def step():  # timm's Mixup._mix_batch, CutMix branch
        x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]

    _run(benchmark, "timm-fixed", step)


def test_copy(benchmark):
    x, _ = _batch()
    out = torch.empty_like(x)
    _run(benchmark, "copy", lambda: out.copy_(x))


_gpu_reason = cuda_unavailable_reason


@pytest.mark.gpu
def test_ours_cuda_fixed_box(benchmark):
    if _gpu_reason():
        pytest.skip(_gpu_reason())
    x, _ = _batch("cuda")
    out = torch.empty_like(x)
    params = _half_box_params()

    def step():
        mix_images(x, params, out=out)
        torch.cuda.synchronize()

    _run(benchmark, "ours-cuda-fixed", step)


@pytest.mark.gpu
def test_d2d_copy(benchmark):
    if _gpu_reason():
        pytest.skip(_gpu_reason())
    x, _ = _batch("cuda")
    out = torch.empty_like(x)

    def step():
        out.copy_(x)
        torch.cuda.synchronize()

    _run(benchmark, "d2d-copy", step)


def _metadata():
    from dali_mixup.tools.meta import cpu_model, git_commit

    commit, cpu = git_commit()["commit"], cpu_model()
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:
        timm_version = None
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return dict(commit=commit, cpu=cpu, cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, timm=timm_version, numpy=np.__version__, gpu=gpu,
                capability=torch.backends.cpu.get_cpu_capability())


@pytest.fixture(scope="module", autouse=True)
def summary():
    """After the module: print the medians and the ratios to timm, and write them with the
    machine's metadata to ``benchmarks/results/cutmix-<cores>cpu-<gpu|nogpu>.json``."""
    yield
    if MEDIANS:
        _write_summary()


def _write_summary():
    ratios = {}
    for mode in ("batch", "elem"):
        if f"timm-CutMix-{mode}" in MEDIANS and f"ours-cpu-{mode}" in MEDIANS:
            ratios[f"timm/ours {mode}"] = MEDIANS[f"timm-CutMix-{mode}"] / MEDIANS[f"ours-cpu-{mode}"]
    if "timm-fixed" in MEDIANS and "ours-cpu-fixed" in MEDIANS:
        ratios["timm/ours fixed box"] = MEDIANS["timm-fixed"] / MEDIANS["ours-cpu-fixed"]
    meta = _metadata()
    print("\ndali-mixup CutMix, (128, 3, 224, 224) float32, median per call:")
    for case, med in sorted(MEDIANS.items(), key=lambda kv: kv[1]):
        print(f"  {case:<20} {med * 1e3:9.3f} ms")
    for name, r in ratios.items():
        print(f"  {name:<20} {r:9.2f}x  (target >= 2x in batch mode)")
    hw = f"{meta['cores']}cpu-{'gpu' if meta['gpu'] else 'nogpu'}"
    results = os.environ.get("DALI_MIXUP_BENCH_RESULTS") or pathlib.Path(__file__).parent / "results"
    path = pathlib.Path(results) / f"cutmix-{hw}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(medians_s=MEDIANS, ratios=ratios, method=PEDANTIC, machine=meta), indent=2))
    print(f"  written to {path}")
