"""Mixup and CutMix for object detection and segmentation, in the DALI pipeline.

A COCO-format data set (an image folder and an annotation JSON) is validated once
(``load_coco``), read by DALI's ``fn.readers.coco``, decoded (nvJPEG ``mixed`` on the GPU, the CPU
decoder otherwise), fitted to a fixed canvas (``Fit``), flipped with its boxes and masks, and
normalised (``detection_pipeline``). The batch is then mixed by the one core
(``dali_mixup.fields``): images by ``Blend`` and the rules here for what comes with them:

* ``BoxesWithWeights``: mixup concatenates a sample's boxes with its partner's, each box carrying
  the loss weight λ (own) or 1 − λ (partner's), the "Bag of Freebies" recipe
  (Zhang et al., https://arxiv.org/abs/1902.04103); class ids are kept as ids. CutMix keeps the
  partner's boxes clipped to the pasted box and its own boxes clipped to what stays visible; a box
  with less than ``min_visible`` of its area visible is dropped. ``weights=False`` gives every box
  weight 1 (YOLOv5: ``yolov5_preset``).
* ``MaskPaste``: class-id masks ``(N, H, W)``: CutMix pastes the image's box; mixup hands out
  both masks (``mask``, ``mask_partner``) for ``λ·CE(out, mask) + (1−λ)·CE(out, mask_partner)``,
  or a soft ``(N, C, H, W)`` target; ``ignore_index`` pixels stay ``ignore_index``.

Box format everywhere: ``xyxy`` in pixels of the canvas, ``(x0, y0, x1, y1)`` with
``0 <= x0 < x1 <= W`` (``xywh_to_xyxy``, ``normalize_boxes`` and their inverses convert).

Example:
    >>> loader = create_detection_loader("images/", "instances.json", batch_size=16, canvas=320,
    ...                                  mixup=MixupConfig(alpha=1.5, cutmix_alpha=1.0))
    >>> for (batch,) in loader:
    ...     images, targets = to_torchvision(batch)   # Faster R-CNN's list of dicts
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..checks import IMAGE_LAYOUTS, check_bool, check_choice, check_int, check_layout, check_real, check_rgb, warn_user
from ..config import MixupConfig
from ..constants import IMAGENET_MEAN, IMAGENET_STD, PREFETCH_QUEUE_DEPTH, READER_NAME
from ..fields import Blend, Consumed, JointRule, Keep, Rule
from ..front import Kind, build_loader
from ..options import LoaderOptions
from ..scan import BadDataError, OnError, Problem, ProblemKind, ValidationError

__all__ = [
    "BadAnnotationError", "BoxesWithWeights", "CocoSource", "DetectionSpec", "Fit", "MaskPaste", "PAD_RANGES",
    "MIN_BOX_SIDE", "create_detection_loader", "denormalize_boxes", "detection_fields", "detection_pipeline",
    "load_coco", "normalize_boxes", "to_torchvision", "xywh_to_xyxy", "xyxy_to_xywh", "yolov5_preset",
]

#: boxes with a side below this many pixels are refused by ``load_coco`` (DALI's reader would drop
#: them silently with its ``size_threshold``, which the pipeline sets to this same value)
MIN_BOX_SIDE = 0.1


# -- box formats ------------------------------------------------------------------------------
def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(x, y, w, h)`` (COCO) → ``(x0, y0, x1, y1)``."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(x0, y0, x1, y1)`` → ``(x, y, w, h)`` (COCO)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([x0, y0, x1 - x0, y1 - y0], dim=-1)


def normalize_boxes(boxes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``xyxy`` pixels → ``xyxy`` in [0, 1] of an image of ``size = (H, W)``."""
    h, w = size
    return boxes / boxes.new_tensor([w, h, w, h])


