"""Run under torchrun: each rank reads its shard (defaults from torch.distributed) for two epochs
and writes what it saw to OUT/rank<r>.json."""

import json
import os
import sys

import torch.distributed as dist

from dali_mixup import MixupConfig, create_loader


def main(root, out):
    dist.init_process_group("gloo")
    ld = create_loader(root, batch_size=4, image_size=32, device="cpu", num_threads=1,
                       mixup=MixupConfig(alpha=0.4), seed=11)
    epochs = []
    for _ in range(2):
        ids, batches = [], 0
        for b in ld:
            ids += b[0]["label_index"].tolist()
            batches += 1
            dist.barrier()  # a rank with fewer batches would hang here, as DDP would
        epochs.append({"ids": ids, "batches": batches})
    rank = dist.get_rank()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "world": dist.get_world_size(), "len": len(ld), "epochs": epochs}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
