"""The training example (``dali_mixup/tools/train.py``), the digits data and their pieces.

Data is made here: a tiny 3-class ImageFolder of stripe patterns (JPEGs in ``tmp_path``), and
scikit-learn's bundled digits (no download).
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dali_mixup.tools import digits
from dali_mixup.tools import train as train_mod

REPO = pathlib.Path(__file__).resolve().parents[1]

pytest.importorskip("nvidia.dali")


def _pattern(kind: int, rng, size=32):
    """Class 0: horizontal stripes, 1: vertical stripes, 2: checkerboard; random phase, noise."""
    yy, xx = np.mgrid[0:size, 0:size]
    period = rng.integers(6, 10)
    ph = rng.integers(0, period)
    if kind == 0:
        img = ((yy + ph) // (period // 2)) % 2
    elif kind == 1:
        img = ((xx + ph) // (period // 2)) % 2
    else:
        img = (((yy + ph) // (period // 2)) + ((xx + ph) // (period // 2))) % 2
    img = img * 180.0 + 40.0 + rng.normal(0, 15, img.shape)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    """``root/train/<c>/*.jpg`` (16 per class) and ``root/val/<c>/*.jpg`` (7 per class)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("stripes")
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 7)):
        for c in range(3):
            d = root / split / str(c)
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_pattern(c, rng)).save(d / f"{i:02d}.jpg", quality=90)
    return root


def _argv(data, out, *extra):
    return [
        str(data), "--out", str(out), "--model", "small-cnn", "--width", "8", "--image-size", "32",
        "--val-resize", "32", "--scale", "0.6", "1.0", "--batch-size", "8", "--lr", "0.05",
        "--mixup-alpha", "0.2", "--device", "cpu", "--threads", "1", "--torch-threads", "1", *extra,
    ]


# --------------------------------------------------------------------------- pieces


def test_soft_target_cross_entropy_matches_torch_on_one_hot_and_soft_targets():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, dtype=torch.bfloat16)
    y = torch.tensor([0, 3, 1, 1, 2])
    ours = train_mod.soft_target_cross_entropy(logits, F.one_hot(y, 4).float())
    assert torch.allclose(ours, F.cross_entropy(logits.float(), y))
    soft = torch.softmax(torch.randn(5, 4), 1)
    assert torch.allclose(train_mod.soft_target_cross_entropy(logits, soft), F.cross_entropy(logits.float(), soft))


def test_warmup_cosine_schedule():
    f = train_mod.warmup_cosine(total_steps=10, warmup_steps=2)
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0) and f(6) == pytest.approx(0.5) and f(10) == pytest.approx(0.0)
    g = train_mod.warmup_cosine(total_steps=4)
    assert g(0) == 1.0 and g(4) == pytest.approx(0.0)


def test_metrics_accuracy_nll_and_ece_by_hand():
    m = train_mod.ClassificationMetrics(bins=15)
    # confidence 0.7 on class 0 for all four; three are right: acc 0.75, conf 0.7 -> ECE 0.05
    p = torch.tensor([[0.7, 0.2, 0.1]] * 4)
    m.update(p.log(), torch.tensor([0, 0, 0, 1]))
    r = m.compute()
    assert r["count"] == 4 and r["accuracy"] == pytest.approx(0.75)
    assert r["nll"] == pytest.approx((3 * -math.log(0.7) - math.log(0.2)) / 4, rel=1e-6)
    assert r["ece"] == pytest.approx(0.05, abs=1e-6)
    assert sum(r["bins"]["count"]) == 4 and r["bins"]["count"][10] == 4  # 0.7 is in (10/15, 11/15]


def test_metrics_perfectly_confident_and_right_has_zero_ece_and_edges_bin_correctly():
    m = train_mod.ClassificationMetrics(bins=15)
    logits = torch.tensor([[50.0, 0.0], [0.0, 50.0]])
    m.update(logits, torch.tensor([0, 1]))
    r = m.compute()
    assert r["accuracy"] == 1.0 and r["ece"] == pytest.approx(0.0, abs=1e-12)
    assert r["bins"]["count"][14] == 2  # confidence 1.0 belongs to the last bin, not past it


def test_small_cnn_shapes_and_channels_last():
    model = train_mod.build_model("small-cnn", 10, width=8).to(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    assert model(x).shape == (3, 10)
    assert train_mod.build_model("small-cnn", 4, width=8)(torch.randn(1, 3, 8, 8)).shape == (1, 4)
    with pytest.raises(ValueError, match="unknown model"):
        train_mod.build_model("vgg", 10)


def test_cpu_gets_no_autocast():
    assert train_mod.autocast_dtype("bf16", torch.device("cpu")) is None
    assert train_mod.autocast_dtype("auto", torch.device("cpu")) is None


def test_cli_knows_both_subcommands():
    from dali_mixup.tools.cli import build_parser

    a = build_parser().parse_args(["train", "d", "--model", "small-cnn", "--no-channels-last"])
    assert a.model == "small-cnn" and a.channels_last is False and a.mixup == 0.2
    b = build_parser().parse_args(["prepare-digits", "d", "--size", "16"])
    assert b.size == 16


# --------------------------------------------------------------------------- digits


def test_digits_split_is_stratified_disjoint_and_fixed():
    labels = np.repeat(np.arange(10), 20)
    tr, te = digits.split_indices(labels, 0.25)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 200
    assert np.bincount(labels[te]).tolist() == [5] * 10
    tr2, te2 = digits.split_indices(labels, 0.25)
    assert np.array_equal(te, te2)
    with pytest.raises(ValueError, match="test_fraction"):
        digits.split_indices(labels, 1.0)


def test_prepare_digits_writes_the_image_folder_once(tmp_path):
    pytest.importorskip("sklearn")
    m = digits.prepare_digits(tmp_path, size=16)
    assert m["counts"] == {"train": 1347, "test": 450}
    files = sorted(tmp_path.glob("*/*/*.jpg"))
    assert len(files) == 1797
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [str(c) for c in range(10)]
    from PIL import Image

    with Image.open(files[0]) as im:
        assert im.size == (16, 16) and im.mode == "RGB"
    before = files[0].stat().st_mtime_ns
    assert digits.prepare_digits(tmp_path, size=16) == m  # same settings: nothing rewritten
    assert files[0].stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="--force"):
        digits.prepare_digits(tmp_path, size=24)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_training_lowers_the_loss_and_resumes_from_the_checkpoint(stripes, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_mod.main(_argv(stripes, out, "--epochs", "3", "--log-every", "1")) == 0
    text = capsys.readouterr().out
    assert "device: cpu" in text
    step_losses = [float(line.split(" loss ")[1].split()[0]) for line in text.splitlines() if " step " in line]
    assert len(step_losses) == 3 * 6  # 48 images, batch 8
    first = json.loads((out / "metrics.json").read_text())
    losses = [h["train_loss"] for h in first["history"]]
    assert losses[-1] < losses[0] and np.mean(step_losses[-6:]) < np.mean(step_losses[:6]), losses
    assert all(h["val_count"] == 21 for h in first["history"])
    assert 0.0 <= first["final"]["ece"] <= 1.0

    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 2 and {"model", "optimizer", "scheduler", "loader"} <= set(ckpt)
    assert ckpt["scheduler"]["last_epoch"] == 18

    # two more epochs from the checkpoint: history continues, schedule continues, weights move on
    result = train_mod.main(_argv(stripes, out, "--epochs", "5", "--resume", "auto"))
    assert result == 0
    text = capsys.readouterr().out
    assert "resumed from" in text and "continuing at epoch 3" in text
    second = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in second["history"]] == [0, 1, 2, 3, 4]
    assert second["history"][:3] == first["history"]
    ckpt2 = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt2["epoch"] == 4 and ckpt2["scheduler"]["last_epoch"] == 30
    assert not torch.equal(ckpt2["model"]["head.weight"], ckpt["model"]["head.weight"])

    assert train_mod.main(_argv(stripes, tmp_path / "other", "--epochs", "1", "--resume", str(tmp_path / "missing.pt"))) == 2
    assert "no such checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_gloo(stripes, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def launch(*extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "dali_mixup", "train", *_argv(stripes, out, *extra)]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    text = launch("--epochs", "3")
    assert "DDP over 2 processes (gloo)" in text
    assert "3 steps/epoch of 8 per process" in text  # 48 images, 24 per shard
    m = json.loads((out / "metrics.json").read_text())
    assert [h["val_count"] for h in m["history"]] == [21, 21, 21]  # each val image once over both shards
    assert m["history"][-1]["train_loss"] < m["history"][0]["train_loss"]

    text = launch("--epochs", "4", "--resume", "auto")
    assert "continuing at epoch 3" in text and "not restored" not in text  # each rank got its own shard's state
    m2 = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in m2["history"]] == [0, 1, 2, 3]


@pytest.mark.slow
def test_interrupted_and_resumed_run_matches_the_uninterrupted_one(stripes, tmp_path, monkeypatch):
    """Model, optimizer, schedule and the loader's state (data order, crops, mixup draws) all
    come back: 5 epochs straight and 3 + crash + 2 resumed give the same numbers and weights."""
    straight = tmp_path / "straight"
    assert train_mod.main(_argv(stripes, straight, "--epochs", "5", "--quiet")) == 0

    crashed = tmp_path / "crashed"
    real_save = train_mod.save_checkpoint

    def save_then_crash(path, state):
        real_save(path, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt("simulated crash after epoch 3")

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_mod.main(_argv(stripes, crashed, "--epochs", "5", "--quiet"))
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    assert train_mod.main(_argv(stripes, crashed, "--epochs", "5", "--quiet", "--resume", "auto")) == 0

    def numbers(out):
        hist = json.loads((out / "metrics.json").read_text())["history"]
        return [{k: v for k, v in h.items() if k != "seconds"} for h in hist]

    assert numbers(crashed) == numbers(straight)
    a = torch.load(straight / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    b = torch.load(crashed / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- arguments and data layout


def _copy_split(src, dst, keep):
    import shutil

    for c in keep:
        shutil.copytree(src / c, dst / c)


@pytest.fixture
def val_variants(stripes, tmp_path):
    """``missing``: val/ without class 0; ``extra``: val/ with a class 'zebra' training lacks."""
    import shutil

    roots = {}
    for name, keep, extra in (("missing", ("1", "2"), None), ("extra", ("0", "1", "2"), "zebra")):
        root = tmp_path / name
        shutil.copytree(stripes / "train", root / "train")
        _copy_split(stripes / "val", root / "val", keep)
        if extra:
            shutil.copytree(stripes / "val" / "0", root / "val" / extra)
        roots[name] = root
    return roots


def _parse(*argv):
    from dali_mixup.tools.cli import build_parser

    return build_parser(["train"]).parse_args(["train", *argv])


def test_validation_uses_the_training_class_map_when_val_lacks_a_class(val_variants, tmp_path):
    args = _parse(*_argv(val_variants["missing"], tmp_path / "o"))
    dist = train_mod.Dist(0, 1, 0, torch.device("cpu"))
    train_loader, val_loader = train_mod.make_loaders(args, dist)
    assert train_loader.num_classes == 3 and val_loader.num_classes == 3
    labels = torch.cat([b[0]["label_index"].view(-1) for b in val_loader]).tolist()
    # val/1 and val/2 only: their images keep the training indices 1 and 2 (not 0 and 1)
    assert sorted(labels) == [1] * 7 + [2] * 7


def test_a_validation_class_training_does_not_know_fails_before_training(val_variants, tmp_path, capsys):
    from dali_mixup.tools import cli

    out = tmp_path / "o"
    rc = cli.main(["train", *_argv(val_variants["extra"], out, "--epochs", "1")])
    err = capsys.readouterr().err
    assert rc == 2 and "zebra" in err and err.startswith("dali-mixup train: error: validation data:"), err
    assert err.count("\n") == 1 and not (out / "checkpoint.pt").exists()


def test_resolve_source_with_given_classes(val_variants):
    from dali_mixup.sources import resolve_source

    src = resolve_source(val_variants["missing"] / "val", classes=("0", "1", "2"))
    assert src.classes == ("0", "1", "2") and sorted(set(src.labels)) == [1, 2]
    with pytest.raises(ValueError, match="zebra"):
        resolve_source(val_variants["extra"] / "val", classes=("0", "1", "2"))
    with pytest.raises(ValueError, match="only for root"):
        resolve_source(file_list="x.txt", classes=("0",))


@pytest.mark.parametrize("argv, option", [
    (["train", "d", "--lr", "nan"], "--lr"),
    (["train", "d", "--lr", "0"], "--lr"),
    (["train", "d", "--lr", "inf"], "--lr"),
    (["train", "d", "--mixup-alpha", "-1"], "--mixup/--mixup-alpha"),
    (["train", "d", "--mixup", "nan"], "--mixup/--mixup-alpha"),
    (["train", "d", "--mixup-prob", "1.5"], "--mixup-prob"),
    (["train", "d", "--label-smoothing", "1"], "--smoothing/--label-smoothing"),
    (["train", "d", "--smoothing", "-0.1"], "--smoothing/--label-smoothing"),
    (["train", "d", "--cutmix", "-1"], "--cutmix"),
    (["train", "d", "--cutmix-minmax", "0.2", "1.5"], "--cutmix-minmax"),
    (["train", "d", "--mixup-switch-prob", "2"], "--mixup-switch-prob"),
    (["train", "d", "--mixup-off-epoch", "-1"], "--mixup-off-epoch"),
    (["train", "d", "--mixup-pairing", "random"], "--mixup-pairing"),
    (["train", "d", "--batch-size", "0"], "--batch-size"),
    (["train", "d", "--epochs", "-3"], "--epochs"),
    (["train", "d", "--scale", "0", "1"], "--scale"),
    (["train", "d", "--seed", str(2**63)], "--seed"),
    (["train", "d", "--momentum", "1"], "--momentum"),
    (["train", "d", "--threads", "0"], "--threads"),
    (["train", "d", "--image-size", "100000"], "--image-size"),
    (["prepare-digits", "d", "--size", "2"], "--size"),
    (["prepare-digits", "d", "--quality", "101"], "--quality"),
    (["prepare-digits", "d", "--test-fraction", "1"], "--test-fraction"),
    (["prepare-digits", "d", "--test-fraction", "nan"], "--test-fraction"),
    (["doctor", "--seed", "-1"], "--seed"),
])
def test_bad_option_values_are_one_line_and_exit_2(argv, option, capsys):
    from dali_mixup.tools import cli

    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dali-mixup {argv[0]}: error: argument {option}: ") and err.count("\n") == 1, err


def test_bad_data_layout_and_paths_are_one_line_and_exit_2(stripes, tmp_path, capsys):
    from dali_mixup.tools import cli

    no_val = tmp_path / "noval"
    (no_val / "train").mkdir(parents=True)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        ([str(tmp_path / "nope")], "no such directory"),
        ([str(a_file)], "not a directory"),
        ([str(tmp_path)], "no train/ folder"),
        ([str(no_val)], "no val/ or test/ folder"),
        ([*_argv(stripes, tmp_path / "o"), "--scale", "0.9", "0.5"], "--scale: MIN 0.9 is larger than MAX 0.5"),
        ([*_argv(stripes, tmp_path / "o"), "--resume", str(tmp_path / "missing.pt")], "no such checkpoint"),
        ([*_argv(stripes, a_file / "sub")], "--out"),
        ([*_argv(stripes, a_file)], "exists and is not a directory"),
    ]
    for argv, words in cases:
        rc = cli.main(["train", *argv])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and err.startswith("dali-mixup train: error: ") and err.count("\n") == 1, (argv, err)


def test_a_file_that_is_not_a_checkpoint_is_one_line_and_exit_2(stripes, tmp_path, capsys):
    from dali_mixup.tools import cli

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc = cli.main(["train", *_argv(stripes, tmp_path / "o", "--epochs", "1", "--resume", str(bad))])
    err = capsys.readouterr().err
    assert rc == 2 and "--resume" in err and "cannot continue from it" in err and err.count("\n") == 1, err


def test_prepare_digits_usage_errors_exit_2(tmp_path, capsys):
    from dali_mixup.tools import cli

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert cli.main(["prepare-digits", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dali-mixup prepare-digits: error: DIR") and err.count("\n") == 1, err
    assert cli.main(["prepare-digits", str(a_file / "sub")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    pytest.importorskip("sklearn")
    out = tmp_path / "digits"
    out.mkdir()
    (out / "digits.json").write_text("{ broken")
    assert cli.main(["prepare-digits", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and err.count("\n") == 1, err


def test_prepare_digits_over_a_foreign_manifest_exit_2(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from dali_mixup.tools import cli

    (tmp_path / "digits.json").write_text("[1, 2]")
    assert cli.main(["prepare-digits", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a digits manifest" in err and "--force" in err and err.count("\n") == 1, err


# --------------------------------------------------------------------------- timm's flags and models


def _timm_parser():
    """The mixup/CutMix arguments of timm's train.py (pytorch-image-models, as of timm 1.0), which
    the timm package does not install: the same names, types and defaults."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--mixup", type=float, default=0.0)
    p.add_argument("--cutmix", type=float, default=0.0)
    p.add_argument("--cutmix-minmax", type=float, nargs="+", default=None)
    p.add_argument("--mixup-prob", type=float, default=1.0)
    p.add_argument("--mixup-switch-prob", type=float, default=0.5)
    p.add_argument("--mixup-mode", type=str, default="batch")
    p.add_argument("--mixup-off-epoch", default=0, type=int)
    p.add_argument("--smoothing", type=float, default=0.1)
    return p


def _timm_mixup(argv, num_classes=3):
    """What timm's train.py builds from these flags: ``Mixup(**mixup_args)``, or None."""
    from timm.data import Mixup

    args, _ = _timm_parser().parse_known_args(argv)
    if not (args.mixup > 0 or args.cutmix > 0.0 or args.cutmix_minmax is not None):
        return None
    return Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                 prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                 label_smoothing=args.smoothing, num_classes=num_classes)


#: full command lines: our defaults differ from timm's (--mixup 0.2 and --smoothing 0 here, 0 and 0.1 there)
TIMM_FLAG_SETS = [
    ["--mixup", "0.8", "--cutmix", "1.0", "--mixup-switch-prob", "0.5", "--mixup-mode", "batch", "--smoothing", "0.1"],
    ["--mixup", "0.2", "--smoothing", "0.0"],
    ["--mixup", "0", "--cutmix", "1.0", "--mixup-prob", "0.5", "--mixup-mode", "elem", "--smoothing", "0.1"],
    ["--mixup", "0.4", "--cutmix-minmax", "0.2", "0.8", "--mixup-switch-prob", "0.3", "--mixup-mode", "pair", "--smoothing", "0.05"],
    ["--mixup", "0", "--cutmix", "0", "--smoothing", "0.1"],
]


@pytest.mark.parametrize("flags", TIMM_FLAG_SETS, ids=["mixup+cutmix", "mixup", "cutmix-only", "minmax-pair", "off"])
def test_timm_flags_give_the_mixup_config_of_timm_mixup(flags):
    """Our parser and timm's read the same command line; our MixupConfig has timm's Mixup's settings
    (after timm's own rules: minmax forces CutMix alpha 1, CutMix alone ignores the switch), and both
    decide mixup-or-CutMix the same way over many draws."""
    pytest.importorskip("timm")
    ours = train_mod.mixup_from_args(_parse("d", "--mixup-pairing", "flip", *flags))
    theirs = _timm_mixup(flags)
    if theirs is None:
        assert not ours.enabled and ours.label_smoothing == 0.1  # timm: no Mixup, smoothed CE
        return
    assert ours.enabled and ours.pairing.value == "flip" and ours.correct_lam == theirs.correct_lam
    assert ours.prob == theirs.mix_prob and ours.mode.value == theirs.mode
    assert ours.label_smoothing == theirs.label_smoothing
    assert (ours.cutmix_minmax is None) == (theirs.cutmix_minmax is None)
    if theirs.cutmix_minmax is not None:
        assert list(ours.cutmix_minmax) == list(theirs.cutmix_minmax)
    mix_on, cut_on = theirs.mixup_alpha > 0, theirs.cutmix_alpha > 0
    assert ours.cutmix_on == cut_on
    if cut_on:
        assert ours.cutmix_alpha == theirs.cutmix_alpha
    if mix_on:
        assert ours.alpha == theirs.mixup_alpha

    # who decides CutMix: timm's own draws against our sampler's, 400 batches each
    from dali_mixup import MixupConfig, MixupSampler

    np.random.seed(0)
    timm_cut = []
    for _ in range(400):
        lam, use_cutmix = theirs._params_per_batch()
        if lam < 1.0 or use_cutmix:
            timm_cut.append(bool(use_cutmix))
    sampler = MixupSampler(MixupConfig(**{**ours.to_dict(), "mode": "batch", "num_classes": 3}), seed=0)
    our_cut = []
    for _ in range(400):
        p = sampler.sample(4, image_size=(32, 32))
        if bool((p.lam < 1).any()) or p.has_cutmix:
            our_cut.append(p.has_cutmix)
    want = 0.0 if not cut_on else (1.0 if not mix_on else theirs.switch_prob)
    for got in (np.mean(timm_cut), np.mean(our_cut)):
        assert abs(got - want) < 0.08, (got, want)


def test_timm_mixup_config_keywords_are_timm_mixups():
    """``mixup_config`` takes timm's ``Mixup.__init__`` keywords with timm's defaults."""
    import inspect

    timm = pytest.importorskip("timm")
    from dali_mixup.integrations.timm import mixup_config

    theirs = inspect.signature(timm.data.Mixup.__init__).parameters
    ours = inspect.signature(mixup_config).parameters
    for name, param in theirs.items():
        if name != "self":
            assert name in ours and ours[name].default == param.default, name
    with pytest.raises(ValueError, match="multi_label"):
        mixup_config(multi_label=True)


def test_old_mixup_flag_names_are_aliases():
    a = _parse("d", "--mixup-alpha", "0.4", "--label-smoothing", "0.1")
    b = _parse("d", "--mixup", "0.4", "--smoothing", "0.1")
    assert (a.mixup, a.smoothing) == (b.mixup, b.smoothing) == (0.4, 0.1)
    assert train_mod.mixup_from_args(a) == train_mod.mixup_from_args(b)
    assert train_mod.mixup_from_args(_parse("d", "--mixup", "0")) is None  # nothing mixed nor smoothed
    # our default pairing stays derangement (the digits results); timm's is one flag away
    assert train_mod.mixup_from_args(_parse("d")).pairing.value == "derangement"


def test_timm_model_names_and_usage_errors(stripes, tmp_path, capsys):
    pytest.importorskip("timm")
    from dali_mixup.tools import cli

    model = train_mod.build_model("test_resnet", 3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert train_mod.build_model("small-cnn", 3, width=8)(torch.randn(1, 3, 16, 16)).shape == (1, 3)
    for argv, words in (
        (["--model", "resnet5O"], "--model: unknown model 'resnet5O'"),
        (["--cutmix-minmax", "0.8", "0.2"], "--cutmix-minmax: MIN 0.8 must be smaller than MAX 0.2"),
        (["--mixup-mode", "pair", "--mixup-pairing", "roll"], "--mixup-mode pair needs mutual partners"),
    ):
        rc = cli.main(["train", *_argv(stripes, tmp_path / "o"), *argv])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_timm_model_with_cutmix_and_mixup_off_epoch(stripes, tmp_path, capsys):
    """``--model`` a timm model, timm's mixup+CutMix flags, and ``--mixup-off-epoch``: mixing
    stops at that epoch, and the checkpoint's loader state says so (a resume keeps it off)."""
    pytest.importorskip("timm")
    out = tmp_path / "timm"
    argv = _argv(stripes, out, "--model", "test_resnet", "--epochs", "2", "--mixup", "0.8", "--cutmix", "1.0",
                 "--mixup-switch-prob", "0.5", "--smoothing", "0.1", "--mixup-off-epoch", "1")
    assert train_mod.main(argv) == 0
    text = capsys.readouterr().out
    assert "mixup alpha=0.8, cutmix alpha=1 switch=0.5, p=1 batch derangement, smoothing 0.1, off from epoch 1" in text, text
    assert "epoch 2: mixup and CutMix off (--mixup-off-epoch 1)" in text
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    mixup = ckpt["loader"][0]["mixup"]
    assert mixup["enabled"] is False and mixup["cutmix_alpha"] == 1.0 and mixup["label_smoothing"] == 0.1
