"""Host-only cost of one batch (issue 12, item 3): what the training loop's thread spends on
mixing before any kernel runs. CPU only, no GPU needed.

Run::

    pytest benchmarks/bench_host.py --benchmark-only

Cases, each one call per batch:

* ``sample-mixup-256`` / ``sample-cutmix-256``: ``MixupSampler.sample`` for N = 256 (per-sample
  mixup; mixup/CutMix with 224x224 boxes);
* ``to-device-pack``: ``sampler.to_device`` packing λ, partners, boxes, cutmix flags and labels
  into one staging buffer (on the CPU the copy itself is a no-op: this is the packing);
* ``mixer-tiny-blend`` / ``mixer-tiny-fused``: ``BatchMixer`` on a 4-image 3x8x8 batch (the
  per-batch overhead of the rules with almost no pixels), the classification fields and the
  ``fused_normalize`` ones (uint8 HWC crops + mirror flags).
"""

from __future__ import annotations

import pytest
import torch

from dali_mixup import MixupConfig, MixupSampler
from dali_mixup.fields import BatchMixer, Blend, MirrorFlags, NormalizeBlend, SoftTarget
from dali_mixup.sampler import to_device

N = 256


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