def denormalize_boxes(boxes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``xyxy`` in [0, 1] → ``xyxy`` pixels of an image of ``size = (H, W)``."""
    h, w = size
    return boxes * boxes.new_tensor([w, h, w, h])


# -- the COCO source ---------------------------------------------------------------------------
class BadAnnotationError(ValidationError):
    """A COCO annotation file that cannot be trained on (one of the bad-data family,
    ``dali_mixup.scan.DataError``). ``file``, ``annotation_id`` and ``image_id`` say where
    (``None`` where not applicable); the message names them all.

    ``load_coco`` under the shared ``OnError``: ``RAISE`` at the first bad entry; ``SKIP``: a
    missing or unreadable image is left out with its annotations, a bad annotation (box outside the
    image, side < ``MIN_BOX_SIDE``, unknown category) alone, with one warning giving the count and
    the first ids. The JSON itself must parse and have the COCO keys (else ``RAISE`` whatever
    ``on_error`` says). DALI reads a cleaned copy of the file.
    """

    def __init__(self, file: str, message: str, annotation_id: Optional[int] = None,
                 image_id: Optional[int] = None):
        self.file, self.annotation_id, self.image_id = file, annotation_id, image_id
        where = [f"annotation id {annotation_id}"] if annotation_id is not None else []
        where += [f"image id {image_id}"] if image_id is not None else []
        text = f"{', '.join(where) + ': ' if where else ''}{message}"
        self.problems = [Problem(file, ProblemKind.CORRUPT_HEADER, text)]
        self.total = None
        ValueError.__init__(self, f"{file}: {text}")


class SourceKindCoco(str, enum.Enum):
    COCO = "coco"


@dataclass(frozen=True)
class CocoSource:
    """A validated COCO data set.

    Attributes:
        root: the image folder (``file_name`` is relative to it).
        annotations: the JSON DALI reads (the user's, or a cleaned copy with ``on_error="skip"``).
        image_ids: ``(image id, ...)`` in the order DALI reads them (ascending ids).
        files: the images' paths, in that order.
        boxes: ``{image id: ((x0, y0, x1, y1, category id, annotation id), ...)}`` in pixels of the
            original image, as validated: what the pipeline must produce.
        categories: ``{category id: name}``.
        skipped: ``(image or annotation id, reason)`` left out under ``on_error="skip"``.
    """

    root: str
    annotations: str
    image_ids: Tuple[int, ...]
    files: Tuple[str, ...]
    sizes: Tuple[Tuple[int, int], ...]
    boxes: Mapping[int, Tuple[Tuple[float, ...], ...]]
    categories: Mapping[int, str]
    digest: str
    masks: bool = False
    skipped: Tuple[Tuple[str, str], ...] = ()
    kind = SourceKindCoco.COCO
    shards = None

    @property
    def classes(self) -> List[str]:
        """Names indexed by class id (``""`` for ids no category uses): ``num_classes`` long."""
        return [self.categories.get(i, "") for i in range(self.num_classes)]

    @property
    def num_classes(self) -> int:
        """max category id + 1: labels are the category ids as written (no remapping)."""
        return max(self.categories, default=0) + 1

    @property
    def labels(self) -> Tuple[str]:  # what ``state.dataset_digest`` hashes with the files
        return (self.digest,)

    @property
    def num_boxes(self) -> int:
        return sum(len(b) for b in self.boxes.values())


#: COCO image ids DALI's reader takes (it parses them as int32)
MAX_IMAGE_ID = 2**31 - 1
#: where cleaned annotation files go under ``on_error="skip"``: one file per content, reused
COCO_CACHE = os.path.join(tempfile.gettempdir(), "dali_mixup_coco")


def _image_header(path: str) -> Tuple[int, int, int]:
    """``(height, width, EXIF orientation)`` of an image file as stored (1 = upright)."""
    from PIL import Image

    with Image.open(path) as im:
        orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
        return im.height, im.width, int(orientation or 1)


def _finite(v) -> bool:
    """A JSON number that is a finite float (an int of 400 digits is not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _read_json(annotations: str) -> dict:
    """The parsed COCO JSON: an object with lists ``images``, ``annotations``, ``categories``."""
    try:
        with open(annotations, "rb") as f:
            raw = f.read()
        data = json.loads(raw)
    except OSError as e:
        raise BadAnnotationError(annotations, f"cannot be read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadAnnotationError(annotations, f"is not valid JSON: {e}") from None
    except RecursionError:
        raise BadAnnotationError(annotations, "is not a COCO file: its JSON nests deeper than Python's parser "
                                              "goes") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise BadAnnotationError(annotations, "must be a JSON object with lists 'images', 'annotations' and "
                                              "'categories' (COCO format)")
    return data


def _categories(data: dict, annotations: str, masks: bool, ignore_index: int) -> Dict[int, str]:
    """``{category id: name}``; ids are ints in [0, 65535), unique; with masks neither 0 (the
    mask's background) nor ``ignore_index``."""
    categories = {}
    for c in data["categories"]:
        cid = c.get("id") if isinstance(c, dict) else None
        if isinstance(cid, bool) or not isinstance(cid, int) or not 0 <= cid < 65535:
            raise BadAnnotationError(annotations, f"category {str(c)[:80]}: 'id' must be an int in [0, 65535)")
        if masks and cid == ignore_index:
            raise BadAnnotationError(annotations, f"category id {cid} equals ignore_index={ignore_index}")
        if masks and cid == 0:
            raise BadAnnotationError(annotations, "category id 0 with masks=True: 0 is the mask's background value, "
                                                  "so this category's pixels would read as background; number "
                                                  "categories from 1 (as COCO does)")
        if cid in categories:
            raise BadAnnotationError(annotations, f"category id {cid} is declared twice")
        categories[cid] = str(c.get("name", cid))
    return categories


def _inside(root: str, path: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def _images(data: dict, annotations: str, root: str, bad, allow_outside_root: bool) -> Dict[int, dict]:
    """``{image id: entry + "_path"}`` of the usable images: ids unique ints DALI can read,
    ``file_name`` inside ``root`` and listed once, the file an image DALI decodes (the image
    scan: format, header, truncation), upright (no EXIF rotation) and of the size the JSON says."""
    from .image_scan import scan_file

    images: Dict[int, dict] = {}
    names: Dict[str, int] = {}
    for im in data["images"]:
        iid = im.get("id") if isinstance(im, dict) else None
        if isinstance(iid, bool) or not isinstance(iid, int):
            raise BadAnnotationError(annotations, f"image entry {str(im)[:80]}: 'id' must be an int")
        if not 0 <= iid <= MAX_IMAGE_ID:
            raise BadAnnotationError(annotations, f"image id must be in [0, {MAX_IMAGE_ID}] (DALI's COCO reader "
                                                  "reads int32 ids)", image_id=iid)
        if iid in images:
            raise BadAnnotationError(annotations, "image id is listed twice", image_id=iid)
        name, w, h = im.get("file_name"), im.get("width"), im.get("height")
        if not isinstance(name, str) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                for v in (w, h)):
            raise BadAnnotationError(annotations, "needs 'file_name' and positive int 'width', 'height'",
                                     image_id=iid)
        path = os.path.join(root, name)
        key = os.path.normpath(path)
        if key in names:
            raise BadAnnotationError(annotations, f"file_name {name!r} is also image id {names[key]}'s: DALI would "
                                                  "serve one of them twice and the other never", image_id=iid)
        names[key] = iid
        if not allow_outside_root and not _inside(root, path):
            bad(f"file_name {name!r} leads outside the image folder {root!r} (pass allow_outside_root=True if "
                "that is meant)", image_id=iid)
            continue
        problem = scan_file(path)
        if problem is not None:
            bad(f"image file {path!r}: {problem.reason}", image_id=iid)
            continue
        try:
            height, width, orientation = _image_header(path)
        except Exception as e:  # noqa: BLE001 - any decoder complaint means the file is unusable
            bad(f"image file {path!r} cannot be read as an image: {e}", image_id=iid)
            continue
        if orientation != 1:
            bad(f"image file {path!r} has EXIF orientation {orientation}: DALI's decoder rotates its pixels, the "
                "JSON's boxes are not rotated with them; save it upright (e.g. PIL.ImageOps.exif_transpose) and "
                "write its boxes for the upright image", image_id=iid)
            continue
        if (height, width) != (h, w):
            bad(f"image file {path!r} is {width}x{height} (WxH), the JSON says {w}x{h}", image_id=iid)
            continue
        images[iid] = dict(im, _path=path)
    return images


def _segmentation_problem(seg, height: int, width: int) -> Optional[str]:
    """Why a segmentation cannot be drawn into a mask, or ``None``: polygons need >= 3 finite
    points each; an RLE's ``size`` must be the image's ``[h, w]`` and uncompressed counts must sum
    to h·w."""
    if isinstance(seg, list):
        if not seg:
            return "'segmentation' is an empty list"
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2 or not all(map(_finite, poly)):
                return (f"polygon {k} of 'segmentation' must be >= 3 points [x0, y0, x1, y1, ...] of finite "
                        f"numbers, got {str(poly)[:60]}")
        return None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if size != [height, width]:
            return f"RLE 'size' {size!r} is not the image's [h, w] = [{height}, {width}]"
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                return "RLE 'counts' must be non-negative ints"
            if sum(counts) != height * width:
                return f"RLE 'counts' sum to {sum(counts)}, the image has {height * width} pixels"
        elif not isinstance(counts, str) or not counts:
            return "RLE 'counts' must be a list of ints or a compressed string"
        return None
    return f"'segmentation' must be polygons or an RLE, got {type(seg).__name__}"


def _annotations(data: dict, annotations: str, images: Dict[int, dict], categories: Dict[int, str], bad,
                 skipped, include_crowd: bool, masks: bool):
    """``({image id: [(x0, y0, x1, y1, category, annotation id)]}, kept annotations)``."""
    boxes: Dict[int, List[Tuple[float, ...]]] = {iid: [] for iid in images}
    kept, seen = [], set()
    for a in data["annotations"]:
        aid = a.get("id") if isinstance(a, dict) else None
        if isinstance(aid, bool) or not isinstance(aid, int):
            raise BadAnnotationError(annotations, f"annotation {str(a)[:80]}: 'id' must be an int")
        if aid in seen:
            raise BadAnnotationError(annotations, "annotation id is used twice", annotation_id=aid)
        seen.add(aid)
        iid = a.get("image_id")
        if iid not in images:
            if not any(s[0] == f"image {iid}" for s in skipped):
                bad(f"refers to image id {iid!r}, which is not in 'images'", annotation_id=aid)
            continue
        if a.get("iscrowd", 0) and not include_crowd:
            kept.append(a)  # DALI leaves it out (include_iscrowd=False); so do we
            continue
        im = images[iid]
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_finite, bbox))):
            bad(f"'bbox' must be 4 finite numbers [x, y, w, h], got {str(bbox)[:80]}", aid, iid)
            continue
        x, y, w, h = (float(v) for v in bbox)
        if w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
            bad(f"box {bbox} has a side below {MIN_BOX_SIDE} px (negative or empty size)", aid, iid)
            continue
        if x < 0 or y < 0 or x + w > im["width"] or y + h > im["height"]:
            bad(f"box {bbox} lies outside the {im['width']}x{im['height']} image {im['file_name']!r}", aid, iid)
            continue
        cid = a.get("category_id")
        if isinstance(cid, bool) or not isinstance(cid, int):
            bad(f"'category_id' must be an int, got {cid!r} (DALI drops the box otherwise)", aid, iid)
            continue
        if cid not in categories:
            bad(f"category id {cid!r} is not in 'categories'", aid, iid)
            continue
        if masks:
            why = ("has no 'segmentation' (masks=True needs polygons or RLE)" if not a.get("segmentation")
                   else _segmentation_problem(a["segmentation"], im["height"], im["width"]))
            if why is not None:
                bad(why, aid, iid)
                continue
        boxes[iid].append((x, y, x + w, y + h, cid, aid))
        kept.append(a)
    return boxes, kept


def _clean_copy(data: dict, images: Dict[int, dict], kept: list, cache_dir: Optional[str]) -> Tuple[str, bytes]:
    """The JSON DALI reads under ``on_error="skip"``: only the kept entries, written once per
    content into ``cache_dir`` (default ``COCO_CACHE``) and reused by later loaders."""
    clean = dict(data, images=[{k: v for k, v in im.items() if k != "_path"} for im in images.values()],
                 annotations=kept)
    raw = json.dumps(clean, sort_keys=True).encode()
    folder = cache_dir or COCO_CACHE
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, hashlib.sha256(raw).hexdigest()[:16] + ".json")
    if not os.path.isfile(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)  # atomic: ranks writing the same content at once are fine
    return path, raw


