"""Batches stay valid: a batch the user holds (for logging, gradient accumulation) is not changed
when the next batches are fetched, in any field, over an epoch boundary too.

Since DALI 1.44 the PyTorch iterator hands over DALI's own output buffers through DLPack (no copy)
under the dynamic executor (the default); DALI allocates each iteration's outputs and the torch
tensor keeps its buffer alive. With ``mixup=None`` (or ``enabled=False``) the images yielded are
those buffers as they are; with mixup on, the mixed images and soft targets are new tensors and
``lam``/``perm``/``cutmix``/``boxes`` are rows of the sampler's block, never written again. Both are
checked here, by content and by address (a later batch must not lie in a held batch's memory, which
also catches an overwrite that happens to write the same values, e.g. λ = 1). On the CPU backend,
and on the GPU path (marker ``gpu``, skipped with a reason where there is no GPU).
"""

import pytest
import torch

from dali_mixup import MixupConfig, create_loader
from images import unique_class_set

N = 10  # 10 images, batches of 4: 4, 4, 2 per epoch (PARTIAL)

CASES = {
    "mixup": dict(mixup=MixupConfig(alpha=0.4, mode="elem")),
    "cutmix": dict(mixup=MixupConfig(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, mode="elem")),
    "mixup-off": dict(mixup=MixupConfig(enabled=False)),
    "none": dict(mixup=None),
    "none-uint8": dict(mixup=None, dtype="uint8"),
    "fused-normalize": dict(mixup=MixupConfig(alpha=0.4, mode="elem"), fused_normalize=True),
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return unique_class_set(str(tmp_path_factory.mktemp("data")), N, odd=False)


def _span(t: torch.Tensor):
    """(device, first byte, one past the last byte) of the memory ``t`` can reach."""
    if t.numel() == 0:
        return t.device, 0, 0
    reach = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()) if size > 1)
    start = t.data_ptr()
    return t.device, start, start + (reach + 1) * t.element_size()


def _overlap(a, b) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


@pytest.mark.parametrize("case", list(CASES))
def test_a_held_batch_is_not_changed_by_the_next_ones(root, device, case):
    ld = create_loader(root, batch_size=4, image_size=32, device="gpu" if device == "cuda" else "cpu",
                       num_threads=2, seed=0, **CASES[case])
    it = iter(ld)
    held = [next(it)[0], next(it)[0]]  # kept, as for gradient accumulation over two batches
    want = {"data", "label", "label_index", "lam", "perm"} | ({"cutmix", "boxes"} if case == "cutmix" else set())
    assert all(set(b) == want for b in held)
    copies = [{k: v.clone() for k, v in b.items()} for b in held]
    spans = [(k, _span(v)) for b in held for k, v in b.items()]
    fetched = 0
    for _ in range(2):  # the rest of this epoch and the next one (auto_reset)
        for batch in it:
            for name, value in batch[0].items():
                for held_name, span in spans:
                    assert not _overlap(span, _span(value)), f"batch {fetched + 2}'s {name!r} lies in a held {held_name!r}"
            fetched += 1
        it = iter(ld)
    assert fetched == 1 + 3
    if device == "cuda":
        torch.cuda.synchronize()  # whatever was queued after the held batches has run
    for i, (b, c) in enumerate(zip(held, copies)):
        for name in want:
            assert torch.equal(b[name], c[name]), f"held batch {i}: {name!r} changed when later batches were fetched"
