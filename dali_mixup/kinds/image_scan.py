"""Cheap checks of image files and ImageFolder trees, run before training starts.

DALI reports a broken file only when the batch that holds it is decoded, often hours into a run,
and for several kinds of bad file its message does not name the file (``nvImageCodec failure:
'#4'``). Other bad files it decodes without complaint: a header that claims 60000 x 60000 pixels
is a 10.8 GB allocation if the data is there. ``scan_files`` reads only each file's header and
its last few kilobytes, in threads, and reports what can be seen there; ``filter_files`` turns
the report into an exception or a one-time warning.

What DALI itself does with each kind of bad file (the study behind these checks) is written up
in ``notes/dali_bad_files.md``.

This module uses the standard library only: no DALI, no Pillow.

Example:
    >>> paths, labels = filter_files(paths, labels, on_error="skip")  # doctest: +SKIP
    UserWarning: 2 of 1000 files left out (bad image files):
      /data/cat/001.jpg: truncated JPEG: no end-of-image marker (FFD9) after the scan data
      /data/dog/notes.jpg: text file, not an image (starts with 'labelled by hand')
"""

from __future__ import annotations

import os
import struct
from typing import Iterable, Optional, Sequence

from ..constants import DALI_IMAGE_EXTENSIONS  # noqa: F401  (part of this module's API)
from ..scan import (BadDataError, Identify, OnError, Problem, ProblemKind, _text_reason, bad_data_error, error_cause,
                   filter_paths, scan_path, scan_paths)

__all__ = ["DALI_IMAGE_EXTENSIONS", "DEFAULT_MAX_PIXELS", "diagnose_read_error", "diagnose_shards", "filter_files",
           "scan_file", "scan_files", "scan_shards"]

#: Same limit as Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 0.25 GiB of RGB at 8 bits).
DEFAULT_MAX_PIXELS = 89_478_485

_HEAD = 16384  # bytes read from the start of a file in one call
_TAIL = 4096  # bytes read from the end
_CHUNK = 1 << 20  # block size when a marker must be searched for through the whole file


class _File:
    """The head of a file, read once; other ranges read on demand."""

    def __init__(self, f, size: int):
        self.f = f
        self.size = size
        self.head = f.read(min(size, _HEAD))

    def read(self, offset: int, n: int) -> bytes:
        if offset + n <= len(self.head):
            return self.head[offset : offset + n]
        if offset >= self.size:
            return b""
        self.f.seek(offset)
        return self.f.read(n)

    def tail(self, n: int = _TAIL) -> tuple[int, bytes]:
        """``(offset, bytes)`` of the last ``n`` bytes."""
        start = max(0, self.size - n)
        return start, self.read(start, self.size - start)

    def has_after(self, needle: bytes, start: int) -> bool:
        """Whether ``needle`` occurs at or after byte ``start``: the tail first, then all of it."""
        t0, tail = self.tail()
        i = tail.rfind(needle)
        if i >= 0 and t0 + i >= start:
            return True
        if t0 <= start:  # the tail held everything from start on
            return False
        # Not in the tail: data after the end marker (camera trailers), or no end marker.
        for pos in range(start, self.size, _CHUNK):
            if needle in self.read(pos, _CHUNK + len(needle) - 1):
                return True
        return False


# --- formats ------------------------------------------------------------------------------

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn; not DHT, JPG, DAC
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length field


def _check_size(w: int, h: int, what: str, max_pixels: int) -> Optional[tuple[ProblemKind, str]]:
    if w <= 0 or h <= 0:
        return ProblemKind.ZERO_SIZE, f"{what} header says {w}x{h} pixels"
    if w * h > max_pixels:
        return (
            ProblemKind.TOO_LARGE,
            f"{what} header claims {w}x{h} = {w * h:,} pixels, over max_pixels={max_pixels:,} "
            "(a decompression bomb, or an image to downscale offline)",
        )
    return None


