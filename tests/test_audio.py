"""The audio loader on DALI's CPU backend, with tones, chirps and noise the tests write (WAV, FLAC)."""

import os
import struct
import warnings

import numpy as np
import pytest
import torch
from audio_data import class_clips, clip, unique_clips, write

from dali_mixup import MixupConfig, MixupParams, mix_images, mix_targets
from dali_mixup.kinds.audio import LogMel, LogMelConfig, MultiHotTarget, create_audio_loader, scan_audio_file
from dali_mixup.scan import BadDataError, BadFilesWarning, ProblemKind, ValidationError

N = 11  # one clip per class: label_index identifies the clip
RATE, SECONDS = 8000, 0.25  # 2000 samples per clip
FEAT = dict(n_fft=256, hop_length=128, n_mels=32)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return unique_clips(str(tmp_path_factory.mktemp("clips")), N)


def loader(root=None, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("sample_rate", RATE)
    kw.setdefault("duration", SECONDS)
    kw.setdefault("device", "cpu")
    kw.setdefault("num_threads", 2)
    for k, v in FEAT.items():
        kw.setdefault(k, v)
    return create_audio_loader(root, **kw)


def epoch(ld, key="label_index"):
    batches = [b[0] for b in ld]
    return [i for b in batches for i in b[key].tolist()], [b["label"].shape[0] for b in batches]


def test_partial_every_clip_once_per_epoch_and_shapes(root):
    ld = loader(root, mixup=MixupConfig(alpha=0.4), seed=1)
    assert len(ld) == 3 and ld.num_classes == N
    orders = []
    for _ in range(2):
        ids, sizes = epoch(ld)
        assert sorted(ids) == list(range(N)) and sizes == [4, 4, 3]
        orders.append(ids)
    assert orders[0] != orders[1]
    b = next(iter(ld))[0]
    assert b["audio"].shape == (4, 2000) and b["audio"].dtype == torch.float32
    assert b["features"].shape == (4, 32, 1 + 2000 // 128)
    assert b["features"].max() <= 0 and b["features"].min() >= -80
    torch.testing.assert_close(b["label"].sum(1), torch.ones(4))


@pytest.mark.parametrize("num_shards", [2, 3])
def test_shards_are_disjoint_and_cover_the_set(root, num_shards):
    seen, lengths = [], set()
    for shard in range(num_shards):
        ld = loader(root, shard_id=shard, num_shards=num_shards, seed=3, features=None)
        seen += epoch(ld)[0]
        lengths.add(len(ld))
    assert sorted(seen) == list(range(N)) and len(lengths) == 1


def test_same_seed_same_batches(root):
    def run(seed):
        ld = loader(root, mixup=MixupConfig(alpha=0.4, mode="elem"), seed=seed, features=None)
        return [(b[0]["audio"].clone(), b[0]["label"].clone()) for _ in range(2) for b in ld]

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(x, y) and torch.equal(s, t) for (x, s), (y, t) in zip(a, b))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, c))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_mixed_waveforms_are_lam_a_plus_one_minus_lam_b(root, eps):
    cfg = MixupConfig(alpha=1.0, mode="elem", label_smoothing=eps)
    mixed, plain = loader(root, mixup=cfg, seed=7), loader(root, mixup=None, seed=7)  # same windows
    for m, p in zip(mixed, plain):
        m, p = m[0], p[0]
        lam, perm = m["lam"], m["perm"]
        assert torch.equal(m["label_index"], p["label_index"])
        want = lam[:, None] * p["audio"] + (1 - lam[:, None]) * p["audio"][perm]
        torch.testing.assert_close(m["audio"], want, rtol=0, atol=1e-6)
        assert torch.equal(m["audio"], mix_images(p["audio"], MixupParams(lam, perm)))
        assert torch.equal(m["label"], mix_targets(p["label_index"], MixupParams(lam, perm), N, eps))
        assert (lam < 1).any()


def test_features_are_computed_after_mixing_and_match_dali(root):
    cfg = MixupConfig(alpha=1.0, mode="elem")
    mixed = loader(root, mixup=cfg, seed=11)
    logmel = LogMel(LogMelConfig(RATE, **FEAT))
    for m in mixed:
        m = m[0]
        assert torch.equal(m["features"], logmel(m["audio"]))  # the log-mel OF the mixed waveform
    # the torch twin equals DALI's operators: unmixed clips, features from the torch twin vs the pipeline
    twin = loader(root, mixup=None, seed=12, train=False)
    dali = loader(root, mixup=None, seed=12, train=False, mix_stage="features")
    for t, d in zip(twin, dali):
        t, d = t[0], d[0]
        assert torch.equal(t["label_index"], d["label_index"])
        loud = d["features"] > -60  # dB: FFT rounding weighs more in quiet cells (measured 1.6e-4 / 2.9e-3 dB)
        torch.testing.assert_close(t["features"][loud], d["features"][loud], rtol=0, atol=2e-4)
        torch.testing.assert_close(t["features"][~loud], d["features"][~loud], rtol=0, atol=5e-3)


