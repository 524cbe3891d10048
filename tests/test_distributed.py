"""torchrun --nproc_per_node=2 (gloo, CPU): shards default to rank/world size."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from images import unique_class_set

N = 23


@pytest.mark.slow
def test_torchrun_two_ranks_disjoint_and_complete(tmp_path):
    root = unique_class_set(str(tmp_path / "data"), N)
    out = tmp_path / "out"
    out.mkdir()
    worker = pathlib.Path(__file__).with_name("dist_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", str(worker), root, str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["len"] == ranks[1]["len"]
    for e in range(2):
        a, b = ranks[0]["epochs"][e], ranks[1]["epochs"][e]
        assert a["batches"] == b["batches"] == ranks[0]["len"]
        assert not set(a["ids"]) & set(b["ids"])
        assert sorted(a["ids"] + b["ids"]) == list(range(N))
