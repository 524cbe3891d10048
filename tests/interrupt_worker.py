"""Ctrl-C in the middle of an epoch: report threads before/after and that a new loader works."""

import gc
import json
import os
import signal
import sys

from dali_mixup import MixupConfig, create_loader


def threads():
    return len(os.listdir("/proc/self/task"))


def make(root):
    return create_loader(root, batch_size=4, image_size=32, device="cpu", num_threads=2, seed=1,
                         mixup=MixupConfig(alpha=0.4))


if __name__ == "__main__":
    # a shell that starts a job in the background hands it SIGINT ignored; Ctrl-C is what we test
    signal.signal(signal.SIGINT, signal.default_int_handler)
    root = sys.argv[1]
    make(root)  # warm up imports and DALI's process-wide threads
    gc.collect()
    baseline = threads()
    ld = make(root)
    interrupted = False
    try:
        for i, _ in enumerate(ld):
            if i == 2:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
    except KeyboardInterrupt:
        interrupted = True
    del ld
    gc.collect()
    after = threads()
    ids = sorted(i for b in make(root) for i in b[0]["label_index"].tolist())
    print(json.dumps({"interrupted": interrupted, "baseline": baseline, "after": after, "ids": ids}))