def test_features_stage_mixes_the_log_mels(root):
    cfg = MixupConfig(alpha=1.0, mode="elem")
    mixed = loader(root, mixup=cfg, seed=13, mix_stage="features")
    plain = loader(root, mixup=None, seed=13, mix_stage="features")
    for m, p in zip(mixed, plain):
        m, p = m[0], p[0]
        assert "audio" not in m
        assert torch.equal(m["features"], mix_images(p["features"], MixupParams(m["lam"], m["perm"])))


def test_validation_centre_window_and_padding(tmp_path):
    long = clip("tone", 0, 0.5, RATE)[:, 0]  # 4000 samples: the centre 2000 are kept
    short = clip("chirp", 1, 0.1, RATE)[:, 0]  # 800 samples: centred in 2000 zeros
    write(str(tmp_path / "a" / "long.wav"), long, RATE)
    write(str(tmp_path / "b" / "short.flac"), short, RATE)
    ld = loader(str(tmp_path), train=False, features=None, batch_size=2)
    b = next(iter(ld))[0]
    q = 2 ** -15  # PCM_16
    torch.testing.assert_close(b["audio"][0], torch.from_numpy(long[1000:3000]), rtol=0, atol=q)
    want = np.zeros(2000, np.float32)
    want[600:1400] = short
    torch.testing.assert_close(b["audio"][1], torch.from_numpy(want), rtol=0, atol=q)
    assert b["lam"].eq(1).all()  # validation never mixes


def test_resample_and_downmix(tmp_path):
    stereo = clip("tone", 2, 0.5, 16000, channels=2)  # right channel at half the level
    write(str(tmp_path / "a" / "x.wav"), stereo, 16000)
    b = next(iter(loader(str(tmp_path), train=False, features=None, batch_size=1, duration=0.5)))[0]
    assert b["audio"].shape == (1, 4000)  # 0.5 s at 8 kHz
    t = np.arange(4000) / RATE
    want = 0.75 * 0.5 * np.sin(2 * np.pi * 500.0 * t)  # mean of the channels, 500 Hz survives resampling
    err = np.abs(b["audio"][0].numpy() - want)[200:-200]
    assert err.max() < 0.02


def test_resume_repeats_nothing_and_loses_nothing(root):
    cfg = MixupConfig(alpha=0.4)
    ld = loader(root, mixup=cfg, seed=21, features=None, auto_reset=True)
    it = iter(ld)
    next(it)
    state = ld.state_dict()
    rest = [(b[0]["audio"].clone(), b[0]["label_index"].clone()) for b in [next(it), next(it)]]
    again = loader(root, mixup=cfg, seed=21, features=None, auto_reset=True)
    again.load_state_dict(state)
    got = [(b[0]["audio"], b[0]["label_index"]) for b in [next(again), next(again)]]
    for (a, i), (b, j) in zip(rest, got):
        assert torch.equal(a, b) and torch.equal(i, j)
    with pytest.raises(ValueError, match="seed"):
        loader(root, mixup=cfg, seed=22, features=None).load_state_dict(state)


# --- bad files ----------------------------------------------------------------------------


def _wav_bytes(tmp_path, frames=800):
    p = write(str(tmp_path / "tmp" / "x.wav"), clip("tone", 0, frames / RATE, RATE), RATE)
    return open(p, "rb").read()