def load_coco(root: str, annotations: str, *, on_error: Union[str, OnError] = "raise", masks: bool = False,
              include_crowd: bool = False, ignore_index: int = 255, cache_dir: Optional[str] = None,
              allow_outside_root: bool = False) -> CocoSource:
    """Read and validate a COCO annotation file against its image folder, once, up front.

    Checked (each failure a ``BadAnnotationError`` naming the file and the image or annotation
    id): the JSON parses and has ``images``, ``annotations`` and ``categories``; ids are unique
    ints (image ids within int32); each ``file_name`` is listed once and stays inside ``root``;
    every image passes the image scan (format DALI decodes, header, truncation), is upright (no
    EXIF rotation, which DALI applies to the pixels and not to the boxes) and is the size the
    JSON says; every box is 4 finite numbers inside its image with sides ``>= MIN_BOX_SIDE``;
    every ``category_id`` is a declared int; with ``masks``, no category is 0 (background) or
    ``ignore_index``, and every annotation has a drawable ``segmentation`` (polygons of >= 3
    points, or an RLE of the image's size). ``iscrowd`` annotations are ignored unless
    ``include_crowd``.

    Args:
        root: image folder. annotations: the JSON file.
        on_error: ``OnError`` (``"raise"`` or ``"skip"``; see ``BadAnnotationError``).
        masks: the loader will produce pixel masks (needs segmentations).
        include_crowd: train on ``iscrowd=1`` annotations too.
        ignore_index: the mask value of "no label"; no category may use it.
        cache_dir: where the cleaned JSON goes under ``on_error="skip"`` (default ``COCO_CACHE``,
            one file per content, reused).
        allow_outside_root: accept ``file_name`` entries that lead outside ``root`` (absolute, or
            with ``..``).

    Raises:
        BadAnnotationError: naming the file and the annotation or image id.
    """
    on_error = check_choice("on_error", OnError, on_error)
    check_bool("masks", masks)
    check_bool("include_crowd", include_crowd)
    check_bool("allow_outside_root", allow_outside_root)
    ignore_index = check_int("ignore_index", ignore_index, 0, 65535)
    if not os.path.isdir(root):
        raise BadAnnotationError(root, "the image folder does not exist")
    data = _read_json(annotations)
    skip = on_error is OnError.SKIP
    skipped: List[Tuple[str, str]] = []

    def bad(message, annotation_id=None, image_id=None):
        err = BadAnnotationError(annotations, message, annotation_id, image_id)
        if not skip:
            raise err
        skipped.append((f"annotation {annotation_id}" if annotation_id is not None else f"image {image_id}", message))

    categories = _categories(data, annotations, masks, ignore_index)
    images = _images(data, annotations, root, bad, allow_outside_root)
    boxes, kept = _annotations(data, annotations, images, categories, bad, skipped, include_crowd, masks)
    if not images:
        raise BadAnnotationError(annotations, "no usable image")
    path = annotations
    with open(annotations, "rb") as f:
        raw = f.read()
    if skipped:
        first = "; ".join(f"{w}: {m}" for w, m in skipped[:5])
        warn_user(f"{annotations}: left out {len(skipped)} bad entr{'y' if len(skipped) == 1 else 'ies'} "
                  f"(on_error='skip'): {first}{' ...' if len(skipped) > 5 else ''}")
        path, raw = _clean_copy(data, images, kept, cache_dir)
    order = sorted(images)
    return CocoSource(
        root=root, annotations=path, image_ids=tuple(order), files=tuple(images[i]["_path"] for i in order),
        sizes=tuple((images[i]["height"], images[i]["width"]) for i in order),
        boxes={i: tuple(boxes[i]) for i in order}, categories=categories,
        digest=hashlib.sha256(raw).hexdigest(), masks=masks, skipped=tuple(skipped),
    )


