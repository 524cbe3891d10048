"""Every option check, in one place.

Each option of ``MixupConfig``, ``LoaderOptions`` and the kinds' specs (``create_loader``, ...), ``DALIMixupIterator``, the
pipelines and ``mix_images`` is checked by one function here, so one mistake gives one exception
type and one message wherever it is made: a value of the wrong type raises ``TypeError``, a
value of the right type outside its range raises ``ValueError``; both name the option.
"""

from __future__ import annotations

import enum
import math
import numbers
from typing import Optional, Sequence, Tuple, Type, TypeVar

#: seeds are 64-bit signed integers in DALI's bindings: one range for DALI and the sampler
SEED_RANGE = (0, 2**63 - 1)
#: image sides above this are refused up front: a 16384x16384 float32 RGB image is 3 GiB, and
#: DALI's resize fails on far larger ones with an allocation error that reads like bad data
MAX_IMAGE_SIZE = 16384
#: class counts above this are a typo (a label such as 99999999999), not a data set: targets are
#: (N, C) float32, and 2**24 classes are already 64 MiB per sample
MAX_CLASSES = 2**24
#: the order of a batch's dims: images channels first / last, volumes channels first / last
IMAGE_LAYOUTS = ("NCHW", "NHWC")
VOLUME_LAYOUTS = ("NCDHW", "NDHWC")
LAYOUTS = IMAGE_LAYOUTS + VOLUME_LAYOUTS
#: the spatial dims (where CutMix boxes go) of each (layout, ndim); a 5-D tensor read as NCHW /
#: NHWC is a volume with channels first / last
SPATIAL_DIMS = {("NCHW", 4): (2, 3), ("NHWC", 4): (1, 2), ("NCDHW", 5): (2, 3, 4), ("NDHWC", 5): (1, 2, 3),
                ("NCHW", 5): (2, 3, 4), ("NHWC", 5): (1, 2, 3)}

E = TypeVar("E", bound=enum.Enum)


def check_int(name: str, value, low: Optional[int] = None, high: Optional[int] = None) -> int:
    """``value`` as an int in ``[low, high]``; ``bool`` is not an int here."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        if high is None:
            raise ValueError(f"{name} must be >= {low}, got {v}")
        if low is None:
            raise ValueError(f"{name} must be <= {high}, got {v}")
        raise ValueError(f"{name} must be in [{low}, {high}], got {v}")
    return v


def check_real(name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """``value`` as a finite float inside the (half-)open or closed interval given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        rng = f"{lo}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{hi}"
        raise ValueError(f"{name} must be finite and in {rng}, got {value!r}")
    return v


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_choice(name: str, enum_type: Type[E], value) -> E:
    """``value`` as a member of ``enum_type`` (by value, or by name for non-string enums)."""
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except ValueError:
        pass
    if isinstance(value, str) and value.upper() in enum_type.__members__:
        return enum_type[value.upper()]
    allowed = ", ".join(str(m.value) if isinstance(m.value, str) else m.name for m in enum_type)
    raise ValueError(f"{name} must be one of {allowed}; got {value!r}")


def check_seed(name: str, value) -> int:
    return check_int(name, value, *SEED_RANGE)


def check_num_classes(name: str, value) -> int:
    return check_int(name, value, 1, MAX_CLASSES)


def check_layout(value, name: str = "layout", allowed: Tuple[str, ...] = LAYOUTS) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def check_pair(name: str, value, low: float, high: float) -> Tuple[float, float]:
    """``(a, b)`` with ``low < a <= b <= high``."""
    if isinstance(value, (str, bytes)) or not (isinstance(value, Sequence) and len(value) == 2
                                               and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                                       for v in value)):
        raise TypeError(f"{name} must be a pair of numbers, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (math.isfinite(a) and math.isfinite(b)) and not (b == high == float("inf") and math.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if not (low < a <= b <= high):
        raise ValueError(f"{name} must satisfy {low} < {name}[0] <= {name}[1] <= {high}, got {value!r}")
    return (a, b)


def check_rgb(name: str, value, *, positive: bool = False) -> Tuple[float, float, float]:
    """Three finite numbers (RGB), strictly positive when ``positive``."""
    if isinstance(value, (str, bytes)) or not (isinstance(value, Sequence) and len(value) == 3 and all(
            isinstance(c, numbers.Real) and not isinstance(c, bool) for c in value)):
        raise TypeError(f"{name} must be 3 numbers (RGB), got {value!r}")
    out = tuple(float(c) for c in value)
    if not all(math.isfinite(c) for c in out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and any(c <= 0 for c in out):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return out  # type: ignore[return-value]


def resolve_num_classes(explicit: Optional[int], from_mixup: Optional[int], dataset: Optional[int] = None,
                        required: bool = True) -> Optional[int]:
    """The class count C: ``num_classes`` given directly, or ``MixupConfig.num_classes``, or the
    dataset's. Both given and different is an error (the same wherever it is made); fewer than
    the dataset's classes is an error."""
    if explicit is not None:
        explicit = check_num_classes("num_classes", explicit)
    if explicit is not None and from_mixup is not None and explicit != from_mixup:
        raise ValueError(f"num_classes={explicit} conflicts with MixupConfig.num_classes={from_mixup}; give one, or the same")
    c = explicit if explicit is not None else from_mixup if from_mixup is not None else dataset
    if c is None:
        if required:
            raise ValueError("num_classes: give it here or in MixupConfig.num_classes")
        return None
    c = check_num_classes("num_classes", c)
    if dataset is not None and c < dataset:
        raise ValueError(f"num_classes={c} is smaller than the dataset's {dataset} classes")
    return c


def warn_user(message: str, category: type = UserWarning) -> None:
    """``warnings.warn`` pointing at the first caller outside ``dali_mixup`` (the user's line that
    built the loader), however deep in the library the finding was made."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2  # stacklevel 1 is this function, 2 its caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
