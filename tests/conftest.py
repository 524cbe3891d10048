import pathlib
import sys

import pytest

from dali_mixup.tools.gpu import cuda_unavailable_reason

sys.path.insert(0, str(pathlib.Path(__file__).parent))


gpu_skip_reason = cuda_unavailable_reason


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Each behaviour on every device (Kornia's fixture): the CPU twin, and the CUDA kernels where
    there is a GPU (the ``cuda`` case is marked ``gpu`` and skips with a reason elsewhere)."""
    return request.param


def pytest_collection_modifyitems(config, items):
    reason = gpu_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_NVRTC = {}


def pytest_runtest_logreport(report):
    if "test_nvrtc_compiles_every_kernel" in report.nodeid and report.when in ("setup", "call"):
        if report.when == "call" or report.outcome != "passed":
            _NVRTC[report.nodeid.split("[")[-1].rstrip("]")] = report.outcome


def pytest_terminal_summary(terminalreporter):
    """Say plainly whether the NVRTC compile of the CUDA kernels ran (CI must show it did)."""
    if _NVRTC:
        runs = ", ".join(f"{arch}: {outcome}" for arch, outcome in sorted(_NVRTC.items()))
        terminalreporter.write_line(f"NVRTC compile of every CUDA kernel: {runs}")
