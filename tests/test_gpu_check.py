"""The GPU check (benchmarks/gpu_check.py): its orchestration, and its CPU dry run end to end.

The ten defects a rehearsal found (issue 23), each checked here on the CPU with fakes, or by the
dry run: (1) the tests stage sized, ``-v``, ``--timeout``, results as they come, never-run
kernels first, xdist; (2) ``--continue-on-collection-errors``; (3) the mix summary with
``share_of_copy: None``; (4) the detection and volume results in the summary; (5) ResNet-18 in
its own stage; (6) budgets inside the total, half-budget skip; (7) a hanging nvidia-smi; (8)
results in the output folder as the run goes; (9) audio data without soundfile; (10) no make,
GIT_COMMIT in every result. The dry run is the same script, stages and result files as on the
GPU host, with tiny sizes on DALI's CPU backend.
"""

import hashlib
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import types
import wave

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _args(gc, **kw):
    a = dict(dry_run=False, python=sys.executable, tests=None, tests_only=None, test_workers=None, stages=None,
             budget=None, out=None)
    a.update(kw)
    return types.SimpleNamespace(**a)


# --- (10) the documented command, the commit in every result ------------------------------------


def test_makefile_target_runs_the_script():
    text = (ROOT / "Makefile").read_text()
    assert "gpu-check:\n\tbash benchmarks/run_gpu_session.sh\n" in text
    phony = next(line for line in text.splitlines() if line.startswith(".PHONY:"))
    assert "gpu-check" in phony.split()


def test_the_documented_gpu_command_needs_no_make():
    text = (ROOT / "benchmarks" / "README.md").read_text()
    section = text[text.index("## On a lent GPU"):]
    section = section[:section.index("\n## ", 1)]
    blocks = section.split("```bash\n")[1:]
    commands = [b[:b.index("```")] for b in blocks]
    device = [c for c in commands if "receive.sh" in c]
    assert device, "the device command is documented"
    for c in device:
        assert "make" not in c.split() and "make gpu-check" not in c
        assert "bash benchmarks/run_gpu_session.sh" in c and "GIT_COMMIT=" in c


def test_session_script_warns_without_a_commit(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, GIT_DIR=str(tmp_path / "no-git"))
    env.pop("GIT_COMMIT", None)
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "run_gpu_session.sh"), "--digest"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and len(p.stdout.strip()) == 16
    assert "GIT_COMMIT is not set" in p.stderr
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "run_gpu_session.sh"), "--digest"], cwd=ROOT,
                       env=dict(env, GIT_COMMIT="abc1234"), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "GIT_COMMIT" not in p.stderr


def test_commit_from_env_where_history_is_missing(gc, monkeypatch):
    monkeypatch.setenv("GIT_COMMIT", "abc1234")
    meta = gc.fill_commit({"git": {"commit": None, "dirty": None}})
    assert meta["git"]["commit"] == "abc1234" and "GIT_COMMIT" in meta["git"]["from"]
    assert meta["git"]["source_digest"] == gc.source_digest()
    meta = gc.fill_commit({"git": {"commit": "fromgit", "dirty": False}})
    assert meta["git"]["commit"] == "fromgit"  # a real checkout wins


def test_every_result_file_gets_the_commit(gc, tmp_path, monkeypatch):
    """The scripts' own metadata (``metadata`` or ``meta``) has no commit on the GPU host; each
    JSON a stage leaves is stamped from GIT_COMMIT."""
    monkeypatch.setenv("GIT_COMMIT", "abc1234")
    (tmp_path / "bench-x.json").write_text(json.dumps({"metadata": {"git": {"commit": None}}, "rows": []}))
    (tmp_path / "bench_audio-x.json").write_text(json.dumps({"meta": {"git": {"commit": None}}}))
    (tmp_path / "bench_volume-x.json").write_text(json.dumps({"meta": {"error": "no tools"}}))
    (tmp_path / "plain.json").write_text(json.dumps([1, 2]))
    (tmp_path / "cut.json").write_text("{\"metadata\": {")
    changed = gc.stamp_results(tmp_path)
    assert sorted(changed) == ["bench-x.json", "bench_audio-x.json", "bench_volume-x.json"]
    for name in changed:
        d = json.loads((tmp_path / name).read_text())
        assert d.get("metadata", d.get("meta"))["git"]["commit"] == "abc1234"
    assert gc.stamp_results(tmp_path) == []  # stamped once


