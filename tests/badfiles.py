"""A corpus of bad and odd image files, written on demand (nothing is downloaded).

``write_corpus(directory)`` writes every case into ``directory`` and returns ``{case: path}``.
Single-file cases live in ``directory/files/``; the folder cases (``empty_root``,
``empty_class_folder``, ``text_in_class_folder``) live in small ImageFolder trees beside it.

The case names are grouped in ``BAD_FILE_CASES`` (a cheap header scan should reject them),
``VALID_ODD_CASES`` (unusual but decodable: must pass), ``VALID_CASES`` (plain RGB JPEGs) and
``FOLDER_CASES`` (directories, for the ImageFolder checks). ``STUDY_ONLY_CASES`` are extra files
used to see what DALI does, whose verdict is documented in ``notes/dali_bad_files.md``.

Used by ``tests/test_validate.py``; ``python tests/badfiles.py --study`` runs the DALI study
(``run_study``) whose results are in ``notes/dali_bad_files.md``.
"""

from __future__ import annotations

import io
import os
import pathlib
import struct
import zlib

import numpy as np
from PIL import Image

#: Header claims this many pixels per side in the ``bomb`` case.
BOMB_SIDE = 60000
#: The crop size the training pipeline uses (``small`` is smaller than this on both sides).
CROP = 224

BAD_FILE_CASES = (
    "zero_bytes",
    "truncated_jpeg",
    "truncated_before_scan",
    "truncated_png",
    "truncated_jpeg_with_thumbnail",
    "random_bytes",
    "text_named_jpg",
    "html_named_jpg",
    "bomb",
    "zero_width_png",
    "broken_symlink",
    "directory_named_jpg",
    "gif",
)
VALID_ODD_CASES = (
    "png_named_jpg",
    "png16_rgb",
    "png16_gray",
    "gray_alpha_png",
    "rgba_png",
    "palette_png",
    "gray_jpeg",
    "cmyk_jpeg",
    "progressive_jpeg",
    "one_by_one_jpeg",
    "one_by_one_png",
    "small_jpeg",
    "bmp",
    "tiff",
    "webp",
    "jp2",
    "ppm",
    "jpeg_trailing_garbage",
    "jpeg_exif_thumbnail",
)
VALID_CASES = ("valid_0", "valid_1", "valid_2")
FOLDER_CASES = ("empty_root", "empty_class_folder", "text_in_class_folder")
#: Not part of the scan's contract; written so the study can report what DALI does with them.
STUDY_ONLY_CASES = ("jpeg_missing_eoi", "corrupt_scan_jpeg")


def _noise_rgb(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth gradient plus noise, so JPEG scans are long and truncation cuts real data."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(-40, 40, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    return _encoded(img, "JPEG", quality=90, **kw)


def _png_bytes(img: Image.Image) -> bytes:
    return _encoded(img, "PNG")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16_bytes(h: int = 48, w: int = 64, channels: int = 3, seed: int = 3) -> bytes:
    """A 16-bit-per-channel PNG (gray: ``channels=1``, RGB: 3), written by hand.

    Pillow cannot write 16-bit RGB, and its 16-bit gray path changes between versions.
    """
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 65536, size=(h, w, channels), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + px[r].tobytes() for r in range(h))  # filter type 0 per row
    color_type = {1: 0, 3: 2}[channels]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def png_bomb_bytes(side: int = 20000) -> bytes:
    """A real decompression bomb: a ``side`` x ``side`` black RGB PNG (about 1 MB for 20000).

    Unlike ``bomb`` (a small JPEG whose header lies), this one decodes: DALI must allocate
    ``3 * side**2`` bytes per image. Takes a few seconds to write, so it is study-only.
    """
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def patch_png_size(data: bytes, w: int, h: int) -> bytes:
    """Rewrite IHDR width/height (and its CRC) of a PNG."""
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", w, h) + data[24:29]
    return data[:8] + _png_chunk(b"IHDR", ihdr) + data[33:]


