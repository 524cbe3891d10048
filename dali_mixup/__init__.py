"""dali-mixup: mixup on the GPU, fused into an NVIDIA DALI input pipeline for PyTorch.

Importing this package imports neither CuPy, nor DALI, nor torchvision: the DALI-backed names
(``DALIMixupIterator``, ``create_loader``, the pipelines) load on first use.
"""

from .config import MixMode, MixupConfig, Pairing
from .fields import BatchMixer, Blend, Keep, LabelEncoding, MirrorFlags, NormalizeBlend, Rule, SoftTarget
from .mix import mix_images, mix_targets, normalize_mix_images
from .sampler import MixupParams, MixupSampler

__version__ = "0.1.0"

_LAZY = {
    "DALIMixupIterator": "iterator",
    "LastBatchPolicy": "iterator",
    "build_loader": "front",
    "create_loader": "kinds.image",
    "create_audio_loader": "kinds.audio",
    "create_detection_loader": "kinds.detection",
    "create_volume_loader": "kinds.volume",
    "LoaderOptions": "options",
    "ImageSpec": "kinds.image",
    "BadDataError": "scan",
    "DataError": "scan",
    "ValidationError": "scan",
    "StateError": "state",
    "train_pipeline": "kinds.image_pipeline",
    "val_pipeline": "kinds.image_pipeline",
}

__all__ = [
    "BatchMixer",
    "Blend",
    "Keep",
    "LabelEncoding",
    "MirrorFlags",
    "MixMode",
    "MixupConfig",
    "MixupParams",
    "MixupSampler",
    "NormalizeBlend",
    "Pairing",
    "Rule",
    "SoftTarget",
    "mix_images",
    "mix_targets",
    "normalize_mix_images",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'dali_mixup' has no attribute {name!r}")