def test_extra_scripts_name_their_results_as_the_summary_reads_them(gc, tmp_path):
    """(4) ``bench_<name>-<hw>[...].json``, commit from GIT_COMMIT: read back by the summary."""
    for script in gc.EXTRA_SCRIPTS:
        text = (ROOT / "benchmarks" / script).read_text()
        stem = script[:-3]
        assert f'f"{stem}-' in text, f"{script} names its JSON {stem}-<hardware>..."
        assert 'os.environ.get("GIT_COMMIT")' in text
        stage = gc.Stage(stem[len("bench_"):], 10.0)
        (tmp_path / f"{stem}-amd-epyc-2c-nogpu-quick.json").write_text(json.dumps({"meta": {"git": {}}}))
        gc.read_extra(stage, tmp_path, stem)
        assert f"{stem}-amd-epyc-2c-nogpu-quick.json" in stage.results


# --- (6) budgets, (5) ResNet-18, (1) sizing ------------------------------------------------------


def test_stage_budgets_add_up_inside_the_total(gc):
    for sz in (gc.GPU, gc.DRY):
        assert all(f"t_{name}" in sz for name in gc.STAGE_ORDER)
        assert gc.planned_seconds(sz) <= sz["budget"], sz
    assert gc.GPU["budget"] <= 7 * 60  # about 7 minutes of the 15 a lent machine gives


def test_gpu_budgets_have_a_margin_over_the_estimates(gc):
    for name, estimate in gc.ESTIMATE_S.items():
        assert gc.GPU[f"t_{name}"] >= 1.25 * estimate, name
    # the tests: 388 of them at ~0.3 s each do not fit in one process, over 8 workers they do
    assert 388 * 0.3 > gc.GPU["t_tests"] > gc.ESTIMATE_S["tests"]


def test_resnet18_is_its_own_stage(gc, tmp_path):
    stages = {s.name: s for s in gc.build_stages(_args(gc), gc.GPU, tmp_path, "hw")}
    r50, r18 = stages["train"].command, stages["train18"].command
    assert r50[r50.index("--models") + 1] == "resnet50:224" and r18[r18.index("--models") + 1] == "resnet18:160"
    assert r50[r50.index("--tag") + 1] == "train" and r18[r18.index("--tag") + 1] == "train18"
    assert gc.GPU["batch"] == 256 and gc.GPU["bench_min_s"] >= 2.0


def test_later_stages_wait_for_the_follow_up(gc, tmp_path):
    stages = {s.name: s for s in gc.build_stages(_args(gc), gc.GPU, tmp_path, "hw")}
    for name in gc.GPU["later"]:
        if stages[name].command:
            assert stages[name].status == "later" and stages[name].followup
    asked = {s.name: s for s in gc.build_stages(_args(gc, stages=["audio", "bench"]), gc.GPU, tmp_path, "hw")}
    assert asked["audio"].status == "pending" and not asked["audio"].skip or asked["audio"].skip == "not present"
    assert asked["tests"].skip == "not asked for (--stages)" and not asked["tests"].followup


# --- (1), (2) the tests stage --------------------------------------------------------------------