# -- the pipeline ------------------------------------------------------------------------------
class Fit(str, enum.Enum):
    """How an image goes onto the ``(H, W)`` canvas. Worked example, a 40x20 (WxH) image, canvas
    64x64:

    * ``STRETCH``: resized to 64x64 (aspect changes); a box [4, 2, 8, 6] → [6.4, 6.4, 12.8, 19.2].
    * ``LETTERBOX``: resized to 64x32 (aspect kept, the longer side fits), placed at the top left,
      rows 32..63 filled with ``pad_value`` (masks: ``ignore_index``); the box → [6.4, 3.2, 12.8, 9.6].
    """

    STRETCH = "stretch"
    LETTERBOX = "letterbox"


def _canvas(value) -> Tuple[int, int]:
    from ..checks import MAX_IMAGE_SIZE

    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise TypeError(f"canvas must be an int or (H, W), got {value!r}")
        return (check_int("canvas[0]", value[0], 1, MAX_IMAGE_SIZE), check_int("canvas[1]", value[1], 1, MAX_IMAGE_SIZE))
    side = check_int("canvas", value, 1, MAX_IMAGE_SIZE)
    return (side, side)


def detection_pipeline_graph(source: CocoSource, *, device: str, canvas: Tuple[int, int], fit: Fit,
                             flip_prob: float, mean, std, dtype: str, layout: str, masks: bool,
                             ignore_index: int, pad_value: float, shard_id: int, num_shards: int, shuffle: bool,
                             include_crowd: bool = False):
    """The graph (inside a ``pipeline_def``): ``{name: output}`` with the names of
    ``detection_fields``; see ``detection_pipeline``."""
    from nvidia.dali import fn, types

    from .image_pipeline import DALI_DTYPES, LAYOUTS, _decoder_args

    reader = dict(file_root=source.root, annotations_file=source.annotations, ltrb=True, ratio=True,
                  image_ids=True, avoid_class_remapping=True, skip_empty=False, size_threshold=MIN_BOX_SIDE,
                  include_iscrowd=include_crowd, pixelwise_masks=masks, shard_id=shard_id,
                  num_shards=num_shards, random_shuffle=shuffle, pad_last_batch=True, name=READER_NAME)
    outs = fn.readers.coco(**reader)
    if masks:
        encoded, boxes, labels, mask, image_ids = outs
    else:
        encoded, boxes, labels, image_ids = outs
    images = fn.decoders.image(encoded, output_type=types.RGB, **_decoder_args(device, 0.65))
    h, w = canvas
    size = dict(resize_x=w, resize_y=h) if fit is Fit.STRETCH else dict(size=[h, w], mode="not_larger")
    images = fn.resize(images, device=device, antialias=True, **size)
    coin = fn.random.coin_flip(probability=flip_prob)
    images = fn.flip(images, device=device, horizontal=coin)
    # boxes: normalised to the image (ratio=True), flipped there, then scaled to the resized
    # image's pixels, which sit at the canvas's top left: canvas pixels, xyxy
    shape = fn.cast(images.shape(), dtype=types.FLOAT)  # (h, w, 3) of the resized image
    scale = fn.cat(shape[1:2], shape[0:1], shape[1:2], shape[0:1])
    boxes = fn.bb_flip(boxes, ltrb=True, horizontal=coin) * scale
    if dtype == "uint8":
        mean_, std_ = (0.0,) * 3, (1.0,) * 3
    else:
        mean_, std_ = [m * 255 for m in mean], [s * 255 for s in std]
    images = fn.crop_mirror_normalize(
        images, device=device, dtype=DALI_DTYPES[dtype], output_layout=LAYOUTS[layout], mean=mean_, std=std_,
        crop=(h, w), crop_pos_x=0.0, crop_pos_y=0.0, out_of_bounds_policy="pad", fill_values=pad_value)
    outputs = {"images": images, "bboxes": fn.pad(boxes, fill_value=0.0), "labels": fn.pad(labels, fill_value=-1),
               "counts": labels.shape(), "image_ids": image_ids}
    if masks:
        mask = fn.cast(mask, dtype=types.UINT16)
        if device == "gpu":
            mask = mask.gpu()
        mask = fn.resize(mask, device=device, interp_type=types.INTERP_NN, antialias=False, **size)
        mask = fn.flip(mask, device=device, horizontal=coin)
        mask = fn.crop(mask, device=device, crop=(h, w), crop_pos_x=0.0, crop_pos_y=0.0,
                       out_of_bounds_policy="pad", fill_values=float(ignore_index))
        outputs["mask"] = fn.cast(mask, dtype=types.INT32)  # torch has no uint16 in DALI's plugin
    return outputs


