"""The contract tests' worker process (``test_contract.py``): builds each kind's loader in turn,
so one launch serves all four kinds. An error in one kind is written to that kind's result and
the others still run.

Usage:
    contract_worker.py torchrun DATA OUT
        under torchrun (gloo): shards left to their defaults, two epochs; writes
        ``OUT/<kind>/rank<RANK>.json``: the ids each epoch, batches each epoch, ``len(loader)``,
        the environment's ranks and ``loader.options``.
    contract_worker.py hashes DATA OUT [--save-after N STATES] [--load STATES]
        one process: SHA-256 of every batch of two epochs (seed 5) per kind, to ``OUT``; with
        ``--save-after`` the ``state_dict()`` after batch N goes to ``STATES`` (the run goes on);
        with ``--load`` the loader resumes from ``STATES`` and hashes what follows (the rest of
        that epoch and the next, the two epochs ending where they would have).

``DATA`` is a JSON file ``{kind: {"options": ..., "ids": ..., "files": ...}}`` (``kinds.Data``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kinds import Data, loader_options, sample_ids  # noqa: E402

SEED = 5  # the hashes runs
TORCHRUN_SEED = 11
EPOCHS = 2


def load_data(path):
    with open(path) as f:
        raw = json.load(f)
    return {k: Data(v["options"], v["ids"], {int(i): p for i, p in v["files"].items()}) for k, v in raw.items()}


def batch_digest(batch) -> str:
    """SHA-256 over a batch dict: every key, dtype, shape and the tensor bytes."""
    h = hashlib.sha256()
    for key in sorted(batch):
        value = batch[key]
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def _error():
    return {"error": traceback.format_exc()[-4000:]}


def torchrun(data, out):
    import torch.distributed as dist

    from dali_mixup import build_loader

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    env = {k: int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
    for kind, d in data.items():
        result = {"env": env}
        try:
            loader = build_loader(kind, **loader_options(kind, d, seed=TORCHRUN_SEED))
            opts = getattr(loader, "options", None)
            result["options"] = None if opts is None else {
                k: getattr(opts, k, None) for k in ("device", "device_id", "shard_id", "num_shards")}
            result["len"] = len(loader)
            result["epochs"] = []
            for _ in range(EPOCHS):
                ids, batches = [], 0
                for b in loader:
                    ids += sample_ids(kind, b[0])
                    batches += 1
                result["epochs"].append({"ids": ids, "batches": batches})
            del loader
        except Exception:
            result.update(_error())
        os.makedirs(os.path.join(out, kind), exist_ok=True)
        with open(os.path.join(out, kind, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


def hashes(data, out, save_after=None, states_path=None, load=None):
    from dali_mixup import build_loader

    saved = {}
    if load:
        with open(load) as f:
            saved = json.load(f)
    states, results = {}, {}
    for kind, d in data.items():
        try:
            loader = build_loader(kind, **loader_options(kind, d, seed=SEED))
            result = {"len": len(loader), "digests": []}
            epochs = EPOCHS
            if load:
                if "error" in saved.get(kind, {"error": "no state saved"}):
                    raise RuntimeError(f"no state for {kind}: {saved.get(kind)}")
                loader.load_state_dict(saved[kind]["state"])
                epochs = EPOCHS - saved[kind]["after"] // len(loader)
            n = 0
            for _ in range(epochs):
                for b in loader:
                    result["digests"].append(batch_digest(b[0]))
                    n += 1
                    if save_after is not None and n == save_after:
                        states[kind] = {"after": n, "state": json.loads(json.dumps(loader.state_dict()))}
            results[kind] = result
            del loader
        except Exception:
            results[kind] = _error()
            states.setdefault(kind, results[kind])
    with open(out, "w") as f:
        json.dump(results, f)
    if states_path is not None:
        with open(states_path, "w") as f:
            json.dump(states, f)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("torchrun", "hashes"))
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--save-after", nargs=2, metavar=("N", "STATES"))
    p.add_argument("--load", metavar="STATES")
    a = p.parse_args(argv)
    data = load_data(a.data)
    if a.mode == "torchrun":
        torchrun(data, a.out)
    elif a.save_after is not None:
        hashes(data, a.out, save_after=int(a.save_after[0]), states_path=a.save_after[1], load=a.load)
    else:
        hashes(data, a.out, load=a.load)


if __name__ == "__main__":
    main()
