"""``dali-mixup doctor``: what this machine (or container) has, and whether the pipeline works on it.

It reports the versions of Python, torch, DALI and CuPy; the GPU, its NVIDIA driver and the CUDA
versions; whether the hardware JPEG decoder (the NVJPG engines of A100/H100-class GPUs) can be
used. Then it runs a tiny pipeline end to end on JPEGs it writes to a temporary folder, on the GPU
when there is one (CPU otherwise), and checks the mixed batches against the CPU twin.

Exit status 0 when everything it found works; 1 with one ``doctor: problem: ...`` line per
problem on stderr otherwise. It is the container's smoke test (``docker run --gpus all IMAGE
doctor``) and works the same on bare metal.

How the hardware JPEG decoder is detected, on a GPU:

* NVML (``libnvidia-ml``, mounted by the NVIDIA Container Toolkit with the ``utility``
  capability) is asked for the JPEG engines' utilisation: GPUs without NVJPG engines answer
  "not supported". Where NVML is unavailable, the compute capability stands in: 8.0 (A100, A30),
  9.0 (H100, H200, GH200) and 10.0 (B200, GB200) have the engines.
* nvImageCodec, the library behind DALI 2.x's ``mixed`` decoder, decodes a test JPEG with its
  hardware backend alone (``BackendKind.HW_GPU_ONLY``). Success means DALI's ``mixed`` decoder
  uses the engines for the ``hw_decoder_load`` share of the JPEGs. The backend does not fall back:
  on an H100 (driver 580) it decoded a baseline JPEG and returned ``None`` for a progressive one,
  which the engines cannot decode, while the hybrid and CPU backends decoded both.

A GPU with the engines whose hardware decode fails is a problem: in a container it is usually
``NVIDIA_DRIVER_CAPABILITIES`` without ``video``. A GPU without the engines is not a problem
(DALI decodes with CUDA instead) and is reported as such.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import io
import os
import pathlib
import platform
import sys
import tempfile
import traceback
from typing import Callable, List, Optional, Tuple

# Compute capabilities whose data-centre parts carry NVJPG engines; used only when NVML cannot say.
HW_JPEG_CAPABILITIES = {(8, 0): "A100/A30", (9, 0): "H100/H200/GH200", (10, 0): "B200/GB200"}

# The generated data set: CLASSES x IMAGES_PER_CLASS JPEGs (one grayscale), small and varied.
CLASSES = ("ant", "bee", "cat")
IMAGES_PER_CLASS = 5
BATCH_SIZE = 4  # 15 samples: three full batches and a short one (PARTIAL)
IMAGE_SIZE = 32


class CheckFailed(Exception):
    """A check found a problem; the message is the one-line reason."""


class CheckSkipped(Exception):
    """A check could not run because an earlier one failed (that one is the problem reported)."""


@dataclasses.dataclass
class Context:
    """What the checks share: the device they run on and the generated data."""

    device: str  # "gpu" or "cpu"
    root: pathlib.Path
    num_images: int
    num_classes: int
    seed: int
    val_epoch: Optional[Tuple["object", "object"]] = None  # (images, label_index), filled by check_val


# -- facts -----------------------------------------------------------------------------------


def _version(module_name: str) -> Tuple[Optional[str], Optional[str]]:
    """(version, None) or (None, why it cannot be imported)."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - a broken install raises anything; the reason is reported
        return None, f"{type(e).__name__}: {e}"
    return str(getattr(module, "__version__", "unknown version")), None


