"""The DALI pipeline and DALIMixupIterator, with JPEGs the tests write: on the CPU backend, and
on the GPU path end to end (marker ``gpu``: nvJPEG ``mixed`` decode, GPU augmentation, the CuPy
kernel reading DALI's buffer in place; skipped with a reason where there is no GPU)."""

import collections

import pytest
import torch

from dali_mixup import MixupConfig, MixupParams, create_loader, mix_images, mix_targets
from images import unique_class_set

N = 23  # one sample per class: label_index identifies the sample


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return unique_class_set(str(tmp_path_factory.mktemp("data")), N)


def loader(root, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("image_size", 32)
    kw.setdefault("device", "cpu")
    kw.setdefault("num_threads", 2)
    return create_loader(root, **kw)


def epoch_ids(ld):
    batches = [b[0] for b in ld]
    return [i for b in batches for i in b["label_index"].tolist()], [b["data"].shape[0] for b in batches]


def test_partial_every_sample_once_per_epoch_over_resets(root):
    ld = loader(root, mixup=MixupConfig(alpha=0.4), seed=1)
    assert ld.num_classes == N and len(ld) == 6
    orders = []
    for _ in range(3):
        ids, sizes = epoch_ids(ld)
        assert sorted(ids) == list(range(N))
        assert sizes == [4, 4, 4, 4, 4, 3] and len(sizes) == len(ld)
        orders.append(ids)
    assert orders[0] != orders[1]  # reshuffled each epoch


def test_fill_and_drop(root):
    ld = loader(root, last_batch_policy="fill", seed=2)
    ids, sizes = epoch_ids(ld)
    assert sizes == [4] * 6 and len(ld) == 6
    assert set(ids) == set(range(N)) and len(ids) == 24  # the last batch padded by repeating
    ld = loader(root, last_batch_policy="drop", seed=2)
    for _ in range(2):
        ids, sizes = epoch_ids(ld)
        assert sizes == [4] * 5 and len(ld) == 5
        assert len(set(ids)) == 20


@pytest.mark.parametrize("num_shards", [2, 3])
def test_shards_are_disjoint_and_cover_the_set(root, num_shards):
    seen, lengths = [], []
    for shard in range(num_shards):
        ld = loader(root, shard_id=shard, num_shards=num_shards, seed=3)
        ids, sizes = epoch_ids(ld)
        assert len(sizes) == len(ld)
        seen.append(ids)
        lengths.append(len(ld))
    flat = [i for s in seen for i in s]
    assert sorted(flat) == list(range(N))  # disjoint and complete
    assert len(set(lengths)) == 1  # every rank runs the same number of batches


def test_same_seed_same_batches(root):
    def run(seed):
        ld = loader(root, mixup=MixupConfig(alpha=0.4, mode="elem"), seed=seed)
        return [(b[0]["data"].clone(), b[0]["label"].clone()) for _ in range(2) for b in ld]

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(x, y) and torch.equal(s, t) for (x, s), (y, t) in zip(a, b))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, c))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_batch_is_the_kernel_applied_to_the_plain_batch(root, eps):
    cfg = MixupConfig(alpha=1.0, mode="elem", label_smoothing=eps)
    mixed = loader(root, mixup=cfg, seed=7)
    plain = loader(root, mixup=None, seed=7)  # same DALI seed: the same crops, unmixed
    for m, p in zip(mixed, plain):
        m, p = m[0], p[0]
        params = MixupParams(m["lam"], m["perm"])
        assert torch.equal(m["label_index"], p["label_index"])
        assert torch.equal(m["data"], mix_images(p["data"], params))
        assert torch.equal(m["label"], mix_targets(p["label_index"], params, N, eps))
        torch.testing.assert_close(m["label"].sum(1), torch.ones(len(params.lam)))
        assert torch.equal(p["label"], torch.nn.functional.one_hot(p["label_index"], N).float())