def _scan_jpeg(fb: _File, max_pixels: int):
    pos, sof = 2, None
    while True:
        seg = fb.read(pos, 4)
        if len(seg) < 2:
            return ProblemKind.TRUNCATED, f"truncated JPEG: ends at byte {fb.size} inside the header, before the scan (SOS)"
        if seg[0] != 0xFF:
            return ProblemKind.CORRUPT_HEADER, f"corrupt JPEG header: no marker at byte {pos}"
        marker = seg[1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:
            return ProblemKind.CORRUPT_HEADER, "corrupt JPEG: end-of-image marker before any scan data"
        if len(seg) < 4:
            return ProblemKind.TRUNCATED, f"truncated JPEG: ends at byte {fb.size} inside the header, before the scan (SOS)"
        length = struct.unpack(">H", seg[2:4])[0]
        if length < 2:
            return ProblemKind.CORRUPT_HEADER, f"corrupt JPEG header: segment FF{marker:02X} at byte {pos} has length {length}"
        if marker in _SOF_MARKERS and sof is None:
            frame = fb.read(pos + 4, 6)
            if len(frame) < 6:
                return ProblemKind.TRUNCATED, "truncated JPEG: ends inside the frame header (SOF)"
            _, h, w, ncomp = struct.unpack(">BHHB", frame)
            sof = (w, h, ncomp)
        if marker == 0xDA:
            break
        pos += 2 + length
    if sof is None:
        return ProblemKind.CORRUPT_HEADER, "corrupt JPEG header: no frame header (SOFn) before the scan"
    w, h, ncomp = sof
    bad = _check_size(w, h, "JPEG", max_pixels)
    if bad:
        return bad
    if ncomp not in (1, 3, 4):
        return ProblemKind.CORRUPT_HEADER, f"corrupt JPEG header: {ncomp} colour components"
    # Entropy-coded data stuffs every 0xFF with 0x00, so FF D9 after the first SOS is the EOI
    # (an EXIF thumbnail's own EOI lies before it, in APP1).
    if not fb.has_after(b"\xff\xd9", pos + 2):
        return ProblemKind.TRUNCATED, "truncated JPEG: no end-of-image marker (FFD9) after the scan data"
    return None


_PNG_IEND = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"  # length 0, type, the fixed CRC
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _scan_png(fb: _File, max_pixels: int):
    ihdr = fb.read(8, 25)
    if len(ihdr) < 25:
        return ProblemKind.TRUNCATED, f"truncated PNG: ends at byte {fb.size} inside the IHDR chunk"
    length, kind, w, h, depth, color = struct.unpack(">I4sIIBB", ihdr[:18])
    if kind != b"IHDR" or length != 13:
        return ProblemKind.CORRUPT_HEADER, "corrupt PNG header: the first chunk is not a 13-byte IHDR"
    if w >= 2**31 or h >= 2**31:
        return ProblemKind.CORRUPT_HEADER, f"corrupt PNG header: {w}x{h} pixels"
    bad = _check_size(w, h, "PNG", max_pixels)
    if bad:
        return bad
    if depth not in _PNG_DEPTHS.get(color, ()):
        return ProblemKind.CORRUPT_HEADER, f"corrupt PNG header: colour type {color} with bit depth {depth}"
    if not fb.has_after(_PNG_IEND, 33):
        return ProblemKind.TRUNCATED, "truncated PNG: no complete IEND chunk at the end"
    return None


def _scan_bmp(fb: _File, max_pixels: int):
    hdr = fb.read(0, 34)
    if len(hdr) < 26:
        return ProblemKind.TRUNCATED, "truncated BMP: ends inside the header"
    offbits, dib = struct.unpack("<I I", hdr[10:18])
    if dib == 12:
        w, h = struct.unpack("<HH", hdr[18:22])
        bits, compression = struct.unpack("<H", hdr[24:26])[0], 0
    elif dib >= 40 and len(hdr) >= 34:
        w, h, _, bits, compression = struct.unpack("<iiHHI", hdr[18:34])
    else:
        return ProblemKind.CORRUPT_HEADER, f"corrupt BMP header: DIB header of {dib} bytes"
    bad = _check_size(w, abs(h), "BMP", max_pixels)
    if bad:
        return bad
    if compression in (0, 3) and bits in (1, 4, 8, 16, 24, 32):  # uncompressed: size is known
        need = offbits + (bits * w + 31) // 32 * 4 * abs(h)
        if fb.size < need:
            return ProblemKind.TRUNCATED, f"truncated BMP: {fb.size} bytes, pixel data needs {need}"
    return None


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4)}  # SHORT, LONG


