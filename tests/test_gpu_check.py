"""``make gpu-check`` (benchmarks/gpu_check.py): the orchestration, and its CPU dry run end to end.

The dry run is the same script, stages and result files as on the GPU host, with tiny sizes on
DALI's CPU backend, so the command a GPU session runs cannot rot between GPU runs.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_makefile_target_runs_the_script():
    text = (ROOT / "Makefile").read_text()
    assert "gpu-check:\n\tbash benchmarks/run_gpu_session.sh\n" in text
    phony = next(line for line in text.splitlines() if line.startswith(".PHONY:"))
    assert "gpu-check" in phony.split()


def test_commit_from_env_where_history_is_missing(gc, monkeypatch):
    monkeypatch.setenv("GIT_COMMIT", "abc1234")
    meta = gc.fill_commit({"git": {"commit": None, "dirty": None}})
    assert meta["git"]["commit"] == "abc1234" and "GIT_COMMIT" in meta["git"]["from"]
    assert meta["git"]["source_digest"] == gc.source_digest()
    meta = gc.fill_commit({"git": {"commit": "fromgit", "dirty": False}})
    assert meta["git"]["commit"] == "fromgit"  # a real checkout wins


def test_stage_timeout_is_reported_and_killed(gc, tmp_path):
    stage = gc.Stage("slow", 1.0, [sys.executable, "-c", "import time; time.sleep(60)"])
    gc.run_stage(stage, tmp_path, dict(os.environ), left=100.0)
    assert stage.status == "timeout" and stage.seconds < 30
    nxt = gc.Stage("next", 10.0, [sys.executable, "-c", "print('ran')"])
    gc.run_stage(nxt, tmp_path, dict(os.environ), left=100.0)
    assert nxt.status == "ok" and "ran" in nxt.log_tail


def test_stage_failures_and_skips(gc, tmp_path):
    failed = gc.Stage("bad", 10.0, [sys.executable, "-c", "raise SystemExit(3)"])
    gc.run_stage(failed, tmp_path, dict(os.environ), left=100.0)
    assert (failed.status, failed.rc) == ("failed", 3)
    absent = gc.Stage("absent", 10.0, [sys.executable, "-c", "import monai_is_not_here as m"])
    gc.run_stage(absent, tmp_path, dict(os.environ), left=100.0)
    assert absent.status == "failed"  # not one of the modules the GPU host lacks
    absent = gc.Stage("absent", 10.0, [sys.executable, "-c", "raise ModuleNotFoundError(\"No module named 'monai'\")"])
    gc.run_stage(absent, tmp_path, dict(os.environ), left=100.0)
    assert absent.status == "skipped" and "monai" in absent.skip
    late = gc.Stage("late", 10.0, [sys.executable, "-c", "pass"])
    gc.run_stage(late, tmp_path, dict(os.environ), left=2.0)
    assert late.status == "skipped" and "no time left" in late.skip


def test_extra_scripts_need_a_device_option(gc, tmp_path):
    stage = gc._extra_stage("bench_nothing_here.py", sys.executable, gc.GPU, "gpu", tmp_path, False)
    assert stage.skip == "not present"
    for script in gc.EXTRA_SCRIPTS:
        s = gc._extra_stage(script, sys.executable, gc.GPU, "gpu", tmp_path, False)
        if s.command:
            assert s.command[2:4] == ["--device", "gpu"] and "--help" not in s.command


def test_gpu_sizes_fit_seven_minutes(gc):
    assert gc.GPU["budget"] <= 420 - 10
    assert gc.GPU["batch"] == 256 and gc.GPU["bench_min_s"] >= 2.0


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path):
    """``run_gpu_session.sh --dry-run``: every stage runs on the CPU with tiny sizes; three files
    with the metadata and each stage's results inside."""
    env = dict(os.environ, PYTHON=sys.executable, GIT_COMMIT="test-commit")
    env.pop("OUT", None)
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "run_gpu_session.sh"), "--dry-run", "--out", str(tmp_path)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = sorted(f.name for f in tmp_path.iterdir())
    assert len(files) == 3 and all(f.startswith("gpu-check-") and "dry-run" in f for f in files), files
    result = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert result["schema"] == "dali-mixup-gpu-check/1" and result["dry_run"] is True
    meta = result["metadata"]
    assert meta["git"]["commit"] and meta["git"]["source_digest"] and meta["versions"]["torch"]
    assert meta["cpu"]["cores"] >= 1
    stages = {s["name"]: s for s in result["stages"]}
    for name in ("data", "tests", "kernel", "mix", "bench", "train"):
        assert stages[name]["status"] == "ok", (name, stages[name]["log_tail"])
        assert stages[name]["seconds"] <= stages[name]["timeout_s"]
    assert stages["tests"]["results"]["gpu-tests"]["tests"] >= 1
    mix = next(v for k, v in stages["mix"]["results"].items() if k.startswith("mix-calls-"))
    assert len(mix["rows"]) == 2 * 5 * 2 and mix["metadata"]["git"]["commit"]
    bench = next(v for k, v in stages["bench"]["results"].items() if k.startswith("bench-"))
    assert {r["name"] for r in bench["rows"]} == {"ours", "ours-fused", "dali", "dali-mixup", "dali-torch", "torchvision"}
    assert all(r["status"] == "ok" for r in bench["rows"]), bench["rows"]
    assert bench["metadata"]["git"]["commit"] and bench["metadata"]["git"]["source_digest"]
    train = next(v for k, v in stages["train"]["results"].items() if k.startswith("train-step-"))
    feeds = train["models"][0]["feeds"]
    assert set(feeds) == {"ceiling", "ours", "dali", "dali-torch", "torchvision"}
    assert all(f["status"] == "ok" and f["images_per_s"]["median"] > 0 for f in feeds.values()), feeds
    assert feeds["ceiling"]["share_of_ceiling"] == 1.0 and train["metadata"]["versions"]["torch"]
    summary = next(tmp_path.glob("*.txt")).read_text()
    assert len(summary.splitlines()) <= 60 and "[OK     ] train" in summary
    with tarfile.open(next(tmp_path.glob("*.tar.gz"))) as tar:
        names = {pathlib.PurePath(n).name for n in tar.getnames()}
    assert {"bench.log", "train.log", "gpu-tests.xml", "metadata.json"} <= names
