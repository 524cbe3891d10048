"""Tests for dali_mixup.kinds.image_scan: the header scan and filter_files.

The corpus comes from tests/badfiles.py. Tests that ask DALI itself (marked ``dali`` in their
names) run it in a child process and skip where DALI is not installed.
"""

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import badfiles
from dali_mixup.kinds import image_scan as validate
from dali_mixup.scan import BadFilesWarning, OnError, Problem, ProblemKind, ValidationError
from dali_mixup.kinds.image_scan import filter_files, scan_file, scan_files

PIL = pytest.importorskip("PIL.Image")

HAVE_DALI = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
needs_dali = pytest.mark.skipif(not HAVE_DALI, reason="nvidia-dali is not installed")

K = ProblemKind
EXPECTED = {  # case -> (kind, words the reason must contain)
    "zero_bytes": (K.EMPTY, "0 bytes"),
    "truncated_jpeg": (K.TRUNCATED, "no end-of-image marker"),
    "truncated_before_scan": (K.TRUNCATED, "before the scan"),
    "truncated_png": (K.TRUNCATED, "no complete IEND chunk"),
    "truncated_jpeg_with_thumbnail": (K.TRUNCATED, "no end-of-image marker"),
    "random_bytes": (K.UNKNOWN_FORMAT, "unknown format: first bytes 00 "),
    "text_named_jpg": (K.TEXT, "text file, not an image (starts with 'this is not an image')"),
    "html_named_jpg": (K.TEXT, "HTML/XML file"),
    "bomb": (K.TOO_LARGE, "60000x60000 = 3,600,000,000 pixels"),
    "zero_width_png": (K.ZERO_SIZE, "0x256"),
    "broken_symlink": (K.MISSING, "broken symbolic link"),
    "directory_named_jpg": (K.NOT_A_FILE, "directory"),
    "gif": (K.UNSUPPORTED_FORMAT, "GIF"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return badfiles.write_corpus(tmp_path_factory.mktemp("corpus"))


def test_expected_covers_every_bad_case():
    assert set(EXPECTED) == set(badfiles.BAD_FILE_CASES)


@pytest.mark.parametrize("case", badfiles.BAD_FILE_CASES)
def test_bad_file_is_reported(corpus, case):
    kind, words = EXPECTED[case]
    problem = scan_file(corpus[case])
    assert problem is not None, f"{case} passed the scan"
    assert problem.kind is kind, problem
    assert words in problem.reason
    assert problem.path == os.fspath(corpus[case])
    assert str(problem) == f"{corpus[case]}: {problem.reason}"
    assert "\n" not in problem.reason


@pytest.mark.parametrize("case", badfiles.VALID_ODD_CASES + badfiles.VALID_CASES)
def test_valid_file_passes(corpus, case):
    assert scan_file(corpus[case]) is None


def test_jpeg_without_eoi_is_truncated(corpus):
    # DALI's decoders.image raises on it while decoders.image_random_crop decodes it: reject it.
    assert scan_file(corpus["jpeg_missing_eoi"]).kind is K.TRUNCATED


def test_corrupt_scan_data_is_beyond_a_header_scan(corpus):
    # Documented limit (notes/dali_bad_files.md): DALI decodes this to a damaged image and a
    # header scan cannot see the damage. If this starts failing, update the notes.
    assert scan_file(corpus["corrupt_scan_jpeg"]) is None


def test_missing_file(tmp_path):
    p = scan_file(tmp_path / "nope.jpg")
    assert p.kind is K.MISSING and p.reason == "no such file"


def test_fifo_is_not_opened(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert scan_file(fifo).kind is K.NOT_A_FILE  # opening it would block: a hang


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(corpus, tmp_path):
    p = tmp_path / "locked.jpg"
    shutil.copy(corpus["valid_0"], p)
    p.chmod(0)
    assert scan_file(p).kind is K.UNREADABLE


# --- dimensions: each parser reads the true size --------------------------------------------

SIZE_CASES = ("valid_0", "png_named_jpg", "png16_rgb", "png16_gray", "gray_alpha_png", "cmyk_jpeg",
              "progressive_jpeg", "one_by_one_jpeg", "small_jpeg", "bmp", "tiff", "webp", "jp2", "ppm",
              "jpeg_exif_thumbnail")


@pytest.mark.parametrize("case", SIZE_CASES)
def test_max_pixels_boundary_uses_true_size(corpus, case):
    with PIL.open(corpus[case]) as im:
        w, h = im.size
    assert scan_file(corpus[case], max_pixels=w * h) is None
    p = scan_file(corpus[case], max_pixels=w * h - 1) if w * h > 1 else None
    if p is not None:
        assert p.kind is K.TOO_LARGE and f"{w}x{h}" in p.reason


def _webp(size, lossless):
    buf = io.BytesIO()
    PIL.new("RGB", size, (9, 99, 199)).save(buf, format="WEBP", lossless=lossless)
    return buf.getvalue()


@pytest.mark.parametrize("lossless", [False, True], ids=["vp8", "vp8l"])
def test_webp_variants_size(tmp_path, lossless):
    p = tmp_path / "x.webp"
    p.write_bytes(_webp((77, 33), lossless))
    assert scan_file(p, max_pixels=77 * 33) is None
    assert "77x33" in scan_file(p, max_pixels=77 * 33 - 1).reason


def test_header_only_bombs_in_other_formats(tmp_path):
    png = tmp_path / "bomb.png"
    png.write_bytes(badfiles.patch_png_size(badfiles.png16_bytes(8, 8), 50000, 50000))
    assert scan_file(png).kind is K.TOO_LARGE
    buf = io.BytesIO()
    PIL.new("RGB", (8, 8)).save(buf, format="BMP")
    bmp = bytearray(buf.getvalue())
    bmp[18:26] = np.array([40000, -40000], "<i4").tobytes()  # top-down BMP: negative height
    (tmp_path / "bomb.bmp").write_bytes(bytes(bmp))
    p = scan_file(tmp_path / "bomb.bmp")
    assert p.kind is K.TOO_LARGE and "40000x40000" in p.reason


# --- truncation, every format; every prefix of a JPEG and a PNG -----------------------------


@pytest.mark.parametrize("case", ["bmp", "tiff", "webp", "jp2", "ppm", "progressive_jpeg", "png16_rgb"])
def test_truncated_other_formats(corpus, tmp_path, case):
    data = corpus[case].read_bytes()
    p = tmp_path / corpus[case].name
    p.write_bytes(data[: int(len(data) * 0.6)])
    problem = scan_file(p)
    assert problem is not None and problem.kind is K.TRUNCATED, problem


@pytest.mark.parametrize("case", ["valid_0", "png_named_jpg", "jpeg_exif_thumbnail"])
def test_every_prefix_is_truncated(corpus, tmp_path, case):
    data = corpus[case].read_bytes()
    p = tmp_path / "cut"
    cuts = sorted(set(range(8, 700, 3)) | set(np.linspace(700, len(data) - 1, 150).astype(int).tolist()))
    for cut in cuts:
        p.write_bytes(data[:cut])
        problem = scan_file(p)
        assert problem is not None and problem.kind is K.TRUNCATED, (cut, problem)


@pytest.mark.parametrize("case", ["valid_0", "png_named_jpg", "bmp", "tiff", "webp", "jp2", "ppm", "png16_gray"])
def test_mutated_headers_never_raise(corpus, tmp_path, case):
    """Random byte changes in the first 300 bytes: the scan answers, it does not crash."""
    rng = np.random.default_rng(0)
    data = corpus[case].read_bytes()
    p = tmp_path / "mut"
    for _ in range(300):
        b = bytearray(data)
        for i in rng.integers(0, min(300, len(b)), size=rng.integers(1, 6)):
            b[i] = rng.integers(0, 256)
        p.write_bytes(bytes(b))
        out = scan_file(p, max_pixels=10**12)
        assert out is None or isinstance(out, Problem)


# --- scan_files ---------------------------------------------------------------------------


def test_scan_files_order_and_threads(corpus):
    names = list(badfiles.BAD_FILE_CASES + badfiles.VALID_ODD_CASES) * 6  # > 64: threads used
    paths = [corpus[n] for n in names]
    serial = scan_files(paths, workers=1)
    threaded = scan_files(paths, workers=8)
    assert serial == threaded
    assert [p.path for p in serial] == [os.fspath(corpus[n]) for n in names if n in EXPECTED]


@pytest.mark.parametrize("kw", [{"max_pixels": 0}, {"max_pixels": 1.5}, {"max_pixels": True}, {"workers": 0}])
def test_scan_files_rejects_bad_arguments(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        scan_files([], **kw)


def test_scan_reads_only_head_and_tail(corpus, tmp_path, monkeypatch):
    """A 3 MB JPEG costs one 16 KiB head read and one 4 KiB tail read, not 3 MB."""
    big = PIL.fromarray(np.random.default_rng(0).integers(0, 256, (1200, 1600, 3), dtype=np.uint8))
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    size = path.stat().st_size
    assert size > 2_000_000
    read = []

    class Counting(io.FileIO):
        def read(self, n=-1):
            out = super().read(n)
            read.append(len(out))
            return out

    monkeypatch.setattr(validate, "open", lambda p, mode: Counting(p, "r"), raising=False)
    assert scan_file(path) is None
    assert sum(read) <= 16384 + 4096 + 64, read


# --- filter_files -------------------------------------------------------------------------


def _mixed(corpus):
    names = ["valid_0", "truncated_jpeg", "cmyk_jpeg", "zero_bytes", "valid_1"]
    return [corpus[n] for n in names], [10, 11, 12, 13, 14]


def test_filter_raise_names_every_bad_file(corpus):
    paths, labels = _mixed(corpus)
    with pytest.raises(ValidationError) as ei:
        filter_files(paths, labels)
    err = ei.value
    assert isinstance(err, ValueError)
    assert [p.path for p in err.problems] == [os.fspath(corpus["truncated_jpeg"]), os.fspath(corpus["zero_bytes"])]
    msg = str(err)
    assert msg.startswith("2 of 5 files cannot be used:")
    assert f"{corpus['truncated_jpeg']}: truncated JPEG" in msg
    assert f"{corpus['zero_bytes']}: empty file (0 bytes)" in msg


def test_filter_skip_warns_once_and_keeps_labels_aligned(corpus):
    paths, labels = _mixed(corpus)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kept, kept_labels = filter_files(paths, labels, on_error="skip")
    assert kept == [os.fspath(paths[i]) for i in (0, 2, 4)]
    assert kept_labels == [10, 12, 14]
    assert len(w) == 1 and issubclass(w[0].category, BadFilesWarning)
    msg = str(w[0].message)
    assert msg.startswith("2 of 5 files left out")
    assert os.fspath(corpus["truncated_jpeg"]) in msg and os.fspath(corpus["zero_bytes"]) in msg
    assert w[0].filename == __file__  # stacklevel points at the caller


def test_filter_clean_input_is_silent(corpus):
    paths = [corpus[n] for n in badfiles.VALID_ODD_CASES]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept, labels = filter_files(paths, None, on_error=OnError.SKIP)
    assert kept == [os.fspath(p) for p in paths] and labels is None


def test_filter_skip_with_nothing_left_raises(corpus):
    with pytest.raises(ValidationError, match="all of them"):
        filter_files([corpus["zero_bytes"], corpus["gif"]], on_error="skip")


def test_filter_message_is_capped_but_problems_are_complete(corpus):
    paths = [corpus["zero_bytes"]] * 25
    with pytest.raises(ValidationError) as ei:
        filter_files(paths)
    assert len(ei.value.problems) == 25
    assert "... and 5 more" in str(ei.value)


def test_filter_bad_arguments(corpus):
    with pytest.raises(ValueError, match="on_error must be one of 'raise', 'skip', got 'ignore'"):
        filter_files([corpus["valid_0"]], on_error="ignore")
    with pytest.raises(ValueError, match="labels has 2 entries but paths has 1"):
        filter_files([corpus["valid_0"]], [0, 1])


# --- against DALI itself ------------------------------------------------------------------

_DALI_CHILD = r"""
import json, sys
from nvidia.dali import fn, pipeline_def, types
def decode(paths):
    @pipeline_def(batch_size=len(paths), num_threads=1, device_id=None)
    def pipe():
        data, _ = fn.readers.file(files=paths, labels=list(range(len(paths))))
        return fn.decoders.image(data, device="cpu", output_type=types.RGB)
    p = pipe(); p.build()
    (out,) = p.run()
    return [list(out[i].shape()) for i in range(len(paths))]
good, bad = json.loads(sys.argv[1]), json.loads(sys.argv[2])
res = {"good": decode(good), "bad": {}}
for path in bad:
    try:
        decode([path]); res["bad"][path] = "decoded"
    except RuntimeError as e:
        res["bad"][path] = "raised"
res["after_errors"] = decode(good[:1])
print("RESULT " + json.dumps(res))
"""


@needs_dali
def test_scan_agrees_with_dali_decoder(corpus):
    """Every file the scan passes decodes in DALI; every file it rejects makes DALI raise."""
    good = [os.fspath(corpus[n]) for n in badfiles.VALID_ODD_CASES + badfiles.VALID_CASES]
    bad = [os.fspath(corpus[n]) for n in badfiles.BAD_FILE_CASES]
    out = subprocess.run([sys.executable, "-c", _DALI_CHILD, json.dumps(good), json.dumps(bad)],
                         capture_output=True, text=True, timeout=300)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, f"DALI child died (exit {out.returncode}): {out.stderr[-2000:]}"
    res = json.loads(line[len("RESULT "):])
    for path, shape in zip(good, res["good"]):
        with PIL.open(path) as im:
            assert shape == [im.size[1], im.size[0], 3], path
    assert res["bad"] == {p: "raised" for p in bad}
    assert res["after_errors"] == res["good"][:1]  # a new pipeline in the same process works


def test_validate_imports_neither_pil_nor_dali():
    code = ("import sys, dali_mixup.kinds.image_scan\n"
            "print(','.join(m for m in ('PIL', 'nvidia.dali', 'cupy', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