def _scan_tiff(fb: _File, max_pixels: int):
    hdr = fb.read(0, 8)
    e = "<" if hdr[:2] == b"II" else ">"
    if struct.unpack(e + "H", hdr[2:4])[0] == 43:
        return None  # BigTIFF: recognised, not parsed further
    if len(hdr) < 8:
        return ProblemKind.TRUNCATED, "truncated TIFF: ends inside the header"
    ifd = struct.unpack(e + "I", hdr[4:8])[0]
    raw = fb.read(ifd, 2)
    if len(raw) < 2:
        return ProblemKind.TRUNCATED, f"truncated TIFF: first directory at byte {ifd} is past the end"
    n = struct.unpack(e + "H", raw)[0]
    entries = fb.read(ifd + 2, 12 * n)
    if len(entries) < 12 * n:
        return ProblemKind.TRUNCATED, "truncated TIFF: ends inside the first directory"
    tags = {}
    for k in range(n):
        tag, typ, count = struct.unpack(e + "HHI", entries[12 * k : 12 * k + 8])
        if typ not in _TIFF_TYPES:
            continue
        code, size = _TIFF_TYPES[typ]
        if count * size <= 4:
            vals = struct.unpack(e + code * count, entries[12 * k + 8 : 12 * k + 8 + count * size])
        elif tag in (273, 279, 324, 325) and count <= 65536:
            off = struct.unpack(e + "I", entries[12 * k + 8 : 12 * k + 12])[0]
            data = fb.read(off, count * size)
            if len(data) < count * size:
                return ProblemKind.TRUNCATED, "truncated TIFF: ends inside the strip table"
            vals = struct.unpack(e + code * count, data)
        else:
            continue
        tags[tag] = vals
    if 256 not in tags or 257 not in tags:
        return ProblemKind.CORRUPT_HEADER, "corrupt TIFF header: no ImageWidth/ImageLength"
    bad = _check_size(tags[256][0], tags[257][0], "TIFF", max_pixels)
    if bad:
        return bad
    for offsets, counts in ((273, 279), (324, 325)):  # strips, tiles
        if offsets in tags and counts in tags and len(tags[offsets]) == len(tags[counts]):
            end = max(o + c for o, c in zip(tags[offsets], tags[counts]))
            if end > fb.size:
                return ProblemKind.TRUNCATED, f"truncated TIFF: {fb.size} bytes, image data runs to byte {end}"
    return None


def _scan_webp(fb: _File, max_pixels: int):
    hdr = fb.read(0, 30)
    riff = struct.unpack("<I", hdr[4:8])[0]
    if fb.size < riff + 8:
        return ProblemKind.TRUNCATED, f"truncated WebP: {fb.size} bytes, the RIFF header says {riff + 8}"
    chunk = hdr[12:16]
    if chunk == b"VP8 " and len(hdr) >= 30 and hdr[23:26] == b"\x9d\x01\x2a":
        w, h = (v & 0x3FFF for v in struct.unpack("<HH", hdr[26:30]))
    elif chunk == b"VP8L" and len(hdr) >= 25 and hdr[20] == 0x2F:
        bits = int.from_bytes(hdr[21:25], "little")
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X" and len(hdr) >= 30:
        w = int.from_bytes(hdr[24:27], "little") + 1
        h = int.from_bytes(hdr[27:30], "little") + 1
    else:
        return ProblemKind.CORRUPT_HEADER, f"corrupt WebP header: first chunk {chunk!r}"
    return _check_size(w, h, "WebP", max_pixels)


def _scan_pnm(fb: _File, max_pixels: int):
    tokens, i, head = [], 2, fb.head
    while len(tokens) < (2 if head[1:2] in b"14" else 3) and i < len(head):
        c = head[i : i + 1]
        if c == b"#":
            j = head.find(b"\n", i)
            i = len(head) if j < 0 else j + 1
        elif c.isspace():
            i += 1
        else:
            j = i
            while j < len(head) and not head[j : j + 1].isspace() and head[j : j + 1] != b"#":
                j += 1
            tokens.append(head[i:j])
            i = j
    if not all(t.isdigit() for t in tokens) or len(tokens) < 2:
        return ProblemKind.CORRUPT_HEADER, "corrupt PNM header: no width/height"
    w, h = int(tokens[0]), int(tokens[1])
    bad = _check_size(w, h, "PNM", max_pixels)
    if bad:
        return bad
    if head[1:2] in b"56" and len(tokens) == 3:  # binary gray / RGB: data size is known
        channels = 3 if head[1:2] == b"6" else 1
        need = i + 1 + w * h * channels * (2 if int(tokens[2]) > 255 else 1)
        if fb.size < need:
            return ProblemKind.TRUNCATED, f"truncated PNM: {fb.size} bytes, pixel data needs {need}"
    return None


