"""The scan every sample kind shares, and the bad-data error family.

A kind's files are checked before training by one mechanism: ``scan_path`` does what every
format shares (the file exists, is a regular file — a FIFO named like a sample would block a
reader forever —, is readable and not empty), then hands the open file to the format's
``Identify`` function (images: ``dali_mixup.kinds.image_scan``; audio: ``dali_mixup.kinds.audio``; volumes:
``dali_mixup.kinds.volume``); ``scan_paths`` runs it over many files in interruptible threads;
``filter_paths`` raises ``ValidationError`` naming every bad file or leaves them out with one
warning, as ``OnError`` says.

Errors: every bad-data error is a ``DataError``: ``ValidationError`` (a ``ValueError``) up front,
``BadDataError`` (a ``RuntimeError``) when DALI fails on a batch (its message built by
``bad_data_error``). Standard library only.
"""

from __future__ import annotations

import enum
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Optional, Sequence, Tuple

from .checks import warn_user

__all__ = ["BadDataError", "BadFilesWarning", "DataError", "Identify", "OnError", "Problem", "ProblemKind",
           "ValidationError", "bad_data_error", "filter_paths", "scan_path", "scan_paths"]


class ProblemKind(str, enum.Enum):
    """What is wrong with a file, as a stable code (the ``reason`` text says the details)."""

    MISSING = "missing"  #: no such file, or a symbolic link whose target is gone
    NOT_A_FILE = "not_a_file"  #: a directory, FIFO, device ...
    UNREADABLE = "unreadable"  #: open or read failed (permissions, I/O error)
    EMPTY = "empty"  #: 0 bytes
    TEXT = "text"  #: text, HTML or XML named like an image
    UNKNOWN_FORMAT = "unknown_format"  #: no image signature DALI decodes
    UNSUPPORTED_FORMAT = "unsupported_format"  #: a known format DALI cannot decode (GIF, HEIF ...)
    CORRUPT_HEADER = "corrupt_header"  #: the signature is right but the header is malformed
    TRUNCATED = "truncated"  #: the file ends before its image data does
    ZERO_SIZE = "zero_size"  #: the header says 0 pixels wide or high
    TOO_LARGE = "too_large"  #: the header claims more than ``max_pixels`` pixels (``max_voxels``, ...)
    NON_FINITE = "non_finite"  #: samples or voxels that are NaN or inf (read with ``check_values``)


@dataclass(frozen=True)
class Problem:
    """One bad file: its path, a ``ProblemKind`` and a one-line reason."""

    path: str
    kind: ProblemKind
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class DataError(Exception):
    """The family of every bad-data error: the data cannot be served as it is. Found up front
    (``ValidationError``, a ``ValueError``, and its kinds' subclasses such as detection's
    ``BadAnnotationError``) or at a batch (``BadDataError``, a ``RuntimeError``)."""


class ValidationError(DataError, ValueError):
    """Bad input files, found before training. ``problems`` lists every one; the message names up
    to 20 of them."""

    def __init__(self, problems: Sequence[Problem], total: Optional[int] = None, what: str = "files"):
        self.problems = list(problems)
        self.total = total
        super().__init__(_describe(self.problems, total, f"{what} cannot be used"))


class BadFilesWarning(UserWarning):
    """Issued once by ``filter_files(on_error="skip")``."""


class OnError(str, enum.Enum):
    """What ``filter_files`` does when the scan finds bad files.

    Worked example: 5 files, ``b.jpg`` truncated and ``d.jpg`` 0 bytes.

    - ``RAISE`` (default): ``ValidationError`` naming ``b.jpg`` and ``d.jpg`` with their
      reasons; nothing is returned.
    - ``SKIP``: returns the 3 good files (and their labels, in order) and issues one
      ``BadFilesWarning``: "2 of 5 files left out (bad image files): b.jpg: ..., d.jpg: ...".
      If no file is left, ``ValidationError`` all the same.
    """

    RAISE = "raise"
    SKIP = "skip"


def _enum_arg(cls, value, name: str):
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}") from None


