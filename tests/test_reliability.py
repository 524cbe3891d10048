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
