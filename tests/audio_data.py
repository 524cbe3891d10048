"""Audio clips the tests and ``benchmarks/bench_audio.py`` write: tones, chirps and noise per class.

WAV (16-bit PCM) through the standard library's ``wave`` and FLAC (16-bit, verbatim frames)
through the small writer below, so neither needs ``soundfile``: the GPU host has none, and its
audio check would otherwise never run. Other formats (OGG) go through ``soundfile``, imported
only then. Float samples are quantised once, as libsndfile 1.2 writes them to a 16-bit WAV (to 32 bits,
then the top 16), for both formats.
"""

import hashlib
import os
import struct
import wave

import numpy as np

KINDS = ("tone", "chirp", "noise")


def clip(kind: str, index: int, seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """``(frames, channels)`` float32 in [-0.5, 0.5]: a tone, a linear chirp or noise whose
    frequency / colour depends on ``index`` (so each class sounds different)."""
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = 200.0 + 150.0 * index
    if kind == "tone":
        x = np.sin(2 * np.pi * f0 * t)
    elif kind == "chirp":
        x = np.sin(2 * np.pi * (f0 * t + 0.5 * 2000.0 * t * t))
    else:
        rng = np.random.default_rng(seed + 1000 * index)
        x = rng.standard_normal(t.shape)
        x = np.convolve(x, np.ones(1 + index % 5) / (1 + index % 5), mode="same")
        x /= max(np.abs(x).max(), 1e-6)
    x = 0.5 * x.astype(np.float32)
    return np.repeat(x[:, None], channels, 1) * np.linspace(1.0, 0.5, channels, dtype=np.float32)


def pcm16(data: np.ndarray) -> np.ndarray:
    """``(frames, channels)`` int16 from float samples in [-1, 1] (``(frames,)`` is one channel),
    as libsndfile 1.2 writes floats to 16-bit PCM: ``rint(x * 2**31)`` clipped to int32, then its
    top 16 bits (an arithmetic shift, so ``floor(x * 32768)`` but for the last bit's rounding)."""
    x = np.asarray(data)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"audio data must be (frames,) or (frames, channels), got shape {x.shape}")
    if x.dtype == np.int16:
        return x
    wide = np.clip(np.rint(x.astype(np.float64) * 2.0**31), -2.0**31, 2.0**31 - 1).astype(np.int64)
    return (wide >> 16).astype(np.int16)


def write(path: str, data: np.ndarray, rate: int) -> str:
    """Write ``data`` (``(frames, channels)`` or ``(frames,)``, float in [-1, 1] or int16) at
    ``rate`` Hz: ``.wav`` and ``.flac`` as 16-bit PCM without ``soundfile``, anything else
    through ``soundfile``. Returns ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".wav":
        samples = pcm16(data)
        with wave.open(path, "wb") as w:
            w.setnchannels(samples.shape[1])
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(samples.astype("<i2").tobytes())
    elif ext == ".flac":
        with open(path, "wb") as f:
            f.write(flac_bytes(pcm16(data), rate))
    else:
        import soundfile as sf

        sf.write(path, data, rate)
    return path


# --- FLAC: STREAMINFO and verbatim 16-bit frames (https://www.rfc-editor.org/rfc/rfc9639) ---------

FLAC_BLOCK = 4096
_RATE_CODES = {88200: 1, 176400: 2, 192000: 3, 8000: 4, 16000: 5, 22050: 6, 24000: 7, 32000: 8, 44100: 9,
               48000: 10, 96000: 11}


def _crc_table(poly: int, width: int):
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & top else (crc << 1)
        table.append(crc & mask)
    return table


_CRC8, _CRC16 = _crc_table(0x07, 8), _crc_table(0x8005, 16)


def crc8(data: bytes) -> int:
    """FLAC's frame-header CRC: polynomial x^8 + x^2 + x + 1, initial 0."""
    crc = 0
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


def crc16(data: bytes) -> int:
    """FLAC's frame CRC: polynomial x^16 + x^15 + x^2 + 1, initial 0."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc


def _utf8_number(n: int) -> bytes:
    """A frame number in FLAC's extended UTF-8 coding."""
    if n < 0x80:
        return bytes([n])
    tail = []
    while True:
        tail.append(0x80 | (n & 0x3F))
        n >>= 6
        room = 6 - len(tail)  # payload bits left in the lead byte once len(tail) continuation bytes follow
        if n < (1 << room):
            lead = (0xFF << (7 - len(tail))) & 0xFF
            return bytes([lead | n] + tail[::-1])


def flac_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A whole FLAC stream for ``(frames, channels)`` int16 ``samples``: the marker, one
    STREAMINFO block (42 bytes in all, so a file cut there holds metadata only), then frames of
    4096 samples with verbatim subframes (no compression), each with its CRC-8 and CRC-16."""
    frames, channels = samples.shape
    if not 1 <= channels <= 8:
        raise ValueError(f"FLAC holds 1 to 8 channels, not {channels}")
    if not 0 < rate < (1 << 20):
        raise ValueError(f"sample rate {rate} does not fit FLAC's 20 bits")
    rate_code = _RATE_CODES.get(rate, 13 if rate < (1 << 16) else 0)
    body = []
    for index, start in enumerate(range(0, frames, FLAC_BLOCK)):
        block = samples[start:start + FLAC_BLOCK]
        n = block.shape[0]
        head = bytearray(b"\xff\xf8")  # sync code, fixed block size
        head.append((7 << 4) | rate_code)  # block size: 16 bits at the end of the header
        head.append(((channels - 1) << 4) | (4 << 1))  # independent channels, 16 bits per sample
        head += _utf8_number(index) + struct.pack(">H", n - 1)
        if rate_code == 13:
            head += struct.pack(">H", rate)
        head.append(crc8(head))
        frame = bytes(head) + b"".join(b"\x02" + block[:, c].astype(">i2").tobytes() for c in range(channels))
        body.append(frame + struct.pack(">H", crc16(frame)))
    sizes = [len(f) for f in body] or [0]
    info = struct.pack(">HH", FLAC_BLOCK, FLAC_BLOCK)
    info += min(sizes).to_bytes(3, "big") + max(sizes).to_bytes(3, "big")
    info += ((rate << 44) | ((channels - 1) << 41) | (15 << 36) | frames).to_bytes(8, "big")
    info += hashlib.md5(samples.astype("<i2").tobytes()).digest()
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info + b"".join(body)


# --- the clip sets -------------------------------------------------------------------------------


def unique_clips(root: str, n: int) -> str:
    """``root/<class>/<clip>``: ``n`` classes of one clip each (the class id names the clip), WAV
    and FLAC in turn, 0.1–0.4 s, at 8, 16 and 22.05 kHz, some stereo."""
    for i in range(n):
        rate = (8000, 16000, 22050)[i % 3]
        ext = ".wav" if i % 2 == 0 else ".flac"
        data = clip(KINDS[i % 3], i, 0.1 + 0.3 * (i % 4) / 3, rate, channels=1 + (i % 4 == 1), seed=i)
        write(os.path.join(root, f"c{i:02d}", f"clip{ext}"), data, rate)
    return root


def class_clips(root: str, per_class: int, rate: int = 8000, seconds: float = 0.5) -> str:
    """Three classes (tone, chirp, noise), ``per_class`` clips each, at varying pitch."""
    for c, kind in enumerate(KINDS):
        for j in range(per_class):
            ext = ".wav" if j % 2 == 0 else ".flac"
            write(os.path.join(root, kind, f"{j:03d}{ext}"), clip(kind, j, seconds, rate, seed=j), rate)
    return root