def _bad_files(tmp_path):
    raw = _wav_bytes(tmp_path)
    d = tmp_path / "data" / "bad"
    d.mkdir(parents=True)
    mp3 = bytearray(raw)
    mp3[20:22] = struct.pack("<H", 0x55)  # WAV whose codec is MPEG layer 3
    files = {
        "empty.wav": b"",
        "truncated.wav": raw[: len(raw) // 2],
        "text.wav": b"labelled by hand, see the spreadsheet\n",
        "mp3codec.wav": bytes(mp3),
        "zero.wav": raw[:40] + struct.pack("<I", 0),  # a data chunk of 0 bytes
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    good = tmp_path / "data" / "good"
    for i in range(3):
        write(str(good / f"{i}.wav"), clip("noise", i, 0.3, RATE), RATE)
    return str(tmp_path / "data"), {str(d / n) for n in files}


def test_scan_names_each_kind(tmp_path):
    root, _ = _bad_files(tmp_path)
    kinds = {n: scan_audio_file(os.path.join(root, "bad", n)) for n in os.listdir(os.path.join(root, "bad"))}
    assert kinds["empty.wav"].kind is ProblemKind.EMPTY
    assert kinds["truncated.wav"].kind is ProblemKind.TRUNCATED
    assert kinds["text.wav"].kind is ProblemKind.TEXT
    assert kinds["mp3codec.wav"].kind is ProblemKind.UNSUPPORTED_FORMAT and "MP3" in kinds["mp3codec.wav"].reason
    assert kinds["zero.wav"].kind is ProblemKind.ZERO_SIZE
    for p in os.listdir(os.path.join(root, "good")):
        assert scan_audio_file(os.path.join(root, "good", p)) is None
    flac = write(str(tmp_path / "f" / "x.flac"), clip("tone", 0, 0.2, RATE), RATE)
    assert scan_audio_file(flac) is None
    open(flac + ".cut.flac", "wb").write(open(flac, "rb").read()[:42])  # metadata only, no frames
    assert scan_audio_file(flac + ".cut.flac").kind is ProblemKind.TRUNCATED


def test_bad_files_raise_naming_them_or_are_skipped_with_a_warning(tmp_path):
    root, bad = _bad_files(tmp_path)
    with pytest.raises(ValidationError) as e:
        loader(root, features=None)
    assert {p.path for p in e.value.problems} == bad
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ld = loader(root, features=None, on_error="skip", batch_size=2)
    assert sum(issubclass(w.category, BadFilesWarning) for w in caught) == 1
    assert len(ld.source.files) == 3 and not bad & set(ld.source.files)
    assert sum(b[0]["label"].shape[0] for b in ld) == 3


def test_without_the_scan_a_decode_error_names_the_file(tmp_path):
    root, bad = _bad_files(tmp_path)
    with pytest.raises(BadDataError) as e:  # DALI fails while preparing the first batches
        for _ in loader(root, features=None, validate=False, batch_size=8, train=False):
            pass
    assert all(os.path.basename(p) in str(e.value) for p in bad)


# --- multi-label and options --------------------------------------------------------------


@pytest.mark.parametrize("mix", ["weighted", "union"])
def test_multi_label_targets(tmp_path, mix):
    sets = [(0,), (1, 2), (2,), (0, 3), (1,)]
    lines = []
    for i, s in enumerate(sets):
        write(str(tmp_path / f"{i}.wav"), clip("tone", i, 0.3, RATE), RATE)
        lines.append(f"{i}.wav {','.join(map(str, s))}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    cfg = MixupConfig(alpha=1.0, mode="elem")
    ld = loader(file_list=str(tmp_path / "list.txt"), multi_label=mix, mixup=cfg, seed=3, features=None,
                batch_size=5)
    b = next(iter(ld))[0]
    hot, lam, perm = b["label_hot"], b["lam"][:, None], b["perm"]
    assert hot.sum().item() == sum(len(s) for s in sets)  # each clip's own set, once
    want = lam * hot + (1 - lam) * hot[perm] if mix == "weighted" else torch.where(
        lam < 1, torch.maximum(hot, hot[perm]), hot)
    torch.testing.assert_close(b["label"], want)
    rule = MultiHotTarget(tuple(sets), 4, mix, label_smoothing=0.2)
    out = rule.apply("label", rule.prepare("label", torch.tensor([[1]])), MixupParams.identity(1))["label"]
    torch.testing.assert_close(out, torch.tensor([[0.1, 0.9, 0.9, 0.1]]))


def test_class_folders_make_classes(tmp_path):
    root = class_clips(str(tmp_path), 2)
    ld = loader(root, mixup=MixupConfig(alpha=0.4), seed=0, batch_size=3)
    assert ld.classes == ("chirp", "noise", "tone")
    assert sorted(epoch(ld)[0]) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(sample_rate="8k"), TypeError, "sample_rate"),
    (dict(duration=0), ValueError, "duration"),
    (dict(n_mels=0), ValueError, "n_mels"),
    (dict(top_db=-1.0), ValueError, "top_db"),
    (dict(mix_stage="spectrum"), ValueError, "mix_stage"),
    (dict(features=None, mix_stage="features"), ValueError, "mix_stage"),
    (dict(features="mfcc"), ValueError, "features"),
    (dict(multi_label="max"), ValueError, "multi_label"),
    (dict(multi_label="union"), ValueError, "file_list"),
    (dict(mixup=MixupConfig(alpha=0.4, cutmix_alpha=1.0)), ValueError, "CutMix"),
    (dict(duration=0.01), ValueError, "n_fft"),
    (dict(label_smoothing=1.0), ValueError, "label_smoothing"),
    (dict(on_error="ignore"), ValueError, "on_error"),
])
def test_bad_arguments_name_the_argument(root, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        loader(root, **kwargs)


@pytest.mark.gpu
def test_gpu_loader_matches_the_cpu_twin(root):
    cfg = MixupConfig(alpha=1.0, mode="elem")
    g = next(iter(loader(root, mixup=cfg, seed=31, device="gpu")))[0]
    c = next(iter(loader(root, mixup=cfg, seed=31, device="cpu")))[0]
    assert g["features"].is_cuda and g["audio"].is_cuda
    torch.testing.assert_close(g["audio"].cpu(), c["audio"], rtol=0, atol=1e-6)
    torch.testing.assert_close(g["features"].cpu(), c["features"], rtol=0, atol=1e-2)
