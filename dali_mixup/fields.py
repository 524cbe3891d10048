"""A sample is a set of named fields, each with a mix rule.

DALI's iterators name each pipeline output (``output_map=["data", "label"]``); here each name
also says how that field mixes. One ``MixupSampler`` draws a batch's ``MixupParams`` (λ,
partners, CutMix boxes) once, and ``BatchMixer`` applies every field's rule with those same
params — a pure function of ``(batch, params)``:

* ``Blend``: image-like tensors (images, spectrograms, waveforms, volumes):
  ``λ·x[i] + (1−λ)·x[perm[i]]``, and the partner's values inside a CutMix box.
* ``SoftTarget``: class ids become ``(N, C)`` soft targets (label smoothing as timm); the parsed
  ids are handed out as well (``label_index``) for the two-loss form.
* ``Keep``: passed through as DALI produced it.
* ``NormalizeBlend`` (``create_loader(fused_normalize=True)``): uint8 HWC crops normalised,
  mirrored by the flip coin of a ``MirrorFlags`` field, laid out, cast and blended in one pass;
  a rule that reads another field names it in ``inputs``.

Classification is ``{"data": Blend(...), "label": SoftTarget(...)}``; a new kind of sample adds
rules (boxes with weights, masks pasted with the image) and a pipeline, not a new iterator.

Example:
    >>> mixer = BatchMixer({"data": Blend(), "label": SoftTarget(num_classes=10)})
    >>> params = MixupSampler(MixupConfig(alpha=0.2), seed=0).sample(8)
    >>> out = mixer({"data": images, "label": labels}, params)   # + lam, perm, label_index
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import torch

from .checks import SPATIAL_DIMS, check_layout, check_num_classes, check_real, check_rgb
from .constants import IMAGENET_MEAN, IMAGENET_STD
from .mix import IMAGE_DTYPES, NORMALIZED_DTYPES, _targets, mix_images, normalize_mix_images
from .sampler import MixupParams, MixupSampler

__all__ = ["BatchMixer", "Blend", "Consumed", "JointRule", "Keep", "LabelEncoding", "MirrorFlags", "MissingFieldError",
           "NormalizeBlend", "PARAM_FIELDS", "Rule", "SoftTarget", "bind_smoothing", "class_indices"]


class LabelEncoding(str, enum.Enum):
    """How a pipeline's class labels are written. Follows from the source, never from the dtype.

    * ``INDEX``: integer class ids, ``(N,)`` or ``(N, 1)`` of any integer dtype (DALI's file
      reader gives int32 ``(N, 1)``; a uint8 label 51 is class 51).
    * ``ASCII``: WebDataset ``cls`` members, ASCII digits zero-padded to ``(N, L)`` uint8
      (``b"51"`` is class 51).
    """

    INDEX = "index"
    ASCII = "ascii"


def class_indices(label: torch.Tensor, encoding: LabelEncoding = LabelEncoding.INDEX,
                  where: str = "the pipeline's labels") -> torch.Tensor:
    """``(N,)`` int64 class ids from a pipeline's labels, on the labels' device.

    Args:
        label: the labels as DALI hands them over.
        encoding: ``LabelEncoding`` (how they are written).
        where: named in errors (a shard, a field).

    Raises:
        TypeError: floating-point labels. ValueError: a shape that is not one id per sample, or a
        ``cls`` member that is not an ASCII integer.
    """
    encoding = LabelEncoding(encoding)
    if encoding is LabelEncoding.ASCII:
        rows = label.cpu().numpy()
        out = []
        for row in rows:
            text = bytes(row.reshape(-1)).rstrip(b"\x00").strip()
            try:
                out.append(int(text))
            except ValueError:
                raise ValueError(f"{where}: a WebDataset 'cls' member is not an ASCII integer: {text[:20]!r}") from None
        return torch.tensor(out, dtype=torch.int64)
    if label.is_floating_point() or label.is_complex() or label.dtype == torch.bool:
        raise TypeError(f"{where}: labels must be integer class ids, the pipeline produced {label.dtype}")
    if label.dim() == 2 and label.shape[1] == 1:
        label = label.reshape(-1)
    if label.dim() != 1:
        raise ValueError(
            f"{where}: labels must be one class id per sample, shape (N,) or (N, 1); got {tuple(label.shape)}. "
            "Multi-label targets need their own rule."
        )
    return label.to(torch.int64).contiguous()


class Rule:
    """How one named field mixes. Subclasses are frozen dataclasses (options checked once, when
    made) with:

    * ``prepare(name, value)``: parsing and checks of DALI's output, on the host for CPU tensors
      (queued on the device, never waited for, for CUDA ones);
    * ``travels``: whether the prepared value is a small CPU tensor that should reach the batch's
      device in the same host-to-device copy as the params (labels for the target kernel);
    * ``apply(name, value, params)``: the mix, returning the output fields it produces.

    A rule whose output also depends on other fields names them in ``inputs``; ``BatchMixer``
    then calls ``apply_joint(name, {field: prepared value}, params)`` instead of ``apply``.

    ``outputs(name)`` declares the output names ``apply`` writes, so that ``BatchMixer`` refuses
    two fields writing one name (or a name of the params) when it is made; ``tensors``: whether
    the field's value must be a ``torch.Tensor`` (``Keep`` takes any object).
    """

    travels = False
    tensors = True

    def outputs(self, name: str) -> Tuple[str, ...]:
        """The output names ``apply`` writes for the field ``name`` (default: ``(name,)``)."""
        return (name,)

    def prepare(self, name: str, value: torch.Tensor) -> torch.Tensor:
        return value

    def apply(self, name: str, value: torch.Tensor, params: MixupParams) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def spatial_size(self, value: torch.Tensor) -> Optional[Tuple[int, int]]:
        """(H, W) where CutMix boxes go, for a field that has them; else ``None``."""
        return None


@dataclass(frozen=True)
class Blend(Rule):
    """Image-like tensors ``(N, ...)``: ``mix_images`` (mixup, and CutMix boxes for 4-D images
    or cuboids for 5-D volumes).

    Args:
        layout: the order of the field's dims, where CutMix boxes go: ``"NCHW"``, ``"NHWC"``, or
            for volumes ``"NCDHW"``, ``"NDHWC"``.
        dtype: dtype handed out (``None``: what the pipeline produced); e.g. ``torch.bfloat16``,
            which DALI cannot produce, is cast by the kernel as it mixes.
    """

    layout: str = "NCHW"
    dtype: Optional[torch.dtype] = None

    def __post_init__(self):
        check_layout(self.layout)
        if self.dtype is not None and self.dtype not in IMAGE_DTYPES:
            raise TypeError(f"dtype must be one of {', '.join(map(str, IMAGE_DTYPES))}; got {self.dtype!r}")

    def spatial_size(self, value):
        dims = SPATIAL_DIMS.get((self.layout, value.dim()))
        return None if dims is None else tuple(int(value.shape[d]) for d in dims)

    def apply(self, name, value, params):
        dtype = self.dtype or value.dtype
        if params.is_identity and dtype == value.dtype:
            return {name: value}  # DALI's batch as it is: no pass over it
        return {name: mix_images(value, params, dtype=dtype, layout=self.layout)}


@dataclass(frozen=True)
class NormalizeBlend(Rule):
    """uint8 crops ``(N, H, W, C)`` (HWC, as DALI's resize writes them) -> normalised, mirrored,
    laid out, cast and mixed in one pass (``mix.normalize_mix_images``): the fused form of
    DALI's ``crop_mirror_normalize`` followed by ``Blend``.

    Args:
        mean, std: per-channel normalisation in [0, 1] units.
        layout: ``"NCHW"`` or ``"NHWC"``, the layout handed out (CutMix boxes in its rows and
            columns).
        dtype: float32, float16 or bfloat16, the dtype handed out.
        mirror: the field holding DALI's per-sample flip coin (``MirrorFlags``), or ``None``
            (validation: nothing mirrored).
    """

    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD
    layout: str = "NCHW"
    dtype: torch.dtype = torch.float32
    mirror: Optional[str] = "mirror"

    def __post_init__(self):
        object.__setattr__(self, "mean", check_rgb("mean", self.mean))
        object.__setattr__(self, "std", check_rgb("std", self.std, positive=True))
        check_layout(self.layout, allowed=("NCHW", "NHWC"))
        if self.dtype not in NORMALIZED_DTYPES:
            raise TypeError(f"dtype must be one of {', '.join(map(str, NORMALIZED_DTYPES))}; got {self.dtype!r}")
        if self.mirror is not None and not isinstance(self.mirror, str):
            raise TypeError(f"mirror must be a field name or None, got {self.mirror!r}")

    @property
    def inputs(self) -> Tuple[str, ...]:
        return () if self.mirror is None else (self.mirror,)

    def prepare(self, name, value):
        if value.dtype != torch.uint8 or value.dim() != 4:
            raise ValueError(f"field {name!r}: NormalizeBlend takes uint8 crops (N, H, W, C), the pipeline produced "
                             f"{value.dtype} of shape {tuple(value.shape)}")
        return value

    def spatial_size(self, value):
        return (int(value.shape[1]), int(value.shape[2])) if value.dim() == 4 else None

    def apply(self, name, value, params):
        return self.apply_joint(name, {name: value}, params)

    def apply_joint(self, name, values, params):
        mirror = values[self.mirror] if self.mirror is not None else None
        return {name: normalize_mix_images(values[name], params, self.mean, self.std, mirror=mirror,
                                           layout=self.layout, dtype=self.dtype)}


@dataclass(frozen=True)
class MirrorFlags(Rule):
    """DALI's per-sample horizontal flip coin, read by a ``NormalizeBlend``; no output of its own.
    Prepared as ``(N,)`` uint8 0/1, which travels to the GPU with the params."""

    travels = True

    def prepare(self, name, value):
        if value.is_floating_point() or value.is_complex() or value.numel() != value.shape[0]:
            raise ValueError(f"field {name!r}: mirror flags must be one integer per sample, got {value.dtype} of "
                             f"shape {tuple(value.shape)}")
        return value.reshape(-1).ne(0).to(torch.uint8)

    def outputs(self, name):
        return ()

    def apply(self, name, value, params):
        return {}


@dataclass(frozen=True)
class SoftTarget(Rule):
    """Class ids → ``(N, C)`` float32 soft targets ``λ·onehot(y[i]) + (1−λ)·onehot(y[perm[i]])``
    with label smoothing (on = 1 − ε + ε/C, off = ε/C); rows sum to 1.

    Args:
        num_classes: C.
        label_smoothing: ε in [0, 1); ``None`` in an iterator's fields: the ``MixupConfig``'s.
        encoding: ``LabelEncoding`` of the pipeline's labels.
        index_name: the output field that carries the parsed ``(N,)`` int64 ids.
    """

    num_classes: int
    label_smoothing: Optional[float] = 0.0
    encoding: LabelEncoding = LabelEncoding.INDEX
    index_name: str = "label_index"
    travels = True

    def __post_init__(self):
        object.__setattr__(self, "num_classes", check_num_classes("num_classes", self.num_classes))
        if self.label_smoothing is not None:  # None: the MixupConfig's (set by the iterator)
            object.__setattr__(self, "label_smoothing", check_real("label_smoothing", self.label_smoothing, low=0.0,
                                                                   high=1.0, high_open=True))
        object.__setattr__(self, "encoding", LabelEncoding(self.encoding))
        if not isinstance(self.index_name, str) or not self.index_name:
            raise TypeError(f"index_name must be a non-empty output name, got {self.index_name!r}")

    def prepare(self, name, value):
        labels = class_indices(value, self.encoding, where=f"field {name!r}")
        c = self.num_classes
        if labels.is_cuda:  # a pipeline that moved its labels to the GPU: checked there, no host sync
            if labels.numel():
                torch._assert_async(((labels >= 0) & (labels < c)).all(), "label outside [0, num_classes)")
        # the reader's labels are CPU tensors: checked here, on the host
        elif labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= c):
            bad = sorted(set(labels[(labels < 0) | (labels >= self.num_classes)].tolist()))
            raise ValueError(f"field {name!r}: labels {bad[:10]} are outside [0, num_classes={c})")
        return labels

    def outputs(self, name):
        return (name, self.index_name)

    def apply(self, name, value, params):
        targets = _targets(value, params, self.num_classes, self.label_smoothing or 0.0, checked=True)
        return {name: targets, self.index_name: value}


@dataclass(frozen=True)
class Keep(Rule):
    """Passed through unchanged (metadata, ids): any object (a tensor, a list of file names). A
    tensor with a batch dimension must have the batch's N rows; anything else is not looked at."""

    tensors = False

    def apply(self, name, value, params):
        return {name: value}


class JointRule(Rule):
    """A rule whose output also depends on other fields of the batch (``inputs``): applied by
    ``BatchMixer`` with ``apply_joint(name, {field: prepared value}, params)``. The fields it
    reads are given the rule ``Consumed`` (they produce no output of their own)."""

    inputs: Tuple[str, ...] = ()

    def apply(self, name, value, params):
        raise TypeError(f"field {name!r}: {type(self).__name__} reads other fields; mix with BatchMixer")

    def apply_joint(self, name: str, values: Mapping[str, torch.Tensor], params: MixupParams) -> Dict[str, torch.Tensor]:
        raise NotImplementedError


@dataclass(frozen=True)
class Consumed(Rule):
    """A field that another field's rule reads (a box rule's labels and counts): no output of its own."""

    def outputs(self, name):
        return ()

    def apply(self, name, value, params):
        return {}


def bind_smoothing(fields: Mapping[str, Rule], label_smoothing: float) -> Dict[str, Rule]:
    """``fields`` with every ``SoftTarget`` whose ``label_smoothing`` is ``None`` given
    ``label_smoothing`` (the ``MixupConfig``'s): how a loader's fields follow its config."""
    return {name: dataclasses.replace(rule, label_smoothing=label_smoothing)
            if isinstance(rule, SoftTarget) and rule.label_smoothing is None else rule
            for name, rule in fields.items()}


#: the outputs ``BatchMixer`` writes itself (the batch's params): no field may write these names
PARAM_FIELDS = ("lam", "perm", "cutmix", "boxes")


class MissingFieldError(KeyError):
    """A field of the ``BatchMixer`` is not in the batch (a ``KeyError`` whose message reads as
    one line)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _not_a_tensor(name: str, rule: Rule, value) -> TypeError:
    kind = type(value)
    hint = "; torch.from_numpy(x) wraps a NumPy array without a copy" if kind.__module__ == "numpy" else ""
    return TypeError(f"field {name!r}: {type(rule).__name__} takes a torch.Tensor (N, ...), got "
                     f"{kind.__module__}.{kind.__qualname__}{hint}")


class BatchMixer:
    """Applies each field's rule to a batch with one set of params.

    Args:
        fields: ``{output name: Rule}`` in the pipeline's output order (DALI's ``output_map``).

    ``sample(sampler, batch)`` draws the params (the batch size from the first field whose rule
    takes tensors, the CutMix size from the first field with a spatial size); ``__call__(batch,
    params)`` is pure: the same batch and params give the same outputs, plus ``lam`` and ``perm``
    (and ``cutmix``, ``boxes`` when the sampler's config has CutMix on).

    Raises (when made): ``ValueError`` where two fields write one output name (``SoftTarget``'s
    ``index_name``, a rule's ``outputs``), a field writes the name of another field it does not
    read, or a field writes one of ``PARAM_FIELDS`` (``lam``, ``perm``, ``cutmix``, ``boxes``).
    (When called): ``MissingFieldError`` (a ``KeyError``) naming the missing and the present
    fields; ``TypeError`` naming the field whose rule takes tensors and got something else.
    """

    def __init__(self, fields: Mapping[str, Rule]):
        if not fields:
            raise ValueError("fields: at least one named field is needed")
        for name, rule in fields.items():
            if not isinstance(name, str) or not isinstance(rule, Rule):
                raise TypeError(f"fields must map output names to Rule objects; got {name!r}: {type(rule).__name__}")
        self.fields: Dict[str, Rule] = dict(fields)
        #: the field that gives the batch size and the device (the first whose rule takes tensors)
        self.lead = next((k for k, r in self.fields.items() if r.tensors), next(iter(self.fields)))
        for name, rule in self.fields.items():
            missing = [k for k in getattr(rule, "inputs", ()) if k not in self.fields]
            if missing:
                raise ValueError(f"field {name!r} reads {missing}, which are not fields of the batch")
        self._check_outputs()

    def _check_outputs(self) -> None:
        """Refuses an output name written twice (one would replace the other without a word)."""
        writer: Dict[str, str] = {}  # output name -> the field whose rule writes it
        for name, rule in self.fields.items():
            what = f"field {name!r} ({type(rule).__name__})"
            for out in rule.outputs(name):
                if out in PARAM_FIELDS:
                    raise ValueError(f"{what} writes the output {out!r}, which BatchMixer writes itself (the params "
                                     f"{', '.join(PARAM_FIELDS)}); rename the field")
                if out in writer:
                    other = writer[out]
                    both = (f"{what} writes {out!r} twice" if other == name else
                            f"fields {other!r} ({type(self.fields[other]).__name__}) and {name!r} "
                            f"({type(rule).__name__}) both write the output {out!r}")
                    raise ValueError(f"{both}; rename one (e.g. SoftTarget's index_name)")
                if out != name and out in self.fields and out not in getattr(rule, "inputs", ()):
                    raise ValueError(f"{what} writes the output {out!r}, the name of field {out!r} "
                                     f"({type(self.fields[out]).__name__}); rename one (e.g. SoftTarget's index_name)")
                writer[out] = name

    def _missing(self, batch: Mapping) -> MissingFieldError:
        missing = [k for k in self.fields if k not in batch]
        return MissingFieldError(f"the batch has no field {', '.join(map(repr, missing))}: the mixer's fields are "
                                 f"{list(self.fields)}, the batch has {list(batch)}")

    @property
    def output_map(self):
        return list(self.fields)

    def batch_size(self, batch: Mapping[str, torch.Tensor]) -> int:
        try:
            value = batch[self.lead]
        except KeyError:
            raise self._missing(batch) from None
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            if not isinstance(value, torch.Tensor):
                raise _not_a_tensor(self.lead, self.fields[self.lead], value)
            raise ValueError(f"field {self.lead!r} has shape (), not (N, ...): no batch size")
        return int(value.shape[0])

    def sample(self, sampler: MixupSampler, batch: Mapping[str, torch.Tensor]) -> MixupParams:
        n = self.batch_size(batch)
        size = None
        if sampler.config.cutmix_on:
            for name, rule in self.fields.items():
                if name not in batch:
                    raise self._missing(batch)
                value = batch[name]
                if not isinstance(value, torch.Tensor):
                    if rule.tensors:
                        raise _not_a_tensor(name, rule, value)
                    continue
                size = rule.spatial_size(value)
                if size is not None:
                    break
        return sampler.sample(n, image_size=size)

    def __call__(self, batch: Mapping[str, torch.Tensor], params: MixupParams,
                 with_cutmix: Optional[bool] = None) -> Dict[str, torch.Tensor]:
        n = self.batch_size(batch)
        prepared = {}
        try:
            for name, rule in self.fields.items():
                value = batch[name]
                if not isinstance(value, torch.Tensor):
                    if rule.tensors:
                        raise _not_a_tensor(name, rule, value)
                    prepared[name] = rule.prepare(name, value)
                    continue
                value = prepared[name] = rule.prepare(name, value)
                if value.dim() == 0 and not rule.tensors:
                    continue
                if value.dim() == 0 or value.shape[0] != n:
                    got = f"{value.shape[0]} samples" if value.dim() else "shape ()"
                    raise ValueError(f"field {name!r} has {got}, field {self.lead!r} has {n}")
        except KeyError:
            if all(k in batch for k in self.fields):
                raise
            raise self._missing(batch) from None
        host, device = params, batch[self.lead].device
        if device.type == "cuda":  # the small CPU tensors travel with λ/partners in one copy
            movers = [k for k, r in self.fields.items() if r.travels and not prepared[k].is_cuda]
            params, moved = params.on_with(device, *(prepared[k] for k in movers))
            prepared.update(zip(movers, moved))
        out: Dict[str, torch.Tensor] = {}
        for name, rule in self.fields.items():
            inputs = getattr(rule, "inputs", ())
            if inputs:
                written = rule.apply_joint(name, {k: prepared[k] for k in (name, *inputs)}, params)
            else:
                written = rule.apply(name, prepared[name], params)
            if not out.keys().isdisjoint(written):  # a rule whose outputs() does not declare them all
                raise ValueError(f"field {name!r} ({type(rule).__name__}) writes {sorted(out.keys() & written)}, which "
                                 "another field already wrote; rename one")
            out.update(written)
        if not out.keys().isdisjoint(PARAM_FIELDS):
            raise ValueError(f"the fields write {sorted(out.keys() & set(PARAM_FIELDS))}, which BatchMixer writes "
                             "itself (the params); rename the field")
        out["lam"], out["perm"] = host.lam, host.perm
        if with_cutmix if with_cutmix is not None else host.has_cutmix:
            out["cutmix"], out["boxes"] = host.cutmix, host.boxes
        return out
