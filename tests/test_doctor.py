"""`dali-mixup doctor` on this machine (CPU), its failure paths, and its GPU run (marker gpu)."""

import subprocess
import sys

import pytest
import torch

from dali_mixup.tools import doctor
from dali_mixup.tools.cli import build_parser


def run_doctor(capsys, *argv):
    args = build_parser(["doctor"]).parse_args(["doctor", *argv])
    rc = doctor.run(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_doctor_passes_on_cpu_and_says_what_it_checked(capsys):
    if torch.cuda.is_available():
        pytest.skip("this test is the CPU run; the GPU run is test_doctor_passes_on_gpu")
    rc, out, err = run_doctor(capsys)
    assert rc == 0, err
    assert err == ""
    for label in ("python", "torch", "DALI", "CuPy", "GPU", "driver", "CUDA", "HW JPEG"):
        assert any(line.split()[:1] == [label.split()[0]] for line in out.splitlines()), f"no {label} line:\n{out}"
    assert "HW JPEG  n/a, no GPU" in out
    import nvidia.dali

    assert nvidia.dali.__version__ in out and torch.__version__ in out
    assert "checks on the cpu" in out
    for name, _ in doctor.CHECKS:
        assert f"ok    {name}: " in out, out
    assert out.rstrip().endswith("doctor: everything checked works")


def test_doctor_cli_subprocess_exit_code():
    """The console entry point, as the container runs it (`dali-mixup doctor`)."""
    proc = subprocess.run([sys.executable, "-m", "dali_mixup", "doctor", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "doctor: everything checked works" in proc.stdout


def test_gpu_requested_without_gpu_is_a_problem(capsys):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    rc, out, err = run_doctor(capsys, "--device", "gpu")
    assert rc == 1
    assert "doctor: problem: GPU: --device gpu was asked for but torch sees no CUDA GPU" in err.splitlines()
    assert "checks: skipped, no GPU for --device gpu" in out


def test_failing_check_gives_exit_1_and_one_line_per_problem(capsys, monkeypatch):
    def broken(ctx):
        raise doctor.CheckFailed("the kernel gave 3 wrong elements")

    def crashing(ctx):
        raise RuntimeError("boom")

    checks = [(n, broken if n == "mix kernel" else c) for n, c in doctor.CHECKS] + [("crash", crashing)]
    monkeypatch.setattr(doctor, "CHECKS", checks)
    rc, out, err = run_doctor(capsys, "--device", "cpu")
    assert rc == 1
    problems = [line for line in err.splitlines() if line.startswith("doctor: problem: ")]
    assert problems == [
        "doctor: problem: mix kernel: the kernel gave 3 wrong elements",
        "doctor: problem: crash: RuntimeError: boom",
    ]
    assert "FAIL  mix kernel: the kernel gave 3 wrong elements" in out
    assert "ok    val pipeline" in out and "ok    train + mixup" in out
    assert "2 problem(s)" in out


def test_a_wrong_cpu_twin_is_caught(capsys, monkeypatch):
    """A real fault, not a stubbed check: the CPU twin rounds one element wrong. Both the kernel
    check (against the float64 reference) and the end-to-end check must notice."""
    from dali_mixup import cpu

    real = cpu.mix_images_cpu

    def off_by_one(x, lam, perm, out):
        real(x, lam, perm, out)
        flat = out.view(-1)
        flat[flat.numel() // 2] += 1
        return out

    monkeypatch.setattr(cpu, "mix_images_cpu", off_by_one)
    rc, out, err = run_doctor(capsys, "--device", "cpu")
    assert rc == 1
    problems = [line for line in err.splitlines() if line.startswith("doctor: problem: ")]
    assert any(p.startswith("doctor: problem: mix kernel: mix_images float32: CPU twin is") for p in problems), err
    assert "ok    val pipeline" in out


def test_wrong_targets_are_caught(capsys, monkeypatch):
    """Soft targets that lose mass (a known bug elsewhere) fail the train + mixup check."""
    from dali_mixup import fields

    real = fields._targets  # what the iterator's SoftTarget rule computes its soft targets with

    def lossy(labels, params, num_classes, label_smoothing, checked):
        return real(labels, params, num_classes, label_smoothing, checked) * 0.99

    monkeypatch.setattr(fields, "_targets", lossy)
    rc, out, err = run_doctor(capsys, "--device", "cpu")
    assert rc == 1
    assert any(line.startswith("doctor: problem: train + mixup: batch 0: target rows sum to") for line in err.splitlines()), err


def test_missing_dali_is_reported_and_checks_are_skipped(capsys, monkeypatch):
    real = doctor._version

    def no_dali(name):
        if name == "nvidia.dali":
            return None, "ModuleNotFoundError: No module named 'nvidia.dali'"
        return real(name)

    monkeypatch.setattr(doctor, "_version", no_dali)
    rc, out, err = run_doctor(capsys, "--device", "cpu")
    assert rc == 1
    assert err.splitlines()[0].startswith("doctor: problem: DALI: not importable (ModuleNotFoundError")
    assert "checks: skipped, DALI is missing" in out


def test_hw_jpeg_engine_without_hw_decode_is_a_problem(monkeypatch):
    """The container misconfiguration the Dockerfile's `video` capability prevents: a GPU with
    NVJPG engines whose hardware decode fails. Simulated on the CPU by faking the GPU facts."""
    class Props:
        name, major, minor, total_memory, multi_processor_count = "NVIDIA H100 80GB HBM3", 9, 0, 80 * 2**30, 132

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props)
    monkeypatch.setattr(doctor._Nvml, "has_jpeg_engine", lambda self, bus, index: None)  # fall back to sm_90
    monkeypatch.setattr(doctor, "_version", lambda name: ("1.0", None))
    monkeypatch.setattr(doctor, "_hw_decode_probe", lambda i: (False, "nvImageCodec's hardware backend could not decode a baseline JPEG"))
    monkeypatch.setenv("NVIDIA_DRIVER_CAPABILITIES", "compute,utility")
    import cupy

    monkeypatch.setattr(cupy.cuda.runtime, "runtimeGetVersion", lambda: 13000)
    monkeypatch.setattr(cupy.cuda.runtime, "deviceGetPCIBusId", lambda i: "0000:00:1E.0")
    facts = doctor.gather_facts("auto")
    assert facts.gpu
    text = dict(facts.lines)
    assert text["GPU"].startswith("NVIDIA H100 80GB HBM3 (cuda:0 of 1, sm_90")
    assert text["HW JPEG"].startswith("NOT usable: sm_90 (H100/H200/GH200) has NVJPG engines")
    assert len(facts.problems) == 1
    assert "lacks 'video'" in facts.problems[0] and facts.problems[0].startswith("HW JPEG:")

    # a GPU without engines (NVML says so) is reported, not a problem
    monkeypatch.setattr(doctor._Nvml, "has_jpeg_engine", lambda self, bus, index: False)
    facts = doctor.gather_facts("auto")
    assert facts.problems == []
    assert dict(facts.lines)["HW JPEG"].startswith("not available (NVML: this GPU has no NVJPG engines")


def test_generated_images_are_real_jpegs(tmp_path):
    from PIL import Image

    n = doctor.write_images(tmp_path)
    files = sorted(tmp_path.rglob("*.jpg"))
    assert n == len(files) == len(doctor.CLASSES) * doctor.IMAGES_PER_CLASS
    modes = set()
    sizes = set()
    for f in files:
        with Image.open(f) as im:
            assert im.format == "JPEG"
            modes.add(im.mode)
            sizes.add(im.size)
    assert modes == {"RGB", "L"} and len(sizes) > 3


def test_import_is_light():
    code = ("import sys, dali_mixup.tools.doctor\n"
            "print(','.join(m for m in ('cupy', 'nvidia.dali', 'nvidia.nvimgcodec', 'torchvision', 'PIL') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing dali_mixup.tools.doctor imported {out.stdout.strip()}"


@pytest.mark.gpu
def test_doctor_passes_on_gpu(capsys):
    rc, out, err = run_doctor(capsys, "--device", "gpu")
    assert rc == 0, out + err
    assert "checks on the gpu" in out
    assert "GPU kernel == CPU twin bit for bit" in out


def test_multi_line_reasons_become_one_line(capsys, monkeypatch):
    """A compiler log (CuPy's CompileException is many lines) still gives one line per problem."""
    def compile_error(ctx):
        raise RuntimeError("/tmp/k.cu(12): error: incomplete type \"float16\" is not allowed\n"
                           "  __device__ float dm_load(float16 v);\n        ^\n\n1 error detected")

    monkeypatch.setattr(doctor, "CHECKS", [("mix kernel", compile_error)])
    rc, out, err = run_doctor(capsys, "--device", "cpu")
    assert rc == 1
    assert err.splitlines() == [
        'doctor: problem: mix kernel: RuntimeError: /tmp/k.cu(12): error: incomplete type "float16" is not allowed'
        " | __device__ float dm_load(float16 v); | 1 error detected"
    ]
