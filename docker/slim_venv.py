"""Remove from the image's virtual environment what no process here loads, in the layer that
installed it (a later layer cannot make the image smaller). Three things, measured in
docker/README.md:

* CUDA's link-time static libraries (``lib*_static.a``: triton ships CUPTI's and nvperf's, about
  170 MB; ``libcudart_static.a``). A running Python loads shared libraries only, and the image has
  no compiler to link them with. ``libcudadevrt.a`` (CuPy links it for relocatable device code) and
  other archives stay.
* Byte-identical copies of one shared library in one folder (wheels cannot hold symbolic links, so
  triton carries ``libcupti.so``, ``libcupti.so.12`` and ``libcupti.so.2025.1.1`` as three files):
  the fully versioned name keeps the bytes, the other names become relative links to it, in the
  same folder, so every name still resolves and ``$ORIGIN`` is unchanged.
* NVRTC's alternative build (``libnvrtc.alt.so.13`` and ``libnvrtc-builtins.alt.so.13.0``, about
  114 MB, next to ``libnvrtc.so.13``): CuPy and cuda-bindings load NVRTC through cuda-pathfinder,
  which asks for ``libnvrtc.so.<major>`` (and skips ``.alt`` files where it lists a folder), torch
  asks for ``libnvrtc.so.<major>`` too, and no other file of the image names the ``.alt`` one.

Copies of a library in different packages (torch's CUDA wheels, triton's CUPTI, torchvision's
nvJPEG) are not touched: they differ in version or in their patched run paths, and each package
loads its own. ``docker/cuda_libs.py`` lists them.

Usage: python3 slim_venv.py [--dry-run] ROOT  (prints what it removed and the bytes saved)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import re
import sys
from collections import defaultdict

#: Shared-library copies smaller than this are left alone (not worth a link).
MIN_COPY_BYTES = 64 * 1024
_SHARED = re.compile(r"^lib.+\.so(\.[0-9A-Za-z]+)*$")
#: Files no process of the image loads, by name (glob), wherever they are.
UNUSED = ("libnvrtc.alt.so*", "libnvrtc-builtins.alt.so*")


def _sha256(path: pathlib.Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def unused_files(root: pathlib.Path) -> list[pathlib.Path]:
    """CUDA's link-time static libraries (``lib*_static.a``) and the ``UNUSED`` files under
    ``root``: regular files and links."""
    found = {p for pattern in ("lib*_static.a", *UNUSED) for p in root.rglob(pattern) if p.is_file() or p.is_symlink()}
    return sorted(found)


def identical_copies(root: pathlib.Path, exclude=frozenset()) -> list[tuple[pathlib.Path, list[pathlib.Path]]]:
    """[(kept, [copies])]: shared libraries with the same bytes in one folder. The longest name (the
    fully versioned one, ``libx.so.1.2.3``) keeps the bytes."""
    by_key: dict[tuple[str, int], list[pathlib.Path]] = defaultdict(list)
    for p in root.rglob("lib*.so*"):
        if _SHARED.match(p.name) and p.is_file() and not p.is_symlink() and p not in exclude:
            size = p.stat().st_size
            if size >= MIN_COPY_BYTES:
                by_key[(str(p.parent), size)].append(p)
    groups = []
    for paths in by_key.values():
        if len(paths) < 2:
            continue
        by_hash: dict[str, list[pathlib.Path]] = defaultdict(list)
        for p in paths:
            by_hash[_sha256(p)].append(p)
        for same in by_hash.values():
            if len(same) > 1:
                same.sort(key=lambda p: (-len(p.name), p.name))
                groups.append((same[0], same[1:]))
    return sorted(groups)


def slim(root: pathlib.Path, dry_run: bool = False) -> dict:
    """Remove the unused files and link the identical copies; returns what was done."""
    removed = unused_files(root)
    copies = identical_copies(root, exclude=set(removed))
    saved_removed = sum(p.lstat().st_size for p in removed if not p.is_symlink())
    saved_copies = sum(c.stat().st_size for _, cs in copies for c in cs)
    if not dry_run:
        for p in removed:
            p.unlink()
        for kept, cs in copies:
            for c in cs:
                c.unlink()
                os.symlink(kept.name, c)
    return {"removed": removed, "copies": copies, "saved_removed": saved_removed, "saved_copies": saved_copies}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=pathlib.Path)
    parser.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"{args.root} is not a folder")
    sizes = {p: 0 if p.is_symlink() else p.stat().st_size for p in unused_files(args.root)}
    done = slim(args.root, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for p in done["removed"]:
        print(f"slim_venv: {verb} {p.relative_to(args.root)} ({sizes[p] / 1e6:.1f} MB)")
    for kept, cs in done["copies"]:
        for c in cs:
            print(f"slim_venv: {c.relative_to(args.root)} -> {kept.name} (same bytes, {'would be ' if args.dry_run else ''}linked)")
    print(f"slim_venv: {len(done['removed'])} unused files, {done['saved_removed'] / 1e6:.1f} MB; "
          f"{sum(len(cs) for _, cs in done['copies'])} identical copies linked, {done['saved_copies'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