def test_tests_command(gc, tmp_path, monkeypatch):
    monkeypatch.setattr(gc, "has_module", lambda python, name: True)
    monkeypatch.setattr(gc.os, "cpu_count", lambda: 16)
    tests = next(s for s in gc.build_stages(_args(gc), gc.GPU, tmp_path, "hw") if s.name == "tests")
    cmd = tests.command
    for flag in ("-v", "--continue-on-collection-errors", f"--timeout={gc.GPU['test_timeout']}", "gpu_tests_plugin"):
        assert flag in cmd
    assert cmd[cmd.index("-n") + 1] == "8" and cmd[cmd.index("-m", cmd.index("pytest")) + 1] == "gpu"
    assert tests.env["DM_GPU_TESTS_PROGRESS"] == str(tmp_path / "gpu-tests.jsonl")
    assert tests.env["DM_GPU_TESTS_FIRST"].splitlines()[0] == "tests/test_normalize_mix.py::"
    monkeypatch.setattr(gc, "has_module", lambda python, name: False)
    tests = next(s for s in gc.build_stages(_args(gc), gc.GPU, tmp_path, "hw") if s.name == "tests")
    assert "-n" not in tests.command and not any(c.startswith("--timeout") for c in tests.command)
    assert "no pytest-timeout: no per-test time limit" in tests.notes


def test_never_run_kernels_are_first_in_the_real_suite(gc):
    """The patterns match the real test ids (a renamed test would silently lose its place)."""
    ids = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests/test_normalize_mix.py", "tests/test_mix.py", "tests/test_volume.py",
                          "tests/test_autograd.py"], cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    ids = [ln for ln in ids.splitlines() if "::" in ln]
    for label, pattern in gc.TESTS_FIRST:
        assert any(pattern in i for i in ids), (label, pattern)


PLUGIN_TESTS = {
    "test_a.py": """
        import pytest
        @pytest.mark.gpu
        def test_plain(): pass
        @pytest.mark.gpu
        def test_fails(): assert 1 == 2, "one is not two"
        @pytest.mark.gpu
        @pytest.mark.skip(reason="no CUDA GPU here")
        def test_skipped(): pass
        def test_not_gpu(): pass
    """,
    "test_fused.py": """
        import pytest
        @pytest.mark.gpu
        @pytest.mark.parametrize("k", [1, 2])
        def test_kernel(k): pass
    """,
    "test_broken.py": "import module_that_is_not_installed\n",
    "conftest.py": "",
}


def _plugin_run(tmp_path, *extra, env_extra=None):
    d = tmp_path / "suite"
    d.mkdir(exist_ok=True)
    for name, text in PLUGIN_TESTS.items():
        (d / name).write_text(textwrap.dedent(text))
    (d / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: gpu\n")
    progress = tmp_path / "progress.jsonl"
    progress.unlink(missing_ok=True)
    env = dict(os.environ, DM_GPU_TESTS_PROGRESS=str(progress), DM_GPU_TESTS_FIRST="test_fused.py::\n",
               PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
               **(env_extra or {}))
    p = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider",
                        "-p", "gpu_tests_plugin", "--continue-on-collection-errors", ".", *extra],
                       cwd=d, env=env, capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    return p, events


def _check_plugin_events(gc, p, events):
    collected = next(e for e in events if e["event"] == "collected")["ids"]
    assert collected[:2] == ["test_fused.py::test_kernel[1]", "test_fused.py::test_kernel[2]"], collected
    assert "test_a.py::test_not_gpu" not in collected  # -m gpu deselected it
    results = {e["id"]: e for e in events if e["event"] == "result"}
    assert results["test_a.py::test_fails"]["outcome"] == "failed"
    assert "one is not two" in results["test_a.py::test_fails"]["message"]
    assert results["test_a.py::test_skipped"]["message"].endswith("no CUDA GPU here")
    errors = [e for e in events if e["event"] == "collect-error"]
    assert [e["id"] for e in errors] == ["test_broken.py"] and "module_that_is_not_installed" in errors[0]["message"]
    assert events[-1]["event"] == "finished" and events[-1]["exitstatus"] == 1
    r = gc.tests_report(events, first=(("fused", "test_fused.py::"),))
    assert (r["passed"], r["failed"], r["skipped"], r["not_run"], r["collected"]) == (3, 1, 1, 0, 5)
    assert r["first"]["fused"] == {"collected": 2, "passed": 2, "failed": 0, "skipped": 0, "not_run": 0}
    assert "PASSED" in p.stdout and "test_fused.py::test_kernel[1]" in p.stdout  # -v names each test


