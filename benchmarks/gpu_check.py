"""The GPU check: everything a lent GPU machine measures, in one command of at most 7 minutes.

Runs on a GPU host where DALI arrives through ``PYTHONPATH=/tmp/site`` (``../shared/gpu/README.md``);
it creates no virtual environment and installs nothing. Each stage is a subprocess with its own
time budget; the budgets of the stages a run starts with add up to less than the run's
``--budget``, a stage that cannot get half its budget is skipped (reported as skipped, and put in
the follow-up command), and a stage that fails or runs out of time is reported and the next one
still runs. Stages, in the order they run:

========= ===================================================================================
data      the built-in synthetic ImageNet-like set, generated once (shared by bench and train)
tests     every ``gpu``-marked test, ``pytest -v`` with ``--timeout`` per test,
          ``--continue-on-collection-errors``, split over pytest-xdist workers where the host has
          it; the kernels that never ran on a GPU first (``TESTS_FIRST``); each result written
          as it comes (``gpu_tests_plugin.py``)
kernel    ``benchmarks/kernel_bandwidth.py``: device time (CUPTI) of the mixup and CutMix kernels
          against a device-to-device copy, uint8/float16/float32, NCHW and channels_last
mix       ``gpu_check.py mix-calls``: per ``mix_images`` call, every dtype (bfloat16 and the fused
          float32 -> bfloat16 cast too), mixup and CutMix, both layouts: host microseconds of the
          call, of ``sample``, and the kernels' device time against a copy (CUPTI)
bench     ``dali-mixup bench`` on the GPU, every row (its JSON is rewritten after every round,
          so a stage cut off keeps the rounds it finished)
train     ``benchmarks/train_step.py``: ResNet-50@224 fed by each loader
train18   the same for ResNet-18@160 (its own stage: it runs, or is skipped, whole)
audio     ``benchmarks/bench_audio.py --device gpu --quick``; like detection and volume it is
          not in the first run's 7 minutes (``later``): the follow-up command runs them
detection ``benchmarks/bench_detection.py --device gpu --quick``
volume    ``benchmarks/bench_volume.py --device gpu --quick``; each of the three skipped when
          missing or when a module it needs (soundfile, monai, pycocotools) is not installed
========= ===================================================================================

Output, in ``--out`` (else ``$OUT``, else ``bench-out``), kept up to date as the run goes, so a
run cut off anywhere leaves what it measured: ``gpu-check-<hw>.txt`` (the one-screen summary),
``gpu-check-<hw>.json`` (metadata, every stage's status, seconds, command, log tail and result
JSONs embedded), ``gpu-check-<hw>.tar.gz`` (every stage's log and result files, the test
results), each rewritten after every stage, and ``gpu-check-<hw>-running.log``, the output of
the stage running now (it names each test as it passes or fails, each bench measurement as it
is taken). At most 8 files come back from a device call; this is 4. At the end it prints a
follow-up command (``--stages ... --budget ...``) for what did not fit or ran out of time.

Every result JSON carries the git commit, versions and hardware inside. The working tree
travels to the GPU host without its history, so the commit is taken from ``$GIT_COMMIT`` there
(write it into the command) and recorded with a digest of the source files (``source_digest``:
sha256 over ``dali_mixup/**.py`` and ``benchmarks/*.py``, path and bytes), which
``python benchmarks/gpu_check.py --digest`` prints here to check which tree ran.

``--dry-run`` runs the same stages with tiny sizes on the CPU backend (``tests/test_gpu_check.py``
runs it, and ``benchmarks/rehearse_gpu_host.sh`` runs it in a copy of the GPU host's packages).

    bash benchmarks/run_gpu_session.sh                 # on the GPU host (no make needed)
    bash benchmarks/run_gpu_session.sh --dry-run       # here, CPU, tiny
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
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
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
SCHEMA = "dali-mixup-gpu-check/2"
#: the scripts other engineers add; run where present with a --device option
EXTRA_SCRIPTS = ("bench_audio.py", "bench_detection.py", "bench_volume.py")
#: modules the GPU host does not have: a stage that stops on one of them is skipped, not failed
ABSENT_ON_GPU_HOST = ("soundfile", "monai", "pycocotools")
#: the tests that run first, in this order (substrings of test ids): the kernels that never ran
#: on a GPU, so that a run cut off has checked them
TESTS_FIRST: Tuple[Tuple[str, str], ...] = (
    ("fused normalize kernel", "tests/test_normalize_mix.py::"),
    ("packed CutMix kernel", "::test_cuda_packed_and_scalar_cutmix_equal_cpu_twin["),
    ("3-D cuboid CutMix", "3d]"),
    ("3-D cuboid CutMix", "tests/test_volume.py::"),
    ("differentiable mix on CUDA", "tests/test_autograd.py::"),
)
#: where the ids of the tests a cut-off run did not reach are kept for the follow-up run (the
#: machine's /tmp lasts while it stays warm)
TESTS_LEFT = Path(tempfile.gettempdir()) / "gpu-check-tests-left.txt"
#: seconds for what is not a stage: metadata and nvidia-smi before, the result files after
RESERVE_S = 15
#: a stage out of time gets SIGINT (pytest then writes its JUnit file), SIGTERM, SIGKILL
GRACE_S = 5
#: one device call runs at most 600 s; the transfers and DALI's unpacking need the rest
CALL_LIMIT_S = 540

#: What each stage is expected to take on the H200 (seconds), from the H100 run at 0ded869 and the
#: rehearsal; the GPU budgets below are these with a margin of at least 25 %. tests: 388 tests;
#: 146 of them took 43.8 s in one process on the H100 (~0.3 s each, ~120 s for all in one
#: process); over 8 xdist workers ~15 s of tests, twice that for the workers sharing one GPU,
#: and ~15 s to start them. bench: 7 rows x 4 rounds of epochs >= 2 s, and the builds. train:
#: 6 feeds x 4 rounds of whole epochs >= 1 s: an epoch of 4096 images is ~1.3 s on ResNet-50@224,
#: ~0.3 s on ResNet-18@160, and the builds.
ESTIMATE_S = {"data": 10, "tests": 45, "kernel": 25, "mix": 25, "bench": 75, "train": 50, "train18": 40,
              "audio": 20, "detection": 20, "volume": 20}
GPU = dict(budget=420, images=4096, batch=256, image_size=224, bench_warmup=1, bench_epochs=3, bench_min_s=2.0,
           train_warmup=1, train_rounds=3, train_min_s=1.0, train_model="resnet50:224", train18_model="resnet18:160",
           mix_batch=256, mix_size=224, mix_repeats=30, kernel_repeats=20, tests="tests", test_timeout=60,
           t_data=20, t_tests=80, t_kernel=35, t_mix=35, t_bench=95, t_train=75, t_train18=60,
           t_audio=25, t_detection=25, t_volume=25, later=("audio", "detection", "volume"))
#: the CPU dry run: the same stages, tiny sizes; the extra scripts run with tiny options too
DRY = dict(budget=780, images=16, batch=8, image_size=32, bench_warmup=0, bench_epochs=1, bench_min_s=0.0,
           train_warmup=0, train_rounds=1, train_min_s=0.0, train_model="tiny:32", train18_model="tiny:32",
           mix_batch=4, mix_size=16, mix_repeats=5, kernel_repeats=2, tests="tests", test_timeout=120,
           t_data=45, t_tests=120, t_kernel=40, t_mix=45, t_bench=90, t_train=75, t_train18=75,
           t_audio=75, t_detection=75, t_volume=75, later=())
#: the extra scripts' options for the dry run (each added where the script has it)
DRY_EXTRA = {"bench_audio.py": ["--per-class", "4", "--repeats", "1", "--batch-size", "4"],
             "bench_detection.py": ["--images", "8", "--repeats", "1", "--batch-size", "4", "--canvas", "64"],
             "bench_volume.py": ["--volumes", "4", "--size", "16", "--crop", "8", "--batch-size", "2", "--epochs", "1",
                                 "--repeats", "2"]}
#: the bench's rows on the GPU (every one it has there)
BENCH_PEERS = ("ours", "ours-fused", "dali", "dali-mixup", "dali-torch", "torchvision", "timm")
STAGE_ORDER = ("data", "tests", "kernel", "mix", "bench", "train", "train18", "audio", "detection", "volume")


def planned_seconds(sz: Dict[str, Any], names=None) -> float:
    """What the stages ``names`` (default: the ones a run starts with) may take, reserve included."""
    names = [n for n in STAGE_ORDER if n not in sz["later"]] if names is None else names
    return RESERVE_S + sum(sz[f"t_{n}"] for n in names)


def _budget_of(stages) -> float:
    return RESERVE_S + sum(s.budget for s in stages)
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


def stamp_results(folder: Path) -> List[str]:
    """Fill the commit (``$GIT_COMMIT`` where git history is missing) and the source digest into
    every result JSON in ``folder`` (a ``metadata`` or ``meta`` dict at its top); the names of
    the files changed."""
    changed = []
    for p in sorted(folder.glob("*.json")):
        try:
            d = json.loads(p.read_text())
        except (ValueError, OSError):
            continue
        meta = d.get("metadata", d.get("meta")) if isinstance(d, dict) else None
        if not isinstance(meta, dict):
            continue
        before = json.dumps(meta.get("git"), sort_keys=True, default=str)
        fill_commit(meta)
        if json.dumps(meta.get("git"), sort_keys=True, default=str) != before:
            p.write_text(json.dumps(d, indent=1, default=str) + "\n")
            changed.append(p.name)
    return changed


def nvidia_smi(raw: Path, timeout: float = 10.0, exe: Optional[str] = None) -> str:
    """``nvidia-smi``'s output into ``raw/nvidia-smi.txt``; one line on what happened. A hanging
    ``nvidia-smi`` is killed after ``timeout`` seconds and left behind if it will not die (a
    process stuck in the driver), so the run goes on either way."""
    exe = exe or shutil.which("nvidia-smi")
    if not exe:
        return "nvidia-smi: not found"
    try:
        proc = subprocess.Popen([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return f"nvidia-smi: {e}"
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass  # stuck in the kernel: left behind
        msg = f"nvidia-smi: no answer in {timeout:g} s (killed); the run goes on"
        (raw / "nvidia-smi.txt").write_text(msg + "\n")
        return msg
    (raw / "nvidia-smi.txt").write_bytes(out or b"")
    return f"nvidia-smi: exit {proc.returncode}"


def has_module(python: str, name: str) -> bool:
    """Whether ``python`` can import ``name`` (this interpreter: without importing it)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return importlib.util.find_spec(name) is not None
    try:
        return subprocess.run([python, "-c", f"import {name}"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


# --- stages ------------------------------------------------------------------------------------


class Stopped(BaseException):
    """The run itself was told to stop (SIGTERM: the device call's time is up)."""


class Stage:
    """One step of the run: a command (or a reason to skip), its budget, and how to read its
    results into the summary.

    ``status``: ``pending``, ``ok``, ``failed``, ``timeout``, ``skipped``, ``later`` (not in this
    run's budget), ``not run`` (the run was stopped first). ``followup``: the follow-up command
    runs it (it timed out, could not get half its budget, or is ``later``)."""

    def __init__(self, name: str, budget: float, command: Optional[List[str]] = None, skip: str = "",
                 read: Optional[Callable[["Stage"], None]] = None, what: str = "", env: Optional[Dict[str, str]] = None):
        self.name, self.budget, self.command, self.skip, self.read, self.what = name, budget, command, skip, read, what
        self.env = env or {}
        self.status, self.rc, self.seconds, self.timeout = "pending", None, 0.0, None
        self.followup = False
        self.summary: List[str] = []
        self.results: Dict[str, Any] = {}
        self.log_tail = ""
        self.notes: List[str] = []

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "what": self.what, "status": self.status, "rc": self.rc,
                "seconds": round(self.seconds, 2), "budget_s": self.budget, "timeout_s": self.timeout,
                "command": self.command, "skip_reason": self.skip or None, "followup": self.followup,
                "notes": self.notes, "summary": self.summary, "log_tail": self.log_tail, "results": self.results}


def run_stage(stage: Stage, raw: Path, env: Dict[str, str], left: float, live: Optional[Path] = None) -> None:
    """Run ``stage.command`` in its own process group, output to ``live`` while it runs (a file
    in the output folder) and to ``raw/<name>.log`` after; stopped at ``min(budget, left)``
    seconds. A stage that cannot get half its budget is skipped and marked for the follow-up."""
    if stage.skip:
        stage.status = "skipped"
        return
    if left < stage.budget / 2:
        stage.status, stage.followup = "skipped", True
        stage.skip = f"{max(left, 0):.0f} s left of the run, under half its {stage.budget:g} s budget"
        return
    stage.timeout = min(stage.budget, left)
    log = raw / f"{stage.name}.log"
    path = live or log
    t0 = time.perf_counter()
    stopped = None
    with open(path, "wb") as f:
        f.write(("$ " + " ".join(stage.command) + "\n").encode())
        f.flush()
        proc = subprocess.Popen(stage.command, cwd=REPO, env={**env, **stage.env}, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            stage.rc = proc.wait(timeout=max(stage.timeout - GRACE_S, 1.0))
        except subprocess.TimeoutExpired:
            stop_group(proc)
            stage.rc = None
        except (Stopped, KeyboardInterrupt) as e:
            stop_group(proc)
            stage.rc, stopped = None, e
    stage.seconds = time.perf_counter() - t0
    if path != log:
        shutil.move(str(path), str(log))
    text = log.read_text(errors="replace")
    stage.log_tail = "\n".join(text.splitlines()[-25:])
    missing = re.findall(r"No module named '([\w.]+)'", text)
    absent = [m for m in missing if m.split(".")[0] in ABSENT_ON_GPU_HOST]
    if stage.rc is None:
        stage.status, stage.followup = "timeout", True
        if stopped is not None:
            stage.skip = "the run was stopped"
    elif stage.rc != 0 and absent:
        stage.status, stage.skip = "skipped", f"needs {absent[0]}, not installed here"
    else:
        stage.status = "ok" if stage.rc == 0 else "failed"
    stamp_results(raw)
    if stage.read is not None and stage.status in ("ok", "failed", "timeout"):
        try:
            stage.read(stage)
        except Exception as e:  # noqa: BLE001 - a result that cannot be read is said so
            stage.summary.append(f"results not readable: {type(e).__name__}: {e}")
    if stopped is not None:
        raise stopped


def stop_group(proc: subprocess.Popen) -> None:
    """SIGINT first (pytest then ends the session and writes its JUnit file), then SIGTERM, then
    SIGKILL, to the stage's whole process group (its workers too)."""
    for sig, wait in ((signal.SIGINT, 3), (signal.SIGTERM, 2), (signal.SIGKILL, 2)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _load(path: Path) -> Dict[str, Any]:
    d = json.loads(path.read_text())
    meta = d.get("metadata", d.get("meta")) if isinstance(d, dict) else None
    if isinstance(meta, dict):  # the stage ran without history: the commit and digest travel in the env
        fill_commit(meta)
    return d


def _first_result(stage: Stage, raw: Path, pattern: str, missing: str = "no results file") -> Optional[Dict[str, Any]]:
    """The stage's first results file matching ``pattern``, loaded and kept in ``stage.results``;
    ``None`` (and ``missing`` in its summary) when there is none."""
    files = sorted(raw.glob(pattern))
    if not files:
        stage.summary.append(missing)
        return None
    stage.results[files[0].name] = _load(files[0])
    return stage.results[files[0].name]


def _log_lines(stage: Stage, raw: Path, pattern: str, limit: int = 8) -> List[str]:
    """The last ``limit`` lines of the stage's log matching ``pattern``: what a stage cut off
    before writing its results file had printed as it measured."""
    log = raw / f"{stage.name}.log"
    if not log.exists():
        return []
    lines = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines() if re.search(pattern, ln)]
    return [ln[:110] for ln in lines[-limit:]]


# --- reading each stage's results into the summary ---------------------------------------------


def _read_progress(path: Path) -> List[Dict[str, Any]]:
    events = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a line cut off when the stage was stopped
    return events


def tests_report(events: List[Dict[str, Any]], first=TESTS_FIRST) -> Dict[str, Any]:
    """Counts, failures, skip reasons, collection errors and the tests not reached, from
    ``gpu_tests_plugin``'s progress events; per group of ``first``, how many passed."""
    collected: List[str] = []
    outcome: Dict[str, str] = {}
    message: Dict[str, str] = {}
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    collect_errors = []
    finished = None
    for e in events:
        kind = e.get("event")
        if kind == "collected":
            collected = list(e.get("ids", []))
        elif kind == "result":
            i, o = e["id"], e["outcome"]
            if i not in outcome or rank.get(o, 0) >= rank.get(outcome[i], 0):  # the worst report counts
                outcome[i] = o
                message[i] = e.get("message", "")
        elif kind == "collect-error":
            collect_errors.append({"id": e.get("id"), "message": e.get("message", "")})
        elif kind == "finished":
            finished = e.get("exitstatus")
    counts = {k: sum(1 for o in outcome.values() if o == k) for k in ("passed", "failed", "error", "skipped")}
    not_run = [i for i in collected if i not in outcome]
    reasons: Dict[str, int] = {}
    for i, o in outcome.items():
        if o == "skipped":
            msg = (message.get(i) or "").splitlines()[0][:70] if message.get(i) else ""
            reasons[msg] = reasons.get(msg, 0) + 1
    groups: Dict[str, Dict[str, int]] = {}
    for label, _ in first:
        groups.setdefault(label, {"collected": 0, "passed": 0, "failed": 0, "skipped": 0, "not_run": 0})
    for i in collected:
        label = next((lab for lab, pattern in first if pattern in i), None)  # the plugin's order
        if label is not None:
            o = outcome.get(i)
            groups[label]["collected"] += 1
            groups[label]["not_run" if o is None else "failed" if o in ("failed", "error") else o] += 1
    return {"collected": len(collected), **counts, "not_run": len(not_run), "not_run_ids": not_run,
            "failed_ids": [{"id": i, "message": message.get(i, "")} for i, o in outcome.items()
                           if o in ("failed", "error")],
            "skip_reasons": reasons, "collect_errors": collect_errors, "first": groups, "exitstatus": finished}


def read_tests(stage: Stage, raw: Path) -> None:
    events = _read_progress(raw / "gpu-tests.jsonl")
    if not events:
        read_junit(stage, raw)
        return
    r = tests_report(events)
    stage.results["gpu-tests"] = {k: v for k, v in r.items() if k != "not_run_ids"}
    line = (f"{r['passed']} passed, {r['failed'] + r['error']} failed, {r['skipped']} skipped of "
            f"{r['collected']} collected")
    if r["not_run"]:
        line += f"; {r['not_run']} NOT RUN (cut off: ids in gpu-tests-left.txt, and the follow-up runs them)"
        (raw / "gpu-tests-left.txt").write_text("\n".join(r["not_run_ids"]) + "\n")
        TESTS_LEFT.write_text("\n".join(r["not_run_ids"]) + "\n")
        stage.followup = True
    elif TESTS_LEFT.exists():  # an earlier run's: every test was reached this time
        TESTS_LEFT.unlink()
    stage.summary.append(line)
    for label, g in r["first"].items():
        if g["collected"]:
            stage.summary.append(f"{label}: {g['passed']}/{g['collected']} passed"
                                 + "".join(f", {g[k]} {k.replace('_', ' ')}" for k in ("failed", "skipped", "not_run")
                                           if g[k]))
    for e in r["collect_errors"][:3]:
        stage.summary.append(f"COLLECTION ERROR {e['id']}: {e['message'][:70]}")
    for f in r["failed_ids"][:5]:
        stage.summary.append(f"FAILED {f['id'][:80]}: {f['message'][:60]}")
    if len(r["failed_ids"]) > 5:
        stage.summary.append(f"... {len(r['failed_ids']) - 5} more failed (gpu-tests.jsonl)")
    if r["skip_reasons"]:
        top = max(r["skip_reasons"], key=r["skip_reasons"].get)
        stage.summary.append(f"skip reason ({r['skip_reasons'][top]}x): {top}")


def read_junit(stage: Stage, raw: Path) -> None:
    """Where the progress file is missing (the plugin did not load): pytest's JUnit file."""
    xml = raw / "gpu-tests.xml"
    if not xml.exists():
        stage.summary.append("no test results (no progress file, no JUnit file)")
        return
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    stage.results["gpu-tests"] = {**counts, "failed": failed}
    stage.summary.append(f"{counts['passed']} passed, {counts['failures'] + counts['errors']} failed, "
                         f"{counts['skipped']} skipped of {counts['tests']} (JUnit file)")
    stage.summary += [f"FAILED {n}" for n in failed[:5]]


def read_kernel(stage: Stage, raw: Path) -> None:
    d = _first_result(stage, raw, "kernel-bandwidth-*.json",
                      missing="no GPU: nothing measured" if stage.status == "ok" else "no results file")
    if d is None:
        stage.summary += _log_lines(stage, raw, r"^N=\s*\d+")
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
    if d.get("partial"):
        stage.summary.append(f"partial: {len(d['rows'])} of {d['planned_rows']} rows measured")
    for r in d["rows"]:
        if r["layout"] != "NCHW" or r["dtype"] not in ("float32", "uint8", "float32->bfloat16"):
            continue
        dev = ""
        if r.get("device_us") is not None:
            share = r.get("share_of_copy")
            dev = f"; device {r['device_us']:.1f} us" + (f" = {100 * share:.0f}% of copy" if share is not None
                                                          else " (casts: no same-dtype copy)")
        stage.summary.append(f"{r['mode']:<6} {r['dtype']:<17}: host {r['host_us_call']:5.0f} us/call "
                             f"({r['host_us_launch']:.0f} with params on device), sample {r['host_us_sample']:.0f} us"
                             + dev)


def read_bench(stage: Stage, raw: Path) -> None:
    """The bench's JSON (rewritten by the bench after every round: ``"complete": false`` until
    the end, so a stage cut off keeps the rounds measured)."""
    d = _first_result(stage, raw, "bench-*.json")
    if d is None:
        return
    if d.get("complete") is False:
        stage.summary.append("PARTIAL: the bench was stopped; figures from the rounds it finished")
    for r in d["rows"]:
        if r["status"] != "ok" or not r.get("images_per_s"):
            stage.summary.append(f"{r['name']:<12} {r['status']}: {(r.get('note') or 'no timed round')[:60]}")
            continue
        rb = f"{r['ratio_to_baseline']:.1f}x tv" if r.get("ratio_to_baseline") else ""
        rd = f"{100 * r['ratio_to_dali']:.1f}% DALI" if r.get("ratio_to_dali") else ""
        line = f"{r['name']:<12} {r['images_per_s']['median']:8.0f} img/s  {rd:>11} {rb:>9}"
        h = r.get("host_ms_per_batch")
        if h:
            line += f"  host/batch: next {1e3 * h['dali']:.0f} us, mix {1e3 * h['mix']:.0f} us"
        if r.get("trusted") is False:
            line += "  UNTRUSTED"
        stage.summary.append(line)
    for c in d.get("targets", []):
        stage.summary.append(target_line(c))


def target_line(c: Dict[str, Any]) -> str:
    """A target check of the bench or the training step: the ratio and the verdict, where one
    was drawn (``verdict`` ``met``/``missed``; ``withheld`` where a row is untrusted)."""
    head = f"target {c['row']} >= {c['target_ratio']:g} x {c['against']}: "
    if c.get("ratio") is None:
        return head + "not measured"
    verdict = c.get("verdict") or ("met" if c.get("met") else "missed" if c.get("met") is False else "")
    return head + f"{c['ratio']:.3f} " + {"met": "met", "missed": "MISSED"}.get(
        verdict, f"no verdict ({(c.get('note') or verdict or 'none drawn')[:60]})")


def read_train(stage: Stage, raw: Path, tag: str) -> None:
    d = _first_result(stage, raw, f"train-step-*-{tag}.json")
    if d is None:
        stage.summary += _log_lines(stage, raw, r" round \d+/\d+")
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
            stage.summary.append("  " + target_line(c))


def read_extra(stage: Stage, raw: Path, stem: str) -> None:
    """The JSONs the script wrote (``<stem>-*.json``) and the last lines it printed."""
    files = sorted(raw.glob(f"{stem}-*.json"))
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
    stage = Stage(name, sz.get(f"t_{name}", 25), what=f"benchmarks/{script}",
                  read=lambda s: read_extra(s, raw, script[:-3]))
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
    if dry_run:  # tiny sizes: the script runs end to end and writes its results file
        opts = DRY_EXTRA.get(script, [])
        for i in range(0, len(opts), 2):
            if f'"{opts[i]}"' in text:
                cmd += opts[i:i + 2]
    stage.command = cmd
    return stage


def tests_command(args, sz: Dict[str, Any], raw: Path, workers: int, timeout_plugin: bool) -> List[str]:
    cmd = [args.python, "-m", "pytest", "-m", "gpu", *(args.tests or sz["tests"]).split(), "-v", "-rfEs",
           "-p", "no:cacheprovider", "-p", "gpu_tests_plugin", "--continue-on-collection-errors",
           f"--junitxml={raw / 'gpu-tests.xml'}"]
    if workers > 1:
        cmd += ["-n", str(workers), "--dist", "load"]
    if timeout_plugin:
        cmd += [f"--timeout={sz['test_timeout']}"]
    return cmd


def build_stages(args, sz: Dict[str, Any], raw: Path, hw: str) -> List[Stage]:
    py = args.python
    device = "cpu" if args.dry_run else "gpu"
    here = str(Path(__file__).resolve())
    common = ["--images", str(sz["images"]), "--batch-size", str(sz["batch"])]
    dry_workers = ["--workers", "1"] if args.dry_run else []
    data_cmd = [py, "-c", "import sys; from dali_mixup.tools.datasets import synthetic_imagenet as s; "
                f"print(s({sz['images']}, 10, 0, workers={1 if args.dry_run else 'None'}))"]
    xdist, timeout_plugin = has_module(py, "xdist"), has_module(py, "pytest_timeout")
    cores = os.cpu_count() or 1
    workers = args.test_workers if args.test_workers is not None else (
        (2 if args.dry_run else min(8, cores // 2)) if xdist else 0)
    tests_env = {"DM_GPU_TESTS_PROGRESS": str(raw / "gpu-tests.jsonl"),
                 "DM_GPU_TESTS_FIRST": "\n".join(p for _, p in TESTS_FIRST),
                 "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", ""),
                                                           str(REPO / "benchmarks")) if p)}
    if args.tests_only:
        tests_env["DM_GPU_TESTS_ONLY"] = str(Path(args.tests_only).resolve())
    tests = Stage("tests", sz["t_tests"], tests_command(args, sz, raw, workers, timeout_plugin),
                  read=lambda s: read_tests(s, raw), env=tests_env,
                  what=f"pytest -m gpu {args.tests or sz['tests']}" + (f", only the ids in {args.tests_only}"
                                                                        if args.tests_only else ""))
    tests.notes.append(f"{workers} xdist workers" if workers > 1 else "one process (no pytest-xdist)" if not xdist
                       else "one process")
    if not timeout_plugin:
        tests.notes.append("no pytest-timeout: no per-test time limit")

    def train(name: str, model: str) -> Stage:
        return Stage(name, sz[f"t_{name}"], [py, str(REPO / "benchmarks" / "train_step.py"), "--device", device, *common,
                                             "--models", model, "--tag", name, "--warmup", str(sz["train_warmup"]),
                                             "--rounds", str(sz["train_rounds"]), "--min-seconds",
                                             str(sz["train_min_s"]), "--out", str(raw), *dry_workers],
                     read=lambda s: read_train(s, raw, name), what=f"train_step.py: {model}, training step per feed")

    stages = [
        Stage("data", sz["t_data"], data_cmd, what=f"built-in data set, {sz['images']} images"),
        tests,
        Stage("kernel", sz["t_kernel"], [py, str(REPO / "benchmarks" / "kernel_bandwidth.py"), "--repeats",
                                         str(sz["kernel_repeats"]), "--out", str(raw / f"kernel-bandwidth-{hw}.json")],
              read=lambda s: read_kernel(s, raw), what="kernel_bandwidth.py: device time vs d2d copy"),
        Stage("mix", sz["t_mix"], [py, here, "mix-calls", "--device", device, "--batch", str(sz["mix_batch"]),
                                   "--size", str(sz["mix_size"]), "--repeats", str(sz["mix_repeats"]),
                                   "--out", str(raw)],
              read=lambda s: read_mix(s, raw), what="mix_images: host us per call, device us, every dtype"),
        Stage("bench", sz["t_bench"], [py, "-m", "dali_mixup", "bench", "--device", device, *common,
                                       "--image-size", str(sz["image_size"]), "--peers", ",".join(BENCH_PEERS),
                                       "--warmup", str(sz["bench_warmup"]), "--epochs", str(sz["bench_epochs"]),
                                       "--min-seconds", str(sz["bench_min_s"]), "--out", str(raw), "--no-progress",
                                       *dry_workers],
              read=lambda s: read_bench(s, raw), what="dali-mixup bench, every row"),
        train("train", sz["train_model"]),
        train("train18", sz["train18_model"]),
    ]
    for script in EXTRA_SCRIPTS:
        stages.append(_extra_stage(script, py, sz, device, raw, args.dry_run))
    for s in stages:
        if args.stages:
            if s.name not in args.stages and not s.skip:
                s.skip = "not asked for (--stages)"
        elif s.name in sz["later"] and not s.skip:
            s.status, s.followup = "later", True
            s.skip = "not in the first run's budget: the follow-up command runs it"
    return stages


def followup_commands(stages: List[Stage], sz: Dict[str, Any], commit: Optional[str]) -> List[str]:
    """Commands for what did not fit or ran out of time, each inside one device call
    (``CALL_LIMIT_S``): the same machine, still warm (DALI stays in /tmp/site, the data set in
    the cache, the test ids not reached in ``TESTS_LEFT``)."""
    todo = [s for s in stages if s.followup]
    if not todo:
        return []
    data = Stage("data", sz["t_data"])

    def with_data(group: List[Stage]) -> List[Stage]:  # the data set comes first (cached: seconds)
        needs = {"bench", "train", "train18"} & {s.name for s in group} and "data" not in {s.name for s in group}
        return [data, *group] if needs else group

    groups: List[List[Stage]] = [[]]
    for s in todo:
        if groups[-1] and _budget_of(with_data(groups[-1] + [s])) > CALL_LIMIT_S:
            groups.append([])
        groups[-1].append(s)
    out = []
    for group in groups:
        group = with_data(group)
        names = [s.name for s in group]
        budget = int(_budget_of(group))
        cmd = (f"export GIT_COMMIT={commit or '<commit>'} && bash benchmarks/run_gpu_session.sh "
               f"--stages {','.join(names)} --budget {budget}")
        tests = next((s for s in group if s.name == "tests"), None)
        if tests is not None and tests.status != "skipped" and TESTS_LEFT.exists():
            cmd += f" --tests-only {TESTS_LEFT}"
        out.append(f"{cmd}    # timeout_s {budget + 60}")
    return out


def summary_text(result: Dict[str, Any], stages: List[Stage], current: Optional[Stage] = None) -> str:
    meta = result["metadata"]
    v = meta.get("versions", {})
    git = meta.get("git", {})
    gpu = (meta.get("gpu") or {}).get("name", "no GPU")
    lines = []
    if not result.get("finished"):
        lines.append(f"IN PROGRESS: {'stage ' + current.name + ' running' if current else 'between stages'} "
                     f"when this was written (a run cut off here keeps what is below and the running log)")
    lines += [f"gpu-check {'(DRY RUN, CPU, tiny sizes) ' if result['dry_run'] else ''}on {result['hardware']} ({gpu})",
              f"commit {git.get('commit') or 'UNKNOWN (set GIT_COMMIT)'}{' dirty' if git.get('dirty') else ''}, "
              f"source digest {git.get('source_digest')}; torch {v.get('torch')}, DALI {v.get('nvidia.dali')}, "
              f"CuPy {v.get('cupy')}, torchvision {v.get('torchvision')}",
              f"wall {result['wall_s']:.0f} s of a {result['budget_s']:.0f} s budget; {result['nvidia_smi']}", ""]
    for s in stages:
        head = f"[{s.status.upper():<7}] {s.name:<9} {s.seconds:6.1f} s"
        head += f" / {s.timeout:.0f} s" if s.timeout else f" / {s.budget:g} s budget" if s.status == "later" else ""
        head += f"  rc={s.rc}" if s.status == "failed" else ""
        head += f"  ({s.skip})" if s.skip else ""
        head += f"  [{'; '.join(s.notes)}]" if s.notes and s.status not in ("skipped", "later") else ""
        lines.append(head)
        lines += ["      " + ln for ln in s.summary[:12]]
        if s.status in ("failed", "timeout") and not s.summary:
            lines += ["      | " + ln[:110] for ln in s.log_tail.splitlines()[-4:]]
    if result.get("followup"):
        lines += ["", "follow-up (send at once, same machine, within its 30 s warm window):"]
        lines += ["  " + c for c in result["followup"]]
    lines.append("")
    lines.append(f"files: {', '.join(result['files'])} in {result['out']}")
    return "\n".join(lines)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_outputs(result: Dict[str, Any], stages: List[Stage], out: Path, raw: Path, stem: str,
                  current: Optional[Stage] = None) -> str:
    """The summary, the JSON and the tarball of ``raw``, rewritten whole (each replaced at once,
    so a run killed while writing leaves the previous ones)."""
    result["stages"] = [s.as_dict() for s in stages]
    text = summary_text(result, stages, current)
    names = result["files"]
    _write_atomic(out / names[0], (text + "\n").encode())
    _write_atomic(out / names[1], (json.dumps(result, indent=1, default=str) + "\n").encode())
    (raw / names[0]).write_text(text + "\n")
    tmp = out / f".{names[2]}.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for p in sorted(raw.iterdir()):
            if p.is_file():
                tar.add(p, arcname=f"{stem}/{p.name}")
    os.replace(tmp, out / names[2])
    return text


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

    def stop(signum, frame):
        raise Stopped(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, stop)
    try:
        meta = fill_commit(metadata())
        hw = hardware(meta)
        (raw / "metadata.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
        smi = nvidia_smi(raw)
        if not args.dry_run and not meta.get("gpu"):
            print("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); --dry-run runs the CPU "
                  "form", file=sys.stderr)
            return 2
        if not meta.get("versions", {}).get("nvidia.dali"):
            print("gpu-check: DALI does not import (is /tmp/site there? bash .gpu-stage/receive.sh unpacks it; a "
                  "machine given back has lost it)", file=sys.stderr)
            return 2
        stages = build_stages(args, sz, raw, hw)
        stem = f"gpu-check-{hw}" + ("-dry-run" if args.dry_run else "") + (
            "-" + "-".join(args.stages) if args.stages else "")
        names = [f"{stem}.txt", f"{stem}.json", f"{stem}.tar.gz"]
        live = out / f"{stem}-running.log"
        result = {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "dry_run": args.dry_run, "sizes": sz, "metadata": meta, "hardware": hw, "budget_s": sz["budget"],
                  "wall_s": 0.0, "out": str(out), "files": names, "nvidia_smi": smi, "finished": False,
                  "tests_first": [list(t) for t in TESTS_FIRST], "followup": []}
        planned = _budget_of(s for s in stages if not s.skip)
        print(f"gpu-check: {hw}, budget {sz['budget']:g} s, stages: {', '.join(s.name for s in stages if not s.skip)} "
              f"(their budgets and the reserve: {planned:g} s); {smi}", flush=True)
        if planned > sz["budget"]:
            print(f"gpu-check: the stages' budgets add up to more than --budget {sz['budget']:g} s: a stage that "
                  f"cannot get half its budget is skipped", flush=True)
        deadline = t_start + sz["budget"] - GRACE_S  # the result files are written after the last stage
        stopped = False
        for s in stages:
            if stopped:
                if s.status == "pending" and not s.skip:
                    s.status, s.followup, s.skip = "not run", True, "the run was stopped first"
                continue
            result["wall_s"] = time.perf_counter() - t_start
            write_outputs(result, stages, out, raw, stem, current=s if not s.skip else None)
            try:
                run_stage(s, raw, env, deadline - time.perf_counter(), live=live)
            except (Stopped, KeyboardInterrupt):
                stopped = True
            print(f"gpu-check: {s.name:<9} {s.status:<8} {s.seconds:6.1f} s{'  (' + s.skip + ')' if s.skip else ''}",
                  flush=True)
        result["wall_s"] = time.perf_counter() - t_start
        result["finished"] = not stopped
        result["followup"] = followup_commands(stages, sz, meta.get("git", {}).get("commit"))
        text = write_outputs(result, stages, out, raw, stem)
        print("\n" + text, flush=True)
        if result["followup"]:  # last, so the device call's output tail shows it
            print("\nfollow-up command(s), ready to send:\n" + "\n".join(result["followup"]), flush=True)
        if stopped:
            return 143
        bad = [s for s in stages if s.status in ("failed", "timeout")]
        return 1 if bad else 0
    finally:
        signal.signal(signal.SIGTERM, old)
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
    meta = metadata()
    path = Path(a.out)
    path.mkdir(parents=True, exist_ok=True)
    path = path / f"mix-calls-{hardware(meta)}.json"
    planned = len(configs) * len(dtypes) * 2

    def save(partial: bool) -> None:  # after every row: a stage cut off keeps the rows measured
        doc = {"schema": "dali-mixup-mix-calls/1", "method": mix_calls.__doc__, "metadata": meta, "options": vars(a),
               "partial": partial, "planned_rows": planned, "rows": rows}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        os.replace(tmp, path)

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
                save(partial=len(rows) < planned)
                print(f"{mode:<6} {name:<17} {layout}: host {row['host_us_call']:7.1f} us/call, "
                      f"{row['host_us_launch']:7.1f} with params on the device, sample {row['host_us_sample']:6.1f}"
                      + (f"; device {row['device_us']:.1f} us" if "device_us" in row else ""), flush=True)
    save(partial=False)
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mix-calls"]:
        return mix_calls(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the same stages on the CPU backend with tiny sizes")
    p.add_argument("--out", help="where the result files go (default $OUT, else bench-out)")
    p.add_argument("--budget", type=float, help=f"seconds for the whole run (default {GPU['budget']}; "
                   f"dry run {DRY['budget']})")
    p.add_argument("--stages", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                   help=f"run only these stages ({','.join(STAGE_ORDER)})")
    p.add_argument("--tests", help=f"what pytest -m gpu collects (default {GPU['tests']})")
    p.add_argument("--tests-only", metavar="FILE", help="run only the test ids in FILE (one a line): the follow-up "
                   f"of a tests stage cut off ({TESTS_LEFT})")
    p.add_argument("--test-workers", type=int, help="pytest-xdist workers for the tests stage (default: "
                   "min(8, cores/2) where pytest-xdist is installed; 0 or 1: one process)")
    p.add_argument("--python", default=sys.executable, help="the interpreter the stages run with (default: this one)")
    p.add_argument("--digest", action="store_true", help="print the source digest of this tree and exit")
    args = p.parse_args(argv)
    if args.digest:
        print(source_digest())
        return 0
    if args.stages:
        unknown = [s for s in args.stages if s not in STAGE_ORDER]
        if unknown:
            p.error(f"--stages: unknown {', '.join(unknown)} (stages: {', '.join(STAGE_ORDER)})")
    if args.tests_only and not Path(args.tests_only).is_file():
        p.error(f"--tests-only {args.tests_only}: no such file (the ids a cut-off run left; on a fresh machine "
                f"run the whole tests stage)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
