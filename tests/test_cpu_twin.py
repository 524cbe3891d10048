"""The CPU twin's one-pass form (issue 23): samples taken along the cycles of ``perm`` and, with
torch on several threads, shared among that many threads, each op on one thread. The bits must
be those of the one-thread form, which tests/test_mix.py, test_cutmix.py and
test_kernel_source.py check against the kernels' semantics: every dtype pair, mixup and CutMix,
3-D cuboids, fewer samples than threads, odd sizes; and torch's thread setting is left as it was."""

import contextlib

import pytest
import torch

from dali_mixup import MixupConfig, MixupParams, MixupSampler, mix_images
from dali_mixup.cpu import cycle_order

DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]


@contextlib.contextmanager
def torch_threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    x = torch.randn(shape, generator=g) * 3
    x.view(-1)[:7] = torch.tensor([0.0, -0.0, 1e-40, -1e-40, 255.5, 254.5, -0.5])  # subnormals, ties
    return x.to(dtype)


def bits(t):
    """The stored bits (-0.0 and NaN compare as bits)."""
    return t if t.dtype == torch.uint8 else t.view({2: torch.int16, 4: torch.int32}[t.element_size()])


def mixed_both_ways(x, params, dtype, layout="NCHW"):
    """(one thread's output, [outputs on 2 and 3 threads]); the thread setting is checked after each."""
    with torch_threads(1):
        one = mix_images(x, params, dtype=dtype, layout=layout)
        assert torch.get_num_threads() == 1
    outs = []
    for threads in (2, 3):
        with torch_threads(threads):
            outs.append(mix_images(x, params, dtype=dtype, layout=layout))
            assert torch.get_num_threads() == threads
    return one, outs


@pytest.mark.parametrize("in_dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize("n, chw", [(5, (3, 31, 30)), (2, (1, 17, 19)), (7, (3, 8, 9))])
def test_threads_give_the_one_thread_bits(in_dtype, out_dtype, n, chw):
    x = make((n, *chw), in_dtype, n)
    params = MixupSampler(MixupConfig(alpha=0.4, mode="elem", prob=0.8), n).sample(n)
    one, outs = mixed_both_ways(x, params, out_dtype)
    for out in outs:
        assert torch.equal(bits(out), bits(one))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("mode, pairing", [("elem", "derangement"), ("pair", "flip"), ("batch", "roll")])
def test_cutmix_on_threads(layout, dtype, mode, pairing):
    n, h, w = 9, 20, 19
    x = make((n, 3, h, w), dtype, 1)
    if layout == "NHWC":
        x = x.permute(0, 2, 3, 1).contiguous()
    cfg = MixupConfig(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, mode=mode, pairing=pairing)
    params = MixupSampler(cfg, 2).sample(n, image_size=(h, w))
    one, outs = mixed_both_ways(x, params, torch.float32, layout)
    for out in outs:
        assert torch.equal(bits(out), bits(one))


def test_cuboids_on_threads():
    n, d, h, w = 3, 6, 7, 5
    x = make((n, 2, d, h, w), torch.float32, 3)
    params = MixupParams([0.3, 0.6, 0.9], [2, 0, 1],
                         boxes=[[0, 6, 0, 7, 0, 5], [1, 4, 2, 6, 1, 4], [0, 0, 0, 0, 0, 0]],
                         cutmix=[True, True, False], image_size=(d, h, w))
    one, outs = mixed_both_ways(x, params, torch.float32, "NCDHW")
    for out in outs:
        assert torch.equal(bits(out), bits(one))
    assert torch.equal(one[0], x[2]) and torch.equal(one[1, :, 1:4, 2:6, 1:4], x[0, :, 1:4, 2:6, 1:4])


@pytest.mark.parametrize("perm, want", [
    ([], []), ([0], [0]), ([1, 0], [0, 1]), ([2, 0, 1], [0, 2, 1]), ([1, 0, 2, 4, 3], [0, 1, 2, 3, 4]),
    ([3, 2, 1, 0], [0, 3, 1, 2]),
])
def test_cycle_order_takes_each_sample_once_along_the_cycles(perm, want):
    order = cycle_order(perm)
    assert order == want and sorted(order) == list(range(len(perm)))
    pos = {v: k for k, v in enumerate(order)}
    for a, b in zip(order, order[1:]):  # the next sample is a's partner (read just now), or a closed its cycle
        assert b == perm[a] or pos[perm[a]] <= pos[a]


@pytest.mark.parametrize("mode", ["inference", "no_grad-on-a-leaf"])
def test_the_caller_s_grad_modes_hold_on_every_thread(mode):
    x = make((6, 3, 5, 5), torch.float32, 4)
    params = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), 0).sample(6)
    with torch_threads(1):
        want = mix_images(x, params)
    if mode == "no_grad-on-a-leaf":
        x.requires_grad_()
    with torch_threads(2), (torch.inference_mode() if mode == "inference" else torch.no_grad()):
        got = mix_images(x, params)
    assert torch.equal(got, want) and not got.requires_grad


def test_a_failure_on_a_worker_thread_is_raised_and_the_setting_restored(monkeypatch):
    from dali_mixup import cpu

    calls = []
    real = cpu._Mix.__call__

    def failing(self, samples, worker=False):
        calls.append(worker)
        if worker:
            raise RuntimeError("worker failed")
        return real(self, samples, worker)

    monkeypatch.setattr(cpu._Mix, "__call__", failing)
    x = make((6, 3, 4, 4), torch.float32, 0)
    params = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), 0).sample(6)
    with torch_threads(2):
        with pytest.raises(RuntimeError, match="worker failed"):
            mix_images(x, params)
        assert torch.get_num_threads() == 2
    assert sorted(calls) == [False, True]
