"""WebDataset errors name the shard and the sample (issue 18, case 14): a truncated tar up front
(``tests/test_sources.py``), a label outside ``num_classes`` up front, and a member DALI cannot
decode ("nvImageCodec failure: '#4'") named by the iterator's diagnosis as ``shard:key.ext``."""


import pytest

from dali_mixup.scan import BadDataError, ProblemKind
from dali_mixup.kinds.image_scan import diagnose_shards, scan_shards
from images import write_image, write_tar


@pytest.fixture
def jpeg(tmp_path):
    write_image(str(tmp_path / "ok.jpg"), 16, 16, seed=1)
    return (tmp_path / "ok.jpg").read_bytes()


@pytest.fixture
def shards(tmp_path, jpeg):
    good = write_tar(tmp_path / "good.tar", [(f"g{i}.{e}", d) for i in range(4) for e, d in (("jpg", jpeg), ("cls", b"1"))])
    bad = write_tar(tmp_path / "bad.tar", [
        ("s0.jpg", jpeg), ("s0.cls", b"0"),
        ("s1.jpg", b"hello, this is text"), ("s1.cls", b"1"),
        ("s2.jpg", jpeg), ("s2.cls", b"2"),
        ("dir/s3.jpg", jpeg[: len(jpeg) // 2] + bytes(100)), ("dir/s3.cls", b"1"),
    ])
    return good, bad


def test_scan_shards_names_each_bad_member(shards):
    good, bad = shards
    assert scan_shards([good]) == []
    found = {p.path: p.kind for p in scan_shards([good, bad], num_classes=2)}
    assert found == {f"{bad}:s1.jpg": ProblemKind.TEXT, f"{bad}:dir/s3.jpg": ProblemKind.CORRUPT_HEADER,
                     f"{bad}:s2.cls": ProblemKind.CORRUPT_HEADER}


def test_diagnose_shards_keeps_dalis_cause(shards):
    err = RuntimeError("Critical error in pipeline:\nError in CPU operator\n\nencountered:\n\n"
                       "nvImageCodec failure: '#4'\nCurrent pipeline object is no longer valid.")
    e = diagnose_shards(err, list(shards))
    assert isinstance(e, BadDataError) and "(nvImageCodec failure: '#4')" in str(e)
    assert f"{shards[1]}:s1.jpg" in str(e) and f"{shards[0]}:" not in str(e)
    clean = diagnose_shards(err, [shards[0]])
    assert "finds no bad member" in str(clean)


def test_a_corrupt_member_is_named_by_the_loader(shards):
    pytest.importorskip("nvidia.dali")
    import dali_mixup

    ld = dali_mixup.create_loader(shards=list(shards), batch_size=4, image_size=16, device="cpu", num_classes=3,
                                  train=False, num_threads=1)
    with pytest.raises(BadDataError) as e:
        for _ in ld:
            pass
    msg = str(e.value)
    assert f"{shards[1]}:s1.jpg: text file" in msg and f"{shards[1]}:dir/s3.jpg" in msg, msg
    with pytest.raises(BadDataError):  # the iterator stays dead
        next(ld)