class _Nvml:
    """The few NVML calls doctor needs, through ctypes (no pynvml dependency). ``None`` = unknown."""

    NOT_SUPPORTED = 3

    def __init__(self):
        self.lib = None
        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
            if lib.nvmlInit_v2() == 0:
                self.lib = lib
        except (OSError, AttributeError):
            self.lib = None

    def close(self):
        if self.lib is not None:
            self.lib.nvmlShutdown()
            self.lib = None

    def driver_version(self) -> Optional[str]:
        if self.lib is None:
            return None
        buf = ctypes.create_string_buffer(96)
        if self.lib.nvmlSystemGetDriverVersion(buf, ctypes.c_uint(len(buf))) != 0:
            return None
        return buf.value.decode()

    def cuda_driver_version(self) -> Optional[int]:
        if self.lib is None:
            return None
        v = ctypes.c_int()
        if self.lib.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(v)) != 0:
            return None
        return v.value

    def device_count(self) -> Optional[int]:
        if self.lib is None:
            return None
        n = ctypes.c_uint()
        return n.value if self.lib.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 0 else None

    def _handle(self, pci_bus_id: Optional[str], index: int):
        h = ctypes.c_void_p()
        if pci_bus_id:
            rc = self.lib.nvmlDeviceGetHandleByPciBusId_v2(pci_bus_id.encode(), ctypes.byref(h))
        else:
            rc = self.lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(h))
        return h if rc == 0 else None

    def has_jpeg_engine(self, pci_bus_id: Optional[str], index: int) -> Optional[bool]:
        """True/False when NVML can tell whether the GPU has NVJPG engines, else None."""
        if self.lib is None:
            return None
        try:
            query = self.lib.nvmlDeviceGetJpgUtilization
        except AttributeError:  # NVML older than the call
            return None
        h = self._handle(pci_bus_id, index)
        if h is None:
            return None
        util, period = ctypes.c_uint(), ctypes.c_uint()
        rc = query(h, ctypes.byref(util), ctypes.byref(period))
        if rc == 0:
            return True
        if rc == self.NOT_SUPPORTED:
            return False
        return None


def _cuda_version_text(v: Optional[int]) -> str:
    return "unknown" if not v else f"{v // 1000}.{(v % 1000) // 10}"


def _test_jpeg(width: int = 256, height: int = 192, mode: str = "RGB", seed: int = 0) -> bytes:
    """A baseline 4:2:0 JPEG with structure (gradients, a disc, some noise), as PIL writes it."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy, r = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height, rng.uniform(0.15, 0.35) * min(width, height)
    disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r).astype(np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    rgb = np.stack([
        base[0] * (xx / width) + 60 * disc,
        base[1] * (yy / height) + 90 * disc,
        base[2] * (1 - xx / width) + 30 * np.sin(xx / 7.0 + yy / 11.0),
    ], axis=-1)
    rgb += rng.normal(0, 6, size=rgb.shape)
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, subsampling=2)
    return buf.getvalue()


def _hw_decode_probe(device_id: int) -> Tuple[bool, str]:
    """Decode a test JPEG with nvImageCodec's hardware backend only. (worked, detail)."""
    import numpy as np
    import torch
    from PIL import Image

    try:
        from nvidia import nvimgcodec
    except ImportError as e:
        return False, f"nvImageCodec not importable ({e})"
    data = _test_jpeg()
    try:
        decoder = nvimgcodec.Decoder(device_id=device_id, backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)])
        image = decoder.decode(nvimgcodec.CodeStream(data))
    except Exception as e:  # noqa: BLE001 - reported as the reason
        return False, f"nvImageCodec hardware backend raised {type(e).__name__}: {e}"
    if image is None:
        return False, "nvImageCodec's hardware backend could not decode a baseline JPEG"
    got = torch.from_dlpack(image).cpu().numpy().astype(np.int16)
    want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    if got.shape != want.shape:
        return False, f"hardware decode gave shape {got.shape}, PIL {want.shape}"
    err = float(np.abs(got - want).mean())
    if err > 4.0:
        return False, f"hardware decode differs from PIL by {err:.1f} levels on average"
    return True, f"nvImageCodec hardware backend decoded a test JPEG (mean |diff| vs PIL {err:.2f})"


@dataclasses.dataclass
class Facts:
    lines: List[Tuple[str, str]]
    problems: List[str]
    gpu: bool


