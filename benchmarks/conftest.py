"""pytest-benchmark set-up for the kernel suite (see benchmarks/README.md for the method).

Options:
    --full-sweep   every batch size (32, 64, 128, 256), dtype and layout; the default run keeps
                   a few representative cases so that it ends in a couple of minutes on 2 cores.

At the end of the session a summary prints each case's median next to its group's copy
(``out.copy_(x)``) and, on a GPU, the image kernel's share of device-to-device copy bandwidth.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from dali_mixup.tools.gpu import cuda_unavailable_reason

# group -> {peer: median seconds}, filled by the benchmarks through ``record``
RESULTS = defaultdict(dict)
# group -> bytes one call of the mixup kernel moves (2 reads + 1 write per element)
BYTES = {}


def pytest_addoption(parser):
    parser.addoption(
        "--full-sweep",
        action="store_true",
        default=False,
        help="dali-mixup kernels: every batch size 32..256, dtype and layout (default: a few representative cases)",
    )


def pytest_collect_file(file_path, parent):
    """Collect ``bench_*.py`` too, so that ``pytest benchmarks`` finds the suites (an explicit
    file argument is collected by pytest itself)."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU and CuPy (skipped with a reason where there is none)")
    config.addinivalue_line("markers", "full: only in the full sweep (--full-sweep)")


gpu_skip_reason = cuda_unavailable_reason


def pytest_collection_modifyitems(config, items):
    reason = gpu_skip_reason()
    full = config.getoption("--full-sweep")
    for item in items:
        if reason is not None and "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
        if not full and "full" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="in the full sweep only (--full-sweep)"))


def _record(group: str, peer: str, benchmark, nbytes=None, scale: float = 1.0) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        RESULTS[group][peer] = stats.stats.median * scale
    if nbytes is not None:
        BYTES[group] = nbytes


@pytest.fixture
def kernel_record():
    """``kernel_record(group, peer, benchmark, nbytes=None, scale=1.0)``: keep a finished
    benchmark's median (times ``scale``, e.g. 1/launches) for the end-of-session summary
    (nothing is kept with --benchmark-disable)."""
    return _record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("dali-mixup kernels: median per call (per launch for -kernel), ratio to the copy")
    for group in sorted(RESULTS):
        row = RESULTS[group]
        copy = row.get("copy")
        tr.write_line(group)
        for peer, med in sorted(row.items(), key=lambda kv: kv[1]):
            ref = row.get("d2d-copy-kernel") if peer.endswith("-kernel") else copy
            ratio = f"{med / ref:6.2f}x copy" if ref else ""
            extra = ""
            copy_peer = "d2d-copy-kernel" if peer == "ours-cuda-kernel" else "d2d-copy"
            if peer in ("ours-cuda", "ours-cuda-kernel") and group in BYTES and copy_peer in row:
                # a d2d copy moves 2 bytes per element (1 read, 1 write); the kernel 3
                copy_bw = 2 * BYTES[group] / 3 / row[copy_peer]
                ours_bw = BYTES[group] / med
                extra = f"  {ours_bw / 1e9:7.1f} GB/s = {100 * ours_bw / copy_bw:5.1f}% of d2d copy bandwidth"
            tr.write_line(f"  {peer:<22} {med * 1e3:9.3f} ms  {ratio}{extra}")
        ours = row.get("ours-cpu")
        if ours and "torchvision-MixUp" in row:
            tr.write_line(f"  -> ours-cpu is {row['torchvision-MixUp'] / ours:.2f}x faster than torchvision MixUp")
        if ours and copy:
            tr.write_line(f"  -> ours-cpu / (1.5 copies) = {ours / (1.5 * copy):.2f}")