def test_plugin_orders_writes_as_it_goes_and_goes_on_past_a_broken_module(gc, tmp_path):
    """(1) the never-run kernels first, each result on disk as it comes; (2) one module that
    cannot be imported does not stop the others."""
    p, events = _plugin_run(tmp_path)
    _check_plugin_events(gc, p, events)
    order = [e["id"] for e in events if e["event"] == "result"]
    assert order[:2] == ["test_fused.py::test_kernel[1]", "test_fused.py::test_kernel[2]"]


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist not installed")
def test_plugin_under_xdist(gc, tmp_path):
    p, events = _plugin_run(tmp_path, "-n", "2")
    _check_plugin_events(gc, p, events)


def test_plugin_runs_only_the_tests_left(gc, tmp_path):
    left = tmp_path / "left.txt"
    left.write_text("test_a.py::test_plain\ntest_fused.py::test_kernel[2]\n")
    p, events = _plugin_run(tmp_path, env_extra={"DM_GPU_TESTS_ONLY": str(left)})
    ran = {e["id"]: e["outcome"] for e in events if e["event"] == "result"}
    assert ran == {"test_fused.py::test_kernel[2]": "passed", "test_a.py::test_plain": "passed"}


def test_a_cut_off_tests_stage_names_what_ran_and_what_did_not(gc, tmp_path, monkeypatch):
    monkeypatch.setattr(gc, "TESTS_LEFT", tmp_path / "left-for-followup.txt")
    ids = ["tests/test_normalize_mix.py::test_gpu_x[a]", "tests/test_mix.py::test_cuda_y[3d]", "tests/test_z.py::t"]
    events = [{"event": "collected", "ids": ids},
              {"event": "result", "id": ids[0], "outcome": "passed", "when": "call"},
              {"event": "result", "id": ids[1], "outcome": "failed", "when": "call", "message": "E   bits differ"},
              {"event": "result", "id": ids[1], "outcome": "error", "when": "teardown", "message": "E   leak"},
              "{\"event\": \"result\", \"id\": \"tests/test_z.py::t\", \"outc"]  # cut while writing
    (tmp_path / "gpu-tests.jsonl").write_text("\n".join(e if isinstance(e, str) else json.dumps(e) for e in events))
    stage = gc.Stage("tests", 80.0)
    stage.status = "timeout"
    gc.read_tests(stage, tmp_path)
    text = "\n".join(stage.summary)
    assert "1 passed, 1 failed, 0 skipped of 3 collected; 1 NOT RUN" in text
    assert "fused normalize kernel: 1/1 passed" in text and "3-D cuboid CutMix: 0/1 passed, 1 failed" in text
    assert "FAILED tests/test_mix.py::test_cuda_y[3d]: E   leak" in text
    assert (tmp_path / "gpu-tests-left.txt").read_text().split() == [ids[2]]
    assert gc.TESTS_LEFT.read_text().split() == [ids[2]] and stage.followup
    cmd = gc.followup_commands([stage], gc.GPU, "abc1234")
    assert len(cmd) == 1 and f"--tests-only {gc.TESTS_LEFT}" in cmd[0] and "--stages tests " in cmd[0]


def test_junit_file_where_there_is_no_progress_file(gc, tmp_path):
    (tmp_path / "gpu-tests.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.test_mix" name="test_a"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_mix" name="test_b"/><testcase classname="t" name="c"><skipped/></testcase>'
        '</testsuite></testsuites>')
    stage = gc.Stage("tests", 80.0)
    gc.read_tests(stage, tmp_path)
    assert stage.summary[0] == "1 passed, 1 failed, 1 skipped of 3 (JUnit file)"


# --- (3) the mix summary ------------------------------------------------------------------------