def gather_facts(want_device: str) -> Facts:
    """Versions, GPU, driver, CUDA and the hardware JPEG decoder, as (label, text) lines."""
    lines: List[Tuple[str, str]] = []
    problems: List[str] = []
    lines.append(("python", f"{platform.python_version()} ({platform.python_implementation()}, "
                            f"{platform.system()} {platform.machine()})"))
    import torch

    lines.append(("torch", f"{torch.__version__} (CUDA build: {torch.version.cuda or 'none, CPU-only wheel'})"))
    dali, dali_err = _version("nvidia.dali")
    if dali is None:
        lines.append(("DALI", f"not importable: {dali_err}"))
        problems.append(f"DALI: not importable ({dali_err}); pip install 'dali-mixup[cuda13]' (or [cuda12], [cpu])")
    else:
        lines.append(("DALI", dali))
    cupy_v, cupy_err = _version("cupy")

    gpu = torch.cuda.is_available()
    nvml = _Nvml()
    try:
        nvml_gpus = nvml.device_count()
        if not gpu:
            lines.append(("CuPy", cupy_v if cupy_v else f"not importable (needed only on a GPU): {cupy_err}"))
            why = "torch.cuda.is_available() is False"
            if nvml_gpus:
                why += f", but the NVIDIA driver sees {nvml_gpus} GPU(s)"
                if torch.version.cuda is None:
                    problems.append("GPU: the driver sees a GPU but torch is a CPU-only build; install torch for CUDA 13 (or 12)")
                else:
                    problems.append(f"GPU: the driver sees {nvml_gpus} GPU(s) but torch cannot use them (CUDA_VISIBLE_DEVICES? driver too old for CUDA {torch.version.cuda}?)")
            elif os.environ.get("NVIDIA_VISIBLE_DEVICES") and not pathlib.Path("/dev/nvidiactl").exists():
                why += " (in a container started without --gpus?)"
            lines.append(("GPU", f"none: {why}"))
            lines += [("driver", "n/a, no GPU"), ("CUDA", "n/a, no GPU"), ("HW JPEG", "n/a, no GPU")]
            if want_device == "gpu":
                problems.append("GPU: --device gpu was asked for but torch sees no CUDA GPU")
            return Facts(lines, problems, gpu=False)

        if cupy_v is None:
            lines.append(("CuPy", f"not importable: {cupy_err}"))
            problems.append(f"CuPy: not importable on a GPU machine ({cupy_err}); pip install 'dali-mixup[cuda13]' (or [cuda12])")
        else:
            lines.append(("CuPy", cupy_v))
        index = torch.cuda.current_device()
        count = torch.cuda.device_count()
        props = torch.cuda.get_device_properties(index)
        cap = (props.major, props.minor)
        lines.append(("GPU", f"{props.name} (cuda:{index} of {count}, sm_{cap[0]}{cap[1]}, "
                             f"{props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs)"))
        lines.append(("driver", nvml.driver_version() or "unknown (NVML not available)"))
        cuda = [f"driver supports {_cuda_version_text(nvml.cuda_driver_version())}",
                f"torch built for {torch.version.cuda}"]
        pci_bus_id = None
        if cupy_v is not None:
            try:
                import cupy

                cuda.append(f"CuPy runtime {_cuda_version_text(cupy.cuda.runtime.runtimeGetVersion())}")
                pci_bus_id = cupy.cuda.runtime.deviceGetPCIBusId(index)
            except Exception as e:  # noqa: BLE001
                problems.append(f"CuPy: cannot use the GPU ({type(e).__name__}: {e})")
        lines.append(("CUDA", ", ".join(cuda)))

        engines = nvml.has_jpeg_engine(pci_bus_id, index)
        if engines is None and cap in HW_JPEG_CAPABILITIES:
            engines, source = True, f"sm_{cap[0]}{cap[1]} ({HW_JPEG_CAPABILITIES[cap]}) has NVJPG engines"
        elif engines is None:
            source = "NVML cannot tell whether this GPU has NVJPG engines"
        else:
            source = "NVML reports NVJPG engines" if engines else "NVML: this GPU has no NVJPG engines"
        worked, detail = _hw_decode_probe(index)
        caps = os.environ.get("NVIDIA_DRIVER_CAPABILITIES")
        if worked:
            lines.append(("HW JPEG", f"available: {detail}; DALI's mixed decoder sends it the hw_decoder_load share"))
        elif engines:
            hint = ""
            if caps is not None and "video" not in caps and caps != "all":
                hint = f"; NVIDIA_DRIVER_CAPABILITIES={caps} lacks 'video'"
            lines.append(("HW JPEG", f"NOT usable: {source}, but {detail}{hint}"))
            problems.append(f"HW JPEG: the GPU has NVJPG engines but the hardware decoder cannot be used ({detail}){hint}; "
                            "containers need NVIDIA_DRIVER_CAPABILITIES=compute,utility,video")
        else:
            lines.append(("HW JPEG", f"not available ({source}; {detail}); DALI decodes JPEGs with CUDA instead"))
    finally:
        nvml.close()
    return Facts(lines, problems, gpu=True)


