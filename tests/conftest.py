import pathlib
import sys

import pytest

from dali_mixup._gpu import cuda_unavailable_reason

sys.path.insert(0, str(pathlib.Path(__file__).parent))


gpu_skip_reason = cuda_unavailable_reason


def pytest_collection_modifyitems(config, items):
    reason = gpu_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