def detection_pipeline(source: CocoSource, *, checkpoint=None, **kwargs):
    """A DALI pipeline over ``source``: ``(images, bboxes, labels, counts, image_ids[, masks])``.

    * images: ``(C, H, W)`` (``layout``) of the canvas, ``dtype``, normalised by ``mean``/``std``
      (in [0, 1] units) unless uint8; decoded by nvJPEG (``mixed``) on ``device="gpu"``.
    * bboxes: ``(M, 4)`` float32 xyxy canvas pixels, padded with zeros to the batch's largest M.
    * labels: ``(M,)`` int32 category ids, padded with −1. counts: ``(1,)`` int64, the real M.
    * image_ids: ``(1,)`` int32, the COCO image id.
    * masks (``masks=True``): ``(H, W, 1)`` int32 category ids of the canvas, ``ignore_index``
      on the letterbox padding; nearest-neighbour resize, flipped with the image.

    Every image is resized (``Fit``), flipped horizontally with probability ``flip_prob`` (boxes
    and masks with it, one coin per sample), padded at the bottom/right to the canvas.
    Arguments as ``create_detection_loader`` plus DALI's ``batch_size``, ``num_threads``,
    ``device_id``, ``seed``, ``prefetch_queue_depth``.
    """
    from nvidia.dali import pipeline_def

    dali = {k: kwargs.pop(k) for k in ("batch_size", "num_threads", "device_id", "seed", "prefetch_queue_depth")
            if k in kwargs}

    @pipeline_def(enable_checkpointing=True)
    def _pipe():
        return tuple(detection_pipeline_graph(source, **kwargs).values())

    return _pipe(checkpoint=checkpoint, **dali)


# -- the mix rules -----------------------------------------------------------------------------
def _area(b: torch.Tensor) -> torch.Tensor:
    return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)