# -- the pipeline checks ---------------------------------------------------------------------


def write_images(root: pathlib.Path, seed: int = 0) -> int:
    """CLASSES x IMAGES_PER_CLASS JPEGs of varied sizes in ``root/<class>/``; one grayscale."""
    k = 0
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(IMAGES_PER_CLASS):
            w, h = 40 + 13 * ((i + 2 * c) % 5), 36 + 11 * ((3 * i + c) % 4)
            mode = "L" if (c, i) == (1, 2) else "RGB"
            (root / name / f"{i:03d}.jpg").write_bytes(_test_jpeg(w, h, mode, seed=seed * 1000 + k))
            k += 1
    return k


def _loader(ctx: Context, **kwargs):
    from dali_mixup import create_loader

    return create_loader(ctx.root, batch_size=BATCH_SIZE, image_size=IMAGE_SIZE, device=ctx.device,
                         num_threads=2, seed=ctx.seed, **kwargs)


def _epoch(loader, ctx: Context, what: str) -> List[dict]:
    """One epoch, each batch's tensors checked to be on the run's device, then copied to the CPU."""
    batches = []
    for batch in loader:
        for key in ("data", "label", "label_index"):
            t = batch[0][key]
            if t.is_cuda != (ctx.device == "gpu"):
                raise CheckFailed(f"{what}: {key!r} is on {t.device}, expected the {ctx.device}")
        batches.append({k: v.detach().cpu().clone() for k, v in batch[0].items()})
    return batches


def check_val(ctx: Context) -> str:
    """The validation pipeline: every image once, right shapes, the same bits on a second run."""
    import torch

    runs = [_epoch(_loader(ctx, train=False), ctx, "validation") for _ in range(2)]
    images = torch.cat([b["data"] for b in runs[0]])
    labels = torch.cat([b["label_index"] for b in runs[0]])
    if tuple(images.shape) != (ctx.num_images, 3, IMAGE_SIZE, IMAGE_SIZE) or images.dtype != torch.float32:
        raise CheckFailed(f"validation epoch is {tuple(images.shape)} {images.dtype}, expected "
                          f"({ctx.num_images}, 3, {IMAGE_SIZE}, {IMAGE_SIZE}) float32")
    want = sorted(c for c in range(ctx.num_classes) for _ in range(IMAGES_PER_CLASS))
    if sorted(labels.tolist()) != want:
        raise CheckFailed(f"validation labels {sorted(labels.tolist())} are not each image once ({want})")
    if not bool(torch.isfinite(images).all()):
        raise CheckFailed("validation images hold NaN or inf")
    again = torch.cat([b["data"] for b in runs[1]])
    if not torch.equal(images, again):
        raise CheckFailed(f"two validation runs differ (max |diff| {float((images - again).abs().max()):.3g})")
    ctx.val_epoch = (images, labels)
    return (f"{len(runs[0])} batches, {ctx.num_images} images {tuple(images.shape[1:])} float32, "
            f"each once, identical on a second run")


def _reference(x, lam, perm):
    """float64 mixup: lam*x + (1-lam)*x[perm]."""
    import torch

    shape = (-1,) + (1,) * (x.dim() - 1)
    x64 = x.double()
    return lam.double().view(shape) * x64 + (1 - lam.double()).view(shape) * x64[perm]