def patch_jpeg_size(data: bytes, w: int, h: int) -> bytes:
    """Rewrite the height/width fields of the first SOFn segment of a JPEG."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"not at a marker at offset {i}")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            # FF Cn | length (2) | precision (1) | height (2) | width (2)
            return data[: i + 5] + struct.pack(">HH", h, w) + data[i + 9 :]
        i += 2 + length
    raise ValueError("no SOF segment found")


def _jpeg_sos_offset(data: bytes) -> int:
    i = 2
    while True:
        marker = data[i + 1]
        if marker == 0xDA:
            return i
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]


def _exif_with_thumbnail() -> bytes:
    """EXIF bytes that carry a small JPEG thumbnail (which has its own SOI ... EOI)."""
    thumb = _jpeg_bytes(Image.fromarray(_noise_rgb(16, 16, 9)))
    # Little-endian TIFF: header (8) | IFD0 at 8: one entry, Make = 'bad' inline (18 bytes)
    # | IFD1 at 26: JPEGInterchangeFormat(+Length) (30 bytes) | thumbnail at 56.
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHI4s", 0x010F, 2, 4, b"bad\x00") + struct.pack("<I", 26)
    thumb_offset = 26 + 2 + 2 * 12 + 4
    ifd1 = (
        struct.pack("<H", 2)
        + struct.pack("<HHII", 0x0201, 4, 1, thumb_offset)  # JPEGInterchangeFormat
        + struct.pack("<HHII", 0x0202, 4, 1, len(thumb))  # JPEGInterchangeFormatLength
        + struct.pack("<I", 0)
    )
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1 + thumb
    return b"Exif\x00\x00" + tiff


def write_corpus(directory: os.PathLike | str) -> dict[str, pathlib.Path]:
    """Write every case into ``directory``; return ``{case_name: path}``."""
    root = pathlib.Path(directory)
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    out: dict[str, pathlib.Path] = {}

    def put(name: str, filename: str, data: bytes) -> None:
        p = files / filename
        p.write_bytes(data)
        out[name] = p

    rgb = Image.fromarray(_noise_rgb(256, 320, 0))
    valid = _jpeg_bytes(rgb)
    for k in range(3):
        put(f"valid_{k}", f"valid_{k}.jpg", _jpeg_bytes(Image.fromarray(_noise_rgb(240 + 8 * k, 300, k))))

    # --- bad files -------------------------------------------------------------------------
    put("zero_bytes", "zero_bytes.jpg", b"")
    put("truncated_jpeg", "truncated.jpg", valid[: len(valid) // 2])
    put("truncated_before_scan", "truncated_header.jpg", valid[: _jpeg_sos_offset(valid) - 10])
    rnd = bytearray(np.random.default_rng(1).bytes(4096))
    rnd[0] = 0x00  # make sure the random start is no known magic number
    put("random_bytes", "random.jpg", bytes(rnd))
    put("text_named_jpg", "text.jpg", b"this is not an image\nsecond line\n" * 4)
    put(
        "html_named_jpg",
        "html.jpg",
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n",
    )
    png = _png_bytes(rgb)
    put("truncated_png", "truncated.png", png[: len(png) * 2 // 3])
    put("bomb", "bomb.jpg", patch_jpeg_size(valid, BOMB_SIDE, BOMB_SIDE))
    put("zero_width_png", "zero_width.png", patch_png_size(_png_bytes(rgb), 0, 256))
    link = files / "broken_symlink.jpg"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(files / "does_not_exist.jpg")
    out["broken_symlink"] = link
    d = files / "directory.jpg"
    d.mkdir(exist_ok=True)
    out["directory_named_jpg"] = d
    put("gif", "animation.gif", _encoded(rgb.convert("P"), "GIF"))

    # --- valid odd files -------------------------------------------------------------------
    put("png_named_jpg", "png_named.jpg", _png_bytes(rgb))
    put("png16_rgb", "rgb16.png", png16_bytes(48, 64, channels=3, seed=3))
    put("png16_gray", "gray16.png", png16_bytes(40, 56, channels=1, seed=4))
    la = Image.merge("LA", (rgb.convert("L"), Image.new("L", rgb.size, 128)))
    put("gray_alpha_png", "gray_alpha.png", _png_bytes(la))
    put("rgba_png", "rgba.png", _png_bytes(rgb.convert("RGBA")))
    put("palette_png", "palette.png", _png_bytes(rgb.convert("P")))
    put("gray_jpeg", "gray.jpg", _jpeg_bytes(rgb.convert("L")))
    put("cmyk_jpeg", "cmyk.jpg", _jpeg_bytes(rgb.convert("CMYK")))
    put("progressive_jpeg", "progressive.jpg", _jpeg_bytes(rgb, progressive=True))
    put("one_by_one_jpeg", "one_by_one.jpg", _jpeg_bytes(Image.new("RGB", (1, 1), (200, 30, 60))))
    put("one_by_one_png", "one_by_one.png", _png_bytes(Image.new("RGB", (1, 1), (200, 30, 60))))
    put("small_jpeg", "small.jpg", _jpeg_bytes(Image.fromarray(_noise_rgb(CROP // 2, CROP - 24, 5))))
    put("bmp", "image.bmp", _encoded(rgb, "BMP"))
    put("tiff", "image.tiff", _encoded(rgb, "TIFF"))
    put("webp", "image.webp", _encoded(rgb, "WEBP", quality=80))
    put("jp2", "image.jp2", _encoded(rgb, "JPEG2000"))
    put("ppm", "image.ppm", _encoded(rgb, "PPM"))
    put("jpeg_trailing_garbage", "trailing.jpg", valid + b"\x00" * 100 + np.random.default_rng(6).bytes(8000))
    exif_jpeg = _jpeg_bytes(rgb, exif=_exif_with_thumbnail())
    put("jpeg_exif_thumbnail", "exif_thumb.jpg", exif_jpeg)
    # The EXIF thumbnail's own FF D9 stays in the file: a tail-only search for FF D9 would miss this.
    assert exif_jpeg.find(b"\xff\xd9") < _jpeg_sos_offset(exif_jpeg)
    put("truncated_jpeg_with_thumbnail", "truncated_exif_thumb.jpg", exif_jpeg[: len(exif_jpeg) // 2])

    # --- study-only ------------------------------------------------------------------------
    assert valid[-2:] == b"\xff\xd9"
    put("jpeg_missing_eoi", "missing_eoi.jpg", valid[:-2])
    sos = _jpeg_sos_offset(valid)
    scan = bytearray(valid)
    mid = sos + (len(valid) - sos) // 3
    scan[mid : mid + 600] = bytes(np.random.default_rng(7).integers(0, 255, 600, dtype=np.uint8))  # no 0xFF
    put("corrupt_scan_jpeg", "corrupt_scan.jpg", bytes(scan))

    # --- folder cases ----------------------------------------------------------------------
    empty_root = root / "empty_root"
    empty_root.mkdir(exist_ok=True)
    out["empty_root"] = empty_root

    tree = root / "tree"
    for cls, k in (("cat", 0), ("dog", 1)):
        (tree / cls).mkdir(parents=True, exist_ok=True)
        (tree / cls / f"{cls}_0.jpg").write_bytes(_jpeg_bytes(Image.fromarray(_noise_rgb(64, 80, 10 + k))))
    (tree / "bird").mkdir(exist_ok=True)  # sorts first: its label index matters
    out["empty_class_folder"] = tree / "bird"
    notes = tree / "dog" / "notes.txt"
    notes.write_text("labelled by hand, 2021\n")
    out["text_in_class_folder"] = notes
    out["tree"] = tree
    return out


# --- the DALI study ------------------------------------------------------------------------
# Each file is decoded by its own pipeline in a child process with a timeout, so a segfault,
# an out-of-memory kill or a hang is observed instead of taking the caller down.

_CHILD = r"""
import json, sys, time
import numpy as np
from nvidia.dali import fn, pipeline_def, types