def _visible_after_paste(b: torch.Tensor, cut: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Own boxes ``(K, 4)`` xyxy under a pasted box ``cut`` (4,) xyxy: (the tightest box around
    each box's visible part, its visible area)."""
    cx0, cy0, cx1, cy1 = cut.tolist()
    inter = torch.stack([b[:, 0].clamp(min=cx0), b[:, 1].clamp(min=cy0), b[:, 2].clamp(max=cx1),
                         b[:, 3].clamp(max=cy1)], 1)
    visible = _area(b) - _area(inter)
    out = b.clone()
    spans_y = (cy0 <= b[:, 1]) & (cy1 >= b[:, 3])  # the paste covers the box's full height
    spans_x = (cx0 <= b[:, 0]) & (cx1 >= b[:, 2])
    out[:, 0] = torch.where(spans_y & (cx0 <= b[:, 0]) & (cx1 > b[:, 0]), torch.clamp(b[:, 0], min=cx1), out[:, 0])
    out[:, 2] = torch.where(spans_y & (cx1 >= b[:, 2]) & (cx0 < b[:, 2]), torch.clamp(b[:, 2], max=cx0), out[:, 2])
    out[:, 1] = torch.where(spans_x & (cy0 <= b[:, 1]) & (cy1 > b[:, 1]), torch.clamp(b[:, 1], min=cy1), out[:, 1])
    out[:, 3] = torch.where(spans_x & (cy1 >= b[:, 3]) & (cy0 < b[:, 3]), torch.clamp(b[:, 3], max=cy0), out[:, 3])
    return out, visible


@dataclass(frozen=True)
class BoxesWithWeights(JointRule):
    """Detection boxes ``(N, M, 4)`` xyxy pixels (with the pipeline's ``labels`` and ``counts``
    fields) mixed with their images.

    Mixup sample i (λ = ``lam[i]``, partner j = ``perm[i]``): i's boxes with weight λ, then j's
    boxes with weight 1 − λ; a group whose weight is 0 is left out (an unmixed sample, λ = 1,
    keeps only its own). CutMix sample i with pasted box B: j's boxes clipped to B, i's boxes
    clipped to the tightest box around what B leaves visible; a box keeps weight 1 (its pixels are
    not blended) and is dropped when less than ``min_visible`` of its area is visible. No box is
    ever scaled by λ.

    Args:
        labels: the field with ``(N, M)`` class ids (−1 padding).
        counts: the field with ``(N,)`` or ``(N, 1)`` box counts, each in ``[0, M]`` (else
            ``ValueError`` naming the sample: a count above M or below 0 would drop boxes without
            a word). Checked on the CPU, where the rule reads them anyway.
        min_visible: in [0, 1]: the visible-area threshold of CutMix (share of the box's own area).
        weights: ``False``: every kept box weight 1 (YOLOv5).

    Outputs (``outputs(name)``): the field's own name (``bboxes``) ``(N, M', 4)`` float32 xyxy
    (zeros as padding), the ``labels`` field's name ``(N, M')`` int64 (−1), ``box_weights``
    ``(N, M')`` float32 (0), ``box_counts`` ``(N,)`` int64, ``box_source`` ``(N, M')`` int64: the
    batch index whose annotation the box is (i or perm[i]; −1 padding). CPU tensors.
    """

    labels: str = "labels"
    counts: str = "counts"
    min_visible: float = 0.2
    weights: bool = True

    def __post_init__(self):
        object.__setattr__(self, "min_visible", check_real("min_visible", self.min_visible, low=0.0, high=1.0))
        check_bool("weights", self.weights)

    @property
    def inputs(self):
        return (self.labels, self.counts)

    def outputs(self, name):
        return (name, self.labels, "box_weights", "box_counts", "box_source")

    def apply_joint(self, name, values, params):
        boxes = values[name].detach().to("cpu", torch.float32)
        labels = values[self.labels].detach().to("cpu", torch.int64)
        counts = values[self.counts].detach().to("cpu", torch.int64).reshape(-1)
        n = boxes.shape[0]
        if boxes.dim() != 3 or boxes.shape[-1] != 4 or labels.shape[:2] != boxes.shape[:2] or counts.shape[0] != n:
            raise ValueError(f"field {name!r}: boxes (N, M, 4), labels (N, M), counts (N,) expected; got "
                             f"{tuple(boxes.shape)}, {tuple(labels.shape)}, {tuple(counts.shape)}")
        m_in = boxes.shape[1]
        if n and (int(counts.min()) < 0 or int(counts.max()) > m_in):
            bad = [(i, c) for i, c in enumerate(counts.tolist()) if not 0 <= c <= m_in]
            listed = ", ".join(f"sample {i} has {c}" for i, c in bad[:5])
            raise ValueError(f"field {self.counts!r}: box counts must be in [0, M={m_in}] (the boxes of field "
                             f"{name!r} are (N, {m_in}, 4)); {listed}")
        lam, perm = params.lam.tolist(), params.perm.tolist()
        cut, cutboxes = params.cutmix.tolist(), params.boxes.tolist()
        rows = []
        for i in range(n):
            j = perm[i]
            own, own_l = boxes[i, :counts[i]], labels[i, :counts[i]]
            part, part_l = boxes[j, :counts[j]], labels[j, :counts[j]]
            if cut[i]:
                y0, y1, x0, x1 = cutboxes[i]
                c = torch.tensor([x0, y0, x1, y1], dtype=torch.float32)
                own_b, vis = _visible_after_paste(own, c)
                keep_own = (vis > 0) & (vis >= self.min_visible * _area(own))
                part_b = torch.stack([part[:, 0].clamp(x0, x1), part[:, 1].clamp(y0, y1),
                                      part[:, 2].clamp(x0, x1), part[:, 3].clamp(y0, y1)], 1)
                pa = _area(part_b)
                keep_part = (pa > 0) & (pa >= self.min_visible * _area(part))
                w_own = w_part = 1.0
            else:
                own_b, part_b = own, part
                w_own, w_part = lam[i], 1.0 - lam[i]
                keep_own = torch.full((own.shape[0],), w_own > 0)
                keep_part = torch.full((part.shape[0],), w_part > 0 and j != i)
            if not self.weights:
                w_own = w_part = 1.0
            parts = [(own_b[keep_own], own_l[keep_own], w_own, i), (part_b[keep_part], part_l[keep_part], w_part, j)]
            rows.append(parts)
        m = max((sum(p[0].shape[0] for p in r) for r in rows), default=0)
        out_b = torch.zeros((n, m, 4), dtype=torch.float32)
        out_l = torch.full((n, m), -1, dtype=torch.int64)
        out_w = torch.zeros((n, m), dtype=torch.float32)
        out_s = torch.full((n, m), -1, dtype=torch.int64)
        out_c = torch.zeros(n, dtype=torch.int64)
        for i, parts in enumerate(rows):
            k = 0
            for b, lab, w, src in parts:
                e = k + b.shape[0]
                out_b[i, k:e], out_l[i, k:e], out_w[i, k:e], out_s[i, k:e] = b, lab, w, src
                k = e
            out_c[i] = k
        return {name: out_b, self.labels: out_l, "box_weights": out_w, "box_counts": out_c, "box_source": out_s}


@dataclass(frozen=True)
class MaskPaste(Rule):
    """Class-id masks ``(N, H, W)`` (or DALI's ``(N, H, W, 1)``) mixed with their images.

    CutMix sample i: j's mask inside the same box as the image, i's outside. Mixup: ``mask`` is
    i's own, ``mask_partner`` j's (for a CutMix sample both are the pasted mask, so the two-loss
    form ``λ·CE(out, mask, ignore_index) + (1−λ)·CE(out, mask_partner, ignore_index)`` is right
    for every sample). ``soft=True`` adds ``mask_soft`` ``(N, C, H, W)`` float32: λ·onehot(own) +
    (1−λ)·onehot(partner) (CutMix: onehot(pasted)); an ``ignore_index`` pixel gives no mass, so a
    pixel ignored in both sums to 0 (weight the loss by the sum). Masks are int64, ``ignore_index``
    kept as it is.

    Ids are checked when prepared: a negative id, or (with ``num_classes``) one ``>= C``, that is
    not ``ignore_index`` is a ``ValueError`` naming the ids (it would be in ``mask`` but give no
    mass in ``mask_soft``). On the CPU the check is one pass over the masks; on CUDA it is an
    asynchronous device assert (no host sync).

    Args:
        ignore_index: the "no label" value (DALI pads the letterbox with it).
        num_classes: C, needed with ``soft``; the ids' upper bound when given.
        soft: also hand out ``mask_soft``.

    Outputs (``outputs(name)``): ``name``, ``name + "_partner"`` and with ``soft``
    ``name + "_soft"``.
    """

    ignore_index: int = 255
    num_classes: Optional[int] = None
    soft: bool = False

    def __post_init__(self):
        object.__setattr__(self, "ignore_index", check_int("ignore_index", self.ignore_index, 0, 65535))
        check_bool("soft", self.soft)
        if self.soft and self.num_classes is None:
            raise ValueError("MaskPaste(soft=True) needs num_classes")
        if self.num_classes is not None:
            from ..checks import check_num_classes

            object.__setattr__(self, "num_classes", check_num_classes("num_classes", self.num_classes))

    def outputs(self, name):
        return (name, f"{name}_partner", f"{name}_soft") if self.soft else (name, f"{name}_partner")

    def prepare(self, name, value):
        if value.dim() == 4 and value.shape[-1] == 1:
            value = value[..., 0]
        if value.dim() != 3:
            raise ValueError(f"field {name!r}: masks must be (N, H, W) or (N, H, W, 1), got {tuple(value.shape)}")
        if value.is_floating_point():
            raise TypeError(f"field {name!r}: masks must hold integer class ids, got {value.dtype}")
        value = value.to(torch.int64)
        if value.numel():
            c = self.num_classes
            bad = value < 0 if c is None else (value < 0) | (value >= c)
            bad &= value != self.ignore_index
            valid = f"[0, num_classes={c})" if c is not None else ">= 0"
            if value.is_cuda:
                torch._assert_async(~bad.any(), f"field {name!r}: mask ids outside {valid}, not ignore_index")
            elif bool(bad.any()):
                ids = torch.unique(value[bad])[:10].tolist()
                raise ValueError(f"field {name!r}: mask ids {ids} are outside {valid} and are not "
                                 f"ignore_index={self.ignore_index}")
        return value

    def spatial_size(self, value):
        return tuple(value.shape[-3:-1]) if value.dim() == 4 and value.shape[-1] == 1 else tuple(value.shape[1:3])

    def apply(self, name, value, params):
        n = value.shape[0]
        if params.image_size is not None and params.has_cutmix and tuple(value.shape[1:3]) != params.image_size:
            raise ValueError(f"field {name!r}: masks are {tuple(value.shape[1:3])}, the CutMix boxes were drawn for "
                             f"{params.image_size}")
        perm = params.perm.to(value.device)
        partner = value.index_select(0, perm)
        pasted = value.clone()  # read from value/partner, write here: no partner is read after a write
        cut = params.cutmix.tolist()
        for i in range(n):
            if cut[i]:
                y0, y1, x0, x1 = params.boxes[i].tolist()
                pasted[i, y0:y1, x0:x1] = partner[i, y0:y1, x0:x1]
        is_cut = params.cutmix.to(value.device).view(n, 1, 1)
        out = {name: pasted, f"{name}_partner": torch.where(is_cut, pasted, partner)}
        if self.soft:
            lam = torch.where(params.cutmix, torch.ones_like(params.lam), params.lam).to(value.device).view(n, 1, 1, 1)
            out[f"{name}_soft"] = lam * self._onehot(pasted) + (1 - lam) * self._onehot(out[f"{name}_partner"])
        return out

    def _onehot(self, m: torch.Tensor) -> torch.Tensor:
        c = self.num_classes
        valid = (m != self.ignore_index) & (m >= 0) & (m < c)
        hot = torch.zeros((m.shape[0], c, *m.shape[1:]), dtype=torch.float32, device=m.device)
        hot.scatter_(1, torch.where(valid, m, 0).unsqueeze(1), valid.unsqueeze(1).to(torch.float32))
        return hot


def detection_fields(*, masks: bool = False, ignore_index: int = 255, num_classes: Optional[int] = None,
                     soft_masks: bool = False, min_visible: float = 0.2, box_weights: bool = True,
                     layout: str = "NCHW", dtype: Optional[torch.dtype] = None) -> Dict[str, Rule]:
    """The fields of ``detection_pipeline``'s outputs, in order, with their rules."""
    fields: Dict[str, Rule] = {
        "images": Blend(layout=layout, dtype=dtype),
        "bboxes": BoxesWithWeights(labels="labels", counts="counts", min_visible=min_visible, weights=box_weights),
        "labels": Consumed(),
        "counts": Consumed(),
        "image_ids": Keep(),
    }
    if masks:
        fields["mask"] = MaskPaste(ignore_index=ignore_index, num_classes=num_classes, soft=soft_masks)
    return fields


def yolov5_preset(prob: float = 1.0) -> Dict[str, Any]:
    """YOLOv5's mixup: r ~ Beta(32, 32) per image with probability ``prob`` (its ``hyp.mixup``),
    the two box sets concatenated with no weights. ``create_detection_loader(..., **yolov5_preset())``."""
    return {"mixup": MixupConfig(alpha=32.0, beta=32.0, prob=check_real("prob", prob, low=0.0, high=1.0),
                                 mode="elem"),
            "box_weights": False}


@dataclass(frozen=True)
class DetectionSpec:
    """The resolved options of one detection loader (see ``create_detection_loader``); the shared
    ones are ``options``."""

    options: LoaderOptions
    source: CocoSource
    batch_size: int
    canvas: Tuple[int, int]
    fit: Fit
    mixup: Optional[MixupConfig]
    shuffle: bool
    flip_prob: float
    masks: bool
    ignore_index: int
    soft_masks: bool
    min_visible: float
    box_weights: bool
    dtype: str
    layout: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    pad_value: float
    include_crowd: bool
    dynamic_shape = True  # the boxes per image vary from batch to batch

    @property
    def num_samples(self) -> int:
        return len(self.source.files)

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    def fields(self) -> Dict[str, Rule]:
        return detection_fields(masks=self.masks, ignore_index=self.ignore_index, num_classes=self.source.num_classes,
                                soft_masks=self.soft_masks, min_visible=self.min_visible,
                                box_weights=self.box_weights, layout=self.layout)

    def graph(self):
        o = self.options
        return detection_pipeline_graph(
            self.source, device=o.device, canvas=self.canvas, fit=self.fit, flip_prob=self.flip_prob, mean=self.mean,
            std=self.std, dtype=self.dtype, layout=self.layout, masks=self.masks, ignore_index=self.ignore_index,
            pad_value=self.pad_value, shard_id=o.shard_id, num_shards=o.num_shards, shuffle=self.shuffle,
            include_crowd=self.include_crowd)

    def diagnose(self, error: BaseException) -> BadDataError:
        from .image_scan import diagnose_read_error

        return diagnose_read_error(error, self.source.files)

    def config(self):
        return dict(canvas=list(self.canvas), fit=self.fit.value, shuffle=self.shuffle, flip_prob=self.flip_prob,
                    masks=self.masks, ignore_index=self.ignore_index, soft_masks=self.soft_masks,
                    dtype=self.dtype, layout=self.layout, mean=list(self.mean), std=list(self.std),
                    pad_value=self.pad_value, include_crowd=self.include_crowd)

    @classmethod
    def resolve(cls, options: LoaderOptions, root: str, annotations: str, *, batch_size: int,
                canvas: Union[int, Tuple[int, int]] = 320, fit: Union[str, Fit] = "letterbox",
                mixup: Optional[MixupConfig] = None, shuffle: bool = True, flip_prob: float = 0.5,
                masks: bool = False, ignore_index: int = 255, soft_masks: bool = False, min_visible: float = 0.2,
                box_weights: bool = True, dtype: str = "float32", layout: str = "NCHW",
                mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, pad_value: float = 0.0,
                include_crowd: bool = False, allow_outside_root: bool = False) -> "DetectionSpec":
        """Check every detection option and load (validate) the COCO data set."""
        from .image_pipeline import DALI_DTYPES

        batch_size = check_int("batch_size", batch_size, 1)
        canvas = _canvas(canvas)
        fit = check_choice("fit", Fit, fit)
        if mixup is not None and not isinstance(mixup, MixupConfig):
            raise TypeError(f"mixup must be a MixupConfig or None, got {type(mixup).__name__}")
        for opt, v in (("shuffle", shuffle), ("masks", masks), ("soft_masks", soft_masks)):
            check_bool(opt, v)
        flip_prob = check_real("flip_prob", flip_prob, low=0.0, high=1.0)
        if dtype not in DALI_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DALI_DTYPES)}, got {dtype!r}")
        check_layout(layout, allowed=IMAGE_LAYOUTS)
        mean, std = check_rgb("mean", mean), check_rgb("std", std, positive=True)
        low, high = PAD_RANGES[dtype]
        pad_value = check_real("pad_value", pad_value, low=low, high=high)
        if dtype == "uint8" and pad_value != int(pad_value):
            raise ValueError(f"pad_value must be a whole number for dtype='uint8', got {pad_value}")
        source = load_coco(root, annotations, on_error=options.on_error, masks=masks, include_crowd=include_crowd,
                           ignore_index=ignore_index, allow_outside_root=allow_outside_root)
        return cls(options=options, source=source, batch_size=batch_size, canvas=canvas, fit=fit, mixup=mixup,
                   shuffle=shuffle, flip_prob=flip_prob, masks=masks, ignore_index=ignore_index,
                   soft_masks=soft_masks, min_visible=min_visible, box_weights=box_weights, dtype=dtype,
                   layout=layout, mean=mean, std=std, pad_value=pad_value, include_crowd=include_crowd)