def check_mix_kernel(ctx: Context) -> str:
    """mix_images on the run's device against the CPU twin (same bits) and a float64 reference."""
    import torch

    from dali_mixup.config import MixupConfig
    from dali_mixup.mix import mix_images
    from dali_mixup.sampler import MixupParams, MixupSampler

    if ctx.val_epoch is None:
        raise CheckSkipped("no validation batch to mix (the validation check failed)")
    x_cpu = ctx.val_epoch[0]
    n = x_cpu.shape[0]
    drawn = MixupSampler(MixupConfig(alpha=0.4, mode="elem"), seed=ctx.seed).sample(n)
    lam = drawn.lam.clone()
    lam[0], lam[1], lam[2] = 0.0, 1.0, 0.5  # the edges: all partner, all self, an exact half
    params = MixupParams(lam, drawn.perm)
    device = torch.device("cuda", torch.cuda.current_device()) if ctx.device == "gpu" else torch.device("cpu")
    inputs = {
        "float32": x_cpu,
        "uint8": (x_cpu * 50 + 128).round().clamp(0, 255).to(torch.uint8),
        "float16": x_cpu.to(torch.float16),
    }
    where = "GPU kernel" if ctx.device == "gpu" else "CPU twin"
    for name, xc in inputs.items():
        twin = mix_images(xc, params)
        got = mix_images(xc.to(device), params).cpu()
        if got.dtype != xc.dtype or got.shape != xc.shape:
            raise CheckFailed(f"mix_images {name}: got {tuple(got.shape)} {got.dtype}, expected {tuple(xc.shape)} {xc.dtype}")
        if not torch.equal(got, twin):
            diff = (got.double() - twin.double()).abs()
            raise CheckFailed(f"mix_images {name}: {where} differs from the CPU twin in {int((diff > 0).sum())} "
                              f"elements (max {float(diff.max()):.3g})")
        ref = _reference(xc, params.lam, params.perm)
        err = float((twin.double() - ref).abs().max())
        tol = {"float32": 1e-5 * max(1.0, float(ref.abs().max())), "uint8": 0.5 + 1e-6, "float16": 2e-3 * max(1.0, float(ref.abs().max()))}[name]
        if err > tol:
            raise CheckFailed(f"mix_images {name}: CPU twin is {err:.3g} from lam*x + (1-lam)*x[perm] (tolerance {tol:.3g})")
    cases = f"float32, uint8 and float16, {n} samples, lam in {{0, 1, 0.5, Beta(0.4)}}"
    if ctx.device == "gpu":
        return f"GPU kernel == CPU twin bit for bit ({cases}); both within rounding of a float64 reference"
    return f"CPU twin (the CPU path) within rounding of a float64 reference ({cases})"


def check_train_mixup(ctx: Context) -> str:
    """The training pipeline with mixup: the mixed batch is the CPU twin applied to the same
    pipeline's unmixed batch, and the soft targets are mix_targets of the batch's labels."""
    import torch

    from dali_mixup.config import MixupConfig
    from dali_mixup.mix import mix_images, mix_targets
    from dali_mixup.sampler import MixupParams

    mixup = MixupConfig(alpha=0.4, mode="elem", label_smoothing=0.1)
    mixed = _epoch(_loader(ctx, train=True, mixup=mixup), ctx, "training with mixup")
    plain = _epoch(_loader(ctx, train=True, mixup=MixupConfig(enabled=False)), ctx, "training without mixup")
    if len(mixed) != len(plain):
        raise CheckFailed(f"the same seed gave {len(mixed)} batches with mixup and {len(plain)} without")
    seen = sum(b["data"].shape[0] for b in mixed)
    if seen != ctx.num_images:
        raise CheckFailed(f"one training epoch yielded {seen} samples, expected {ctx.num_images}")
    lams = []
    for k, (m, p) in enumerate(zip(mixed, plain)):
        n = m["data"].shape[0]
        if tuple(m["data"].shape) != (n, 3, IMAGE_SIZE, IMAGE_SIZE) or m["data"].dtype != torch.float32:
            raise CheckFailed(f"batch {k}: images {tuple(m['data'].shape)} {m['data'].dtype}, expected (N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}) float32")
        if tuple(m["label"].shape) != (n, ctx.num_classes) or m["label"].dtype != torch.float32:
            raise CheckFailed(f"batch {k}: targets {tuple(m['label'].shape)} {m['label'].dtype}, expected ({n}, {ctx.num_classes}) float32")
        sums = m["label"].double().sum(1)
        if not bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-5)):
            raise CheckFailed(f"batch {k}: target rows sum to {sums.tolist()}, not 1")
        if not torch.equal(m["label_index"], p["label_index"]):
            raise CheckFailed(f"batch {k}: the same seed read labels {m['label_index'].tolist()} with mixup, "
                              f"{p['label_index'].tolist()} without")
        params = MixupParams(m["lam"], m["perm"])
        want_targets = mix_targets(m["label_index"], params, ctx.num_classes, mixup.label_smoothing)
        if not torch.equal(m["label"], want_targets):
            raise CheckFailed(f"batch {k}: soft targets differ from mix_targets(label_index, lam, perm) "
                              f"by up to {float((m['label'] - want_targets).abs().max()):.3g}")
        want_images = mix_images(p["data"], params)
        if not torch.equal(m["data"], want_images):
            diff = (m["data"] - want_images).abs()
            raise CheckFailed(f"batch {k}: the mixed batch differs from the CPU twin applied to the unmixed batch "
                              f"in {int((diff > 0).sum())} elements (max {float(diff.max()):.3g})")
        lams += m["lam"].tolist()
    if all(v == 1.0 for v in lams):
        raise CheckFailed("mixup was on (alpha 0.4, prob 1) but every lam was 1: nothing was mixed")
    where = "GPU kernel in the iterator" if ctx.device == "gpu" else "CPU iterator"
    return (f"{len(mixed)} batches, {seen} samples: {where} == CPU twin on the unmixed batch, bit for bit; "
            f"targets == mix_targets, rows sum to 1")