mode, path, recovery_path = sys.argv[1], sys.argv[2], sys.argv[3]
device = "mixed" if mode.startswith("mixed") else "cpu"
device_id = 0 if device == "mixed" else None

def build(p, mode):
    @pipeline_def(batch_size=1, num_threads=1, device_id=device_id, prefetch_queue_depth=1)
    def pipe():
        jpegs, labels = fn.readers.file(files=[p], labels=[0], name="Reader")
        if mode.endswith("random_crop"):
            images = fn.decoders.image_random_crop(jpegs, device=device, output_type=types.RGB, seed=0)
            images = fn.resize(images, resize_x=224, resize_y=224)
        else:
            images = fn.decoders.image(jpegs, device=device, output_type=types.RGB)
        return images, labels
    return pipe()

def run(p):
    pipe = build(p, mode)
    pipe.build()
    images, _ = pipe.run()
    if device == "mixed":
        images = images.as_cpu()
    a = np.asarray(images[0])
    return {"shape": list(a.shape), "dtype": str(a.dtype), "min": int(a.min()), "max": int(a.max()),
            "mean": round(float(a.mean()), 1)}

res = {}
t0 = time.perf_counter()
try:
    res["ok"] = run(path)
except Exception as e:
    msg = str(e)
    res["error"] = {"type": type(e).__name__, "names_file": path in msg,
                    "message": msg}
res["seconds"] = round(time.perf_counter() - t0, 2)
try:
    res["recovery"] = run(recovery_path)["shape"]
except Exception as e:
    res["recovery"] = "FAILED: " + type(e).__name__ + ": " + str(e)[:200]
