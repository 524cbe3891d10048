"""argparse value types shared by the tools (``train``, ``prepare-digits``, ``doctor``).

Each type turns a bad value into ``argparse.ArgumentTypeError``, which the ``dali-mixup`` parser
prints as one line naming the option (exit status 2). NaN and infinities are never accepted.
``UsageError`` is for what can only be checked after parsing (a data folder that is not there,
an output folder that cannot be written): ``run`` prints it as one line, exit status 2.

Cheap: the standard library only.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import tempfile
from typing import Optional

#: seeds are 64-bit signed integers in DALI's bindings (``dali_mixup.checks.SEED_RANGE``)
SEED_MAX = 2**63 - 1


class UsageError(Exception):
    """A bad argument found after parsing: printed as one line, exit status 2."""


def int_in(low: int, high: Optional[int] = None):
    """An integer in ``[low, high]`` (``high=None``: no upper bound)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low or (high is not None and v > high):
            want = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"expected an integer {want}, got {v}")
        return v

    parse.__name__ = "integer"
    return parse


def float_in(low: Optional[float] = None, high: Optional[float] = None, *, low_open: bool = False,
             high_open: bool = False):
    """A finite number in the interval from ``low`` to ``high`` (open ends as asked)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
        if not ok:
            parts = []
            if low is not None:
                parts.append(f"{'>' if low_open else '>='} {low:g}")
            if high is not None:
                parts.append(f"{'<' if high_open else '<='} {high:g}")
            raise argparse.ArgumentTypeError(f"expected a finite number {' and '.join(parts) or ''}".rstrip()
                                             + f", got {text}")
        return v

    parse.__name__ = "number"
    return parse


positive_int = int_in(1)
nonneg_int = int_in(0)
seed = int_in(0, SEED_MAX)


def writable_dir(path: "os.PathLike[str] | str", option: str, create: bool = True) -> pathlib.Path:
    """Check that results can be written to the folder ``path`` before a long run writes them
    there. With ``create`` the folder (and its parents) is made and a probe file written and
    removed; without, a missing folder is only checked to be creatable (its nearest existing
    parent a writable directory) and nothing is made. Raises ``UsageError`` naming ``option``."""
    p = pathlib.Path(path)
    shown = repr(str(path))
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {shown} exists and is not a directory")
    if not create and not p.exists():
        parent = p.absolute().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"{option} {shown} cannot be made: {str(parent)!r} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {shown} cannot be made: {str(parent)!r} is not writable (permission denied)")
        return p
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"{option} {shown} is not writable: {e.strerror or e}") from None
    return p