def test_mix_summary_takes_rows_without_a_copy_to_compare(gc, tmp_path):
    row = dict(mode="cutmix", layout="NCHW", host_us_call=150.0, host_us_launch=120.0, host_us_sample=15.0,
               device_us=80.0)
    rows = [dict(row, dtype="float32", share_of_copy=0.93), dict(row, dtype="float32->bfloat16", share_of_copy=None)]
    (tmp_path / "mix-calls-hw.json").write_text(json.dumps({"metadata": {}, "rows": rows, "partial": True,
                                                            "planned_rows": 20}))
    stage = gc.Stage("mix", 35.0)
    gc.read_mix(stage, tmp_path)
    text = "\n".join(stage.summary)
    assert "partial: 2 of 20 rows" in text and "= 93% of copy" in text
    assert "float32->bfloat16: host   150 us/call" in text and "casts: no same-dtype copy" in text


def test_targets_print_a_verdict_only_where_one_was_drawn(gc):
    t = dict(row="ours", against="dali", target_ratio=0.9, ratio=0.95)
    assert gc.target_line(dict(t, met=True, verdict="met")).endswith("0.950 met")
    assert gc.target_line(dict(t, met=False, verdict="missed", ratio=0.5)).endswith("MISSED")
    assert "no verdict (dali untrusted" in gc.target_line(dict(t, met=None, verdict="withheld",
                                                             note="dali untrusted (spread 40%)"))
    assert gc.target_line(dict(t, ratio=None)).endswith("not measured")
    assert gc.target_line(dict(t, met=True)).endswith("met")  # train_step's targets: no verdict field


# --- stages: timeouts, skips, (7) nvidia-smi, (8) results as the run goes -----------------------


def test_stage_timeout_is_reported_and_killed(gc, tmp_path):
    stage = gc.Stage("slow", 7.0, [sys.executable, "-c", "print('measured row 1', flush=True); import time; "
                                   "time.sleep(60)"])
    live = tmp_path / "out-running.log"
    gc.run_stage(stage, tmp_path, dict(os.environ), left=100.0, live=live)
    assert stage.status == "timeout" and stage.seconds < 15 and stage.followup
    assert not live.exists() and "measured row 1" in (tmp_path / "slow.log").read_text()
    nxt = gc.Stage("next", 10.0, [sys.executable, "-c", "print('ran')"])
    gc.run_stage(nxt, tmp_path, dict(os.environ), left=100.0)
    assert nxt.status == "ok" and "ran" in nxt.log_tail


def test_stage_failures_and_skips(gc, tmp_path):
    failed = gc.Stage("bad", 10.0, [sys.executable, "-c", "raise SystemExit(3)"])
    gc.run_stage(failed, tmp_path, dict(os.environ), left=100.0)
    assert (failed.status, failed.rc) == ("failed", 3) and not failed.followup
    absent = gc.Stage("absent", 10.0, [sys.executable, "-c", "import monai_is_not_here as m"])
    gc.run_stage(absent, tmp_path, dict(os.environ), left=100.0)
    assert absent.status == "failed"  # not one of the modules the GPU host lacks
    absent = gc.Stage("absent", 10.0, [sys.executable, "-c", "raise ModuleNotFoundError(\"No module named 'monai'\")"])
    gc.run_stage(absent, tmp_path, dict(os.environ), left=100.0)
    assert absent.status == "skipped" and "monai" in absent.skip


def test_a_stage_that_cannot_get_half_its_budget_is_skipped(gc, tmp_path):
    late = gc.Stage("late", 30.0, [sys.executable, "-c", "pass"])
    gc.run_stage(late, tmp_path, dict(os.environ), left=14.0)
    assert late.status == "skipped" and late.followup and "under half its 30 s budget" in late.skip
    half = gc.Stage("half", 30.0, [sys.executable, "-c", "pass"])
    gc.run_stage(half, tmp_path, dict(os.environ), left=16.0)
    assert half.status == "ok" and half.timeout == 16.0