def _describe(problems: Sequence[Problem], total: Optional[int], verb: str, limit: int = 20) -> str:
    of = f" of {total}" if total is not None else ""
    lines = [f"{len(problems)}{of} {verb}:"]
    lines += [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more (see the exception's .problems)")
    return "\n".join(lines)


# --- reading ------------------------------------------------------------------------------


def _text_reason(head: bytes, what: str = "an image") -> Optional[str]:
    """Why ``head`` is text (or HTML/XML) rather than ``what``, or ``None``."""
    sample = head[:1024]
    if b"\x00" in sample:
        return None
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(sample) - 3:  # not just a character cut at the end of the sample
            return None
        text = sample[: e.start].decode("utf-8")
    text = text.lstrip("\ufeff")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if not text or printable < 0.95 * len(text):
        return None
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    kind = "HTML/XML file" if text.lstrip().startswith("<") else "text file"
    return f"{kind}, not {what} (starts with {first!r})"


#: a format scanner: ``identify(f, size)`` reads the open file ``f`` of ``size`` bytes (> 0) and
#: returns ``None`` or ``(ProblemKind, reason)``; ``scan_path`` does what every format shares
Identify = Callable[[BinaryIO, int], Optional[Tuple[ProblemKind, str]]]


def scan_path(path: "os.PathLike[str] | str", identify: Identify) -> Optional[Problem]:
    """One file through the scan every sample kind shares: it must exist (a broken link is named),
    be a regular file (a FIFO named ``x.npy`` would block the reader forever; a directory, a
    socket or a device is refused), be readable and not empty; then the format's ``identify``."""
    p = os.fspath(path)
    try:
        st = os.stat(p)  # follows symbolic links; also keeps open() off FIFOs
    except FileNotFoundError:
        if os.path.islink(p):
            return Problem(p, ProblemKind.MISSING, f"broken symbolic link to {os.readlink(p)!r}")
        return Problem(p, ProblemKind.MISSING, "no such file")
    except OSError as e:
        return Problem(p, ProblemKind.UNREADABLE, f"cannot stat: {e.strerror or e}")
    if stat.S_ISDIR(st.st_mode):
        return Problem(p, ProblemKind.NOT_A_FILE, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        return Problem(p, ProblemKind.NOT_A_FILE, "not a regular file (FIFO, socket or device)")
    if st.st_size == 0:
        return Problem(p, ProblemKind.EMPTY, "empty file (0 bytes)")
    try:
        with open(p, "rb") as f:
            found = identify(f, st.st_size)
    except OSError as e:
        return Problem(p, ProblemKind.UNREADABLE, f"cannot read: {e.strerror or e}")
    return None if found is None else Problem(p, found[0], found[1])


def scan_paths(paths: Iterable["os.PathLike[str] | str"], identify: Identify, *,
               workers: Optional[int] = None) -> list[Problem]:
    """``scan_path`` over many files, in threads from 64 files on (interruptible: Ctrl-C stops
    it at once); the problems come back in the order of ``paths``.

    Args:
        paths: the files.
        identify: the format's scanner (``Identify``).
        workers: threads reading files (``None``: ``min(32, cpu_count + 4)``; 1: no threads).
            Threads pay off on network file systems, where each open waits on the server.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be None or a positive int, got {workers!r}")
    paths = [os.fspath(p) for p in paths]
    if workers == 1 or len(paths) < 64:
        found = [scan_path(p, identify) for p in paths]
    else:
        found = _scan_in_threads(paths, identify, workers or min(32, (os.cpu_count() or 1) + 4))
    return [p for p in found if p is not None]


def filter_paths(paths: Sequence["os.PathLike[str] | str"], labels: Optional[Sequence], identify: Identify, *,
                 on_error: "OnError | str" = OnError.RAISE, noun: str = "image",
                 workers: Optional[int] = None) -> tuple[list[str], Optional[list]]:
    """Scan ``paths`` (``scan_paths``) and act on what is found, as ``on_error`` says (``OnError``):
    ``ValidationError`` naming every bad file, or ``(kept_paths, kept_labels)`` in the input order
    and one ``BadFilesWarning`` listing what was left out. ``noun`` names the files in messages
    ("image", "audio", "volume"); ``labels`` may be any per-file values, or ``None``."""
    mode = _enum_arg(OnError, on_error, "on_error")
    paths = [os.fspath(p) for p in paths]
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(paths):
            raise ValueError(f"labels has {len(labels)} entries but paths has {len(paths)}")
    problems = scan_paths(paths, identify, workers=workers)
    if not problems:
        return paths, labels
    what = "files" if noun == "image" else f"{noun} files"
    if mode is OnError.RAISE:
        raise ValidationError(problems, total=len(paths), what=what)
    bad = {p.path for p in problems}
    keep = [i for i, p in enumerate(paths) if p not in bad]
    if not keep:
        raise ValidationError(problems, total=len(paths), what=f"{what} (all of them)")
    warn_user(_describe(problems, len(paths), f"files left out (bad {noun} files)"), BadFilesWarning)
    return [paths[i] for i in keep], (None if labels is None else [labels[i] for i in keep])


def _scan_in_threads(paths: list, identify: Identify, workers: int, chunk: int = 64) -> list:
    """``scan_path`` over ``paths`` in daemon threads, interruptible.

    Not a ``ThreadPoolExecutor``: on Ctrl-C its ``shutdown(wait=True)`` waits for the whole
    queue, and a ``KeyboardInterrupt`` landing while the main thread holds a future's lock
    leaves a worker blocked on that lock forever (the hang of issue 18, case 10). Here the
    workers take chunks from a shared counter and report on a lock-free ``SimpleQueue``; the
    main thread waits in short timed ``get`` calls. On any exception there (Ctrl-C included) it
    sets ``stop`` and re-raises at once: the workers finish the file in hand and end, and being
    daemon threads they never hold up the interpreter's exit."""
    import itertools
    import queue
    import threading

    found: list = [None] * len(paths)
    starts = itertools.count(0, chunk)  # next() is atomic under the GIL
    stop = threading.Event()
    done: "queue.SimpleQueue" = queue.SimpleQueue()
    n = max(1, min(workers, -(-len(paths) // chunk)))

    def work():
        try:
            while not stop.is_set():
                start = next(starts)
                if start >= len(paths):
                    break
                for i in range(start, min(start + chunk, len(paths))):
                    if stop.is_set():
                        break
                    found[i] = scan_path(paths[i], identify)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            done.put(e)
        else:
            done.put(None)

    threads = [threading.Thread(target=work, name=f"dali-mixup-scan-{k}", daemon=True) for k in range(n)]
    try:
        for t in threads:
            t.start()
        remaining = n
        while remaining:
            try:
                error = done.get(timeout=0.1)
            except queue.Empty:
                continue
            remaining -= 1
            if error is not None:
                raise error
    except BaseException:
        stop.set()
        raise
    return found


class BadDataError(DataError, RuntimeError):
    """DALI failed on the data; the message names the bad files where a header scan finds them.
    The iterator that raised it is dead: every later ``next()`` raises it again."""


def error_cause(error: BaseException) -> str:
    """The first line of an exception's message (DALI's errors run to a stack of lines), or its
    type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def bad_data_error(cause: str, findings: Sequence[str], found_what: str, none_found: str,
                   skip_hint: bool = True) -> BadDataError:
    """The one message of every ``BadDataError``: DALI's ``cause``, then what a scan found
    (``findings``, 20 at most, under the heading ``found_what``) or, when it found nothing,
    ``none_found``; and that the iterator is dead."""
    dead = "This iterator is no longer usable; build a new one."
    if findings:
        listed = "\n  ".join(findings[:20])
        more = f"\n  ... and {len(findings) - 20} more" if len(findings) > 20 else ""
        hint = "Fix or remove them, or build the loader with on_error='skip'." if skip_hint else "Fix or remove them."
        return BadDataError(f"DALI could not read a batch ({cause}). {found_what}:\n  {listed}{more}\n{hint} {dead}")
    return BadDataError(f"DALI could not read a batch: {cause}. {none_found} {dead}")


