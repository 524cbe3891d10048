"""Audio clips the tests write: tones, chirps and noise per class, as WAV and FLAC (``soundfile``)."""

import os

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


def write(path: str, data: np.ndarray, rate: int) -> str:
    import soundfile as sf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, data, rate, subtype="PCM_16" if path.endswith(".wav") else None)
    return path


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