#: the values ``pad_value`` may take for each output dtype (the letterbox fill, in output units)
PAD_RANGES = {"uint8": (0.0, 255.0), "float16": (-65504.0, 65504.0), "float32": (-3.4e38, 3.4e38)}

#: the detection kind as the front knows it (``load_coco`` always checks the annotations and
#: the images' headers)
KIND = Kind("detection", DetectionSpec.resolve, default_validate=True, samples="images")


def create_detection_loader(
    root: str,
    annotations: str,
    *,
    batch_size: int,
    canvas: Union[int, Tuple[int, int]] = 320,
    fit: Union[str, Fit] = "letterbox",
    mixup: Optional[MixupConfig] = None,
    shuffle: bool = True,
    flip_prob: float = 0.5,
    masks: bool = False,
    ignore_index: int = 255,
    soft_masks: bool = False,
    min_visible: float = 0.2,
    box_weights: bool = True,
    dtype: str = "float32",
    layout: str = "NCHW",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pad_value: float = 0.0,
    include_crowd: bool = False,
    allow_outside_root: bool = False,
    device: str = "auto",
    device_id: Optional[int] = None,
    shard_id: Optional[int] = None,
    num_shards: Optional[int] = None,
    num_threads: Optional[int] = None,
    seed: int = 0,
    last_batch_policy="PARTIAL",
    prefetch_queue_depth: int = PREFETCH_QUEUE_DEPTH,
    on_error: str = "raise",
    validate: Optional[bool] = None,
    auto_reset: bool = True,
):
    """A DALI detection (and segmentation) loader with mixup/CutMix: ``build_loader("detection", ...)``.

    Args:
        root, annotations: the image folder and the COCO JSON, validated first (``load_coco``).
        batch_size: samples per batch. canvas: output side, or ``(H, W)``. fit: ``Fit``.
        mixup: ``MixupConfig`` (λ, partners, CutMix), or ``None`` for no mixing.
        shuffle: read in random order (else ascending image id).
        flip_prob: chance of a horizontal flip (image, boxes and masks together).
        masks: produce pixel masks (``mask`` and ``mask_partner`` (N, H, W) int64).
        ignore_index: mask value of unlabelled pixels and of the letterbox padding.
        soft_masks: also ``mask_soft`` (N, C, H, W).
        min_visible: CutMix drops a box with less than this share of its area visible.
        box_weights: weights λ / 1 − λ (``False``: all 1, as YOLOv5).
        dtype: 'float32', 'float16' or 'uint8' (no normalisation); layout: 'NCHW' or 'NHWC'.
        mean, std: normalisation in [0, 1] units. pad_value: letterbox fill, in output units
            (within the dtype's range: ``PAD_RANGES``).
        include_crowd: also train on ``iscrowd`` annotations.
        allow_outside_root: accept ``file_name`` entries leading outside ``root``.
        device, device_id, shard_id, num_shards, num_threads, seed, last_batch_policy,
            prefetch_queue_depth, on_error, validate, auto_reset: the shared options
            (``dali_mixup.options``), as ``create_loader``'s: shards by global rank and
            ``device_id`` by local rank under torchrun; ``on_error`` for bad images and
            annotations ('raise' or 'skip': ``BadAnnotationError``). ``load_coco`` always checks
            the annotations and the images' headers.

    Returns:
        An iterator (``DALIMixupIterator``) yielding ``[batch]``, ``batch`` a dict with
        ``images`` (N, C, H, W) on the pipeline's device; ``bboxes`` (N, M, 4) float32 xyxy
        canvas pixels, ``labels`` (N, M) int64 category ids (−1 padding), ``box_weights`` (N, M),
        ``box_counts`` (N,), ``box_source`` (N, M) (see ``BoxesWithWeights``), ``image_ids``
        (N, 1); ``lam``, ``perm`` and with CutMix ``cutmix``, ``boxes`` (the CutMix regions,
        (y0, y1, x0, x1)); with ``masks`` also ``mask``, ``mask_partner`` (and ``mask_soft``).
        ``.source`` is the ``CocoSource``, ``.options`` the shared options;
        ``state_dict``/``load_state_dict`` resume it.
    """
    return build_loader("detection", **locals())


