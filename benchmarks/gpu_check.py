"""``make gpu-check``: everything a lent GPU machine measures, in one command of at most 7 minutes.

Runs on a GPU host where DALI arrives through ``PYTHONPATH=/tmp/site`` (``../shared/gpu/README.md``);
it creates no virtual environment and installs nothing. Each stage is a subprocess with its own
time budget (clipped to what is left of the whole run's ``--budget``); a stage that fails or runs
out of time is reported and the next one still runs. Stages:

====== ======================================================================================
env    machine and versions (``dali_mixup.tools.meta.metadata()``), ``nvidia-smi``
data   the built-in synthetic ImageNet-like set, generated once (shared by bench and train)
tests  every ``gpu``-marked test: ``pytest -m gpu tests`` (junit XML kept)
kernel ``benchmarks/kernel_bandwidth.py``: device time (CUPTI) of the mixup and CutMix kernels
       against a device-to-device copy, uint8/float16/float32, NCHW (packed) and channels_last
       (one-element CutMix), batch 32/128/256
mix    ``gpu_check.py mix-calls``: per ``mix_images`` call, every dtype (bfloat16 and the fused
       float32 -> bfloat16 cast too), mixup and CutMix, both layouts: host microseconds of the
       call (launch not waited for; params fresh from the sampler, and already on the device),
       host microseconds of ``sample``, and the kernels' device time against a copy (CUPTI)
bench  ``dali-mixup bench`` on the GPU, every row, the torchvision baseline with all cores,
       batch 256, 4096 images, rounds of whole epochs lasting >= 2 s
train  ``benchmarks/train_step.py``: ResNet-50@224 and ResNet-18@160 fed by each loader
extra  ``benchmarks/bench_audio.py``, ``bench_detection.py``, ``bench_volume.py`` where present
       with a ``--device`` option (``--quick`` where they have one); skipped when missing or
       when a module they need (soundfile, monai, pycocotools) is not installed
====== ======================================================================================

Every results JSON carries the git commit, versions and hardware inside. The working tree
travels to the GPU host without its history, so the commit is taken from ``$GIT_COMMIT`` there
(write it into the command) and recorded with a digest of the source files
(``source_digest``: sha256 over ``dali_mixup/**.py`` and ``benchmarks/*.py``, path and bytes),
which ``python benchmarks/gpu_check.py --digest`` prints here to check which tree ran.

Output: at most 8 files come back from a device call, so the run writes three, named by the
hardware: ``<out>/gpu-check-<hw>.txt`` (the one-screen summary), ``gpu-check-<hw>.json``
(metadata, every stage's status, seconds, command, log tail and the stage's result JSONs
embedded) and ``gpu-check-<hw>.tar.gz`` (the raw files: each stage's log and result files, the
junit XML, the bench chart). ``<out>`` is ``--out``, else ``$OUT``, else ``bench-out``.

``--dry-run`` runs the same stages with tiny sizes on the CPU backend (about a minute on 2 cores;
``tests/test_gpu_check.py`` runs it, so the orchestration cannot rot between GPU runs).

    python benchmarks/gpu_check.py                # on the GPU host (make gpu-check)
    python benchmarks/gpu_check.py --dry-run      # here, CPU, tiny
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
SCHEMA = "dali-mixup-gpu-check/1"
#: the scripts other engineers add; run where present with a --device option
EXTRA_SCRIPTS = ("bench_audio.py", "bench_detection.py", "bench_volume.py")
#: modules the GPU host does not have: a stage that stops on one of them is skipped, not failed
ABSENT_ON_GPU_HOST = ("soundfile", "monai", "pycocotools")

#: sizes and budgets (seconds): the GPU run, and the CPU dry run
GPU = dict(budget=405, images=4096, batch=256, image_size=224, bench_warmup=1, bench_epochs=4, bench_min_s=2.0,
           train_models="resnet50:224,resnet18:160", train_warmup=1, train_rounds=3, train_min_s=1.5,
           mix_batch=256, mix_size=224, mix_repeats=30, kernel_repeats=20, tests="tests",
           t_data=30, t_tests=80, t_kernel=45, t_mix=45, t_bench=105, t_train=125, t_extra=35)
DRY = dict(budget=300, images=16, batch=8, image_size=32, bench_warmup=0, bench_epochs=1, bench_min_s=0.0,
           train_models="tiny:32", train_warmup=0, train_rounds=1, train_min_s=0.0,
           mix_batch=4, mix_size=16, mix_repeats=5, kernel_repeats=2, tests="tests/test_autograd.py",
           t_data=45, t_tests=60, t_kernel=40, t_mix=45, t_bench=75, t_train=75, t_extra=30)


# --- metadata ----------------------------------------------------------------------------------


def source_digest(root: Path = REPO) -> str:
    """sha256 over the package's and the benchmarks' Python files (relative path and bytes)."""
    h = hashlib.sha256()
    files = sorted(p for p in (root / "dali_mixup").rglob("*.py")) + sorted((root / "benchmarks").glob("*.py"))
    for p in files:
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def fill_commit(meta: Dict[str, Any]) -> Dict[str, Any]:
    """Where git history is missing (the GPU host gets the tree without it), the commit from
    ``$GIT_COMMIT``; and the source digest either way."""
    git = meta.setdefault("git", {"commit": None, "dirty": None})
    if not git.get("commit") and os.environ.get("GIT_COMMIT"):
        git["commit"] = os.environ["GIT_COMMIT"]
        git["from"] = "$GIT_COMMIT (working tree copied without history)"
    git.setdefault("source_digest", source_digest())
    return meta


def metadata() -> Dict[str, Any]:
    """``dali_mixup.tools.meta.metadata()`` (git, versions, CPU, GPU) with the commit filled in;
    the same fields by hand where that module cannot be imported."""
    try:
        from dali_mixup.tools.meta import metadata as meta_fn

        meta = meta_fn()
    except Exception as e:  # noqa: BLE001 - a broken import is recorded, the run goes on
        import platform

        meta = {"git": {"commit": None, "dirty": None}, "python": platform.python_version(),
                "platform": platform.platform(), "versions": {}, "cpu": {"model": platform.processor() or "unknown",
                                                                         "cores": os.cpu_count()},
                "gpu": None, "error": f"dali_mixup.tools.meta: {type(e).__name__}: {e}"}
        for mod in ("torch", "torchvision", "nvidia.dali", "cupy", "timm", "numpy"):
            try:
                meta["versions"][mod] = getattr(__import__(mod, fromlist=["__version__"]), "__version__", None)
            except Exception:  # noqa: BLE001
                meta["versions"][mod] = None
    return fill_commit(meta)


def hardware(meta: Dict[str, Any]) -> str:
    try:
        from dali_mixup.tools.meta import hardware_slug

        return hardware_slug(meta)
    except Exception:  # noqa: BLE001
        return re.sub(r"[^a-z0-9]+", "-", f"{meta['cpu']['model']}-{meta['cpu']['cores']}c".lower()).strip("-")


# --- stages ------------------------------------------------------------------------------------


class Stage:
    """One step of the run: a command (or a reason to skip), its budget, and how to read its
    results into the summary."""

    def __init__(self, name: str, budget: float, command: Optional[List[str]] = None, skip: str = "",
                 read: Optional[Callable[["Stage"], None]] = None, what: str = ""):
        self.name, self.budget, self.command, self.skip, self.read, self.what = name, budget, command, skip, read, what
        self.status, self.rc, self.seconds, self.timeout = "pending", None, 0.0, None
        self.summary: List[str] = []
        self.results: Dict[str, Any] = {}
        self.log_tail = ""

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "what": self.what, "status": self.status, "rc": self.rc,
                "seconds": round(self.seconds, 2), "budget_s": self.budget, "timeout_s": self.timeout,
                "command": self.command, "skip_reason": self.skip or None, "summary": self.summary,
                "log_tail": self.log_tail, "results": self.results}


def run_stage(stage: Stage, raw: Path, env: Dict[str, str], left: float) -> None:
    """Run ``stage.command`` in its own process group, output to ``raw/<name>.log``, killed at
    ``min(budget, left)`` seconds."""
    if stage.skip:
        stage.status = "skipped"
        return
    if left < 5:
        stage.status, stage.skip = "skipped", f"no time left of the run's budget ({max(left, 0):.0f} s)"
        return
    stage.timeout = min(stage.budget, left)
    log = raw / f"{stage.name}.log"
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        f.write(("$ " + " ".join(stage.command) + "\n").encode())
        f.flush()
        proc = subprocess.Popen(stage.command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            stage.rc = proc.wait(timeout=stage.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            stage.rc = None
    stage.seconds = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    stage.log_tail = "\n".join(text.splitlines()[-25:])
    missing = re.findall(r"No module named '([\w.]+)'", text)
    absent = [m for m in missing if m.split(".")[0] in ABSENT_ON_GPU_HOST]
    if stage.rc is None:
        stage.status = "timeout"
    elif stage.rc != 0 and absent:
        stage.status, stage.skip = "skipped", f"needs {absent[0]}, not installed here"
    else:
        stage.status = "ok" if stage.rc == 0 else "failed"
    if stage.read is not None and stage.status in ("ok", "failed", "timeout"):
        try:
            stage.read(stage)
        except Exception as e:  # noqa: BLE001 - a result that cannot be read is said so
            stage.summary.append(f"results not readable: {type(e).__name__}: {e}")


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _load(path: Path) -> Dict[str, Any]:
    d = json.loads(path.read_text())
    meta = d.get("metadata")
    if isinstance(meta, dict):  # the stage ran without history: the commit and digest travel in the env
        fill_commit(meta)
        path.write_text(json.dumps(d, indent=1, default=str) + "\n")
    return d


# --- reading each stage's results into the summary ---------------------------------------------


def read_tests(stage: Stage, raw: Path) -> None:
    xml = raw / "gpu-tests.xml"
    if not xml.exists():
        stage.summary.append("no junit XML")
        return
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    reasons: Dict[str, int] = {}
    for c in suite.iter("testcase"):
        s = c.find("skipped")
        if s is not None:
            msg = (s.get("message") or "").splitlines()[0][:70]
            reasons[msg] = reasons.get(msg, 0) + 1
    stage.results["gpu-tests"] = {**counts, "failed": failed, "skip_reasons": reasons}
    stage.summary.append(f"{counts['passed']} passed, {counts['failures'] + counts['errors']} failed, "
                         f"{counts['skipped']} skipped of {counts['tests']}")
    stage.summary += [f"FAILED {n}" for n in failed[:5]] + ([f"... {len(failed) - 5} more"] if len(failed) > 5 else [])
    if reasons:
        top = max(reasons, key=reasons.get)
        stage.summary.append(f"skip reason ({reasons[top]}x): {top}")


def _first_result(stage: Stage, raw: Path, pattern: str, missing: str = "no results file") -> Optional[Dict[str, Any]]:
    """The stage's first results file matching ``pattern``, loaded and kept in ``stage.results``;
    ``None`` (and ``missing`` in its summary) when there is none."""
    files = sorted(raw.glob(pattern))
    if not files:
        stage.summary.append(missing)
        return None
    stage.results[files[0].name] = _load(files[0])
    return stage.results[files[0].name]


def read_kernel(stage: Stage, raw: Path) -> None:
    d = _first_result(stage, raw, "kernel-bandwidth-*.json",
                      missing="no GPU: nothing measured" if stage.status == "ok" else "no results file")
    if d is None:
        return
    big = max(r["batch"] for r in d["rows"])
    for r in d["rows"]:
        if r["batch"] == big:
            stage.summary.append(f"N={big} {r['dtype']:<8} {r['layout']}: mixup {r['kernel_us']:6.1f} us = "
                                 f"{100 * r['share_of_copy']:4.0f}% of copy BW; cutmix {r['cutmix_us']:6.1f} us")


def read_mix(stage: Stage, raw: Path) -> None:
    d = _first_result(stage, raw, "mix-calls-*.json")
    if d is None:
        return
    for r in d["rows"]:
        if r["layout"] != "NCHW" or r["dtype"] not in ("float32", "uint8", "float32->bfloat16"):
            continue
        dev = (f"; device {r['device_us']:.1f} us = {100 * r['share_of_copy']:.0f}% of copy"
               if r.get("device_us") else "")
        stage.summary.append(f"{r['mode']:<6} {r['dtype']:<17}: host {r['host_us_call']:5.0f} us/call "
                             f"({r['host_us_launch']:.0f} with params on device), sample {r['host_us_sample']:.0f} us"
                             + dev)


def read_bench(stage: Stage, raw: Path) -> None:
    d = _first_result(stage, raw, "bench-*.json")
    if d is None:
        return
    for r in d["rows"]:
        if r["status"] != "ok":
            stage.summary.append(f"{r['name']:<12} {r['status']}: {r['note'][:60]}")
            continue
        rb = f"{r['ratio_to_baseline']:.1f}x tv" if r.get("ratio_to_baseline") else ""
        rd = f"{100 * r['ratio_to_dali']:.1f}% DALI" if r.get("ratio_to_dali") else ""
        line = f"{r['name']:<12} {r['images_per_s']['median']:8.0f} img/s  {rd:>11} {rb:>9}"
        h = r.get("host_ms_per_batch")
        if h:
            line += f"  host/batch: next {1e3 * h['dali']:.0f} us, mix {1e3 * h['mix']:.0f} us"
        stage.summary.append(line)
    for c in d.get("targets", []):
        got = "not measured" if c["ratio"] is None else f"{c['ratio']:.3f} {'met' if c['met'] else 'MISSED'}"
        stage.summary.append(f"target {c['row']} >= {c['target_ratio']:g} x {c['against']}: {got}")


def read_train(stage: Stage, raw: Path) -> None:
    d = _first_result(stage, raw, "train-step-*.json")
    if d is None:
        return
    for m in d["models"]:
        cells = []
        for name, row in m["feeds"].items():
            if row["status"] != "ok":
                cells.append(f"{name} {row['status']}")
            else:
                sc = row.get("share_of_ceiling")
                cells.append(f"{name} {row['images_per_s']['median']:.0f}" + (f" ({100 * sc:.1f}%)" if sc else ""))
        stage.summary.append(f"{m['model']}@{m['image_size']}: " + ", ".join(cells))
        for c in m["targets"]:
            got = "not measured" if c["ratio"] is None else f"{c['ratio']:.3f} {'met' if c['met'] else 'MISSED'}"
            stage.summary.append(f"  target {c['row']} >= {c['target_ratio']:g} x {c['against']}: {got}")


def read_extra(stage: Stage, raw: Path, stem: str) -> None:
    """The JSONs the script wrote (``<stem>*.json``) and the last lines it printed."""
    files = sorted(raw.glob(f"{stem}*.json"))
    for p in files:
        try:
            stage.results[p.name] = _load(p)
        except ValueError:
            continue
    stage.summary.append(f"files: {', '.join(p.name for p in files) or 'none'}")
    tail = [ln for ln in stage.log_tail.splitlines() if ln.strip()][-3:]
    stage.summary += [ln[:100] for ln in tail]


# --- the run -----------------------------------------------------------------------------------


def _extra_stage(script: str, py: str, sz: Dict[str, Any], device: str, raw: Path, dry_run: bool) -> Stage:
    path = REPO / "benchmarks" / script
    name = script[len("bench_"):-3] if script.startswith("bench_") else script[:-3]
    stage = Stage(name, sz["t_extra"], what=f"benchmarks/{script}", read=lambda s: read_extra(s, raw, script[:-3]))
    if not path.exists():
        stage.skip = "not present"
        return stage
    text = path.read_text(errors="replace")  # its options, read from the source (no import, no cost)
    if '"--device"' not in text:
        stage.skip = "no --device option (no GPU mode)"
        return stage
    cmd = [py, str(path), "--device", device]
    if '"--quick"' in text:
        cmd.append("--quick")
    if '"--out"' in text:
        cmd += ["--out", str(raw)]
    if dry_run:  # the dry run checks that the script imports and takes these options, no more
        cmd.append("--help")
    stage.command = cmd
    return stage


def build_stages(args, sz: Dict[str, Any], raw: Path, hw: str) -> List[Stage]:
    py = args.python
    device = "cpu" if args.dry_run else "gpu"
    here = str(Path(__file__).resolve())
    tests = args.tests or sz["tests"]
    common = ["--images", str(sz["images"]), "--batch-size", str(sz["batch"])]
    dry_workers = ["--workers", "1"] if args.dry_run else []
    data_cmd = [py, "-c", "import sys; from dali_mixup.tools.datasets import synthetic_imagenet as s; "
                f"print(s({sz['images']}, 10, 0, workers={1 if args.dry_run else 'None'}))"]
    stages = [
        Stage("data", sz["t_data"], data_cmd, what=f"built-in data set, {sz['images']} images"),
        Stage("tests", sz["t_tests"], [py, "-m", "pytest", "-m", "gpu", tests, "-q", "-rs", "-p", "no:cacheprovider",
                                       f"--junitxml={raw / 'gpu-tests.xml'}"],
              read=lambda s: read_tests(s, raw), what=f"pytest -m gpu {tests}"),
        Stage("kernel", sz["t_kernel"], [py, str(REPO / "benchmarks" / "kernel_bandwidth.py"), "--repeats",
                                         str(sz["kernel_repeats"]), "--out", str(raw / f"kernel-bandwidth-{hw}.json")],
              read=lambda s: read_kernel(s, raw), what="kernel_bandwidth.py: device time vs d2d copy"),
        Stage("mix", sz["t_mix"], [py, here, "mix-calls", "--device", device, "--batch", str(sz["mix_batch"]),
                                   "--size", str(sz["mix_size"]), "--repeats", str(sz["mix_repeats"]),
                                   "--out", str(raw)],
              read=lambda s: read_mix(s, raw), what="mix_images: host us per call, device us, every dtype"),
        Stage("bench", sz["t_bench"], [py, "-m", "dali_mixup", "bench", "--device", device, *common,
                                       "--image-size", str(sz["image_size"]),
                                       "--peers", "ours,ours-fused,dali,dali-mixup,dali-torch,torchvision",
                                       "--warmup", str(sz["bench_warmup"]), "--epochs", str(sz["bench_epochs"]),
                                       "--min-seconds", str(sz["bench_min_s"]), "--out", str(raw), "--no-progress",
                                       *dry_workers],
              read=lambda s: read_bench(s, raw), what="dali-mixup bench, every row"),
        Stage("train", sz["t_train"], [py, str(REPO / "benchmarks" / "train_step.py"), "--device", device, *common,
                                       "--models", sz["train_models"], "--warmup", str(sz["train_warmup"]),
                                       "--rounds", str(sz["train_rounds"]), "--min-seconds", str(sz["train_min_s"]),
                                       "--out", str(raw), *dry_workers],
              read=lambda s: read_train(s, raw), what="train_step.py: training step per feed"),
    ]
    for script in EXTRA_SCRIPTS:
        stages.append(_extra_stage(script, py, sz, device, raw, args.dry_run))
    if args.stages:
        for s in stages:
            if s.name not in args.stages and not s.skip:
                s.skip = "not asked for (--stages)"
    return stages


def summary_text(result: Dict[str, Any], stages: List[Stage]) -> str:
    meta = result["metadata"]
    v = meta.get("versions", {})
    git = meta.get("git", {})
    gpu = (meta.get("gpu") or {}).get("name", "no GPU")
    lines = [f"gpu-check {'(DRY RUN, CPU, tiny sizes) ' if result['dry_run'] else ''}on {result['hardware']} ({gpu})",
             f"commit {git.get('commit') or 'unknown (set GIT_COMMIT)'}{' dirty' if git.get('dirty') else ''}, "
             f"source digest {git.get('source_digest')}; torch {v.get('torch')}, DALI {v.get('nvidia.dali')}, "
             f"CuPy {v.get('cupy')}, torchvision {v.get('torchvision')}",
             f"wall {result['wall_s']:.0f} s of a {result['budget_s']:.0f} s budget", ""]
    for s in stages:
        head = f"[{s.status.upper():<7}] {s.name:<9} {s.seconds:6.1f} s"
        head += f" / {s.timeout:.0f} s" if s.timeout else ""
        head += f"  rc={s.rc}" if s.status == "failed" else ""
        head += f"  ({s.skip})" if s.skip else ""
        lines.append(head)
        lines += ["      " + ln for ln in s.summary[:12]]
        if s.status in ("failed", "timeout") and not s.summary:
            lines += ["      | " + ln[:110] for ln in s.log_tail.splitlines()[-4:]]
    lines.append("")
    lines.append(f"files: {', '.join(result['files'])} in {result['out']}")
    return "\n".join(lines)


def run(args) -> int:
    sz = dict(DRY if args.dry_run else GPU)
    if args.budget:
        sz["budget"] = args.budget
    out = Path(args.out or os.environ.get("OUT") or "bench-out")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    raw = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    if args.dry_run and not os.environ.get("XDG_CACHE_HOME"):
        env["XDG_CACHE_HOME"] = str(raw / "cache")  # the tiny data set, not in the user's cache
    try:
        meta = metadata()
        hw = hardware(meta)
        (raw / "metadata.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
        smi = shutil.which("nvidia-smi")
        if smi:
            p = subprocess.run([smi], capture_output=True, text=True, timeout=20)
            (raw / "nvidia-smi.txt").write_text(p.stdout + p.stderr)
        if not args.dry_run and not meta.get("gpu"):
            print("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); --dry-run runs the CPU "
                  "form", file=sys.stderr)
            return 2
        stages = build_stages(args, sz, raw, hw)
        print(f"gpu-check: {hw}, budget {sz['budget']} s, stages: "
              f"{', '.join(s.name for s in stages if not s.skip)}", flush=True)
        deadline = t_start + sz["budget"]
        for s in stages:
            run_stage(s, raw, env, deadline - time.perf_counter())
            print(f"gpu-check: {s.name:<9} {s.status:<8} {s.seconds:6.1f} s{'  (' + s.skip + ')' if s.skip else ''}",
                  flush=True)
        stem = f"gpu-check-{hw}" + ("-dry-run" if args.dry_run else "")
        names = [f"{stem}.txt", f"{stem}.json", f"{stem}.tar.gz"]
        result = {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "dry_run": args.dry_run, "sizes": sz, "metadata": meta, "hardware": hw, "budget_s": sz["budget"],
                  "wall_s": time.perf_counter() - t_start, "out": str(out), "files": names,
                  "stages": [s.as_dict() for s in stages]}
        text = summary_text(result, stages)
        (out / names[0]).write_text(text + "\n")
        (out / names[1]).write_text(json.dumps(result, indent=1, default=str) + "\n")
        shutil.copy(out / names[0], raw / names[0])
        with tarfile.open(out / names[2], "w:gz") as tar:
            for p in sorted(raw.iterdir()):
                if p.is_file():
                    tar.add(p, arcname=f"{stem}/{p.name}")
        print("\n" + text, flush=True)
        bad = [s for s in stages if s.status in ("failed", "timeout")]
        return 1 if bad else 0
    finally:
        shutil.rmtree(raw, ignore_errors=True)


# --- mix-calls: host and device time of one mix_images call ------------------------------------


def mix_calls(argv) -> int:
    """Per ``mix_images`` call: host µs (launch not waited for), the sampler's host µs, and the
    kernels' device µs from CUPTI against a copy; every dtype, mixup and CutMix, both layouts."""
    p = argparse.ArgumentParser(prog="gpu_check.py mix-calls")
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--out", default="bench-out")
    a = p.parse_args(argv)
    import torch

    from dali_mixup import MixupConfig, MixupSampler, mix_images

    cuda = a.device == "gpu"
    if cuda and not torch.cuda.is_available():
        print("mix-calls: no CUDA GPU", file=sys.stderr)
        return 2
    dev = torch.device("cuda") if cuda else torch.device("cpu")
    device_times = None
    if cuda:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from kernel_bandwidth import _device_times as device_times
    n, s = a.batch, a.size
    configs = {"mixup": MixupConfig(alpha=1.0, mode="elem"),
               "cutmix": MixupConfig(alpha=1.0, mode="elem", cutmix_alpha=1.0, switch_prob=0.5)}
    dtypes = [("uint8", torch.uint8, None), ("float16", torch.float16, None), ("bfloat16", torch.bfloat16, None),
              ("float32", torch.float32, None), ("float32->bfloat16", torch.float32, torch.bfloat16)]
    rows = []
    for mode, cfg in configs.items():
        for name, dt, out_dt in dtypes:
            for layout in ("NCHW", "NHWC"):
                g = torch.Generator().manual_seed(0)
                x = torch.randint(0, 255, (n, 3, s, s), generator=g).to(dt).to(dev)
                if layout == "NHWC":
                    x = x.contiguous(memory_format=torch.channels_last)
                out = torch.empty_like(x, dtype=out_dt or dt)
                sampler = MixupSampler(cfg, seed=0)
                host_sample, host_call, host_launch = [], [], []
                fixed = sampler.sample(n, image_size=(s, s))
                mix_images(x, fixed, out=out)  # compile, cache the params on the device
                for i in range(a.repeats):
                    t0 = time.perf_counter()
                    params = sampler.sample(n, image_size=(s, s))
                    t1 = time.perf_counter()
                    mix_images(x, params, out=out)
                    t2 = time.perf_counter()
                    mix_images(x, fixed, out=out)
                    t3 = time.perf_counter()
                    host_sample.append(t1 - t0)
                    host_call.append(t2 - t1)
                    host_launch.append(t3 - t2)
                    if cuda and i % 8 == 7:
                        torch.cuda.synchronize()  # keep the queue short: host time, not back-pressure
                row = {"mode": mode, "dtype": name, "layout": layout, "batch": [n, 3, s, s],
                       "host_us_sample": 1e6 * statistics.median(host_sample),
                       "host_us_call": 1e6 * statistics.median(host_call),
                       "host_us_launch": 1e6 * statistics.median(host_launch),
                       "host_us_call_p90": 1e6 * sorted(host_call)[int(0.9 * (len(host_call) - 1))]}
                if device_times is not None:
                    kt = device_times(lambda: mix_images(x, fixed, out=out), a.repeats)
                    ct = device_times(lambda: out.copy_(x), a.repeats) if out_dt is None else {}
                    nbytes = x.numel() * x.element_size()
                    row.update(kernel_names=sorted(kt), device_us=1e6 * sum(kt.values()))
                    if ct:
                        row.update(copy_us=1e6 * max(ct.values()),
                                   kernel_GBps=3 * nbytes / (row["device_us"] * 1e3),
                                   copy_GBps=2 * nbytes / (row["copy_us"] * 1e3))
                        row["share_of_copy"] = row["kernel_GBps"] / row["copy_GBps"]
                    else:  # the fused cast writes another dtype: no same-dtype copy to compare with
                        row["share_of_copy"] = None
                rows.append(row)
                print(f"{mode:<6} {name:<17} {layout}: host {row['host_us_call']:7.1f} us/call, "
                      f"{row['host_us_launch']:7.1f} with params on the device, sample {row['host_us_sample']:6.1f}"
                      + (f"; device {row['device_us']:.1f} us" if "device_us" in row else ""), flush=True)
    meta = metadata()
    path = Path(a.out)
    path.mkdir(parents=True, exist_ok=True)
    path = path / f"mix-calls-{hardware(meta)}.json"
    path.write_text(json.dumps({"schema": "dali-mixup-mix-calls/1", "method": mix_calls.__doc__, "metadata": meta,
                                "options": vars(a), "rows": rows}, indent=1, default=str) + "\n")
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mix-calls"]:
        return mix_calls(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the same stages on the CPU backend with tiny sizes")
    p.add_argument("--out", help="where the three result files go (default $OUT, else bench-out)")
    p.add_argument("--budget", type=float, help=f"seconds for the whole run (default {GPU['budget']}; "
                   f"dry run {DRY['budget']})")
    p.add_argument("--stages", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                   help="run only these stages (data,tests,kernel,mix,bench,train,audio,detection,volume)")
    p.add_argument("--tests", help=f"what pytest -m gpu collects (default {GPU['tests']}; dry run {DRY['tests']})")
    p.add_argument("--python", default=sys.executable, help="the interpreter the stages run with (default: this one)")
    p.add_argument("--digest", action="store_true", help="print the source digest of this tree and exit")
    args = p.parse_args(argv)
    if args.digest:
        print(source_digest())
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
