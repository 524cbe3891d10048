"""Audio: a DALI pipeline for speech and sound clips with mixup on waveforms or log-mels.

Clips (WAV, FLAC, OGG Vorbis/Opus: what ``fn.decoders.audio`` decodes) are read from class
folders or a file list, decoded to mono (channels averaged), resampled to ``sample_rate``,
cropped or padded to ``duration`` seconds (a random window in training, the centre for
validation) and, optionally, turned into log-mel spectrograms on the pipeline's device
(``fn.spectrogram`` -> ``fn.mel_filter_bank`` -> ``fn.to_decibels``). The iterator is the
project's ``DALIMixupIterator``; audio adds rules (``dali_mixup.fields``) and a pipeline:

* ``MixStage.FEATURES``: the pipeline computes the log-mels; ``Blend`` mixes them
  (``λ·F[i] + (1−λ)·F[perm[i]]`` on the dB values, as filterbank recipes do).
* ``MixStage.WAVEFORM``: the pipeline hands out the cropped waveform; ``BlendThenLogMel``
  mixes the waveforms (``λ·a + (1−λ)·b``) and then computes the log-mels *of the mixed
  waveform* in torch, on the batch's device. Mixing needs the whole batch (partners), which a
  DALI graph does not see per sample, so the features of a mixed clip cannot come from the
  pipeline; ``LogMel`` is a torch twin of DALI's three operators: the same periodic Hann
  window (handed to ``fn.spectrogram`` as ``window_fn``), DALI's own mel matrix (read once
  from ``fn.mel_filter_bank`` applied to an identity spectrogram) and DALI's decibel formula.
  On clips of the tests it equals the pipeline's features within 2e-4 dB in cells above −60 dB
  and 5e-3 dB below (measured up to 1.6e-4 and 2.9e-3 dB: float32 FFTs differ in the last bits,
  which weigh more in quiet cells); ``tests/test_audio.py`` holds it to that.

Targets: ``SoftTarget`` (class ids, label smoothing) or, for multi-label data
(``multi_label=``), ``MultiHotTarget``: each clip's label set as a multi-hot row, combined
λ-weighted (``λ·y[i] + (1−λ)·y[perm[i]]``: PANNs' mixup) or by union (``max(y[i], y[perm[i]])``
for every mixed sample: both sounds are in the mix, as AudioSet recipes that treat a mixed clip
as containing both label sets do).

Bad files: ``fn.decoders.audio`` decodes a truncated WAV without complaint (the samples that are
there) and a WAV with no samples as an empty clip (which the crop would pad to silence), so the
loader scans every file's header up front by default (``scan_audio_file``; a few hundred bytes
per file): missing, 0-byte, text named ``.wav``, unknown or unsupported format (MP3, AAC/MP4,
AIFF, a WAV whose codec is not one libsndfile decodes), malformed header, truncated data chunk,
no samples. ``on_error="raise"`` names them all; ``"skip"`` leaves them out with one warning.
What the scan cannot see (damage inside FLAC/OGG frames) DALI reports at the batch; the error
then names the file. A float WAV can hold NaN or inf samples, which mixing would spread to the
partner's clip (and ``to_decibels`` would turn into flat silence): ``check_values=True`` reads
every float WAV in full up front and refuses (or skips) them; without it each batch is checked
(the sum of every served window, computed in the pipeline on the CPU: no device sync; about 10 %
of the loader's CPU throughput on 1 s clips) and a non-finite clip is a ``BadDataError`` naming
the file (found then by a value scan).

Example:
    >>> loader = create_audio_loader("clips/", batch_size=32, sample_rate=16000, duration=1.0,
    ...                              mixup=MixupConfig(alpha=0.4), mix_stage="waveform")
    >>> for batch in loader:                                 # doctest: +SKIP
    ...     x, y = batch[0]["features"], batch[0]["label"]  # (N, n_mels, T) dB, (N, C)

mixup: Zhang et al., ICLR 2018, https://arxiv.org/abs/1710.09412; for audio tagging, Kong et
al., "PANNs", https://arxiv.org/abs/1912.10211.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..checks import check_bool, check_choice, check_int, check_num_classes, check_real, resolve_num_classes
from ..config import MixupConfig
from ..constants import PREFETCH_QUEUE_DEPTH, READER_NAME
from ..fields import Blend, Rule, SoftTarget
from ..front import Kind, build_loader
from ..options import LoaderOptions
from ..sources import Source, SourceKind, folder_source, numbered_classes, parse_file_list
from ..scan import (BadDataError, Problem, ProblemKind, _text_reason, bad_data_error, filter_paths, scan_path,
                   scan_paths)

__all__ = [
    "AUDIO_EXTENSIONS", "AudioSpec", "BlendThenLogMel", "FiniteClips", "LogMel", "LogMelConfig",
    "MixStage", "MultiHotTarget", "MultiLabelMix", "audio_pipeline", "create_audio_loader", "filter_audio_files",
    "resolve_audio_source", "scan_audio_file", "scan_audio_files",
]

#: what a class folder contributes: the containers ``fn.decoders.audio`` decodes
AUDIO_EXTENSIONS = (".flac", ".oga", ".ogg", ".opus", ".wav")
#: longest clip accepted, in seconds (a typo such as duration=16000 would be 4 GB per batch)
MAX_DURATION = 3600.0


class MixStage(str, enum.Enum):
    """Where mixup happens.

    * ``WAVEFORM``: on the cropped waveforms; log-mels (if any) are computed after mixing, from
      the mixed waveform (``BlendThenLogMel``).
    * ``FEATURES``: on the log-mel spectrograms the pipeline computed (dB values).

    Worked example, λ = 0.7, clips a and b: ``WAVEFORM`` gives ``logmel(0.7·a + 0.3·b)``,
    ``FEATURES`` gives ``0.7·logmel(a) + 0.3·logmel(b)``.
    """

    WAVEFORM = "waveform"
    FEATURES = "features"


class MultiLabelMix(str, enum.Enum):
    """How two multi-hot label sets combine. Worked example, λ = 0.7, y[i] = {dog},
    y[perm[i]] = {dog, rain}: ``WEIGHTED`` gives dog 1.0, rain 0.3; ``UNION`` gives dog 1.0,
    rain 1.0 (a sample left unmixed, λ = 1, keeps its own set in both)."""

    WEIGHTED = "weighted"
    UNION = "union"


# --- features ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMelConfig:
    """Log-mel spectrogram options (checked when made).

    Args:
        sample_rate: Hz of the waveform.
        n_fft: FFT size; also the window length.
        hop_length: samples between frames.
        n_mels: mel bands.
        f_min, f_max: band edges in Hz (``f_max`` ``None``: ``sample_rate / 2``).
        top_db: dynamic range kept below each clip's maximum: values are
            ``10·log10(max(mel / max(mel), 10^(−top_db/10)))``, in [−top_db, 0] dB.

    The spectrogram is the power (``|STFT|²``) of frames centred on multiples of
    ``hop_length`` (reflect padding), a periodic Hann window; the mel bank is Slaney's with
    area-normalised filters (librosa's default). Output ``(n_mels, 1 + L // hop_length)``.
    """

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: Optional[float] = None
    top_db: float = 80.0

    def __post_init__(self):
        check_int("sample_rate", self.sample_rate, 1000, 384000)
        check_int("n_fft", self.n_fft, 2, 1 << 16)
        check_int("hop_length", self.hop_length, 1, 1 << 16)
        check_int("n_mels", self.n_mels, 1, 1024)
        nyquist = self.sample_rate / 2
        check_real("f_min", self.f_min, low=0.0, high=nyquist, high_open=True)
        if self.f_max is not None:
            check_real("f_max", self.f_max, low=self.f_min, high=nyquist, low_open=True)
        check_real("top_db", self.top_db, low=0.0, high=400.0, low_open=True)

    @property
    def freq_high(self) -> float:
        return float(self.f_max) if self.f_max is not None else self.sample_rate / 2

    def frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length

    def window(self) -> np.ndarray:
        """The periodic Hann window both sides use (DALI's default differs slightly)."""
        return torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64).numpy().astype(np.float32)


def log_mel_dali(wave, cfg: LogMelConfig, device: str):
    """DALI operators: ``(L,)`` float32 waveform → ``(n_mels, frames)`` log-mel in dB."""
    from nvidia.dali import fn

    spec = fn.spectrogram(wave, device=device, nfft=cfg.n_fft, window_length=cfg.n_fft,
                          window_step=cfg.hop_length, window_fn=cfg.window().tolist(), power=2,
                          center_windows=True, reflect_padding=True, layout="ft")
    mel = fn.mel_filter_bank(spec, device=device, sample_rate=float(cfg.sample_rate), nfilter=cfg.n_mels,
                             freq_low=float(cfg.f_min), freq_high=cfg.freq_high, mel_formula="slaney",
                             normalize=True)
    return fn.to_decibels(mel, device=device, multiplier=10.0, cutoff_db=-float(cfg.top_db))


@functools.lru_cache(maxsize=16)
def dali_mel_matrix(cfg: LogMelConfig) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` float32: DALI's mel filter bank, read from DALI itself (the
    bank applied to an identity spectrogram), so the torch twin uses the very same weights."""
    from nvidia.dali import fn, pipeline_def

    bins = cfg.n_fft // 2 + 1
    eye = np.eye(bins, dtype=np.float32)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def bank():
        x = fn.external_source(source=lambda: [eye], batch=True, layout="ft")
        return fn.mel_filter_bank(x, sample_rate=float(cfg.sample_rate), nfilter=cfg.n_mels,
                                  freq_low=float(cfg.f_min), freq_high=cfg.freq_high, mel_formula="slaney",
                                  normalize=True)

    pipe = bank()
    pipe.build()
    (out,) = pipe.run()
    return np.array(out[0], dtype=np.float32)


class LogMel:
    """Torch twin of ``log_mel_dali`` for a batch: ``(N, L)`` float → ``(N, n_mels, frames)``
    float32 dB, on the input's device (CPU or CUDA; no host sync).

    Args:
        config: a ``LogMelConfig``.
    """

    def __init__(self, config: LogMelConfig):
        if not isinstance(config, LogMelConfig):
            raise TypeError(f"config must be a LogMelConfig, got {type(config).__name__}")
        self.config = config
        self._window = torch.from_numpy(config.window())
        self._mel = torch.from_numpy(dali_mel_matrix(config))
        self._on: Dict[torch.device, Tuple[torch.Tensor, torch.Tensor]] = {}

    def _consts(self, device: torch.device):
        if device not in self._on:
            self._on[device] = (self._window.to(device), self._mel.to(device))
        return self._on[device]

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 2:
            raise ValueError(f"LogMel: waveforms must be (N, L), got shape {tuple(wave.shape)}")
        cfg = self.config
        n, length = wave.shape
        if n == 0:
            return torch.empty((0, cfg.n_mels, cfg.frames(length)), dtype=torch.float32, device=wave.device)
        if length <= cfg.n_fft // 2:
            raise ValueError(f"LogMel: clips of {length} samples are too short for reflect padding of "
                             f"n_fft={cfg.n_fft} (need more than {cfg.n_fft // 2})")
        window, mel = self._consts(wave.device)
        spec = torch.stft(wave.float(), cfg.n_fft, cfg.hop_length, cfg.n_fft, window=window, center=True,
                          pad_mode="reflect", return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (N, bins, frames)
        m = torch.matmul(mel, power)  # (N, n_mels, frames)
        ref = m.amax(dim=(1, 2), keepdim=True)
        floor = 10.0 ** (-cfg.top_db / 10.0)
        # DALI: reference 0 means the sample's maximum; an all-zero clip has ratio 0/0, DALI gives the floor
        ratio = torch.where(ref > 0, m / ref.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(m))
        return 10.0 * torch.log10(ratio.clamp_min(floor))


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlendThenLogMel(Rule):
    """Waveforms ``(N, L)``: mixed as ``Blend`` does, then log-mels of the mixed waveforms.

    Args:
        features: the ``LogMelConfig``.
        features_name: the output field of the log-mels ``(N, n_mels, frames)``.
        keep_waveform: also hand out the mixed waveform under the field's own name.
    """

    features: LogMelConfig
    features_name: str = "features"
    keep_waveform: bool = True
    _logmel: Optional[LogMel] = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.features, LogMelConfig):
            raise TypeError(f"features must be a LogMelConfig, got {type(self.features).__name__}")
        check_bool("keep_waveform", self.keep_waveform)
        if self._logmel is None:
            object.__setattr__(self, "_logmel", LogMel(self.features))

    def outputs(self, name):
        return (self.features_name, name) if self.keep_waveform else (self.features_name,)

    def apply(self, name, value, params):
        mixed = Blend(layout="NCHW").apply(name, value, params)[name]
        out = {self.features_name: self._logmel(mixed)}
        if self.keep_waveform:
            out[name] = mixed
        return out


@dataclass(frozen=True)
class MultiHotTarget(Rule):
    """Multi-label targets: the pipeline's label is a clip's index into ``label_sets``; the
    output is ``(N, C)`` float32 targets combined as ``mix`` says (``MultiLabelMix``), with
    binary label smoothing ε (each target t becomes ``t·(1−ε) + ε/2``).

    Args:
        label_sets: the class ids of each clip, in the source's file order.
        num_classes: C.
        mix: ``MultiLabelMix`` or its value.
        label_smoothing: ε in [0, 1).
        hot_name: output field of the clip's own (unmixed, unsmoothed) multi-hot ``(N, C)``, for
            the two-loss form ``lam·BCE(out, hot) + (1−lam)·BCE(out, hot[perm])``.
    """

    label_sets: Tuple[Tuple[int, ...], ...]
    num_classes: int
    mix: MultiLabelMix = MultiLabelMix.WEIGHTED
    label_smoothing: float = 0.0
    hot_name: str = "label_hot"
    _table: Optional[torch.Tensor] = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "num_classes", check_num_classes("num_classes", self.num_classes))
        object.__setattr__(self, "mix", check_choice("multi_label", MultiLabelMix, self.mix))
        object.__setattr__(self, "label_smoothing", check_real("label_smoothing", self.label_smoothing, low=0.0,
                                                               high=1.0, high_open=True))
        table = torch.zeros((len(self.label_sets), self.num_classes), dtype=torch.float32)
        for i, labels in enumerate(self.label_sets):
            for c in labels:
                if not 0 <= c < self.num_classes:
                    raise ValueError(f"label_sets[{i}]: class {c} is outside [0, num_classes={self.num_classes})")
                table[i, c] = 1.0
        object.__setattr__(self, "_table", table)

    def outputs(self, name):
        return (name, self.hot_name)

    def prepare(self, name, value):
        index = value.reshape(-1).to(torch.int64).cpu()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self.label_sets)):
            raise ValueError(f"field {name!r}: clip indices outside [0, {len(self.label_sets)})")
        return self._table[index]

    def apply(self, name, value, params):
        value = value.to(params.lam.device, non_blocking=True)  # (N, C) rows to the batch's device
        lam = params.lam.unsqueeze(1)
        perm = params.perm
        partner = value[perm]
        if self.mix is MultiLabelMix.WEIGHTED:
            out = lam * value + (1 - lam) * partner
        else:
            out = torch.where(lam < 1, torch.maximum(value, partner), value)
        eps = self.label_smoothing
        if eps:
            out = out * (1 - eps) + eps / 2
        return {name: out, self.hot_name: value}


@dataclass(frozen=True)
class FiniteClips(Rule):
    """The batch's check for non-finite samples: the field holds each served window's sum ``(N,)``
    (computed by the pipeline on the CPU, so the check needs no device sync). A NaN or inf sum is
    a ``BadDataError`` naming the files that hold NaN or inf samples: a value scan of ``files``
    (``scan_audio_files(check_values=True)``), run on that failure only. No output of its own.
    """

    files: Tuple[str, ...] = field(default=(), hash=False, compare=False)

    def outputs(self, name):
        return ()

    def prepare(self, name, value):
        if value.is_cuda or value.numel() != value.shape[0]:
            raise ValueError(f"field {name!r}: one CPU sum per clip expected, got {value.device} tensor of shape "
                             f"{tuple(value.shape)}")
        return value.reshape(-1)

    def apply(self, name, value, params):
        if bool(torch.isfinite(value).all()):
            return {}
        found = [str(p) for p in scan_audio_files(self.files, check_values=True)]
        raise bad_data_error("a served clip holds NaN or inf samples; mixed, they would spread to its partner's "
                             "clip. Build the loader with check_values=True to find such files up front (with "
                             "on_error='skip' to leave them out)", found, "Files holding NaN or inf",
                             "The value scan finds no such file.", skip_hint=False)


# --- sources -------------------------------------------------------------------------------


def resolve_audio_source(root=None, file_list=None, *, multi_label: bool = False, allow_repeats: bool = False
                         ) -> Tuple[Source, Optional[Tuple[Tuple[int, ...], ...]]]:
    """``(Source, label_sets)`` from exactly one of ``root`` (``root/<class>/<clip>``, classes
    sorted by name) and ``file_list``. With ``multi_label`` (file lists only) the source's
    labels are the clips' indices (what the reader hands the ``MultiHotTarget``) and
    ``label_sets`` their class sets; else ``label_sets`` is ``None`` and a line with several
    labels is refused (``dali_mixup.sources.parse_file_list``, the one file-list parser)."""
    given = [n for n, v in (("root", root), ("file_list", file_list)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of root, file_list; got {given or 'none'}")
    if root is not None:
        if multi_label:
            raise ValueError("multi_label needs a file_list ('<path> <l1>,<l2>' lines); class folders give one "
                             "label per clip")
        return folder_source(os.fspath(root), extensions=AUDIO_EXTENSIONS), None
    files, sets = parse_file_list(os.fspath(file_list), multi_label=multi_label, allow_repeats=allow_repeats,
                                  not_a_list=(AUDIO_EXTENSIONS, "an audio clip"))
    classes = numbered_classes(max(max(s) for s in sets) + 1)
    if multi_label:  # the reader's labels are the clips' indices, the MultiHotTarget's keys
        return Source(SourceKind.FILE_LIST, files, tuple(range(len(files))), classes), sets
    return Source(SourceKind.FILE_LIST, files, tuple(s[0] for s in sets), classes), None


# --- the header scan -----------------------------------------------------------------------

_HEAD = 4096
#: WAV codecs libsndfile (DALI's audio decoder) reads: PCM, IEEE float, A-law, µ-law, MS ADPCM,
#: IMA ADPCM, GSM 6.10, G.721/G.723 ADPCM, extensible (its sub-format is checked in turn)
_WAV_CODECS = {1: "PCM", 3: "IEEE float", 6: "A-law", 7: "mu-law", 2: "MS ADPCM", 0x11: "IMA ADPCM",
               0x31: "GSM 6.10", 0x40: "G.721 ADPCM", 0x14: "G.723 ADPCM", 0xFFFE: "extensible"}
_OTHER_CODECS = {0x55: "MPEG layer 3 (MP3)", 0x50: "MPEG", 0xFF: "AAC", 0x1610: "AAC", 0x2000: "AC-3",
                 0x161: "WMA"}


#: float WAV codecs (format tag 3, also as the sub-format of an extensible WAV): read in full
#: by ``check_values``, by bits per sample
_FLOAT_DTYPES = {32: "<f4", 64: "<f8"}


def _nonfinite_wav(f, start: int, length: int, size: int, bits: int):
    """``None``, or the problem of a float WAV's data chunk holding NaN or inf (read in chunks)."""
    dtype = np.dtype(_FLOAT_DTYPES[bits])
    end = size if length == 0xFFFFFFFF else min(size, start + length)
    f.seek(start)
    left = (end - start) // dtype.itemsize
    while left > 0:
        chunk = np.fromfile(f, dtype=dtype, count=min(left, 1 << 20))
        if chunk.size == 0:
            break
        if not np.isfinite(chunk).all():
            return ProblemKind.NON_FINITE, "float WAV holding NaN or inf samples"
        left -= chunk.size
    return None


def _scan_wav(f, size: int, head: bytes, check_values: bool = False):
    if len(head) < 12:
        return ProblemKind.TRUNCATED, f"truncated WAV: {size} bytes, ends inside the RIFF header"
    pos, fmt, data = 12, None, None
    while pos + 8 <= size:
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            break
        cid, length = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        if cid == b"fmt ":
            body = f.read(min(length, 40))
            if length < 16 or len(body) < 16:
                return ProblemKind.CORRUPT_HEADER if length < 16 else ProblemKind.TRUNCATED, \
                    f"malformed WAV: 'fmt ' chunk of {length} bytes, {len(body)} present (16 needed)"
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag == 0xFFFE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the codec
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            data = (pos + 8, length)
            break
        pos += 8 + length + (length & 1)
    if fmt is None:
        if pos + 8 > size:
            return ProblemKind.TRUNCATED, f"truncated WAV: {size} bytes, no 'fmt ' chunk before the end"
        return ProblemKind.CORRUPT_HEADER, "malformed WAV: no 'fmt ' chunk before the data"
    tag, channels, rate, bits = fmt
    if tag not in _WAV_CODECS:
        name = _OTHER_CODECS.get(tag, f"format tag 0x{tag:04X}")
        return ProblemKind.UNSUPPORTED_FORMAT, f"WAV with an unsupported codec: {name}"
    if channels == 0 or rate == 0:
        return ProblemKind.CORRUPT_HEADER, f"malformed WAV header: {channels} channels at {rate} Hz"
    if data is None:
        return ProblemKind.TRUNCATED, f"truncated WAV: {size} bytes, no 'data' chunk"
    start, length = data
    if length == 0 or start >= size:
        return ProblemKind.ZERO_SIZE, "zero-length audio: the WAV's data chunk holds no samples"
    if length != 0xFFFFFFFF and start + length > size:  # 0xFFFFFFFF: length unknown (streamed)
        return (ProblemKind.TRUNCATED, f"truncated WAV: the data chunk says {length:,} bytes, the file holds "
                                       f"{size - start:,} (the rest of the clip is missing)")
    if check_values and tag == 3 and bits in _FLOAT_DTYPES:
        return _nonfinite_wav(f, start, length, size, bits)
    return None


def _scan_flac(f, size: int, head: bytes):
    pos, info = 4, None
    while True:
        f.seek(pos)
        hdr = f.read(4)
        if len(hdr) < 4:
            return ProblemKind.TRUNCATED, f"truncated FLAC: {size} bytes, ends inside the metadata"
        last, kind, length = hdr[0] >> 7, hdr[0] & 0x7F, int.from_bytes(hdr[1:4], "big")
        if kind == 0:
            body = f.read(18)
            if len(body) < 18:
                return ProblemKind.TRUNCATED, "truncated FLAC: ends inside STREAMINFO"
            v = int.from_bytes(body[10:18], "big")
            info = (v >> 44, ((v >> 41) & 7) + 1, v & ((1 << 36) - 1))  # rate, channels, total samples
        elif kind == 127:
            return ProblemKind.CORRUPT_HEADER, "malformed FLAC: invalid metadata block type 127"
        pos += 4 + length
        if last:
            break
        if pos > size:
            return ProblemKind.TRUNCATED, "truncated FLAC: ends inside the metadata"
    if info is None:
        return ProblemKind.CORRUPT_HEADER, "malformed FLAC: no STREAMINFO block"
    rate, _, total = info
    if rate == 0:
        return ProblemKind.CORRUPT_HEADER, "malformed FLAC: sample rate 0 in STREAMINFO"
    if pos > size:
        return ProblemKind.TRUNCATED, "truncated FLAC: ends inside the metadata"
    if pos == size:
        return (ProblemKind.ZERO_SIZE, "zero-length audio: the FLAC has no audio frames") if total == 0 else \
            (ProblemKind.TRUNCATED, f"truncated FLAC: STREAMINFO says {total:,} samples, no audio frames follow")
    return None  # frames follow (total 0 then means "unknown"); damage inside them DALI reports at the batch


def _identify_audio(f, size: int, check_values: bool = False):
    head = f.read(_HEAD)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _scan_wav(f, size, head, check_values)
    if head[:4] == b"fLaC":
        return _scan_flac(f, size, head)
    if head[:4] == b"OggS":
        return None if size >= 58 else (ProblemKind.TRUNCATED, f"truncated OGG: {size} bytes")
    if head[:4] in (b"RIFF", b"RF64") or head[:4] == b"FORM":
        what = "AIFF" if head[8:12] in (b"AIFF", b"AIFC") else f"{head[:4].decode()}/{head[8:12]!r} container"
        return ProblemKind.UNSUPPORTED_FORMAT, f"{what}: not a format fn.decoders.audio decodes (WAV, FLAC, OGG)"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return ProblemKind.UNSUPPORTED_FORMAT, "MP3/MPEG audio: fn.decoders.audio decodes WAV, FLAC, OGG"
    if head[4:8] == b"ftyp":
        return ProblemKind.UNSUPPORTED_FORMAT, "MP4/M4A (AAC) audio: fn.decoders.audio decodes WAV, FLAC, OGG"
    text = _text_reason(head, "audio")
    if text:
        return ProblemKind.TEXT, text
    return ProblemKind.UNKNOWN_FORMAT, f"not WAV, FLAC or OGG audio (starts with {head[:8]!r})"


def _identify_values(f, size: int):
    """``_identify_audio`` that also reads float WAVs in full for NaN or inf samples (integer PCM,
    FLAC and OGG cannot hold them in the file)."""
    return _identify_audio(f, size, check_values=True)


def scan_audio_file(path, check_values: bool = False) -> Optional[Problem]:
    """Check one audio file's header (a few hundred bytes; the whole metadata for FLAC), through
    the scan every kind shares (``dali_mixup.scan.scan_path``: a regular, readable, non-empty
    file first); with ``check_values`` also a float WAV's samples (a full read: NaN or inf).

    Returns:
        ``None`` when nothing is wrong that the header shows, else a ``Problem`` (kinds as in
        ``dali_mixup.scan``; ``ZERO_SIZE`` means no samples).
    """
    return scan_path(path, _identify_values if check_values else _identify_audio)


def scan_audio_files(paths: Sequence, workers: Optional[int] = None, check_values: bool = False) -> List[Problem]:
    """``scan_audio_file`` over ``paths`` (``scan_paths``: threads from 64 files on, Ctrl-C stops it)."""
    return scan_paths(paths, _identify_values if check_values else _identify_audio, workers=workers)


def filter_audio_files(paths: Sequence, labels: Optional[Sequence] = None, *, on_error="raise",
                       check_values: bool = False):
    """Scan (with ``check_values``, float WAVs' samples too) and act as ``on_error`` says
    (``OnError``; ``dali_mixup.scan.filter_paths``): ``ValidationError`` naming every bad file, or
    ``(kept_paths, kept_labels)`` and one ``BadFilesWarning``."""
    return filter_paths(paths, labels, _identify_values if check_values else _identify_audio, on_error=on_error,
                        noun="audio")


def diagnose_audio_error(error: BaseException, files: Sequence[str]) -> BadDataError:
    """A ``BadDataError`` for DALI's decode ``error``: the files DALI's message names, and those
    the audio header scan finds."""
    text = str(error)
    named = [f for f in files if f in text]
    problems = scan_audio_files(files)
    found = [str(p) for p in problems]
    found += [f"{f}: DALI could not decode it" for f in named if f not in {p.path for p in problems}]
    reason = next((ln.strip() for ln in reversed(text.splitlines()) if re.search(r"rror|ailed", ln)),
                  text.strip().splitlines()[0] if text.strip() else type(error).__name__)
    return bad_data_error(reason[:300], found, "Bad audio files", "The audio header scan finds no bad file.")


# --- pipeline ------------------------------------------------------------------------------


def _crop(audio, num_samples: int, train: bool):
    """A window of ``num_samples``: start ``floor(u·(n − L))`` with u ~ U[0, 1) in training and
    u = 0.5 in validation. A clip longer than L gives a random (centre) crop; a shorter one a
    random (centred) position inside zeros, as ``n − L`` is then negative."""
    from nvidia.dali import fn, math as dmath, types

    n = audio.shape(dtype=types.INT32)[0]
    u = fn.random.uniform(range=[0.0, 1.0]) if train else 0.5
    start = dmath.floor(u * fn.cast(n - num_samples, dtype=types.FLOAT))
    return fn.slice(audio, fn.cast(start, dtype=types.INT32), np.array([num_samples], dtype=np.int32), axes=[0],
                    out_of_bounds_policy="pad", fill_values=0.0)


def _audio_pipeline(source: Source, device: str = "cpu", sample_rate: int = 16000, num_samples: int = 16000,
                    train: bool = True, features: Optional[LogMelConfig] = None, shard_id: int = 0,
                    num_shards: int = 1, check: bool = False):
    """``(out, labels)``: ``out`` is the ``(L,)`` waveform, or its ``(n_mels, frames)`` log-mel
    when ``features`` is given; on the GPU for ``device="gpu"`` (decoding and the crop are on the
    CPU: DALI's audio decoder has no GPU backend). With ``check``, ``(out, labels, sums)``: each
    window's sum (a scalar, on the CPU: NaN or inf when a sample is), for ``FiniteClips``."""
    from nvidia.dali import fn, types

    common = dict(shard_id=shard_id, num_shards=num_shards, random_shuffle=train, pad_last_batch=True,
                  name=READER_NAME)
    if train:
        common["initial_fill"] = 1024
    encoded, labels = fn.readers.file(files=list(source.files), labels=list(source.labels), **common)
    audio, _ = fn.decoders.audio(encoded, sample_rate=float(sample_rate), downmix=True, dtype=types.FLOAT)
    wave = _crop(audio, num_samples, train)
    checks = (fn.reductions.sum(wave),) if check else ()
    if device == "gpu":
        wave = wave.gpu()
    elif device != "cpu":
        raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")
    return ((log_mel_dali(wave, features, device) if features is not None else wave), labels, *checks)


def audio_pipeline(**kwargs):
    """The audio pipeline as a DALI ``Pipeline`` (``pipeline_def`` with checkpointing): the
    arguments of ``_audio_pipeline`` plus ``batch_size``, ``num_threads``, ``device_id``,
    ``seed``, ``prefetch_queue_depth``, ``checkpoint``."""
    from nvidia.dali import pipeline_def

    return pipeline_def(enable_checkpointing=True)(_audio_pipeline)(**kwargs)


# --- the kind ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioSpec:
    """The resolved options of one audio loader (see ``create_audio_loader``); the shared ones are
    ``options``. ``clip_samples``: samples per clip, ``round(duration·sample_rate)``."""

    options: LoaderOptions
    source: Source
    label_sets: Optional[Tuple[Tuple[int, ...], ...]]
    batch_size: int
    sample_rate: int
    clip_samples: int
    features: Optional[LogMelConfig]
    mix_stage: MixStage
    mixup: Optional[MixupConfig]
    train: bool
    multi_label: Optional[MultiLabelMix]
    label_smoothing: Optional[float]
    num_classes: int
    check_values: bool = False

    @property
    def num_samples(self) -> int:
        """Clips in the data set."""
        return len(self.source.files)

    @property
    def data_field(self) -> str:
        """``"features"`` when the pipeline's log-mels are mixed, else ``"audio"`` (the waveform)."""
        return "features" if self.features is not None and self.mix_stage is MixStage.FEATURES else "audio"

    def fields(self) -> Dict[str, Rule]:
        """``{"audio" | "features": rule, "label": rule, "clip_sum": FiniteClips}`` (see the module
        docstring; ``clip_sum`` writes no output, and is left out with ``check_values``, whose
        up-front read of every file makes it redundant)."""
        if self.features is None or self.mix_stage is MixStage.FEATURES:
            data: Dict[str, Rule] = {self.data_field: Blend(layout="NCHW")}
        else:
            data = {"audio": BlendThenLogMel(self.features)}
        if self.multi_label is not None:
            eps = self.label_smoothing if self.label_smoothing is not None else (
                self.mixup.label_smoothing if self.mixup is not None else 0.0)
            target: Rule = MultiHotTarget(self.label_sets, self.num_classes, self.multi_label, eps)
        else:
            target = SoftTarget(self.num_classes, self.label_smoothing)
        if self.check_values:  # every file's samples were read up front: no batch check
            return {**data, "label": target}
        return {**data, "label": target, "clip_sum": FiniteClips(files=self.source.files)}

    def graph(self) -> Dict:
        """Read, decode, crop; log-mels in the pipeline only when they are what is mixed (or
        nothing is mixed: stage ``features``)."""
        o = self.options
        out, labels, *sums = _audio_pipeline(
            self.source, device=o.device, sample_rate=self.sample_rate, num_samples=self.clip_samples,
            train=self.train, features=self.features if self.mix_stage is MixStage.FEATURES else None,
            shard_id=o.shard_id, num_shards=o.num_shards, check=not self.check_values)
        return {self.data_field: out, "label": labels, **({"clip_sum": sums[0]} if sums else {})}

    def diagnose(self, error: BaseException) -> BadDataError:
        return diagnose_audio_error(error, self.source.files)

    def config(self) -> Dict:
        f = self.features
        return dict(train=self.train, sample_rate=self.sample_rate, clip_samples=self.clip_samples,
                    features=None if f is None else dataclasses.asdict(f), mix_stage=self.mix_stage.value,
                    multi_label=None if self.multi_label is None else self.multi_label.value)

    @classmethod
    def resolve(cls, options: LoaderOptions, root=None, file_list=None, *, batch_size, sample_rate=16000,
                duration=1.0, features="log_mel", n_fft=400, hop_length=160, n_mels=64, f_min=0.0, f_max=None,
                top_db=80.0, mix_stage="waveform", mixup=None, train=True, multi_label=None, label_smoothing=None,
                num_classes=None, allow_repeats=False, check_values=False) -> "AudioSpec":
        """Check every audio option of ``create_audio_loader`` once and resolve (and scan) the source."""
        batch_size = check_int("batch_size", batch_size, 1)
        sample_rate = check_int("sample_rate", sample_rate, 1000, 384000)
        duration = check_real("duration", duration, low=0.0, high=MAX_DURATION, low_open=True)
        num_samples = max(1, round(duration * sample_rate))
        if features is not None and features != "log_mel":
            raise ValueError(f"features must be 'log_mel' or None; got {features!r}")
        logmel = None
        if features == "log_mel":
            logmel = LogMelConfig(sample_rate, n_fft, hop_length, n_mels, f_min, f_max, top_db)
            if num_samples <= n_fft // 2:
                raise ValueError(f"duration: {num_samples} samples are too few for n_fft={n_fft} (reflect padding "
                                 f"needs more than {n_fft // 2})")
        stage = check_choice("mix_stage", MixStage, mix_stage)
        if stage is MixStage.FEATURES and logmel is None:
            raise ValueError("mix_stage='features' needs features='log_mel'")
        if mixup is not None and not isinstance(mixup, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig or None, got {type(mixup).__name__}")
        if mixup is not None and mixup.cutmix_on:
            raise ValueError(_cutmix_refusal(mixup))
        check_bool("train", train)
        check_bool("allow_repeats", allow_repeats)
        check_bool("check_values", check_values)
        multi = None if multi_label is None else check_choice("multi_label", MultiLabelMix, multi_label)
        if label_smoothing is not None:
            label_smoothing = check_real("label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)
        wanted = resolve_num_classes(num_classes, mixup.num_classes if mixup is not None else None, required=False)

        source, sets = resolve_audio_source(root, file_list, multi_label=multi is not None,
                                            allow_repeats=allow_repeats)
        if options.scan or check_values:
            kept, labels = filter_audio_files(source.files, source.labels, on_error=options.on_error,
                                              check_values=check_values)
            if sets is not None:  # the reader's labels are clip indices: re-number after leaving files out
                index = {f: i for i, f in enumerate(source.files)}
                sets = tuple(sets[index[f]] for f in kept)
                labels = list(range(len(kept)))
            source = dataclasses.replace(source, files=tuple(kept), labels=tuple(labels))
        num_classes = resolve_num_classes(wanted, None, source.num_classes)
        if mixup is not None and mixup.num_classes != num_classes:
            mixup = dataclasses.replace(mixup, num_classes=num_classes)
        return cls(
            options=options, source=source, label_sets=sets, batch_size=batch_size, sample_rate=sample_rate,
            clip_samples=num_samples, features=logmel, mix_stage=stage, mixup=mixup if train else None, train=train,
            multi_label=multi, label_smoothing=label_smoothing, num_classes=num_classes, check_values=check_values,
        )


def _cutmix_refusal(mixup: MixupConfig) -> str:
    """Why a ``MixupConfig`` with CutMix on is refused for audio, naming what switches it on."""
    on = [f"cutmix_alpha={mixup.cutmix_alpha}"] if mixup.cutmix_alpha > 0 else []
    if mixup.cutmix_minmax is not None:
        on.append(f"cutmix_minmax={mixup.cutmix_minmax}")
    return (f"mixup: CutMix is not supported for audio ({' and '.join(on)} switch it on; leave cutmix_alpha=0 and "
            "cutmix_minmax=None); mix the clips instead")


#: the audio kind as the front knows it (header scans on by default: see the module docstring)
KIND = Kind("audio", AudioSpec.resolve, default_validate=True, samples="clips")


def create_audio_loader(root=None, file_list=None, *, batch_size: int, sample_rate: int = 16000,
                        duration: float = 1.0, features: Optional[str] = "log_mel", n_fft: int = 400,
                        hop_length: int = 160, n_mels: int = 64, f_min: float = 0.0, f_max: Optional[float] = None,
                        top_db: float = 80.0, mix_stage: Union[str, MixStage] = "waveform",
                        mixup: Optional[MixupConfig] = None, train: bool = True,
                        multi_label: Optional[Union[str, MultiLabelMix]] = None,
                        label_smoothing: Optional[float] = None, num_classes: Optional[int] = None,
                        allow_repeats: bool = False, check_values: bool = False, device: str = "auto",
                        device_id: Optional[int] = None,
                        shard_id: Optional[int] = None, num_shards: Optional[int] = None,
                        num_threads: Optional[int] = None, seed: int = 0, last_batch_policy="PARTIAL",
                        prefetch_queue_depth: int = PREFETCH_QUEUE_DEPTH, on_error: str = "raise",
                        validate: Optional[bool] = None, auto_reset: bool = True):
    """Audio clips → mixed batches of waveforms or log-mels and soft targets:
    ``build_loader("audio", ...)``.

    Args:
        root / file_list: exactly one. ``root/<class>/<clip>`` (classes sorted by name), or a
            text file of ``<path> <label>`` lines (``<path> <l1>,<l2>`` with ``multi_label``).
        batch_size: clips per batch (per process).
        sample_rate: Hz every clip is resampled to.
        duration: seconds per clip: ``round(duration·sample_rate)`` samples, a random window
            in training, the centre in validation; shorter clips are zero-padded (placed at
            random in training, centred in validation).
        features: ``"log_mel"`` or ``None`` (waveforms only).
        n_fft, hop_length, n_mels, f_min, f_max, top_db: the log-mel (``LogMelConfig``).
        mix_stage: ``MixStage`` (``"waveform"``: log-mels of the mixed waveform; ``"features"``:
            mix the log-mels).
        mixup: ``MixupConfig`` (no CutMix), ``None`` = no mixup; ignored when ``train=False``.
        train: random windows and shuffling, or centre windows in file order.
        multi_label: ``None`` (one class per clip), ``"weighted"`` or ``"union"``
            (``MultiLabelMix``): targets from label sets in ``file_list``.
        label_smoothing: ε; default ``mixup.label_smoothing`` (0 without mixup).
        num_classes: C; default ``mixup.num_classes``, else the data set's.
        allow_repeats: a file list may list a clip more than once on purpose.
        check_values: read every float WAV in full up front and refuse NaN or inf samples
            (``on_error="skip"`` leaves those clips out). Without it, a batch holding a non-finite
            window is a ``BadDataError`` naming the file (a per-clip sum the pipeline computes on
            the CPU).
        device, device_id, shard_id, num_shards, num_threads, seed, last_batch_policy,
            prefetch_queue_depth, on_error, validate, auto_reset: the shared options
            (``dali_mixup.options``), as ``create_loader``'s. ``validate`` (default ``None``: on for
            audio) scans every file's header first (see the module docstring for why audio
            needs it); ``on_error="skip"`` leaves bad files out with one warning.

    Returns:
        ``DALIMixupIterator`` yielding ``[{...}]`` with
        ``"features"`` ``(N, n_mels, 1 + L // hop_length)`` float32 dB (with features),
        ``"audio"`` ``(N, L)`` float32 (the mixed waveform; stage ``waveform`` only),
        ``"label"`` ``(N, C)`` float32, ``"label_index"`` ``(N,)`` int64 (or ``"label_hot"``
        ``(N, C)`` for multi-label), ``"lam"``, ``"perm"``. ``.spec`` is the resolved
        ``AudioSpec``, ``.options`` the shared options; ``state_dict()``/``load_state_dict()``
        resume mid-epoch.
    """
    return build_loader("audio", **locals())
