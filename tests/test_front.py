"""The one loader front: every kind takes the shared options under the same names and defaults,
resolves them in one place, and the iterator knows no kind. (The behaviours every kind shares —
shards under torchrun, resume, bad files, policies — are in tests/test_contract.py.)"""

import inspect
import subprocess
import sys

import pytest

from dali_mixup import build_loader, create_audio_loader, create_detection_loader, create_loader, create_volume_loader
from dali_mixup.front import KINDS, kind_of
from dali_mixup.options import SHARED_DEFAULTS, LastBatch, LoaderOptions

CREATE = {"image": create_loader, "audio": create_audio_loader, "detection": create_detection_loader,
          "volume": create_volume_loader}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_takes_the_shared_options_with_the_same_defaults(kind):
    params = inspect.signature(CREATE[kind]).parameters
    for name, default in SHARED_DEFAULTS.items():
        assert name in params, f"{kind}: no {name}"
        assert params[name].default == default, (kind, name, params[name].default)
    assert kind_of(kind).name == kind


def test_every_kind_is_a_create_function():
    assert set(CREATE) == set(KINDS)


def test_an_unknown_kind_is_named():
    with pytest.raises(ValueError, match="kind must be one of image, audio, detection, volume; got 'text'"):
        build_loader("text", batch_size=2)


def test_shared_options_follow_torchrun_global_rank_and_local_rank(monkeypatch):
    # the second node of two, 2 processes each: global rank 3 of 4, local rank 1 of 2
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    opts = LoaderOptions.resolve(default_validate=False, device="cpu")
    assert (opts.shard_id, opts.num_shards, opts.device_id, opts.num_threads) == (3, 4, 1, 8)
    assert opts.dali_device_id is None  # the CPU pipeline gets no CUDA device
    assert opts.last_batch_policy is LastBatch.PARTIAL and opts.validate is False


@pytest.mark.parametrize("bad, error, match", [
    (dict(shard_id=2, num_shards=2), ValueError, "shard_id must be < num_shards"),
    (dict(num_shards=0), ValueError, "num_shards"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(last_batch_policy="sometimes"), ValueError, "last_batch_policy"),
    (dict(on_error="ignore"), ValueError, "on_error"),
    (dict(validate="yes"), TypeError, "validate"),
    (dict(device="tpu"), ValueError, "device"),
    (dict(prefetch_queue_depth=0), ValueError, "prefetch_queue_depth"),
])
def test_a_bad_shared_option_is_named_once_for_all_kinds(bad, error, match):
    with pytest.raises(error, match=match):
        LoaderOptions.resolve(default_validate=True, **bad)


def test_the_iterator_imports_no_kind():
    code = ("import sys, dali_mixup.iterator\n"
            "print(sorted(m for m in sys.modules if m in ('dali_mixup.sources', 'dali_mixup.kinds.image_scan', "
            "'dali_mixup.kinds.image', 'dali_mixup.kinds.image_pipeline', 'dali_mixup.kinds.audio', 'dali_mixup.kinds.detection', "
            "'dali_mixup.kinds.volume')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_data_found_while_mixing_leaves_the_iterator_dead(tmp_path):
    """A rule that finds bad data at the batch (a file truncated since the scan, NaN samples)
    raises ``BadDataError``; every later ``next()`` raises it again, as for DALI's own errors."""
    from images import unique_class_set

    from dali_mixup.fields import SoftTarget
    from dali_mixup.scan import BadDataError

    class Truncated(SoftTarget):
        def prepare(self, name, value):
            raise BadDataError("a.jpg: truncated after the scan")

    ld = create_loader(unique_class_set(str(tmp_path / "data"), 4, odd=False), batch_size=2, image_size=16,
                       device="cpu", num_threads=1)
    ld._mixer.fields["label"] = Truncated(num_classes=4)
    with pytest.raises(BadDataError) as first:
        next(ld)
    with pytest.raises(BadDataError) as again:
        next(ld)
    assert again.value is first.value