@pytest.mark.parametrize("dtype, torch_dtype", [("float32", torch.float32), ("float16", torch.float16),
                                                ("bfloat16", torch.bfloat16), ("uint8", torch.uint8)])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_dtypes_and_layouts(root, dtype, torch_dtype, layout):
    ld = loader(root, mixup=MixupConfig(alpha=0.4), dtype=dtype, layout=layout, seed=8)
    b = next(iter(ld))[0]
    want = (4, 3, 32, 32) if layout == "NCHW" else (4, 32, 32, 3)
    assert tuple(b["data"].shape) == want and b["data"].dtype == torch_dtype
    assert b["label"].dtype == torch.float32 and b["label"].shape == (4, N)
    if dtype == "bfloat16":  # DALI makes float32, the kernel casts while mixing
        ref = next(iter(loader(root, mixup=None, dtype="float32", layout=layout, seed=8)))[0]["data"]
        assert torch.equal(b["data"], mix_images(ref, MixupParams(b["lam"], b["perm"]), dtype=torch.bfloat16))


def test_mixup_disabled_matches_dali_classification_iterator(root):
    from nvidia.dali.plugin.pytorch import DALIClassificationIterator, LastBatchPolicy

    from dali_mixup.kinds.image_pipeline import READER_NAME, train_pipeline
    from dali_mixup.sources import resolve_source

    ours = loader(root, mixup=MixupConfig(alpha=0.4, enabled=False), seed=9)
    pipe = train_pipeline(source=resolve_source(root), device="cpu", image_size=32, batch_size=4,
                          num_threads=2, device_id=None, seed=9)
    theirs = DALIClassificationIterator(pipe, reader_name=READER_NAME, last_batch_policy=LastBatchPolicy.PARTIAL)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert torch.equal(a[0]["data"], b[0]["data"])
        assert torch.equal(a[0]["label_index"], b[0]["label"].view(-1).long())
        assert torch.all(a[0]["lam"] == 1)


def test_validation_is_deterministic_and_decodes_odd_files(root):
    ld = loader(root, train=False, batch_size=8, mixup=MixupConfig(alpha=1.0))
    ids, sizes = epoch_ids(ld)
    assert ids == list(range(N))  # file order, no shuffle
    a = [b[0]["data"].clone() for b in ld]
    b = [b[0]["data"].clone() for b in ld]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(x.shape[1] == 3 for x in a)  # grayscale, CMYK and PNG members come out RGB
    assert torch.all(next(iter(ld))[0]["lam"] == 1)  # never mixed


def test_file_list_source(root, tmp_path):
    import os

    lines = []
    for c in sorted(os.listdir(root)):
        for f in os.listdir(os.path.join(root, c)):
            lines.append(f"{os.path.join(root, c, f)} {int(c[1:])}")
    fl = tmp_path / "list.txt"
    fl.write_text("\n".join(lines) + "\n")
    ids, _ = epoch_ids(loader(None, file_list=str(fl), seed=1))
    assert sorted(ids) == list(range(N))