CHECKS: List[Tuple[str, Callable[[Context], str]]] = [
    ("val pipeline", check_val),
    ("mix kernel", check_mix_kernel),
    ("train + mixup", check_train_mixup),
]


# -- command line ----------------------------------------------------------------------------


def _one_line(text: str, limit: int = 400) -> str:
    """A multi-line reason (a compiler log, say) as one line: its lines joined, cut at ``limit``."""
    text = " | ".join(line.strip() for line in text.splitlines() if line.strip() and line.strip() != "^")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto",
                        help="where the tiny pipeline runs (default auto: the GPU when there is one)")
    from .argtypes import seed

    parser.add_argument("--seed", type=seed, default=0, help="seed of the generated images and the pipelines (default 0)")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of a check that raised")


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    facts = gather_facts(args.device)
    problems = list(facts.problems)
    print("dali-mixup doctor", file=out)
    width = max(len(k) for k, _ in facts.lines)
    for key, text in facts.lines:
        print(f"  {key:<{width}}  {text}", file=out)

    device = args.device if args.device != "auto" else ("gpu" if facts.gpu else "cpu")
    if device == "gpu" and not facts.gpu:
        print("checks: skipped, no GPU for --device gpu", file=out)
    elif any(p.startswith("DALI:") for p in problems):
        print("checks: skipped, DALI is missing", file=out)
    else:
        with tempfile.TemporaryDirectory(prefix="dali-mixup-doctor-") as tmp:
            root = pathlib.Path(tmp) / "images"
            num = write_images(root, seed=args.seed)
            ctx = Context(device=device, root=root, num_images=num, num_classes=len(CLASSES), seed=args.seed)
            print(f"checks on the {device} ({num} generated JPEGs in {len(CLASSES)} classes, one grayscale; "
                  f"batch {BATCH_SIZE}, {IMAGE_SIZE}x{IMAGE_SIZE})", file=out)
            for name, check in CHECKS:
                try:
                    detail = check(ctx)
                except CheckFailed as e:
                    status, detail = "FAIL", _one_line(str(e))
                except CheckSkipped as e:
                    status, detail = "skip", _one_line(str(e))
                except Exception as e:  # noqa: BLE001 - a crash in a check is a problem to report, not to hide
                    status, detail = "FAIL", _one_line(f"{type(e).__name__}: {e}")
                    if args.verbose:
                        traceback.print_exc()
                else:
                    status = "ok"
                if status == "FAIL":
                    problems.append(f"{name}: {detail}")
                print(f"  {status:<4}  {name}: {detail}", file=out)
    for p in problems:
        print(f"doctor: problem: {p}", file=sys.stderr)
    if problems:
        print(f"doctor: {len(problems)} problem(s)", file=out)
        return 1
    print("doctor: everything checked works", file=out)
    return 0
