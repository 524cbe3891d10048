"""The ``dali-mixup`` command line: commands listed without importing them, only the command
that runs imported, usage errors as one line and exit status 2."""

import subprocess
import sys

import pytest

from dali_mixup.tools import cli

COMMAND_MODULES = sorted(module for module, _ in cli.COMMANDS.values())


def _run(*argv, probe=()):
    """``python -m dali_mixup ARGV`` in a child; returns (exit status, stdout, stderr, the probed
    modules that were imported)."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['dali-mixup', *{list(argv)!r}]\n"
        "try:\n"
        "    runpy.run_module('dali_mixup', run_name='__main__', alter_sys=True)\n"
        "    rc = 0\n"
        "except SystemExit as e:\n"
        "    rc = e.code\n"
        f"loaded = [m for m in {list(probe)!r} if m in sys.modules]\n"
        "sys.stdout.flush()\n"
        "print('LOADED', ','.join(loaded), 'RC', rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    *lines, last = proc.stdout.rstrip("\n").split("\n")
    assert last.startswith("LOADED "), proc.stdout + proc.stderr
    loaded, rc = last[len("LOADED "):].rsplit(" RC ", 1)
    return int(rc), "\n".join(lines), proc.stderr, [m for m in loaded.split(",") if m]


def test_doctor_help_imports_only_the_doctor():
    rc, out, err, loaded = _run("doctor", "--help", probe=(*COMMAND_MODULES, "dali_mixup.tools.bench_peers",
                                                           "torchvision", "nvidia.dali", "cupy"))
    assert rc == 0, err
    assert "--device" in out  # the doctor's own options are there
    assert loaded == ["dali_mixup.tools.doctor"], loaded


def test_top_level_help_lists_every_command_and_imports_none():
    rc, out, err, loaded = _run("--help", probe=COMMAND_MODULES)
    assert rc == 0, err
    for name, (_, help_) in cli.COMMANDS.items():
        assert name in out and help_.split()[0] in out, name
    assert loaded == []


@pytest.mark.parametrize("argv, start", [
    (["bench", "--bogus"], "dali-mixup bench: error: unrecognized arguments: --bogus"),
    (["doctor", "--device", "tpu"], "dali-mixup doctor: error: argument --device: invalid choice"),
    (["bogus"], "dali-mixup: error: argument COMMAND: invalid choice: 'bogus'"),
    ([], "dali-mixup: error: the following arguments are required: COMMAND"),
])
def test_a_usage_error_is_one_line_and_exit_2(argv, start, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1, err


def test_build_parser_adds_only_the_commands_asked_for():
    with pytest.raises(SystemExit):  # doctor's options were not added
        cli.build_parser([]).parse_args(["doctor", "--device", "cpu"])
    assert cli.build_parser(["doctor"]).parse_args(["doctor", "--device", "cpu"]).device == "cpu"
    assert cli.build_parser().parse_args(["doctor", "--device", "cpu"]).device == "cpu"  # default: every command
    with pytest.raises(ValueError, match="unknown command"):
        cli.build_parser(["nope"])


def test_a_command_missing_from_the_build_exits_2(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "doctor", ("dali_mixup.tools.no_such_module", "gone"))
    assert cli.main(["doctor"]) == 2
    assert capsys.readouterr().err == ("dali-mixup doctor: not available in this build "
                                       "(dali_mixup.tools.no_such_module missing)\n")


def test_ctrl_c_during_a_bench_is_one_line_and_exit_130(tmp_path):
    """SIGINT while the bench runs: no traceback, 'interrupted', the shell's 130 (in a child with a
    timeout: a hang fails the test)."""
    import os
    import signal
    import time

    pytest.importorskip("nvidia.dali")
    from dali_mixup.tools.datasets import synthetic_imagenet

    root = synthetic_imagenet(12, num_classes=3, seed=0, cache_dir=tmp_path / "cache", workers=1)
    code = (
        "import signal, sys, runpy\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"sys.argv = ['dali-mixup', 'bench', '--data', {str(root)!r}, '--batch-size', '4', '--image-size', '32',"
        f" '--epochs', '100000', '--warmup', '0', '--workers', '1', '--no-progress', '--peers', 'ours',"
        f" '--out', {str(tmp_path / 'o')!r}]\n"
        "runpy.run_module('dali_mixup', run_name='__main__', alter_sys=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # the bench's header: the run has started
        assert line.startswith("dali-mixup bench:"), line
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and err.rstrip("\n").endswith("dali-mixup bench: interrupted"), err[-2000:]


def test_a_closed_stdout_pipe_ends_quietly_with_141(tmp_path):
    """``dali-mixup doctor | head -1``: the reader leaves, the command ends without a traceback."""
    (tmp_path / "chatty_cmd.py").write_text(
        "def add_arguments(p):\n    pass\n\n"
        "def run(args):\n    for i in range(10**6):\n        print('line', i, flush=True)\n    return 0\n")
    code = (f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nfrom dali_mixup.tools import cli\n"
            "cli.COMMANDS['doctor'] = ('chatty_cmd', 'prints a lot')\nsys.exit(cli.main(['doctor']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"line 0")
        proc.stdout.close()
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 141 and "Traceback" not in err, (rc, err[-2000:])
