"""Whether the CUDA path can run here: the reason tests and benchmarks give when they skip."""

from __future__ import annotations

import functools
from typing import Optional


@functools.lru_cache(maxsize=None)
def cuda_unavailable_reason() -> Optional[str]:
    """``None`` when torch sees a CUDA GPU and CuPy can use it, else a one-line reason."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - any CuPy failure means the GPU path cannot run
        return f"CuPy cannot use the GPU: {e}"
    return None
