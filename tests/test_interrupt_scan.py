"""Ctrl-C during the up-front file scan (``create_loader(validate=True)``, ``scan_files``) over
10,000 files ends the process within a couple of seconds, every time (issue 18, case 10: the
thread pool's shutdown used to wait on workers that could block forever).

Each trial is a child process with a timeout: a hang fails the test instead of hanging it.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from images import write_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_FILES = 10_000
CLASSES = 10

CHILD = textwrap.dedent("""
    import signal, sys, time
    # a shell that starts a job in the background hands it SIGINT ignored; Ctrl-C is what we test
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from dali_mixup import scan
    from dali_mixup.kinds import image_scan as validate

    mode, root = sys.argv[1], sys.argv[2]
    real = scan.scan_path  # the scan every sample kind shares
    said = []

    def slow(path, *a, **kw):  # the scan lasts seconds whatever the disk: the signal lands inside it
        if not said:
            said.append(1)
            print("SCANNING", flush=True)
        time.sleep(0.002)
        return real(path, *a, **kw)

    scan.scan_path = slow
    try:
        if mode == "scan":
            import glob
            paths = sorted(glob.glob(root + "/*/*.jpg"))
            validate.scan_files(paths)
        else:
            import dali_mixup
            dali_mixup.create_loader(root, batch_size=4, image_size=16, device="cpu", num_threads=1, validate=True)
        print("FINISHED", flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED", time.time(), flush=True)
        sys.exit(130)
""")


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    write_image(str(root / "one.jpg"), 8, 8, seed=0)
    data = (root / "one.jpg").read_bytes()
    os.remove(root / "one.jpg")
    for c in range(CLASSES):
        d = root / f"c{c}"
        d.mkdir()
        for i in range(N_FILES // CLASSES):
            (d / f"{i:04d}.jpg").write_bytes(data)
    return root


def _interrupt_once(mode, root, delay, limit=30.0):
    """Seconds from SIGINT to the child's ``except KeyboardInterrupt`` (its exit, which tears
    down torch, takes seconds more on a loaded machine and is only bounded by ``limit``)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # blocks until the scan has started (or the child died)
        assert line.strip() == "SCANNING", (line, proc.stderr.read() if proc.poll() is not None else "")
        time.sleep(delay)
        t0 = time.time()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"{mode}: still running {limit} s after Ctrl-C (delay {delay} s): the scan hangs")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "FINISHED" not in out, "the scan ended before the signal: make the child slower"
    assert proc.returncode == 130 and "INTERRUPTED" in out, (proc.returncode, out, err[-2000:])
    return float(out.split("INTERRUPTED", 1)[1].split()[0]) - t0


def test_ctrl_c_ends_scan_files_promptly_every_time(many_files):
    took = [_interrupt_once("scan", many_files, delay) for delay in (0.0, 0.05, 0.2, 0.5, 1.0)]
    assert max(took) < 1.5, took


@pytest.mark.slow
def test_ctrl_c_ends_create_loader_validate_promptly(many_files):
    took = [_interrupt_once("loader", many_files, delay) for delay in (0.1, 0.6)]
    assert max(took) < 1.5, took
