"""Resume mid-epoch: the batches after the resume point equal an uninterrupted run's."""

import json
import pathlib
import subprocess
import sys

import pytest
import torch

from images import unique_class_set
from resume_worker import batches, make

N = 23  # 6 batches per epoch (the last has 3)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return unique_class_set(str(tmp_path_factory.mktemp("resume_data")), N)


def same(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x) and len(a) == len(b)


@pytest.mark.parametrize("k", [0, 2, 5])
def test_resume_in_a_new_process_repeats_nothing_and_loses_nothing(root, tmp_path, k):
    total = 9  # the rest of this epoch and into the next
    reference = batches(make(root), k + total)
    ld = make(root)
    it = iter(ld)
    for _ in range(k):
        next(it)
    state = ld.state_dict()
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state))  # JSON round trip, as a job would store it
    out = tmp_path / "rest.pt"
    worker = pathlib.Path(__file__).with_name("resume_worker.py")
    proc = subprocess.run([sys.executable, str(worker), root, str(state_path), str(out), str(total)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = torch.load(out)
    assert same(resumed, reference[k:])
    ids = [i for b in reference[: 6] for i in b["label_index"].tolist()]
    assert sorted(ids) == list(range(N))


def test_resume_in_process_and_bad_state(root):
    ld = make(root)
    it = iter(ld)
    first = [next(it)[0]["data"].clone() for _ in range(3)]
    state = ld.state_dict()
    want = [next(it)[0]["data"].clone() for _ in range(3)]
    ld2 = make(root)
    ld2.load_state_dict(state)
    got = [b[0]["data"].clone() for b, _ in zip(ld2, range(3))]
    assert all(torch.equal(a, b) for a, b in zip(want, got))
    assert not torch.equal(first[0], got[0])
    with pytest.raises(ValueError, match="state_dict"):
        ld2.load_state_dict({"dali": []})


def test_a_state_from_other_data_or_another_layout_is_refused(root, tmp_path):
    """A state records what it belongs to: other files, shards, batch size or policy are refused
    with a message naming the difference (instead of a silently shorter epoch or a late crash)."""
    from dali_mixup import MixupConfig, create_loader

    state = make(root).state_dict()
    other = unique_class_set(str(tmp_path / "other"), N + 4)
    with pytest.raises(ValueError, match="data set"):
        create_loader(other, batch_size=4, image_size=32, device="cpu", num_threads=2, seed=21,
                      mixup=MixupConfig(alpha=0.4, mode="elem")).load_state_dict(state)

    def variant(**kw):
        args = dict(batch_size=4, image_size=32, device="cpu", num_threads=2, seed=21,
                    mixup=MixupConfig(alpha=0.4, mode="elem"))
        args.update(kw)
        return create_loader(root, **args)

    with pytest.raises(ValueError, match="shard layout"):
        variant(shard_id=0, num_shards=2).load_state_dict(state)
    with pytest.raises(ValueError, match="batch size"):
        variant(batch_size=5).load_state_dict(state)
    with pytest.raises(ValueError, match="last_batch_policy"):
        variant(last_batch_policy="drop").load_state_dict(state)
    with pytest.raises(ValueError, match="seed=21"):
        variant(seed=22).load_state_dict(state)


def test_the_state_carries_the_mixup_config_in_force(root):
    """After ``loader.mixup = replace(..., enabled=False)`` a resumed loader built the same way
    does not mix again."""
    import dataclasses

    ld = make(root)
    ld.mixup = dataclasses.replace(ld.mixup, enabled=False)
    it = iter(ld)
    next(it)
    resumed = make(root)
    assert resumed.mixup.enabled
    resumed.load_state_dict(json.loads(json.dumps(ld.state_dict())))
    assert not resumed.mixup.enabled and resumed.mixup == ld.mixup
    b = next(iter(resumed))[0]
    assert bool((b["lam"] == 1).all())
