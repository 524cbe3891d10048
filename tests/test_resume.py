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
