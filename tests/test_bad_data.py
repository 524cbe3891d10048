"""Bad files through the loader: a clear error naming the file (before training with
``validate=True``, or at the batch), or a documented skip; valid odd files decode. The batch-time
behaviours run on each device: on a GPU through nvJPEG's ``mixed`` decoder (``make gpu-check``
records how it meets the corpus)."""

import os
import pathlib
import shutil
import warnings

import pytest
import torch

import badfiles
from dali_mixup import MixupConfig, create_loader
from dali_mixup.iterator import BadDataError
from dali_mixup.scan import BadFilesWarning, ValidationError

# A directory named .jpg is not a file: the folder listing never picks it up.
BAD = [c for c in badfiles.BAD_FILE_CASES if c != "directory_named_jpg"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return badfiles.write_corpus(tmp_path_factory.mktemp("corpus"))


def folder_with(corpus, case, tmp_path):
    """ImageFolder: class 'a' with the three valid JPEGs, class 'b' with the case's file."""
    root = tmp_path / "root"
    for k in range(3):
        (root / "a").mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus[f"valid_{k}"], root / "a" / f"v{k}.jpg")
    (root / "b").mkdir(parents=True, exist_ok=True)
    src = pathlib.Path(corpus[case])
    dst = root / "b" / (f"{case}.jpg" if src.suffix.lower() not in (".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".jp2") else f"{case}{src.suffix}")
    shutil.copy(src, dst, follow_symlinks=False)
    return str(root), str(dst)


def make(root, device="cpu", **kw):
    return create_loader(root, batch_size=2, image_size=32, device="gpu" if device == "cuda" else "cpu",
                         num_threads=2, seed=0, mixup=MixupConfig(alpha=0.4), **kw)


def all_ids(ld):
    return sorted(i for b in ld for i in b[0]["label_index"].tolist())


@pytest.mark.parametrize("case", BAD)
def test_validate_raises_before_training_naming_the_file(corpus, case, tmp_path):
    root, bad = folder_with(corpus, case, tmp_path)
    with pytest.raises(ValidationError) as err:
        make(root, validate=True)
    assert bad in str(err.value) or os.path.basename(bad) in str(err.value)


@pytest.mark.parametrize("case", BAD)
def test_skip_leaves_the_file_out_with_one_warning(corpus, case, tmp_path):
    root, bad = folder_with(corpus, case, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ld = make(root, on_error="skip")
    msgs = [str(w.message) for w in caught if issubclass(w.category, BadFilesWarning)]
    assert len(msgs) == 1 and os.path.basename(bad) in msgs[0] and "1 of 4" in msgs[0]
    assert len(ld.source) == 3
    assert all_ids(ld) == [0, 0, 0]


@pytest.mark.parametrize("case", ["zero_bytes", "truncated_jpeg", "random_bytes", "text_named_jpg",
                                  "truncated_png", "broken_symlink", "bomb", "zero_width_png"])
def test_without_validation_the_batch_error_names_the_file_and_a_new_loader_goes_on(corpus, case, tmp_path, device):
    root, bad = folder_with(corpus, case, tmp_path)
    with pytest.raises(BadDataError) as err:
        ld = make(root, device)
        for _ in range(2):
            all_ids(ld)
    assert os.path.basename(bad) in str(err.value)
    ld = make(root, device, on_error="skip")  # the process is fine: build a new loader and go on
    assert all_ids(ld) == [0, 0, 0]


@pytest.mark.parametrize("case", badfiles.VALID_ODD_CASES)
def test_valid_odd_files_are_decoded_not_rejected(corpus, case, tmp_path, device):
    root, _ = folder_with(corpus, case, tmp_path)
    for train in (True, False):
        ld = make(root, device, validate=True, train=train)
        seen = []
        for b in ld:
            x = b[0]["data"]
            assert x.shape[1:] == (3, 32, 32) and torch.isfinite(x).all()
            seen += b[0]["label_index"].tolist()
        assert sorted(seen) == [0, 0, 0, 1]


def test_empty_class_folder_warns_and_empty_root_raises(corpus, tmp_path):
    root, _ = folder_with(corpus, "valid_0", tmp_path)
    (pathlib.Path(root) / "c_empty").mkdir()
    with pytest.warns(UserWarning, match="c_empty"):
        ld = make(root)
    assert ld.num_classes == 3 and all_ids(ld) == [0, 0, 0, 1]
    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        make(str(empty))


def test_bad_on_error_value(tmp_path, corpus):
    root, _ = folder_with(corpus, "valid_0", tmp_path)
    with pytest.raises(ValueError, match="on_error"):
        make(root, on_error="ignore")
    with pytest.raises(TypeError, match="validate"):
        make(root, validate="yes")
