"""What a benchmark result records about the machine and the code it ran on.

``metadata()`` is the dict every result file carries (git commit, versions, CPU model and core
count, GPU); ``hardware_slug(metadata())`` is the hostname-free description that names the file
(``intel-xeon-platinum-8480-16c-nvidia-h100-80gb-hbm3``). Used by ``dali-mixup bench``,
``benchmarks/`` and ``examples/``. Standard library only at import; torch is imported by the
functions that ask it about threads and the GPU.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Optional

__all__ = ["cpu_busy", "cpu_cores", "cpu_model", "git_commit", "gpu_info", "hardware_slug", "metadata", "slug",
           "version"]

#: the checkout this package runs from (``dali_mixup/tools/meta.py`` -> the repository root)
_REPO = Path(__file__).resolve().parents[2]


def slug(text: str) -> str:
    """``text`` as a short file-name part: lower case, ``[a-z0-9-]``, vendor noise dropped."""
    text = re.sub(r"\(r\)|\(tm\)|cpu @.*|processor|\d+-core|with .*", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40] or "unknown"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows, else "unknown"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    """The cores this process may run on (its affinity), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_busy(seconds: float = 1.0) -> Optional[float]:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat), or None where unavailable."""

    def sample():
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle

    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def gpu_info() -> Optional[Dict[str, Any]]:
    """``{"name", "count", "cuda", "driver"}`` of the current CUDA GPU, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    info = {"name": torch.cuda.get_device_name(), "count": torch.cuda.device_count(), "cuda": torch.version.cuda,
            "driver": None}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            info["driver"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return info


def version(module: str) -> Optional[str]:
    """The installed version of a distribution (``nvidia.dali`` and ``cupy`` by their module's
    ``__version__``, their wheels having CUDA-specific names), or None where it is missing."""
    try:
        from importlib.metadata import version as dist_version

        dist = {"nvidia.dali": None, "cupy": None}.get(module, module)
        if dist is None:
            mod = __import__(module, fromlist=["__version__"])
            return getattr(mod, "__version__", None)
        return dist_version(dist)
    except Exception:  # noqa: BLE001 - a missing or broken optional package is reported as None
        return None


def git_commit() -> Dict[str, Any]:
    """``{"commit", "dirty"}`` of the checkout this package runs from (``None`` outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": None, "dirty": None}


def metadata() -> Dict[str, Any]:
    """Everything a result file records about where it was measured.

    Returns:
        ``{"git": git_commit(), "python", "platform", "versions": {package: version or None},
        "cpu": {"model", "cores", "logical_cpus", "torch_threads"}, "gpu": gpu_info(), "hostname"}``.
    """
    import torch

    return {
        "git": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {m: version(m) for m in ("dali-mixup", "torch", "torchvision", "nvidia.dali", "cupy", "timm",
                                             "numpy", "pillow")},
        "cpu": {"model": cpu_model(), "cores": cpu_cores(), "logical_cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads()},
        "gpu": gpu_info(),
        "hostname": platform.node(),
    }


def hardware_slug(meta: Dict[str, Any]) -> str:
    """The machine in a file name, without its hostname: ``<cpu>-<cores>c-<gpu or nogpu>``."""
    cpu = f"{slug(meta['cpu']['model'])}-{meta['cpu']['cores']}c"
    gpu = meta.get("gpu")
    return f"{cpu}-{slug(gpu['name'])}" if gpu else f"{cpu}-nogpu"