def test_webdataset_shards(root, tmp_path):
    import io
    import os
    import tarfile

    files = sorted((os.path.join(root, c, f), int(c[1:])) for c in os.listdir(root) for f in os.listdir(os.path.join(root, c)))
    files = [(p, l) for p, l in files if p.endswith(".jpg")]
    for s in range(2):
        with tarfile.open(tmp_path / f"shard-{s}.tar", "w") as tf:
            for k, (p, label) in enumerate(files[s::2]):
                key = f"s{s}_{k:04d}"
                tf.add(p, arcname=f"{key}.jpg")
                data = str(label).encode()
                info = tarfile.TarInfo(f"{key}.cls")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    ld = loader(None, shards=str(tmp_path), mixup=MixupConfig(alpha=0.4), num_classes=N, seed=2)
    ids, _ = epoch_ids(ld)
    assert sorted(ids) == sorted(l for _, l in files)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=2.0), TypeError, "batch_size"),
        (dict(image_size=0), ValueError, "image_size"),
        (dict(device="tpu"), ValueError, "device"),
        (dict(dtype="float64"), ValueError, "dtype"),
        (dict(layout="CHW"), ValueError, "layout"),
        (dict(num_classes=5), ValueError, "num_classes"),
        (dict(shard_id=2, num_shards=2), ValueError, "shard_id"),
        (dict(num_threads=0), ValueError, "num_threads"),
        (dict(scale=(0.5, 0.1)), ValueError, "scale"),
        (dict(last_batch_policy="sometimes"), ValueError, "last_batch_policy"),
        (dict(mixup={"alpha": 1}), TypeError, "mixup"),
    ],
)
def test_bad_arguments_name_the_argument(root, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        loader(root, **kwargs)


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        loader(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no class folders"):
        loader(str(tmp_path))
    fl = tmp_path / "l.txt"
    fl.write_text(f"{tmp_path}/missing.jpg 0\n")
    with pytest.raises(ValueError, match="missing.jpg"):
        loader(None, file_list=str(fl))
    with pytest.raises(ValueError, match="exactly one"):
        loader(str(tmp_path), file_list=str(fl))


def test_flip_prob_zero_and_one(root):
    def first(p):
        return next(iter(loader(root, train=True, flip_prob=p, seed=12, scale=(1.0, 1.0), ratio=(1.0, 1.0))))[0]

    a, b = first(0.0), first(1.0)
    assert torch.equal(a["label_index"], b["label_index"])
    torch.testing.assert_close(b["data"], a["data"].flip(-1))  # same crop, mirrored
    with pytest.raises(ValueError, match="flip_prob"):
        loader(root, flip_prob=1.5)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_cutmix_through_the_loader(root, layout):
    cfg = MixupConfig(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, mode="elem")
    mixed = loader(root, mixup=cfg, seed=13, layout=layout)
    plain = loader(root, mixup=None, seed=13, layout=layout)
    saw_cutmix = False
    for m, p in zip(mixed, plain):
        m, p = m[0], p[0]
        params = MixupParams(m["lam"], m["perm"], boxes=m["boxes"], cutmix=m["cutmix"], image_size=(32, 32))
        saw_cutmix |= bool(m["cutmix"].any())
        assert torch.equal(m["data"], mix_images(p["data"], params, layout=layout))
        assert torch.equal(m["label"], mix_targets(p["label_index"], params, N))
    assert saw_cutmix


def test_mixup_can_be_switched_off_between_epochs(root):
    import dataclasses

    ld = loader(root, mixup=MixupConfig(alpha=1.0, mode="elem"), seed=14)
    assert any(bool((b[0]["lam"] < 1).any()) for b in ld)
    ld.mixup = dataclasses.replace(ld.mixup, enabled=False)
    for b in ld:
        assert torch.all(b[0]["lam"] == 1)
        assert torch.equal(b[0]["label"], torch.nn.functional.one_hot(b[0]["label_index"], N).float())
    with pytest.raises(TypeError, match="MixupConfig"):
        ld.mixup = {"alpha": 1.0}


def test_host_seconds_count_every_batch(root):
    ld = loader(root, mixup=MixupConfig(alpha=0.4), seed=3)
    batches = sum(1 for _ in ld)
    t = ld.host_seconds
    assert t["batches"] == batches == len(ld)
    assert t["dali"] > 0 and t["mix"] > 0


# ---------------------------------------------------------------- the GPU path


def gpu_loader(root, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("image_size", 32)
    return create_loader(root, device="gpu", num_threads=2, **kw)


@pytest.mark.gpu
def test_gpu_epochs_are_exact(root):
    ld = gpu_loader(root, mixup=MixupConfig(alpha=0.4), seed=1)
    for _ in range(2):
        ids = []
        for b in ld:
            assert b[0]["data"].is_cuda and b[0]["label"].is_cuda
            ids += b[0]["label_index"].tolist()
        assert sorted(ids) == list(range(N))


@pytest.mark.gpu
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


@pytest.mark.gpu
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


@pytest.mark.gpu
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


@pytest.mark.gpu
def test_a_pipeline_with_labels_on_the_gpu(root):
    from nvidia.dali import pipeline_def
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy

    from dali_mixup import DALIMixupIterator
    from dali_mixup.kinds.image_pipeline import READER_NAME, decode_augment, read_source
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


@pytest.mark.gpu
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


@pytest.mark.gpu
def test_hw_decoder_load_zero_and_default_both_decode(root):
    for load in (0.0, 0.65):
        b = next(iter(gpu_loader(root, train=False, batch_size=8, hw_decoder_load=load)))[0]
        assert b["data"].shape == (8, 3, 32, 32) and torch.isfinite(b["data"]).all()


@pytest.mark.gpu
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
