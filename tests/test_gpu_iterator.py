"""The GPU path end to end (marker ``gpu``): nvJPEG ``mixed`` decode, GPU augmentation, the
CuPy kernel reading DALI's buffer in place. Skipped with a reason where there is no GPU."""

import pytest
import torch

from dali_mixup import MixupConfig, MixupParams, create_loader, mix_images, mix_targets
from images import unique_class_set

pytestmark = pytest.mark.gpu
N = 23


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return unique_class_set(str(tmp_path_factory.mktemp("gpu_data")), N)


def gpu_loader(root, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("image_size", 32)
    return create_loader(root, device="gpu", num_threads=2, **kw)


def test_gpu_epochs_are_exact(root):
    ld = gpu_loader(root, mixup=MixupConfig(alpha=0.4), seed=1)
    for _ in range(2):
        ids = []
        for b in ld:
            assert b[0]["data"].is_cuda and b[0]["label"].is_cuda
            ids += b[0]["label_index"].tolist()
        assert sorted(ids) == list(range(N))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "uint8"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_gpu_batch_is_kernel_of_plain_batch_and_equals_cpu_twin(root, dtype, layout):
    cfg = MixupConfig(alpha=1.0, mode="elem", label_smoothing=0.1)
    mixed = gpu_loader(root, mixup=cfg, seed=3, dtype=dtype, layout=layout)
    plain_dtype = "float32" if dtype == "bfloat16" else dtype  # DALI makes float32; the kernel casts
    plain = gpu_loader(root, mixup=None, seed=3, dtype=plain_dtype, layout=layout)
    for m, p in zip(mixed, plain):
        m, p = m[0], p[0]
        params = MixupParams(m["lam"], m["perm"])
        assert torch.equal(m["label_index"], p["label_index"])
        want = mix_images(p["data"].cpu(), params, dtype=m["data"].dtype)  # the CPU twin, same pixels
        assert torch.equal(m["data"].cpu().contiguous().view(torch.uint8), want.contiguous().view(torch.uint8))
        assert torch.equal(m["label"].cpu(), mix_targets(p["label_index"].cpu(), params, N, 0.1))


def test_handed_out_tensors_stay_valid(root):
    ld = gpu_loader(root, mixup=MixupConfig(alpha=1.0), seed=4, prefetch_queue_depth=2)
    it = iter(ld)
    first = next(it)[0]
    snapshot = first["data"].clone()
    torch.cuda.synchronize()
    for _ in range(4):
        next(it)
    torch.cuda.synchronize()
    assert torch.equal(first["data"], snapshot)


def test_kernels_queued_late_still_read_the_batch_dali_produced(root):
    """The mixing kernel is queued on torch's stream and reads DALI's output buffer in place;
    the iterator drops its handle on that buffer as soon as the kernel is queued. DALI must not
    reuse the buffer before the queued kernel has run: a ~30 ms GPU sleep queued on torch's
    stream after every batch holds each next kernel back while DALI runs ahead on its own."""
    cfg = MixupConfig(alpha=1.0, mode="elem")
    plain = [(b[0]["data"].cpu(), b[0]["label_index"].cpu())
             for b in gpu_loader(root, mixup=None, seed=5, prefetch_queue_depth=2)]
    got = []
    for b in gpu_loader(root, mixup=cfg, seed=5, prefetch_queue_depth=2):
        got.append(b[0])
        torch.cuda._sleep(50_000_000)
    torch.cuda.synchronize()
    assert len(got) == len(plain) > 2
    for k, (m, (x, labels)) in enumerate(zip(got, plain)):
        params = MixupParams(m["lam"], m["perm"])
        assert torch.equal(m["label_index"].cpu(), labels), k
        assert torch.equal(m["data"].cpu(), mix_images(x, params)), k
        assert torch.equal(m["label"].cpu(), mix_targets(labels, params, N)), k


def test_a_pipeline_with_labels_on_the_gpu(root):
    from nvidia.dali import pipeline_def
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy

    from dali_mixup import DALIMixupIterator
    from dali_mixup.pipeline import READER_NAME, decode_augment, read_source
    from dali_mixup.sources import resolve_source

    source = resolve_source(root)

    @pipeline_def
    def pipe():
        encoded, labels = read_source(source)
        return decode_augment(encoded, device="gpu", image_size=32), labels.gpu()

    it = DALIMixupIterator(pipe(batch_size=4, num_threads=2, device_id=0, seed=0), reader_name=READER_NAME,
                           last_batch_policy=LastBatchPolicy.PARTIAL, mixup=MixupConfig(alpha=1.0, num_classes=N))
    ids = []
    for b in it:
        b = b[0]
        assert b["data"].is_cuda and b["label"].is_cuda and b["label_index"].is_cuda
        params = MixupParams(b["lam"], b["perm"])
        assert torch.equal(b["label"].cpu(), mix_targets(b["label_index"].cpu(), params, N))
        ids += b["label_index"].tolist()
    assert sorted(ids) == list(range(N))


def test_zero_copy_one_output_allocation_per_batch(root):
    """The kernel reads DALI's buffer in place: torch allocates only the mixed batch (and the
    small targets), not a copy of DALI's output as well."""
    ld = gpu_loader(root, mixup=MixupConfig(alpha=1.0), seed=5, batch_size=8, image_size=64)
    it = iter(ld)
    next(it)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    b = next(it)[0]
    torch.cuda.synchronize()
    grown = torch.cuda.memory_allocated() - before
    image_bytes = b["data"].numel() * b["data"].element_size()
    assert grown < 1.5 * image_bytes, (grown, image_bytes)


def test_hw_decoder_load_zero_and_default_both_decode(root):
    for load in (0.0, 0.65):
        b = next(iter(gpu_loader(root, train=False, batch_size=8, hw_decoder_load=load)))[0]
        assert b["data"].shape == (8, 3, 32, 32) and torch.isfinite(b["data"]).all()


@pytest.mark.slow
def test_gpu_soak_device_memory_stops_growing(root):
    ld = gpu_loader(root, mixup=MixupConfig(alpha=0.4, mode="elem"), seed=6)
    samples = []
    for epoch in range(40):
        for b in ld:
            assert b[0]["data"].is_cuda
        torch.cuda.synchronize()
        samples.append(torch.cuda.memory_allocated())
    assert samples[-1] <= samples[9] + (1 << 20), samples[::10]  # nothing accumulates after warm-up
