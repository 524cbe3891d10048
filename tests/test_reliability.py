"""Long runs and interruptions: no stuck threads, no growing memory."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from dali_mixup import MixupConfig, create_loader
from images import unique_class_set

N = 23


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return unique_class_set(str(tmp_path_factory.mktemp("rel_data")), N)


def test_keyboard_interrupt_leaves_no_threads_and_loader_can_be_rebuilt(root):
    worker = pathlib.Path(__file__).with_name("interrupt_worker.py")
    proc = subprocess.run([sys.executable, str(worker), root], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["interrupted"]
    assert report["after"] <= report["baseline"], report  # the interrupted loader's threads are gone
    assert report["ids"] == list(range(N))


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_soak_memory_stops_growing(root):
    ld = create_loader(root, batch_size=4, image_size=64, device="cpu", num_threads=2, seed=3,
                       mixup=MixupConfig(alpha=0.4, mode="elem"))
    samples = []
    for epoch in range(60):
        seen = sorted(i for b in ld for i in b[0]["label_index"].tolist())
        assert seen == list(range(N)), epoch
        samples.append(rss_mb())
    growth = samples[-1] - samples[9]
    assert growth < 16, f"RSS grew {growth:.1f} MB between epoch 10 and 60: {samples[::10]}"


def small(root, **kw):
    args = dict(batch_size=4, image_size=16, device="cpu", num_threads=1, seed=0)
    args.update(kw)
    return create_loader(root, **args)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(mean=(float("nan"), 0, 0)), ValueError, "mean"),
    (dict(std=(float("inf"), 1, 1)), ValueError, "std"),
    (dict(seed=2**63), ValueError, "seed"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed="1"), TypeError, "seed"),
    (dict(image_size=100000), ValueError, "image_size"),
    (dict(num_classes=5, mixup=MixupConfig(num_classes=4)), ValueError, "conflicts"),
])
def test_bad_options_are_refused_up_front(root, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        small(root, **kwargs)


def test_the_same_num_classes_conflict_gives_the_same_error_in_the_iterator():
    from dali_mixup import DALIMixupIterator

    with pytest.raises(ValueError, match="conflicts"):
        DALIMixupIterator([], num_classes=5, mixup=MixupConfig(num_classes=4))


def test_seed_range_is_one_for_dali_and_the_sampler(root):
    from dali_mixup import MixupSampler

    small(root, seed=2**63 - 1)  # the largest seed DALI takes
    with pytest.raises(ValueError, match="seed"):
        MixupSampler(MixupConfig(), seed=2**70)


def test_explicit_num_shards_without_shard_id_under_torchrun_is_an_error(root, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="shard_id"):
        small(root, num_shards=4)
    assert small(root, num_shards=4, shard_id=3).options.shard_id == 3


def test_partial_with_uneven_shards_hands_out_empty_batches_and_loses_nothing(tmp_path):
    """10 samples, 3 shards, batch 3: DALI gives some shards a 0-sample last batch; every rank
    still runs len() batches and the shards cover the set once."""
    root = unique_class_set(str(tmp_path), 10, odd=False)
    seen = []
    for shard in range(3):
        ld = small(root, batch_size=3, shard_id=shard, num_shards=3, mixup=MixupConfig(alpha=0.4))
        batches = [b[0] for b in ld]
        assert len(batches) == len(ld) == 2
        seen += [i for b in batches for i in b["label_index"].tolist()]
        for b in batches:
            assert b["label"].shape == (b["data"].shape[0], 10)
    assert sorted(seen) == list(range(10))


def test_after_a_bad_data_error_every_next_raises_it_again(tmp_path):
    from dali_mixup.scan import BadDataError

    root = unique_class_set(str(tmp_path), 8, odd=False)
    last = sorted(os.listdir(root))[-1]
    with open(os.path.join(root, last, "zz_broken.jpg"), "wb") as f:  # read last (validation: file order)
        f.write(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # a JPEG header and nothing else
    ld = small(root, batch_size=2, train=False)
    errors = []
    for _ in range(3):
        with pytest.raises(BadDataError) as e:
            for _ in ld:
                pass
        errors.append(str(e.value))
    assert "zz_broken.jpg" in errors[0] and errors[0] == errors[1] == errors[2]