def test_a_hanging_nvidia_smi_does_not_stop_the_run(gc, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nsleep 60\n")
    fake.chmod(0o755)
    t0 = time.perf_counter()
    msg = gc.nvidia_smi(tmp_path, timeout=1.0, exe=str(fake))
    assert time.perf_counter() - t0 < 10 and "no answer in 1 s" in msg
    assert "no answer" in (tmp_path / "nvidia-smi.txt").read_text()
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200'\n")
    assert gc.nvidia_smi(tmp_path, exe=str(fake)) == "nvidia-smi: exit 0"
    assert "H200" in (tmp_path / "nvidia-smi.txt").read_text()
    assert gc.nvidia_smi(tmp_path, exe=str(tmp_path / "absent")).startswith("nvidia-smi: ")


FAKE_RUN = """
import json, sys, time
sys.path.insert(0, {bench!r})
import gpu_check as gc

gc.metadata = lambda: {{"git": {{"commit": None}}, "versions": {{"nvidia.dali": "2.4"}}, "gpu": {{"name": "Fake"}},
                        "cpu": {{"model": "x", "cores": 16}}}}
gc.hardware = lambda meta: "fake-16c-h200"
gc.nvidia_smi = lambda raw: "nvidia-smi: exit 0"
summary = sys.argv[1] + "/gpu-check-fake-16c-h200.txt"
check = ("import pathlib, sys; t = pathlib.Path(sys.argv[1]).read_text(); "
         "sys.exit(0 if 'IN PROGRESS' in t and '[TIMEOUT] s1' in t else 3)")

def build(args, sz, raw, hw):
    py = sys.executable
    return [gc.Stage("s1", 6, [py, "-c", "print('row 1 measured', flush=True); import time; time.sleep(60)"]),
            gc.Stage("s2", 20, [py, "-c", check, summary]),
            gc.Stage("s3", 20, [py, "-c", "open(sys.argv[1], 'w').close(); import time; time.sleep(60)".replace(
                "sys.argv[1]", repr(sys.argv[1] + "/s3-started"))]),
            gc.Stage("s4", 20, [py, "-c", "pass"])]

gc.build_stages = build
gc.GPU.update(budget=60, later=())
sys.exit(gc.main(["--out", sys.argv[1]]))
"""


def test_results_reach_the_output_folder_as_the_run_goes(gc, tmp_path):
    """(8) the summary is rewritten before each stage (stage s2 reads it and finds s1's timeout);
    a SIGTERM to the run (the device call out of time) stops the running stage, writes what was
    measured and prints the follow-up command."""
    out = tmp_path / "out"
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN.format(bench=str(ROOT / "benchmarks")))
    env = dict(os.environ, GIT_COMMIT="abc1234")
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (out / "s3-started").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (out / "s3-started").exists(), proc.communicate()[0] if proc.poll() is not None else "s3 never started"
    running = (out / "gpu-check-fake-16c-h200-running.log").read_text()
    assert "$ " in running  # the running stage's output is in the output folder
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, stdout
    files = sorted(f.name for f in out.iterdir())
    assert files == ["gpu-check-fake-16c-h200.json", "gpu-check-fake-16c-h200.tar.gz", "gpu-check-fake-16c-h200.txt",
                     "s3-started"], files
    result = json.loads((out / "gpu-check-fake-16c-h200.json").read_text())
    status = {s["name"]: s["status"] for s in result["stages"]}
    assert status == {"s1": "timeout", "s2": "ok", "s3": "timeout", "s4": "not run"}, status
    assert result["finished"] is False and result["metadata"]["git"]["commit"] == "abc1234"
    assert result["followup"] and "--stages s1,s3,s4 " in result["followup"][0]
    assert "export GIT_COMMIT=abc1234 && bash benchmarks/run_gpu_session.sh" in result["followup"][0]
    assert stdout.rstrip().endswith(result["followup"][0])  # the last line the device call shows
    with tarfile.open(out / "gpu-check-fake-16c-h200.tar.gz") as tar:
        logs = {pathlib.PurePath(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert "row 1 measured" in logs["s1.log"] and "s3.log" in logs


def test_follow_up_commands_fit_one_device_call_each(gc):
    stages = []
    for name in ("tests", "bench", "train18", "audio", "detection", "volume"):
        s = gc.Stage(name, gc.GPU[f"t_{name}"])
        s.followup, s.status = True, "timeout"
        stages.append(s)
    cmds = gc.followup_commands(stages, gc.GPU, "abc1234")
    for c in cmds:
        budget = int(c.split("--budget ")[1].split()[0])
        assert budget <= gc.CALL_LIMIT_S and f"# timeout_s {budget + 60}" in c
    joined = " ".join(cmds)
    assert all(n in joined for n in ("tests", "bench", "train18", "audio", "detection", "volume"))
    assert "--stages data,bench" in joined or "data," in joined  # the data set comes with bench and train


# --- (9) audio test data without soundfile -------------------------------------------------------


def test_known_answers_of_the_flac_crcs():
    import audio_data

    assert audio_data.crc8(b"123456789") == 0xF4  # CRC-8, polynomial 0x07
    assert audio_data.crc16(b"123456789") == 0xFEE8  # CRC-16/BUYPASS (FLAC's), polynomial 0x8005


def test_audio_data_writes_wav_and_flac_without_soundfile(tmp_path):
    code = f"""
import sys
sys.modules["soundfile"] = None  # as on the GPU host
sys.path.insert(0, {str(ROOT / 'tests')!r})
import audio_data
audio_data.unique_clips({str(tmp_path / 'u')!r}, 4)
audio_data.class_clips({str(tmp_path / 'c')!r}, 2)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert "u/c00/clip.wav" in files and "u/c01/clip.flac" in files and len(files) == 4 + 6
    import audio_data

    data = audio_data.clip("tone", 1, 0.4, 16000, channels=2)
    path = audio_data.write(str(tmp_path / "t.wav"), data, 16000)
    with wave.open(path) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, 16000, 6400)
        got = np.frombuffer(w.readframes(6400), "<i2").reshape(-1, 2)
    assert np.array_equal(got, audio_data.pcm16(data))
    flac = pathlib.Path(audio_data.write(str(tmp_path / "t.flac"), data, 16000)).read_bytes()
    assert flac[:4] == b"fLaC" and flac[4] == 0x80 and int.from_bytes(flac[5:8], "big") == 34
    info = int.from_bytes(flac[18:26], "big")
    assert (info >> 44, ((info >> 41) & 7) + 1, ((info >> 36) & 31) + 1, info & ((1 << 36) - 1)) == (16000, 2, 16, 6400)
    assert flac[26:42] == hashlib.md5(audio_data.pcm16(data).astype("<i2").tobytes()).digest()
    # two frames (4096 + 2304 samples): sync code, CRC-8 of the header, CRC-16 of the frame
    frame1 = flac[42:42 + 7 + 1 + 2 * (1 + 2 * 4096) + 2]
    assert frame1[:2] == b"\xff\xf8" and audio_data.crc8(frame1[:7]) == frame1[7]
    assert audio_data.crc16(frame1[:-2]) == int.from_bytes(frame1[-2:], "big")
    assert flac[42 + len(frame1):][:2] == b"\xff\xf8"


def test_audio_data_reads_back_exactly_through_libsndfile(tmp_path):
    sf = pytest.importorskip("soundfile", reason="libsndfile (soundfile) decodes the files as a reference")
    import audio_data

    rng = np.random.default_rng(0)
    for rate, channels, frames in ((8000, 1, 1), (22050, 2, 4096), (11025, 3, 4097), (100000, 1, 9000)):
        x = rng.integers(-32768, 32768, (frames, channels)).astype(np.int16)
        for ext in (".wav", ".flac"):
            path = audio_data.write(str(tmp_path / f"{rate}-{channels}{ext}"), x, rate)
            y, r = sf.read(path, dtype="int16", always_2d=True)
            assert r == rate and np.array_equal(y, x), (rate, channels, frames, ext)
    floats = audio_data.clip("chirp", 2, 0.3, 8000)
    path = audio_data.write(str(tmp_path / "f.wav"), floats, 8000)
    sf.write(str(tmp_path / "ref.wav"), floats, 8000, subtype="PCM_16")
    assert np.array_equal(sf.read(path, dtype="int16")[0], sf.read(str(tmp_path / "ref.wav"), dtype="int16")[0])


# --- the dry run, end to end ---------------------------------------------------------------------


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path):
    """``run_gpu_session.sh --dry-run``: every stage runs on the CPU with tiny sizes, in a tree
    without git history (as on the GPU host: the commit comes from GIT_COMMIT); the result files
    with the metadata and each stage's results inside."""
    env = dict(os.environ, PYTHON=sys.executable, GIT_COMMIT="test-commit", GIT_DIR=str(tmp_path / "no-git"))
    env.pop("OUT", None)
    out = tmp_path / "out"
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "run_gpu_session.sh"), "--dry-run", "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-3000:]
    files = sorted(f.name for f in out.iterdir())
    assert len(files) == 3 and all(f.startswith("gpu-check-") and "dry-run" in f for f in files), files
    result = json.loads(next(out.glob("*.json")).read_text())
    assert result["schema"] == "dali-mixup-gpu-check/2" and result["dry_run"] is True and result["finished"]
    meta = result["metadata"]
    assert meta["git"]["commit"] == "test-commit" and meta["git"]["source_digest"] and meta["versions"]["torch"]
    assert meta["cpu"]["cores"] >= 1
    stages = {s["name"]: s for s in result["stages"]}
    assert list(stages) == ["data", "tests", "kernel", "mix", "bench", "train", "train18", "audio", "detection",
                            "volume"]
    for name, s in stages.items():
        assert s["status"] == "ok", (name, s["skip_reason"], s["log_tail"])
        assert s["seconds"] <= s["timeout_s"]
    tests = stages["tests"]["results"]["gpu-tests"]
    assert tests["collected"] >= 300 and not tests["collect_errors"] and tests["not_run"] == 0
    assert tests["first"]["packed CutMix kernel"]["collected"] >= 1
    mix = next(v for k, v in stages["mix"]["results"].items() if k.startswith("mix-calls-"))
    assert len(mix["rows"]) == 2 * 5 * 2 and mix["partial"] is False
    bench = next(v for k, v in stages["bench"]["results"].items() if k.startswith("bench-"))
    assert {r["name"] for r in bench["rows"]} >= {"ours", "ours-fused", "dali", "dali-mixup", "torchvision"}
    assert all(r["status"] == "ok" for r in bench["rows"] if r["name"] != "dali-torch"), bench["rows"]
    for name in ("train", "train18"):
        train = next(v for k, v in stages[name]["results"].items() if k.startswith("train-step-"))
        feeds = train["models"][0]["feeds"]
        assert {"ceiling", "ours", "dali", "torchvision"} <= set(feeds)
        assert all(f["status"] == "ok" and f["images_per_s"]["median"] > 0 for f in feeds.values()), feeds
    for name in ("audio", "detection", "volume"):  # (4): their results reach the summary
        assert any(k.startswith(f"bench_{name}-") for k in stages[name]["results"]), stages[name]["summary"]
    summary = next(out.glob("*.txt")).read_text()
    assert len(summary.splitlines()) <= 90 and "[OK     ] train18" in summary and "IN PROGRESS" not in summary
    with tarfile.open(next(out.glob("*.tar.gz"))) as tar:
        members = {pathlib.PurePath(m.name).name: m for m in tar.getmembers()}
        assert {"bench.log", "train.log", "gpu-tests.xml", "gpu-tests.jsonl", "metadata.json"} <= set(members)
        for name, m in members.items():  # (10): every result file carries the commit
            if name.endswith(".json") and name != "metadata.json":
                d = json.loads(tar.extractfile(m).read())
                meta = d.get("metadata", d.get("meta")) if isinstance(d, dict) else None
                if meta is not None:
                    assert meta["git"]["commit"] == "test-commit", name
