"""The CUDA libraries of an image (or of any Python environment): every library file of a CUDA
component under the given roots, its size, the package that brings it, and the libraries present
more than once. `make docker-check` runs it inside the CUDA image; docker/README.md records the
result.

A library is named by its file name without folder, auditwheel hash, ``.alt`` and ``.so``
suffixes: ``nvidia/cu13/lib/libnvjpeg.so.13`` and ``torchvision.libs/libnvjpeg.36e11081.so.13`` are
both ``libnvjpeg``, so they show up as one library present twice. Symbolic links and hard links
count once. With ``--loaded`` it imports torch, torchvision, CuPy and DALI's operators, compiles one
kernel with NVRTC (no GPU needed) and marks the files this process then has mapped.

Usage: python3 cuda_libs.py [--loaded] [--json PATH] ROOT [ROOT ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import re
import sys
from collections import defaultdict

#: File names of CUDA components: the CUDA toolkit's libraries (cudart, cuBLAS, cuFFT, cuRAND,
#: cuSOLVER, cuSPARSE, CUPTI, cuFile, NVRTC, nvJitLink, nvJPEG, NVTX, nvperf), cuDNN, NCCL, NPP,
#: NVSHMEM, cuSPARSELt, cuTENSOR, and what DALI brings (nvImageCodec, nvCOMP, nvJPEG2000, nvTIFF,
#: CV-CUDA).
CUDA_LIB = re.compile(r"^lib(cu|nv|nccl|npp|cvcuda|checkpoint|pcsamplingutil)[^/]*\.(so(\.[0-9A-Za-z]+)*|a)$", re.I)
_HASH = re.compile(r"[-.][0-9a-f]{8}(?=\.so)")


def library_name(filename: str) -> tuple[str, str]:
    """(library, flavour): ``libnvrtc.alt.so.13`` -> ("libnvrtc", "alt"), ``libcupti_static.a`` ->
    ("libcupti_static.a", "static"), ``libcvcuda-90d2d242.so.0`` -> ("libcvcuda", "")."""
    if filename.endswith(".a"):
        return filename, "static"
    name = _HASH.sub("", filename).split(".so", 1)[0]
    if name.endswith(".alt"):
        return name[: -len(".alt")], "alt"
    return name, ""


def _sha256(path: pathlib.Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _package(path: pathlib.Path, root: pathlib.Path) -> str:
    """The package folder that brings ``path``: ``nvidia/cu13``, ``triton``, ``torchvision.libs``."""
    parts = path.relative_to(root).parts
    if parts[0] == "nvidia" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else str(root)


def scan(roots: list[pathlib.Path]) -> list[dict]:
    """Every CUDA library file under ``roots`` (regular files, each inode once)."""
    seen, files = set(), []
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                if not CUDA_LIB.match(name):
                    continue
                path = pathlib.Path(dirpath, name)
                if path.is_symlink() or not path.is_file():
                    continue
                st = path.stat()
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                library, flavour = library_name(name)
                files.append({"path": str(path), "root": str(root), "package": _package(path, root),
                              "library": library, "flavour": flavour, "bytes": st.st_size})
    return sorted(files, key=lambda f: (f["library"], f["path"]))


def duplicates(files: list[dict]) -> list[dict]:
    """Libraries present more than once (static archives aside): the copies, whether they are the
    same bytes, and the bytes beyond the largest copy."""
    by_library = defaultdict(list)
    for f in files:
        if f["flavour"] != "static":
            by_library[f["library"]].append(f)
    out = []
    for library, copies in sorted(by_library.items()):
        if len(copies) < 2:
            continue
        for f in copies:
            f["sha256"] = _sha256(pathlib.Path(f["path"]))[:12]
        total = sum(f["bytes"] for f in copies)
        out.append({"library": library, "copies": copies, "bytes": total,
                    "extra_bytes": total - max(f["bytes"] for f in copies),
                    "identical": len({f["sha256"] for f in copies}) == 1})
    return out


def mark_loaded(files: list[dict]) -> list[str]:
    """Import what the image runs, compile one kernel with NVRTC, and mark each file this process
    has mapped (``loaded``). Returns what was done, for the report."""
    steps = []
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    steps.append("import torch, torchvision")
    import nvidia.dali.fn  # noqa: F401

    steps.append("import nvidia.dali.fn")
    try:
        import cupy  # noqa: F401
        from cupy._core import core
        from cupy.cuda import compiler

        prog = compiler._NVRTCProgram('extern "C" __global__ void k(float *x) { x[0] = 1.0f; }', "k.cu", method="cubin")
        prog.compile(core.assemble_cupy_compiler_options(()) + ("-arch=sm_80",))
        steps.append("import cupy, one NVRTC compile (sm_80)")
    except ImportError:
        steps.append("no CuPy")
    mapped = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/"):
                mapped.add(os.path.realpath(fields[5].strip()))
    for f in files:
        f["loaded"] = os.path.realpath(f["path"]) in mapped
    return steps


def _mb(n: int) -> str:
    return f"{n / 1e6:8.1f} MB"


def report(files: list[dict], dups: list[dict], steps: list[str] | None) -> str:
    lines = []
    loaded = steps is not None
    lines.append(f"CUDA library files: {len(files)}, {sum(f['bytes'] for f in files) / 1e9:.2f} GB"
                 + (f" (loaded: marked *, after {'; '.join(steps)})" if loaded else ""))
    per_package = defaultdict(int)
    for f in files:
        per_package[f["package"]] += f["bytes"]
    lines.append("by package:")
    for package, n in sorted(per_package.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {_mb(n)}  {package}")
    lines.append("files:")
    for f in sorted(files, key=lambda f: -f["bytes"]):
        star = "*" if f.get("loaded") else " "
        flavour = f" ({f['flavour']})" if f["flavour"] else ""
        lines.append(f"  {_mb(f['bytes'])} {star} {os.path.relpath(f['path'], f['root'])}{flavour}")
    extra = sum(d["extra_bytes"] for d in dups)
    lines.append(f"present more than once: {len(dups)} libraries, {extra / 1e6:.1f} MB beyond one copy each")
    for d in dups:
        same = "same bytes" if d["identical"] else "different builds"
        lines.append(f"  {d['library']}: {len(d['copies'])} copies, {d['bytes'] / 1e6:.1f} MB ({same})")
        for f in d["copies"]:
            star = "*" if f.get("loaded") else " "
            flavour = f" ({f['flavour']})" if f["flavour"] else ""
            lines.append(f"    {_mb(f['bytes'])} {star} {os.path.relpath(f['path'], f['root'])}{flavour}  sha256 {f['sha256']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=pathlib.Path, help="folders to scan (site-packages, /usr/local/cuda)")
    parser.add_argument("--loaded", action="store_true", help="mark what imports and one NVRTC compile load")
    parser.add_argument("--json", type=pathlib.Path, help="write the files and duplicates as JSON here")
    args = parser.parse_args(argv)
    files = scan(args.roots)
    if not files:
        print(f"cuda_libs: no CUDA library under {', '.join(map(str, args.roots))}", file=sys.stderr)
        return 1
    steps = mark_loaded(files) if args.loaded else None
    dups = duplicates(files)
    print(report(files, dups, steps))
    if args.json:
        args.json.write_text(json.dumps({"files": files, "duplicates": dups, "loaded_after": steps}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
