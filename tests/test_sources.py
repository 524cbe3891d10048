"""What a data source resolves to: every real file once, with its label; bad layouts, lists and
shards named in the error."""

import os
import warnings

import pytest

from dali_mixup.sources import resolve_source
from images import write_image, write_tar


def folder(tmp_path, per_class=2, classes=("a", "b")):
    root = tmp_path / "root"
    for c in classes:
        for i in range(per_class):
            write_image(str(root / c / f"{i}.jpg"), 8, 8, seed=i)
    return root


def test_symlink_loops_are_read_once_with_a_warning(tmp_path):
    root = folder(tmp_path)
    os.symlink(".", root / "a" / "self")
    os.symlink("..", root / "b" / "loop_up")
    with pytest.warns(UserWarning, match="symbolic link"):
        src = resolve_source(root)
    assert len(src.files) == 4 and len(set(map(os.path.realpath, src.files))) == 4
    assert [src.labels[i] for i, f in enumerate(src.files) if "/a/" in f] == [0, 0]


def test_a_link_to_another_folder_is_followed(tmp_path):
    root = folder(tmp_path)
    extra = tmp_path / "extra"
    write_image(str(extra / "x.jpg"), 8, 8, seed=9)
    os.symlink(extra, root / "b" / "more")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        src = resolve_source(root)
    assert len(src.files) == 5 and src.labels[src.files.index(str(root / "b" / "more" / "x.jpg"))] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_an_unreadable_class_folder_is_an_error(tmp_path):
    root = folder(tmp_path)
    os.chmod(root / "b", 0)
    try:
        with pytest.raises(ValueError, match="not readable"):
            resolve_source(root)
    finally:
        os.chmod(root / "b", 0o755)


def test_an_unreadable_class_folder_is_an_error_as_root_too(tmp_path, monkeypatch):
    """As root (CI) permissions do not bite: the access check is what is tested."""
    root = folder(tmp_path)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p).endswith("/b") else real(p, m))
    with pytest.raises(ValueError, match=r"/b' is not readable \(permission denied\)"):
        resolve_source(root)


def test_file_list_repeats_warn_and_conflicting_labels_fail(tmp_path):
    folder(tmp_path)
    fl = tmp_path / "list.txt"
    fl.write_text("root/a/0.jpg 0\nroot/a/0.jpg 0\nroot/a/0.jpg 0\nroot/b/1.jpg 1\n")
    with pytest.warns(UserWarning, match=r"lines 1 and 2"):
        assert len(resolve_source(file_list=fl).files) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(resolve_source(file_list=fl, allow_repeats=True).files) == 4
    fl.write_text("root/a/0.jpg 0\nroot/a/0.jpg 2\n")
    with pytest.raises(ValueError, match=r"list.txt:2: 'root/a/0.jpg' is listed with label 2 here and with label 0 on line 1"):
        resolve_source(file_list=fl)


def test_file_list_encoding_bom_and_absurd_labels(tmp_path):
    folder(tmp_path)
    fl = tmp_path / "list.txt"
    fl.write_bytes(b"\xef\xbb\xbfroot/a/0.jpg 0\nroot/b/0.jpg 1\n")
    assert resolve_source(file_list=fl).files[0].endswith("root/a/0.jpg")  # the BOM is not part of the path
    fl.write_bytes(b"root/a/0.jpg 0\nroot/b/caf\xe9.jpg 1\n")
    with pytest.raises(ValueError, match=r"list.txt:2: not UTF-8"):
        resolve_source(file_list=fl)
    fl.write_text("root/a/0.jpg 99999999999\n")
    with pytest.raises(ValueError, match=r"list.txt:1: label 99999999999"):
        resolve_source(file_list=fl)


def test_an_image_given_as_a_file_list_says_so(tmp_path):
    root = folder(tmp_path)
    with pytest.raises(ValueError, match="is an image, not a data set"):
        resolve_source(file_list=root / "a" / "0.jpg")


def _shard(path, n=3):
    return write_tar(path, [(f"{i:04d}.{ext}", data) for i in range(n)
                            for ext, data in (("jpg", b"\xff\xd8" + bytes(600)), ("cls", str(i).encode()))])


@pytest.mark.parametrize("num_classes", [None, 3])
def test_a_truncated_shard_is_named(tmp_path, num_classes):
    p = _shard(str(tmp_path / "s.tar"))
    data = open(p, "rb").read()
    open(p, "wb").write(data[:1800])
    with pytest.raises(ValueError, match=r"s.tar' is damaged after member"):
        resolve_source(shards=p, num_classes=num_classes)


def test_a_shard_label_outside_num_classes_names_shard_and_sample(tmp_path):
    jpg = b"\xff\xd8" + bytes(600)
    good = write_tar(tmp_path / "a.tar", [("x/0.jpg", jpg), ("x/0.cls", b"1")])
    bad = write_tar(tmp_path / "b.tar", [("y/0.jpg", jpg), ("y/0.cls", b"2"), ("y/1.jpg", jpg), ("y/1.cls", b"7")])
    with pytest.raises(ValueError, match=r"b.tar: member 'y/1.cls' has label 7, outside \[0, num_classes=3\)"):
        resolve_source(shards=[good, bad], num_classes=3)
    assert resolve_source(shards=[good, bad]).num_classes == 8  # counted, not checked, without num_classes
    assert resolve_source(shards=[good, bad], num_classes=8).num_classes == 8
    text = write_tar(tmp_path / "c.tar", [("z/0.jpg", jpg), ("z/0.cls", b"cat")])
    with pytest.raises(ValueError, match=r"c.tar: member 'z/0.cls' is not an ASCII integer"):
        resolve_source(shards=text, num_classes=3)


def test_warnings_point_at_the_users_line(tmp_path):
    """A finding made deep in the library is reported at the caller's line, not inside dali_mixup."""
    from dali_mixup import create_loader
    from dali_mixup.scan import BadFilesWarning

    root = folder(tmp_path, per_class=3)
    os.symlink(".", root / "a" / "self")
    (root / "b" / "bad.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning) as record:
        create_loader(root, batch_size=2, image_size=8, device="cpu", num_threads=1, on_error="skip")
    kinds = {type(w.message) for w in record}
    assert BadFilesWarning in kinds and UserWarning in kinds
    assert all(w.filename == __file__ for w in record), [(w.filename, w.lineno) for w in record]


def test_every_sample_kind_reads_folders_the_same_way(tmp_path):
    """Audio and volume folders go through the same walk: a loop is read once there too."""
    from dali_mixup.sources import folder_source

    root = tmp_path / "clips"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "x.wav").write_bytes(b"RIFF")
    os.symlink(".", root / "a" / "self")
    with pytest.warns(UserWarning, match="symbolic link"):
        src = folder_source(str(root), extensions=(".wav",))
    assert [os.path.basename(f) for f in src.files] == ["x.wav", "x.wav"] and src.labels == (0, 1)
    with pytest.raises(ValueError, match=r"no files with extensions \('.npy',\)"):
        folder_source(str(root), extensions=(".npy",))
