"""A/B throughput of the four kinds' loaders between two source trees of dali-mixup (e.g. before
and after a refactor of the loader front), measured in one session, interleaved.

Each measurement is a fresh process that imports ``dali_mixup`` from one tree, builds one kind's
loader over the same small data set (made here, on the CPU backend), runs one warm-up epoch and
then times ``--epochs`` epochs of mixed batches. Trees alternate A, B, A, B, ... ``--rounds``
times per kind; the result is the median samples/s of each tree and the ratio B/A, per wall
second and per CPU second of the process (all threads: the work done, steadier on a shared machine).

Run::

    git worktree add /tmp/before <commit>
    python benchmarks/loader_ab.py --a /tmp/before --b . --out benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

KINDS = ("image", "audio", "detection", "volume")

#: the child: build one kind's loader from the tree on sys.path[0], time whole epochs
CHILD = r"""
import json, sys, time
kind, data, epochs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from dali_mixup import MixupConfig
try:  # the kinds moved to dali_mixup.kinds with the one front
    from dali_mixup.kinds import audio as A, detection as D, volume as V
except ImportError:
    from dali_mixup import audio as A, detection as D, volume as V
common = dict(batch_size=16, device="cpu", num_threads=threads, seed=0)
if kind == "image":
    from dali_mixup import create_loader
    ld = create_loader(data + "/images", image_size=96, mixup=MixupConfig(alpha=1.0, cutmix_alpha=1.0), **common)
elif kind == "audio":
    ld = A.create_audio_loader(data + "/audio", sample_rate=16000, duration=1.0, mixup=MixupConfig(alpha=0.4), **common)
elif kind == "detection":
    ld = D.create_detection_loader(data + "/coco", data + "/coco.json", canvas=160,
                                 mixup=MixupConfig(alpha=1.5, cutmix_alpha=1.0), **common)
else:
    ld = V.create_volume_loader(data + "/volumes", crop=(32, 32, 32),
                              mixup=MixupConfig(alpha=0.4, cutmix_alpha=1.0), **common)
n = 0
for b in ld:  # warm-up epoch
    pass
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(epochs):
    for b in ld:
        first = next(iter(b[0].values()))
        n += first.shape[0]
dt, dc = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"samples": n, "seconds": dt, "per_s": n / dt, "per_cpu_s": n / dc}))
"""


def make_data(root: str) -> None:
    """256 JPEGs in 8 classes, 128 one-second WAVs, a 128-image COCO set, 64 volumes 48^3."""
    import wave

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    if os.path.isdir(os.path.join(root, "volumes")):
        return
    for i in range(256):
        d = os.path.join(root, "images", f"c{i % 8}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)).save(os.path.join(d, f"{i}.jpg"),
                                                                                   quality=90)
    for i in range(128):
        d = os.path.join(root, "audio", f"c{i % 4}")
        os.makedirs(d, exist_ok=True)
        with wave.open(os.path.join(d, f"{i}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((rng.standard_normal(16000) * 3000).astype("<i2").tobytes())
    os.makedirs(os.path.join(root, "coco"), exist_ok=True)
    images, anns = [], []
    for i in range(128):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(
            os.path.join(root, "coco", f"{i}.jpg"), quality=90)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 160, "height": 120})
        for k in range(3):
            anns.append({"id": 3 * i + k + 1, "image_id": i + 1, "category_id": 1 + k,
                         "bbox": [10.0 + 20 * k, 10.0, 30.0, 40.0], "area": 1200.0, "iscrowd": 0})
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    with open(os.path.join(root, "coco.json"), "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    for i in range(64):
        d = os.path.join(root, "volumes", f"c{i % 2}")
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, f"{i}.npy"), rng.random((1, 48, 48, 48), dtype=np.float32))


def measure(tree: str, kind: str, data: str, epochs: int, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, kind, data, str(epochs), str(threads)],
                         capture_output=True, text=True, env=env, cwd="/", timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{tree} {kind}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="source tree A (before)")
    p.add_argument("--b", required=True, help="source tree B (after)")
    p.add_argument("--data", default="/tmp/dali_mixup_ab_data")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="folder for the JSON result")
    args = p.parse_args(argv)
    make_data(args.data)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from dali_mixup.tools.meta import hardware_slug, metadata

    rows = {}
    for kind in args.kinds.split(","):
        a, b = [], []
        for _ in range(args.rounds):
            a.append(measure(args.a, kind, args.data, args.epochs, args.threads))
            b.append(measure(args.b, kind, args.data, args.epochs, args.threads))
        row = {}
        for key, what in (("per_s", "samples per wall second"), ("per_cpu_s", "samples per CPU second, all threads")):
            xa, xb = [r[key] for r in a], [r[key] for r in b]
            ma, mb = statistics.median(xa), statistics.median(xb)
            row[key] = {"what": what, "a": xa, "b": xb, "a_median": ma, "b_median": mb, "ratio_b_over_a": mb / ma}
            print(f"{kind:10s} {key:9s} A {ma:8.1f}  B {mb:8.1f}  B/A {mb / ma:.3f}  (A {[round(x) for x in xa]}, "
                  f"B {[round(x) for x in xb]})", flush=True)
        rows[kind] = row
    result = {"what": "loader throughput A/B, interleaved, CPU backend", "a": args.a, "b": args.b,
              "rounds": args.rounds, "epochs": args.epochs, "threads": args.threads,
              "load_average": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "meta": metadata(), "rows": rows}
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"loader-ab-{hardware_slug(result['meta'])}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