def to_torchvision(batch: Mapping[str, torch.Tensor], device: Optional[torch.device] = None,
                   weights: bool = True) -> Tuple[List[torch.Tensor], List[Dict[str, torch.Tensor]]]:
    """A detection batch as torchvision detection models take it.

    Args:
        batch: one dict from the loader (``images``, ``bboxes``, ``labels``, ``box_counts``,
            ``box_weights``; ``mask`` is passed on as ``"mask"`` when present).
        device: where the targets go (default: the images' device).
        weights: also put each image's ``"weights"`` (m,) in its target (torchvision's losses
            ignore it; a weighted loss reads it).

    Returns:
        ``(images, targets)``: a list of N ``(C, H, W)`` tensors and a list of N dicts with
        ``"boxes"`` (m, 4) float32 xyxy pixels and ``"labels"`` (m,) int64.
    """
    images = batch["images"]
    device = torch.device(device) if device is not None else images.device
    counts = batch["box_counts"].tolist()
    targets = []
    for i, m in enumerate(counts):
        t = {"boxes": batch["bboxes"][i, :m].to(device), "labels": batch["labels"][i, :m].to(device)}
        if weights:
            t["weights"] = batch["box_weights"][i, :m].to(device)
        if "mask" in batch:
            t["mask"] = batch["mask"][i].to(device)
        targets.append(t)
    return list(images.unbind(0)), targets