print("RESULT " + json.dumps(res), flush=True)
"""


def dali_decode(path, mode="image", *, recovery_path, timeout=90.0, python=None) -> dict:
    """Decode ``path`` with a one-file DALI pipeline in a child process.

    Args:
        path: the file handed to ``fn.readers.file(files=[path])``.
        mode: ``"image"`` (``fn.decoders.image``) or ``"random_crop"``
            (``fn.decoders.image_random_crop`` + resize to 224); prefix ``"mixed_"`` for the
            GPU decoder.
        recovery_path: a valid file decoded by a fresh pipeline in the same child afterwards.
        timeout: seconds before the child counts as hung and is killed.

    Returns:
        ``{"ok": {...}}`` or ``{"error": {...}}``, plus ``"recovery"``; or
        ``{"crash": returncode}`` / ``{"hang": timeout}`` when the child did not report.
    """
    import json
    import subprocess
    import sys

    cmd = [python or sys.executable, "-c", _CHILD, mode, str(path), str(recovery_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"hang": timeout}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"crash": proc.returncode, "stderr": proc.stderr[-2000:]}


def dali_root(root, timeout=90.0) -> dict:
    """What ``fn.readers.file(file_root=root)`` lists (files, labels), in a child process."""
    import json
    import subprocess
    import sys

    code = r"""
import json, sys
import numpy as np
from nvidia.dali import fn, pipeline_def
root = sys.argv[1]
try:
    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        data, labels = fn.readers.file(file_root=root, name="Reader")
        return fn.get_property(data, key="source_info"), labels
    p = pipe(); p.build()
    n = p.epoch_size("Reader")
    seen = []
    for _ in range(n):
        info, lab = p.run()
        seen.append([np.asarray(info[0]).tobytes().decode(), int(np.asarray(lab[0]).item())])
    print("RESULT " + json.dumps({"files": seen}))
except Exception as e:
    print("RESULT " + json.dumps({"error": {"type": type(e).__name__, "message": str(e)}}))
"""
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"hang": timeout}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"crash": proc.returncode, "stderr": proc.stderr[-2000:]}


def _summary(res: dict) -> str:
    if "hang" in res:
        return f"HANG (killed after {res['hang']:.0f} s)"
    if "crash" in res:
        return f"CRASH (exit {res['crash']})"
    if "ok" in res:
        ok = res["ok"]
        return (f"decodes {tuple(ok['shape'])} {ok['dtype']} [{ok['min']}..{ok['max']}] "
                f"mean {ok['mean']} in {res['seconds']} s")
    err = res["error"]
    lines = [ln.strip() for ln in err["message"].splitlines() if ln.strip()]
    # DALI's message: "Critical error in pipeline: ... encountered: <the cause> ..."
    after = lines[lines.index("encountered:") + 1 :] if "encountered:" in lines else lines
    first = after[0] if after else ""
    named = "names file" if err["names_file"] else "does NOT name file"
    return f"{err['type']} ({named}) after {res['seconds']} s: {first.strip()[:160]}"


def run_study(directory, modes=("image", "random_crop"), timeout=90.0) -> str:
    """Run every single-file case through DALI; return a markdown table."""
    corpus = write_corpus(directory)
    names = [*VALID_CASES, *BAD_FILE_CASES, *VALID_ODD_CASES, *STUDY_ONLY_CASES, "png_bomb_20k"]
    corpus["png_bomb_20k"] = pathlib.Path(directory) / "files" / "png_bomb_20k.png"
    corpus["png_bomb_20k"].write_bytes(png_bomb_bytes(20000))
    rows = ["| case | " + " | ".join(modes) + " | recovery in same process |",
            "|---|" + "---|" * len(modes) + "---|"]
    for name in names:
        cells, recov = [], set()
        for mode in modes:
            res = dali_decode(corpus[name], mode, recovery_path=corpus["valid_0"], timeout=timeout)
            cells.append(_summary(res).replace("|", "/"))
            r = res.get("recovery")
            recov.add("-" if r is None else "ok" if isinstance(r, list) else r)
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {'; '.join(sorted(recov))} |")
    rows.append("")
    for name in ("tree", "empty_root"):
        rows.append(f"- file_root={name}: `{dali_root(corpus[name])}`")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys
    import tempfile

    args = sys.argv[1:]
    if args and args[0] == "--study":
        # python tests/badfiles.py --study [image,random_crop[,mixed_image,...]]
        modes = tuple(args[1].split(",")) if len(args) > 1 else ("image", "random_crop")
        print(run_study(tempfile.mkdtemp(prefix="badfiles_study_"), modes=modes))
    else:
        target = args[0] if args else tempfile.mkdtemp(prefix="badfiles_")
        for name, path in write_corpus(target).items():
            print(f"{name:24s} {path}")