def _scan_jp2(fb: _File, max_pixels: int):
    head = fb.head
    if head.startswith(b"\xff\x4f\xff\x51"):  # raw codestream: SIZ follows SOC
        if len(head) < 24:
            return ProblemKind.TRUNCATED, "truncated JPEG 2000: ends inside the SIZ header"
        xs, ys, xo, yo = struct.unpack(">IIII", head[8:24])
        w, h = xs - xo, ys - yo
    else:
        i = head.find(b"ihdr")
        if i < 0 or len(head) < i + 12:
            return ProblemKind.CORRUPT_HEADER, "corrupt JPEG 2000 header: no ihdr box"
        h, w = struct.unpack(">II", head[i + 4 : i + 12])
    bad = _check_size(w, h, "JPEG 2000", max_pixels)
    if bad:
        return bad
    if not fb.has_after(b"\xff\xd9", 0):  # EOC marker ends the codestream
        return ProblemKind.TRUNCATED, "truncated JPEG 2000: no end-of-codestream marker (FFD9)"
    return None


_FORMATS = (  # (signature test, name, scanner)
    (lambda b: b[:3] == b"\xff\xd8\xff", "JPEG", _scan_jpeg),
    (lambda b: b[:8] == b"\x89PNG\r\n\x1a\n", "PNG", _scan_png),
    (lambda b: b[:2] == b"BM", "BMP", _scan_bmp),
    (lambda b: b[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "TIFF", _scan_tiff),
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP", "WebP", _scan_webp),
    (lambda b: len(b) > 2 and b[:1] == b"P" and b[1:2] in b"123456" and b[2:3].isspace(), "PNM", _scan_pnm),
    (lambda b: b[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or b[:4] == b"\xff\x4f\xff\x51", "JPEG 2000", _scan_jp2),
)

_UNSUPPORTED = (  # recognised, but DALI's decoders fail on them (GIF: "nvImageCodec failure: '#4'")
    (lambda b: b[:6] in (b"GIF87a", b"GIF89a"), "GIF"),
    (lambda b: b[4:8] == b"ftyp" and b[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"), "HEIF/AVIF"),
    (lambda b: b[:4] == b"%PDF", "PDF document"),
    (lambda b: b[:4] == b"PK\x03\x04", "ZIP archive"),
    (lambda b: b[:2] == b"\x1f\x8b", "gzip archive"),
    (lambda b: b[:4] == b"\x00\x00\x01\x00", "ICO icon"),
)


def _identify(fb: _File, max_pixels: int) -> Optional[tuple[ProblemKind, str]]:
    head = fb.head
    for test, _name, scan in _FORMATS:
        if test(head):
            return scan(fb, max_pixels)
    for test, name in _UNSUPPORTED:
        if test(head):
            return ProblemKind.UNSUPPORTED_FORMAT, f"{name}, which DALI's image decoders cannot decode"
    text = _text_reason(head)
    if text:
        return ProblemKind.TEXT, text
    return (
        ProblemKind.UNKNOWN_FORMAT,
        f"unknown format: first bytes {head[:8].hex(' ')} are no JPEG/PNG/BMP/TIFF/WebP/PNM/JPEG 2000 signature",
    )


# --- public API ---------------------------------------------------------------------------


def _image_identify(max_pixels: int) -> Identify:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    return lambda f, size: _identify(_File(f, size), max_pixels)


def scan_file(path: "os.PathLike[str] | str", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Optional[Problem]:
    """Check one image file's header and tail (``scan_path`` with the image formats).

    Args:
        path: the image file.
        max_pixels: largest ``width * height`` a header may claim.

    Returns:
        ``None`` when nothing is wrong that a header can show, else a ``Problem``.
    """
    return scan_path(path, _image_identify(max_pixels))


def scan_files(
    paths: Iterable["os.PathLike[str] | str"],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: Optional[int] = None,
) -> list[Problem]:
    """Check many image files' headers and tails; the problems come back in the order of ``paths``.

    Reads at most 16 KiB from the start and 4 KiB from the end of a sound file (more only for
    a JPEG with a long header or data after its end marker).

    Args:
        paths: image files.
        max_pixels: largest ``width * height`` a header may claim (``DEFAULT_MAX_PIXELS`` is
            Pillow's limit, 89,478,485).
        workers: as ``scan_paths``.

    Returns:
        One ``Problem`` per bad file; empty when every file passed.
    """
    return scan_paths(paths, _image_identify(max_pixels), workers=workers)


def filter_files(
    paths: Sequence["os.PathLike[str] | str"],
    labels: Optional[Sequence] = None,
    *,
    on_error: "OnError | str" = OnError.RAISE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: Optional[int] = None,
) -> tuple[list[str], Optional[list]]:
    """Scan image files and act on what is found, as ``on_error`` says (``filter_paths`` with
    the image formats).

    Args:
        paths: image files.
        labels: one label per path, or ``None``.
        on_error: ``"raise"`` or ``"skip"``.
        max_pixels: passed to ``scan_files``.
        workers: passed to ``scan_files``.

    Returns:
        ``(kept_paths, kept_labels)`` in the input order; ``kept_labels`` is ``None`` when
        ``labels`` is.

    Raises:
        ValidationError: ``on_error="raise"`` and a file is bad, or no file is left.
        ValueError: bad arguments (each names the argument).
    """
    return filter_paths(paths, labels, _image_identify(max_pixels), on_error=on_error, noun="image",
                        workers=workers)


def diagnose_read_error(error: BaseException, files: Sequence[str]) -> BadDataError:
    """A ``BadDataError`` for DALI's read/decode ``error`` (which does not always name the file:
    "nvImageCodec failure: '#4'"), naming the bad files a header scan of ``files`` finds."""
    cause = error_cause(error)
    return bad_data_error(cause, [str(p) for p in scan_files(files)], "Bad files in the dataset",
                          "The header scan finds no bad file, so the damage is inside an image's data.")


def _member_key(name: str) -> "tuple[str, str]":
    """WebDataset's ``(key, extension)`` of a tar member: the extension is everything after the
    first dot of the base name (``a/b.seg.png`` -> ``("a/b", "seg.png")``)."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext if dot else "")


def scan_shards(shards: Sequence[str], *, image_ext: Sequence[str] = ("jpg", "jpeg", "png"),
                label_ext: str = "cls", num_classes: Optional[int] = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Problem]:
    """Check WebDataset shards: the tar itself, each image member's header and tail (as
    ``scan_file`` does for files) and, with ``num_classes``, each label member (an ASCII integer
    in ``[0, num_classes)``). Each ``Problem``'s path is ``shard:key.ext`` (the sample key), or
    the shard alone when the tar is damaged.
    """
    import tarfile

    from ..sources import check_shard

    images = {e.lower() for e in image_ext}
    problems: list[Problem] = []
    for shard in shards:
        shard = os.fspath(shard)
        try:
            check_shard(shard)
        except ValueError as e:
            problems.append(Problem(shard, ProblemKind.TRUNCATED, str(e).split(": ", 1)[-1]))
            continue
        try:
            with tarfile.open(shard) as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    _, ext = _member_key(m.name)
                    where = f"{shard}:{m.name}"
                    if ext.lower() in images:
                        if m.size == 0:
                            problems.append(Problem(where, ProblemKind.EMPTY, "empty member (0 bytes)"))
                            continue
                        found = _identify(_File(tf.extractfile(m), m.size), max_pixels)
                        if found is not None:
                            problems.append(Problem(where, found[0], found[1]))
                    elif ext == label_ext and num_classes is not None:
                        raw = tf.extractfile(m).read(64)
                        try:
                            value = int(raw.strip())
                        except ValueError:
                            problems.append(Problem(where, ProblemKind.CORRUPT_HEADER,
                                                    f"label is not an ASCII integer: {raw[:20]!r}"))
                            continue
                        if not 0 <= value < num_classes:
                            problems.append(Problem(where, ProblemKind.CORRUPT_HEADER,
                                                    f"label {value} is outside [0, num_classes={num_classes})"))
        except (tarfile.TarError, OSError) as e:
            problems.append(Problem(shard, ProblemKind.UNREADABLE, f"cannot read: {e}"))
    return problems


def diagnose_shards(error: BaseException, shards: Sequence[str], num_classes: Optional[int] = None) -> BadDataError:
    """``diagnose_read_error`` for WebDataset shards: a ``BadDataError`` naming each bad member
    as ``shard:key.ext`` (DALI's "nvImageCodec failure: '#4'" names neither)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    cause = lines[0] if lines else type(error).__name__
    if "encountered:" in lines[:-1]:  # DALI: "Critical error in pipeline: ... encountered: <the cause>"
        cause = lines[lines.index("encountered:") + 1]
    return bad_data_error(cause, [str(p) for p in scan_shards(shards, num_classes=num_classes)],
                          "Bad members in the shards", f"The scan of {len(shards)} shard(s) finds no bad member, "
                          "so the damage is inside an image's data.", skip_hint=False)
