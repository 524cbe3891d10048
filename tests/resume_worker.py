"""Resume in a fresh process: load a saved state, write every remaining batch of the epoch and
the next epoch to OUT (torch.save)."""

import json
import sys

import torch

from dali_mixup import MixupConfig, create_loader


def make(root):
    return create_loader(root, batch_size=4, image_size=32, device="cpu", num_threads=2, seed=21,
                         mixup=MixupConfig(alpha=0.4, mode="elem"))


def batches(ld, count):
    """The next ``count`` batches, across epoch ends (the loader auto-resets)."""
    out = []
    while len(out) < count:
        for b in ld:
            out.append({k: v.clone() for k, v in b[0].items()})
            if len(out) == count:
                break
    return out


if __name__ == "__main__":
    root, state_path, out, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ld = make(root)
    with open(state_path) as f:
        ld.load_state_dict(json.load(f))
    torch.save(batches(ld, count), out)
