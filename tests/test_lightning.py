"""The Lightning DataModule (``dali_mixup.integrations.lightning``): shards from the Trainer's
strategy, passes Lightning leaves early, resume from a mid-epoch checkpoint, mixup off at an epoch.

The fits run in their own processes (``tests/lightning_worker.py``): Lightning's DDP launcher
starts the second rank by running the script again, and a resume must come from a new process.
Data: 16 small JPEGs written here, one per class, so a sample's class id names it.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("nvidia.dali")

from images import unique_class_set  # noqa: E402

from dali_mixup import MixupConfig  # noqa: E402
from dali_mixup.integrations.lightning import MixupDataModule  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
WORKER = pathlib.Path(__file__).with_name("lightning_worker.py")
N = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return unique_class_set(str(tmp_path_factory.mktemp("lightning") / "data"), n=N, odd=False)


def _dm(data, **kw):
    kw.setdefault("val", dict(root=data))
    return MixupDataModule("image", train=dict(root=data, mixup=MixupConfig(alpha=0.4, mode="elem")),
                           batch_size=4, image_size=16, num_threads=1, seed=3, **kw)


def _labels(batch):
    return batch["label_index"].view(-1).tolist()


# --------------------------------------------------------------------------- in this process


def test_options_placement_and_val_defaults(data):
    dm = _dm(data, device_id=None)
    train, val = dm.loader_options("train"), dm.loader_options("val")
    assert train["shard_id"] == 0 and train["num_shards"] == 1 and train["device"] == "cpu"  # no Trainer: one process
    assert train["auto_reset"] is True and "train" not in train and train["mixup"].alpha == 0.4
    assert val["train"] is False and val["batch_size"] == 4 and "mixup" not in val
    with pytest.raises(ValueError, match="kind must be one of"):
        MixupDataModule("text", train={})
    with pytest.raises(ValueError, match="auto_reset must stay True"):
        MixupDataModule("image", train=dict(root=data, auto_reset=False))
    with pytest.raises(ValueError, match="mixup_off_epoch"):
        MixupDataModule("image", train={}, mixup_off_epoch=-1)
    with pytest.raises(ValueError, match="no validation loader"):
        MixupDataModule("image", train={}).loader_options("val")
    assert MixupDataModule("image", train={}).val_dataloader() == []


def test_passes_left_early_and_iter_called_twice(data):
    """Lightning calls iter() more than once before the first batch (nothing is skipped), leaves
    the sanity check's validation pass after 2 batches (the next pass starts at the beginning) and
    leaves a training pass early with limit_train_batches (the next pass is the next epoch)."""
    dm = _dm(data)
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert len(train) == len(val) == N // 4

    iter(val)
    it = iter(val)
    first = [_labels(next(it)) for _ in range(2)]
    assert first == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [_labels(b) for b in val] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]

    reference = _dm(data)
    reference.setup("fit")
    epochs = [[_labels(b) for b in reference.train_dataloader()] for _ in range(2)]
    assert sorted(sum(epochs[0], [])) == list(range(N)) and epochs[0] != epochs[1]
    iter(train)
    it = iter(train)
    assert _labels(next(it)) == epochs[0][0]  # two iter() calls: nothing skipped
    assert [_labels(b) for b in train] == epochs[1]  # the rest of epoch 0 is not served again


def test_state_round_trip_in_process_and_a_world_size_mismatch(data):
    dm = _dm(data, val=None)
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    seen = [_labels(next(it)) for _ in range(2)]
    state = dm.state_dict()
    assert state["kind"] == "image" and len(state["train"]) == 1 and state["train"][0]["served"] == 2
    rest = [_labels(b) for b in it]
    json.dumps(state)  # a plain, JSON-serialisable state (Lightning pickles it into the checkpoint)

    again = _dm(data, val=None)
    again.load_state_dict(state)  # before setup: kept until the loader exists
    again.setup("fit")
    assert [_labels(b) for b in again.train_dataloader()] == rest and len(seen + rest) == N // 4

    other = _dm(data, val=None)
    other.setup("fit")
    with pytest.warns(UserWarning, match="holds the loader states of 2 process"):
        other.load_state_dict({"kind": "image", "train": state["train"] * 2})
    with pytest.raises(ValueError, match="kind 'audio'"):
        other.load_state_dict({"kind": "audio", "train": state["train"]})


# --------------------------------------------------------------------------- Lightning fits, own processes


def _run(*argv, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(WORKER), *map(str, argv)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _records(out, rank=0):
    path = pathlib.Path(out) / f"records-rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _same_weights(a, b):
    wa, wb = (torch.load(pathlib.Path(x) / "weights.pt", map_location="cpu") for x in (a, b))
    return all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_ddp_two_processes_disjoint_shards_and_mid_epoch_resume(data, tmp_path):
    """Trainer(accelerator='cpu', devices=2, strategy='ddp') (gloo): each rank reads its own half
    of every epoch; a checkpoint taken mid-epoch resumes, in new processes, on the batches the
    uninterrupted run trained on next, to the same weights."""
    full = tmp_path / "full"
    _run(data, full, "--devices", 2, "--strategy", "ddp", "--max-epochs", 2, "--save-every", 3)
    ranks = [_records(full, r) for r in (0, 1)]
    assert json.loads((full / "done.json").read_text()) == {"world_size": 2, "global_step": 4}
    for epoch in (0, 1):
        for kind in ("train", "val"):
            seen = [sum((r["labels"] for r in recs if r["epoch"] == epoch and r["kind"] == kind), []) for recs in ranks]
            assert len(seen[0]) == len(seen[1]) == N // 2, (epoch, kind, seen)
            assert sorted(seen[0] + seen[1]) == list(range(N)), (epoch, kind, seen)  # disjoint, all of them
    assert any(lam < 1 for r in ranks[0] if r["kind"] == "train" for lam in r["lam"])

    resumed = tmp_path / "resumed"
    _run(data, resumed, "--devices", 2, "--strategy", "ddp", "--max-epochs", 2, "--resume", full / "ckpt" / "step=3.ckpt")
    for rank in (0, 1):
        want = [r for r in _records(full, rank) if r["step"] >= 3 and r["kind"] == "train"]
        got = [r for r in _records(resumed, rank) if r["kind"] == "train"]
        assert got == want and len(got) == 1, (rank, got, want)  # step 3: epoch 1's second batch
    assert _same_weights(full, resumed)


@pytest.mark.slow
def test_resume_mid_epoch_equals_the_uninterrupted_run_and_mixup_goes_off(data, tmp_path):
    """One process: 2 epochs of 4 batches, mixup off from epoch 1 (timm's --mixup-off-epoch).
    Resumed in a new process from the checkpoint after batch 3 of epoch 0: the same batches (class
    ids, λ, losses), the same validation, the same final weights."""
    import lightning_worker

    full = tmp_path / "full"  # the uninterrupted run in this process, the resumed one in another
    assert lightning_worker.main([data, str(full), "--max-epochs", "2", "--mixup-off-epoch", "1", "--save-every", "3"]) == 0
    records = _records(full)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(8))
    assert all(min(r["lam"]) < 1 for r in train[:4]) and all(lam == 1 for r in train[4:] for lam in r["lam"])

    resumed = tmp_path / "resumed"
    text = _run(data, resumed, "--max-epochs", 2, "--mixup-off-epoch", 1, "--resume", full / "ckpt" / "step=3.ckpt")
    assert "dataloader is not resumable" not in text
    assert _records(resumed) == [r for r in records if r["step"] >= 3]
    assert _same_weights(full, resumed)

