"""Where the samples come from: an ImageFolder root, a file list, or WebDataset shards.

``resolve_source`` turns what the user passed into a ``Source``: the explicit file and label
lists the DALI reader gets (so nothing is listed twice and files can be checked up front), or
the shard paths for ``fn.readers.webdataset``. Pure Python: no DALI import.
"""

from __future__ import annotations

import enum
import glob
import os
import re
import tarfile
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

from .checks import warn_user
from .constants import DALI_IMAGE_EXTENSIONS

# torchvision's IMG_EXTENSIONS and what DALI's file reader picks up (adds .pnm, .pbm, .jp2)
IMG_EXTENSIONS = tuple(sorted({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
                              | set(DALI_IMAGE_EXTENSIONS)))
# WebDataset member extensions read as the image and as the class
WDS_IMAGE_EXT = "jpg;jpeg;png"
WDS_LABEL_EXT = "cls"

PathLike = Union[str, os.PathLike]


class SourceKind(str, enum.Enum):
    FOLDER = "folder"
    FILE_LIST = "file_list"
    WEBDATASET = "webdataset"


@dataclass(frozen=True)
class Source:
    """A resolved data source.

    Attributes:
        kind: ``SourceKind``.
        files: image paths (folder and file list), in a fixed order.
        labels: class index of each file.
        classes: class names; for a folder the sorted sub-folder names (as torchvision's
            ImageFolder), for a file list and shards the class indices as strings.
        shards: ``.tar`` paths (WebDataset).
        shard_samples: the samples (``cls`` members) in the shards.
    """

    kind: SourceKind
    files: Tuple[str, ...] = ()
    labels: Tuple[int, ...] = ()
    classes: Tuple[str, ...] = ()
    shards: Tuple[str, ...] = ()
    shard_samples: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_samples(self) -> int:
        """Samples per epoch: the files, or the shards' samples."""
        return self.shard_samples if self.kind is SourceKind.WEBDATASET else len(self.files)

    def __len__(self) -> int:
        return len(self.files)


def numbered_classes(n: int) -> Tuple[str, ...]:
    """Class names of a source whose labels are class ids: ``("0", "1", ..., str(n - 1))``."""
    return tuple(str(i) for i in range(n))


def utf8_path(path: str, where: str) -> str:
    """``path``, refused (naming ``where``) when its name is not UTF-8: DALI's readers take UTF-8
    paths and fail on another byte with a message that names no file."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: the file name {os.fsencode(path)!r} is not UTF-8; DALI's readers take UTF-8 "
                         "paths: rename it") from None
    return path


def _walk_class(root: str, top: str, seen: set, extensions: Tuple[str, ...]) -> Tuple[list, list]:
    """Files with ``extensions`` under the class folder ``top``, following symbolic links but visiting each
    real directory once per data set (a loop such as ``self -> .`` or ``up -> ..`` would
    otherwise serve the same images many times, or another class's images under this label).
    Returns ``(files, skipped links)``; an unreadable folder is an error."""
    files, loops = [], []
    stack = [top]
    while stack:
        d = stack.pop()
        real = os.path.realpath(d)
        if real in seen:
            loops.append(d)
            continue
        seen.add(real)
        if not os.access(d, os.R_OK | os.X_OK):
            raise ValueError(f"root: {root!r}: folder {d!r} is not readable (permission denied): its images "
                             "would silently be missing from the data set")
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            raise ValueError(f"root: {root!r}: cannot list {d!r}: {e.strerror}") from None
        subdirs = []
        for e in entries:
            if e.is_dir():  # follows links
                subdirs.append(e.path)
            elif e.name.lower().endswith(extensions):
                files.append(utf8_path(e.path, f"root: {root!r}"))
        stack.extend(reversed(subdirs))
    return files, loops


def folder_source(root: str, given: Optional[Sequence[str]] = None,
                  extensions: Tuple[str, ...] = IMG_EXTENSIONS) -> Source:
    """An ImageFolder-style ``root/<class>/<file>`` (any sample kind: ``extensions`` picks the
    files), classes sorted by name or numbered as ``given``; each real folder read once."""
    if not os.path.isdir(root):
        raise ValueError(f"root: {root!r} is not a directory" if os.path.exists(root) else f"root: {root!r} does not exist")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ValueError(f"root: {root!r} is not readable")
    present = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not present:
        raise ValueError(f"root: {root!r} has no class folders (expected root/<class>/<image>)")
    if given is None:
        classes = present
    else:
        classes = [str(c) for c in given]
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes: names repeat: {sorted({c for c in classes if classes.count(c) > 1})}")
        unknown = [name for name in present if name not in set(classes)]
        if unknown:
            raise ValueError(f"root: {root!r} has class folder(s) {unknown[:20]} that are not among the "
                             f"{len(classes)} given classes (e.g. the training set's); their images would get "
                             "no label or a wrong one")
    index_of = {name: i for i, name in enumerate(classes)}
    files, labels, loops = [], [], []
    seen = {os.path.realpath(root)}  # a link back to the root is a loop too
    for name in present:
        index = index_of[name]
        found, skipped = _walk_class(root, os.path.join(root, name), seen, extensions)
        files += sorted(found)
        labels += [index] * len(found)
        loops += skipped
    if loops:
        warn_user(
            f"root: {root!r}: {len(loops)} symbolic link(s) lead to folders already read and were skipped "
            f"(each real folder is read once): {loops[:10]}"
        )
    if not files:
        raise ValueError(f"root: {root!r} has class folders but no files with extensions {extensions}")
    empty = [name for name in present if index_of[name] not in set(labels)]
    if empty:
        warn_user(
            f"root: {root!r}: class folder(s) with no {'images' if extensions == IMG_EXTENSIONS else 'files'}: "
            f"{empty}; they keep their class index "
            "(as torchvision and DALI number them) and never occur as a label"
        )
    return Source(SourceKind.FOLDER, tuple(files), tuple(labels), tuple(classes))


_LABELS = re.compile(r"^(.*?\S)\s+(\S+(?:\s*,\s*\S+)*)$")  # '<path> <label>[, <label>...]'
_INT = re.compile(r"[+-]?\d+")


def parse_file_list(path: str, *, multi_label: bool = False, allow_repeats: bool = False,
                    not_a_list: Tuple[Tuple[str, ...], str] = ((), "")
                    ) -> Tuple[Tuple[str, ...], Tuple[Tuple[int, ...], ...]]:
    """The one file-list parser of every sample kind: ``<path> <label>`` lines, or with
    ``multi_label`` ``<path> <l1>,<l2>`` (spaces around the commas allowed). Relative paths are
    relative to the list; empty lines and ``#`` comments are skipped.

    Refused, each naming the list, the line and what is wrong: a list that is not UTF-8 (the
    byte and column; a UTF-8 byte-order mark is fine), a line without a label, a label that is
    not an integer (``1.7``), negative, or an implausible class id (>= ``MAX_CLASSES``, before
    anything is allocated for it), several labels without ``multi_label``, a file that does not
    exist, one file listed with two different labels. A file listed twice with the same labels is
    served twice: warned about unless ``allow_repeats``. ``not_a_list``: ``(extensions, what)``
    of data files given by mistake as the list (an image instead of a list of images).

    Returns:
        ``(files, label_sets)``: the full paths and each file's labels (sorted, one for single
        labels).
    """
    from .checks import MAX_CLASSES

    if not os.path.isfile(path):
        raise ValueError(f"file_list: {path!r} does not exist or is not a file")
    if not_a_list[0] and path.lower().endswith(not_a_list[0]):
        raise ValueError(f"file_list: {path!r} is {not_a_list[1]}, not a data set (give a text file of "
                         "'<path> <label>' lines)")
    base = os.path.dirname(os.path.abspath(path))
    files, sets = [], []
    first_seen: dict = {}
    repeats = []
    expected = "'<path> <label>[,<label>...]'" if multi_label else "'<path> <label>'"
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    for lineno, raw in enumerate(raw_lines, 1):
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
            raw = raw[3:]
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise ValueError(f"file_list: {path}:{lineno}: not UTF-8 (byte {raw[e.start]:#04x} at column "
                             f"{e.start + 1}); save the list as UTF-8") from None
        if not line or line.startswith("#"):
            continue
        m = _LABELS.match(line)
        if m is None:
            raise ValueError(f"file_list: {path}:{lineno}: expected {expected}, got {line!r}")
        name, text = m.group(1), m.group(2)
        tokens = [t.strip() for t in text.split(",")]
        for t in tokens:
            if not _INT.fullmatch(t):
                raise ValueError(f"file_list: {path}:{lineno}: label {t!r} is not an integer")
            if t.startswith("-") and t.strip("-0"):
                raise ValueError(f"file_list: {path}:{lineno}: label {t} is negative")
            if len(t.lstrip("+")) > 9 or int(t) >= MAX_CLASSES:  # the length first: int() of 5000 digits fails
                raise ValueError(f"file_list: {path}:{lineno}: label {t} is not a plausible class id "
                                 f"(>= {MAX_CLASSES}); a typo?")
        labels = tuple(sorted({int(t) for t in tokens}))
        if len(labels) > 1 and not multi_label:
            raise ValueError(f"file_list: {path}:{lineno}: {name!r} has several labels {text!r}; one label per "
                             "file here (multi-label data: multi_label=...)")
        full = name if os.path.isabs(name) else os.path.join(base, name)
        if not os.path.isfile(full):
            raise ValueError(f"file_list: {path}:{lineno}: file {full!r} does not exist")
        key = os.path.realpath(full)
        if key in first_seen:
            was_line, was_labels = first_seen[key]
            if was_labels != labels:
                shown = lambda ls: ",".join(map(str, ls))  # noqa: E731
                raise ValueError(f"file_list: {path}:{lineno}: {name!r} is listed with label {shown(labels)} here "
                                 f"and with label {shown(was_labels)} on line {was_line}")
            repeats.append(f"{name} (lines {was_line} and {lineno})")
        else:
            first_seen[key] = (lineno, labels)
        files.append(full)
        sets.append(labels)
    if not files:
        raise ValueError(f"file_list: {path!r} lists no files")
    if repeats and not allow_repeats:
        warn_user(
            f"file_list: {path}: {len(repeats)} file(s) listed more than once are served that many times per "
            f"epoch: {repeats[:10]}. Remove the repeats, or pass allow_repeats=True if they are on purpose."
        )
    return tuple(files), tuple(sets)


def list_source(path: str, *, allow_repeats: bool = False, not_a_list: Tuple[Tuple[str, ...], str] = ((), "")
                ) -> Source:
    """A single-label ``Source`` (kind ``FILE_LIST``) from ``parse_file_list``; classes are
    ``"0" .. str(max label)``."""
    files, sets = parse_file_list(path, allow_repeats=allow_repeats, not_a_list=not_a_list)
    labels = tuple(s[0] for s in sets)
    return Source(SourceKind.FILE_LIST, files, labels, numbered_classes(max(labels) + 1))


def _shard_paths(shards) -> Tuple[str, ...]:
    if isinstance(shards, (str, os.PathLike)):
        s = os.fspath(shards)
        if os.path.isdir(s):
            paths = sorted(glob.glob(os.path.join(s, "*.tar")))
        elif any(c in s for c in "*?["):
            paths = sorted(glob.glob(s))
        else:
            paths = [s]
    else:
        paths = [os.fspath(p) for p in shards]
    if not paths:
        raise ValueError(f"shards: no .tar files found in {shards!r}")
    for p in paths:
        if not os.path.isfile(p):
            raise ValueError(f"shards: {p!r} does not exist")
        if not tarfile.is_tarfile(p):
            raise ValueError(f"shards: {p!r} is not a tar file")
    return tuple(paths)


def check_shard(path: str) -> None:
    """Read every member header of a WebDataset shard: a truncated or corrupt tar raises a
    ``ValueError`` naming the shard and the last good member (DALI's own message names neither)."""
    last = None
    size = os.path.getsize(path)
    try:
        with tarfile.open(path) as tf:
            for m in tf:
                if m.offset_data + m.size > size:
                    raise tarfile.ReadError(f"member {m.name!r} needs {m.size} bytes, the file ends "
                                            f"{size - m.offset_data} bytes into it (truncated)")
                last = m.name
                end = m.offset_data + -(-m.size // 512) * 512
            # what follows the last member must be the end-of-archive marker: zero blocks
            with open(path, "rb") as f:
                f.seek(end if last else 0)
                tail = f.read()
            if len(tail) < 1024 or tail.strip(b"\0"):
                raise tarfile.ReadError("the file ends without tar's end-of-archive blocks (truncated)")
    except (tarfile.TarError, EOFError, OSError) as e:
        after = f" after member {last!r}" if last else ""
        raise ValueError(f"shards: {path!r} is damaged{after}: {e}") from None


def scan_shard_classes(paths: Sequence[str], num_classes: Optional[int] = None) -> Tuple[int, int]:
    """``(classes, samples)`` of WebDataset shards: 1 + the largest ``.cls`` value, and the number
    of ``.cls`` members (reads the tars).

    With ``num_classes``, every ``.cls`` value must lie in ``[0, num_classes)``; one outside
    is a ``ValueError`` naming the shard and the sample (member) it belongs to, before any batch
    (the label check at batch time cannot say which sample it was)."""
    top, samples = -1, 0
    for p in paths:
        check_shard(p)
        with tarfile.open(p) as tf:
            for m in tf:
                if m.isfile() and m.name.rsplit(".", 1)[-1] == WDS_LABEL_EXT:
                    raw = tf.extractfile(m).read()
                    try:
                        value = int(raw.strip())
                    except ValueError:
                        raise ValueError(f"shards: {p}: member {m.name!r} is not an ASCII integer: {raw[:20]!r}") from None
                    if num_classes is not None and not 0 <= value < num_classes:
                        raise ValueError(f"shards: {p}: member {m.name!r} has label {value}, outside "
                                         f"[0, num_classes={num_classes})")
                    top = max(top, value)
                    samples += 1
    if top < 0:
        raise ValueError(f"shards: no '.{WDS_LABEL_EXT}' members in {list(paths)}")
    return top + 1, samples


def resolve_source(root: Optional[PathLike] = None, file_list: Optional[PathLike] = None, shards=None,
                   num_classes: Optional[int] = None, allow_repeats: bool = False,
                   classes: Optional[Sequence[str]] = None) -> Source:
    """Exactly one of ``root``, ``file_list``, ``shards``.

    Args:
        root: ImageFolder-style ``root/<class>/<image>``; classes sorted by name.
        file_list: text file of ``<path> <label>`` lines; relative paths are relative to it.
        shards: a ``.tar`` path, a directory of ``.tar`` files, a glob, or a list of paths;
            each sample has an image member (jpg/jpeg/png) and a ``cls`` member (ASCII integer).
        num_classes: for shards, the class count their ``cls`` members are checked against
            (each in ``[0, num_classes)``; one outside is an error naming shard and sample).
        allow_repeats: a file list may name a file more than once on purpose (served as often
            as listed); otherwise repeats are served but warned about. One file with two
            different labels is always an error.
        classes: for ``root``, the class names to number the folders by (e.g. a training set's
            ``Source.classes``, so a validation folder that lacks a class keeps the others'
            numbers); a folder not among them is an error naming it. ``None``: the sorted
            sub-folder names.
    """
    given = [n for n, v in (("root", root), ("file_list", file_list), ("shards", shards)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of root, file_list, shards; got {given or 'none'}")
    if classes is not None and root is None:
        raise ValueError("classes: only for root (a file list and shards carry class indices)")
    if root is not None:
        return folder_source(os.fspath(root), classes)
    if file_list is not None:
        return list_source(os.fspath(file_list), allow_repeats=allow_repeats, not_a_list=(IMG_EXTENSIONS, "an image"))
    paths = _shard_paths(shards)
    n, samples = scan_shard_classes(paths, num_classes)  # checks each tar, and each label against num_classes
    if num_classes is not None:
        n = num_classes
    return Source(SourceKind.WEBDATASET, classes=numbered_classes(n), shards=paths, shard_samples=samples)
