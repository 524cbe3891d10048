"""``dali-mixup bench``: options, data resolution, the JSON it writes, errors (exit code 2), the
rules a round follows on small data, untrusted rows, the timm row, the logs.

Runs are tiny (a dozen 32-px images, batch 4, ``--min-seconds 0``: a round is then the fewest
whole epochs giving ``prefetch depth + MIN_BATCHES_BEYOND_PREFETCH`` batches) so the file stays
fast; the figures are not looked at, only the shape of what comes out.
"""

import argparse
import dataclasses
import io
import json
import os
import tarfile

import sys

import pytest

pytest.importorskip("nvidia.dali")

from dali_mixup.tools import bench, cli  # noqa: E402
from dali_mixup.tools.datasets import synthetic_imagenet  # noqa: E402
from dali_mixup.tools.meta import hardware_slug  # noqa: E402

TINY = ["--batch-size", "4", "--image-size", "32", "--epochs", "2", "--warmup", "0", "--workers", "1",
        "--min-seconds", "0", "--no-progress"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A 12-image, 3-class synthetic ImageFolder."""
    return synthetic_imagenet(12, num_classes=3, seed=0, cache_dir=tmp_path_factory.mktemp("cache"), workers=1)


def _run(argv, capsys):
    rc = cli.main(["bench", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _result(out_dir):
    files = sorted(out_dir.glob("bench-*.json"))
    assert len(files) == 1, files
    return files[0], json.loads(files[0].read_text())


def check_schema(d, complete=True):
    """The JSON's contract (benchmarks/README.md): the keys a reader of results relies on, and the
    rules every timed round follows."""
    assert d["schema"] == bench.SCHEMA
    for key in ("created", "complete", "options", "metadata", "hardware", "dataset", "baseline", "rows", "targets"):
        assert key in d, key
    assert d["complete"] is complete
    meta = d["metadata"]
    assert set(meta["git"]) == {"commit", "dirty"}
    assert meta["python"] and meta["versions"]["torch"] and "nvidia.dali" in meta["versions"] and "cupy" in meta["versions"]
    assert meta["cpu"]["model"] and meta["cpu"]["cores"] >= 1
    assert "gpu" in meta and (meta["gpu"] is None or {"name", "driver"} <= set(meta["gpu"]))
    assert {"before", "after"} <= set(meta["load_average"]) and "cpu_busy_before" in meta
    for opt in ("data", "images", "batch_size", "image_size", "epochs", "warmup", "quick", "device", "workers",
                "out", "cutmix", "peers", "alpha", "seed", "min_seconds", "min_seconds_resolved", "quiet",
                "min_batches_beyond_prefetch", "untrusted_spread_pct"):
        assert opt in d["options"], opt
    assert d["dataset"]["num_classes"] >= 1
    assert d["baseline"] == "torchvision"
    n_img = d["dataset"].get("num_images")
    for r in d["rows"]:
        assert r["name"] in bench.ALL_ROWS and r["status"] in ("ok", "skipped", "failed")
        assert {"label", "device", "note", "ratio_to_baseline", "ratio_to_dali"} <= set(r)
        if r["status"] == "ok":
            s = r["images_per_s"]
            assert s["min"] <= s["median"] <= s["max"] and s["median"] > 0 and s["spread_pct"] >= 0
            assert len(r["epochs"]) == d["options"]["epochs"] if complete else len(r["epochs"]) >= 1
            assert r["min_batches"] == r["prefetch_depth"] + bench.MIN_BATCHES_BEYOND_PREFETCH
            assert isinstance(r["trusted"], bool) and bool(r["trust_note"]) != r["trusted"]
            for e in r["epochs"]:
                assert e["images"] > 0 and e["seconds"] > 0 and e["epochs"] >= 1
                assert e["seconds"] >= d["options"]["min_seconds_resolved"]
                assert e["batches"] >= r["min_batches"]  # beyond what was ready before the round
                if n_img and r["name"] != "timm":  # whole epochs, every image once each (timm drops a partial batch)
                    assert e["images"] == n_img * e["epochs"]
        if r["name"] == "ours" and r["status"] == "ok":  # the iterator's host time per batch
            h = r["host_ms_per_batch"]
            assert h["dali"] > 0 and h["mix"] > 0 and h["batch"] >= h["dali"] + h["mix"] - 1e-6
    trusted = {r["name"]: r.get("trusted") for r in d["rows"]}
    for c in d["targets"]:
        assert {"row", "against", "target_ratio", "ratio", "met", "verdict", "note"} <= set(c)
        if c["ratio"] is None:
            assert c["verdict"] == "not measured" and c["met"] is None
        elif trusted[c["row"]] and trusted[c["against"]]:
            assert c["verdict"] == ("met" if c["met"] else "missed") and c["met"] == (c["ratio"] >= c["target_ratio"])
        else:
            assert c["verdict"] == "withheld" and c["met"] is None and "untrusted" in c["note"]


def test_add_arguments_is_cheap_and_has_the_options():
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    a = p.parse_args(["--data", "x", "--images", "10", "--batch-size", "8", "--image-size", "64", "--epochs", "2",
                      "--warmup", "0", "--quick", "--device", "cpu", "--workers", "3", "--out", "o", "--cutmix", "1.0",
                      "--peers", "ours,torchvision"])
    assert (a.data, a.images, a.batch_size, a.image_size, a.epochs, a.warmup, a.quick, a.device, a.workers, a.out,
            a.cutmix, a.peers) == ("x", 10, 8, 64, 2, 0, True, "cpu", 3, "o", 1.0, ["ours", "torchvision"])


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--images", "x"], ["--peers", "ours,nope"],
                                  ["--device", "tpu"], ["--warmup", "-1"], ["--cutmix", "0"],
                                  ["--min-seconds", "-1"], ["--min-seconds", "nan"], ["--alpha", "inf"]])
def test_bad_option_values_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dali-mixup bench: error: argument {argv[0]}: ") and err.count("\n") == 1, err


def test_quick_sets_defaults_and_explicit_values_win():
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    a = p.parse_args(["--quick"])
    bench._resolve_options(a)
    assert (a.images, a.epochs, a.warmup) == (bench.QUICK["images"], bench.QUICK["epochs"], bench.QUICK["warmup"])
    a = p.parse_args(["--quick", "--epochs", "7"])
    bench._resolve_options(a)
    assert a.epochs == 7
    a = p.parse_args([])
    bench._resolve_options(a)
    assert a.images == bench.FULL["images"]


@pytest.mark.parametrize("kind", ["missing", "empty-dir", "bad-list", "not-a-tar"])
def test_bad_data_path_is_a_clear_error_exit_2(kind, tmp_path, capsys):
    if kind == "missing":
        path = tmp_path / "nope"
    elif kind == "empty-dir":
        path = tmp_path / "empty"
        path.mkdir()
    elif kind == "bad-list":
        path = tmp_path / "list.txt"
        path.write_text("missing.jpg 0\n")
    else:
        path = tmp_path / "x.tar"
        path.write_text("not a tar")
    rc, out, err = _run(["--data", str(path), *TINY, "--out", str(tmp_path / "o")], capsys)
    assert rc == 2
    assert err.startswith("dali-mixup bench: --data") and str(path) in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_cutmix_without_the_config_field_exits_2(monkeypatch, folder, tmp_path, capsys):
    import dali_mixup.config as config

    @dataclasses.dataclass(frozen=True)
    class OldConfig:
        alpha: float = 1.0

    monkeypatch.setattr(config, "MixupConfig", OldConfig)
    rc, out, err = _run(["--data", str(folder), "--cutmix", "1.0", *TINY, "--out", str(tmp_path)], capsys)
    assert rc == 2 and "cutmix_alpha" in err


def test_end_to_end_on_the_built_in_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out_dir = tmp_path / "out"
    rc, out, err = _run(["--images", "12", "--classes", "3", *TINY, "--out", str(out_dir),
                         "--peers", "ours,dali,dali-mixup,dali-torch,torchvision,timm"], capsys)
    assert rc == 0, err
    assert (tmp_path / "cache" / "dali-mixup" / "datasets").is_dir()
    path, d = _result(out_dir)
    check_schema(d)
    hw = d["hardware"]
    assert path.name == f"bench-{hw}.json" and (out_dir / f"bench-{hw}.png").stat().st_size > 1000
    assert str(d["metadata"]["cpu"]["cores"]) + "c" in hw
    assert [r["name"] for r in d["rows"]] == list(bench.ROWS)
    assert all(r["status"] == "ok" for r in d["rows"]), [(r["name"], r["note"]) for r in d["rows"]]
    base = next(r for r in d["rows"] if r["name"] == "torchvision")
    assert base["ratio_to_baseline"] == pytest.approx(1.0)
    assert d["dataset"]["kind"] == "synthetic" and d["dataset"]["num_images"] == 12
    for label in bench.LABELS.values():
        assert label in out  # the table
    assert "x baseline" in out


def test_default_rows_skip_the_gpu_row_on_cpu_with_a_note(folder, tmp_path, capsys):
    rc, out, err = _run(["--data", str(folder), *TINY, "--epochs", "1", "--device", "cpu", "--no-plot",
                         "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    _, d = _result(tmp_path)
    check_schema(d)
    row = {r["name"]: r for r in d["rows"]}
    assert row["dali-torch"]["status"] == "skipped" and "GPU" in row["dali-torch"]["note"]
    assert "dali-torch skipped" in err
    assert not list(tmp_path.glob("*.png"))
    assert {c["against"] for c in d["targets"]} == {"torchvision", "dali", "timm"}


def _write_shards(folder, shards):
    """The folder's images as two WebDataset shards (jpg + cls members) in ``shards``."""
    files = sorted(folder.rglob("*.jpg"))
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    shards.mkdir()
    for s in range(2):
        with tarfile.open(shards / f"shard-{s}.tar", "w") as tf:
            for i, f in enumerate(files[s::2]):
                for name, data in ((f"s{s}_{i:04d}.jpg", f.read_bytes()),
                                   (f"s{s}_{i:04d}.cls", str(classes.index(f.parent.name)).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return shards


def test_file_list_and_webdataset_shards(folder, tmp_path, capsys):
    files = sorted(folder.rglob("*.jpg"))
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{f} {classes.index(f.parent.name)}\n" for f in files))
    shards = _write_shards(folder, tmp_path / "shards")
    for data, kind in ((lst, "file_list"), (shards, "shards"), (str(shards / "*.tar"), "shards")):
        out_dir = tmp_path / f"out-{kind}-{len(str(data))}"
        rc, out, err = _run(["--data", str(data), *TINY, "--epochs", "1", "--no-plot", "--out", str(out_dir),
                             "--peers", "ours,dali-mixup,torchvision,timm"], capsys)
        assert rc == 0, err
        _, d = _result(out_dir)
        check_schema(d)
        assert d["dataset"]["kind"] == kind
        assert all(r["status"] == "ok" for r in d["rows"]), [(r["name"], r["note"]) for r in d["rows"]]
        assert all(e["images"] == 12 * e["epochs"] for r in d["rows"] for e in r["epochs"])


def test_tag_and_markdown(folder, tmp_path, capsys):
    rc, out, err = _run(["--data", str(folder), *TINY, "--epochs", "1", "--no-plot", "--peers", "ours,torchvision",
                         "--tag", "Run 2", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    path, d = _result(tmp_path)
    assert path.name.endswith("-run-2.json")
    md = bench.format_markdown(d)
    assert md.startswith("| row |") and "x CPU baseline" in md and len(md.splitlines()) == 4


def test_check_targets():
    rows = [{"name": n, "status": "ok", "images_per_s": {"median": m}} for n, m in
            (("ours", 300.0), ("dali", 320.0), ("torchvision", 150.0))]
    got = {(c["row"], c["against"]): c for c in bench.check_targets(rows, "cpu")}
    assert got[("ours", "torchvision")]["met"] and got[("ours", "torchvision")]["ratio"] == pytest.approx(2.0)
    assert got[("ours", "dali")]["met"] and got[("ours", "dali")]["ratio"] == pytest.approx(300 / 320)
    rows[0]["images_per_s"]["median"] = 200.0
    got = {(c["row"], c["against"]): c for c in bench.check_targets(rows, "cpu")}
    assert not got[("ours", "dali")]["met"] and not got[("ours", "torchvision")]["met"]
    gpu = bench.check_targets(rows, "gpu")
    assert any(c["ratio"] is None and c["met"] is None for c in gpu)  # rows not measured


def test_hardware_slug():
    meta = {"cpu": {"model": "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.0GHz", "cores": 16},
            "gpu": {"name": "NVIDIA H100 80GB HBM3"}}
    assert hardware_slug(meta) == "intel-xeon-platinum-8480-16c-nvidia-h100-80gb-hbm3"
    meta["gpu"] = None
    assert hardware_slug(meta).endswith("-16c-nogpu")
    assert os.sep not in hardware_slug(meta)


def test_min_seconds_runs_whole_epochs_until_the_time_has_passed(folder, tmp_path, capsys):
    rc, out, err = _run(["--data", str(folder), *TINY, "--epochs", "1", "--device", "cpu", "--no-plot",
                         "--peers", "ours,dali", "--min-seconds", "0.5", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    _, d = _result(tmp_path)
    check_schema(d)
    assert d["options"]["min_seconds_resolved"] == 0.5
    for r in d["rows"]:
        (e,) = r["epochs"]
        assert e["seconds"] >= 0.5 and e["epochs"] >= 2 and e["images"] == 12 * e["epochs"]  # whole epochs
    assert "ms per batch; host time in DALI's next" in out


def test_min_seconds_default_on_the_cpu(folder, tmp_path, capsys):
    """Without --min-seconds a CPU round lasts MIN_SECONDS["cpu"] (whole epochs of 12 images)."""
    i = TINY.index("--min-seconds")
    argv = TINY[:i] + TINY[i + 2:]
    rc, out, err = _run(["--data", str(folder), *argv, "--epochs", "1", "--device", "cpu", "--no-plot",
                         "--peers", "ours", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    _, d = _result(tmp_path)
    check_schema(d)
    assert bench.MIN_SECONDS["cpu"] >= 1.0 and d["options"]["min_seconds_resolved"] == bench.MIN_SECONDS["cpu"]
    (e,) = d["rows"][0]["epochs"]
    assert e["seconds"] >= bench.MIN_SECONDS["cpu"] and e["images"] == 12 * e["epochs"]


def test_an_image_given_as_data_says_so_exit_2(tmp_path, capsys):
    from images import write_image

    img = tmp_path / "x.jpg"
    write_image(str(img), 8, 8, seed=0)
    rc, out, err = _run(["--data", str(img), *TINY, "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "x.jpg' is an image, not a data set" in err and err.count("\n") == 1, err
    assert "utf-8" not in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["a-file", "under-a-file", "read-only"])
def test_an_unwritable_out_fails_before_the_run(kind, folder, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = {"a-file": blocker, "under-a-file": blocker / "sub" / "deeper"}.get(kind)
    if kind == "read-only":
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o555)
        if os.access(out, os.W_OK):  # root writes anywhere: make the probe fail as a read-only mount would
            real = os.open

            def refuse(path, flags, *a, **k):
                if str(path).startswith(str(out)) and flags & os.O_CREAT:
                    raise PermissionError(13, "Permission denied", str(path))
                return real(path, flags, *a, **k)

            monkeypatch.setattr(os, "open", refuse)
    built = []
    monkeypatch.setattr(bench, "build_row", lambda *a: built.append(a))  # the run must not start
    rc, _, err = _run(["--data", str(folder), *TINY, "--out", str(out)], capsys)
    assert rc == 2 and err.startswith(f"dali-mixup bench: --out {str(out)!r}") and err.count("\n") == 1, err
    assert built == []


def test_a_fifo_as_data_is_not_called_missing(tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rc, _, err = _run(["--data", str(fifo), *TINY, "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "not a regular file or a directory" in err and err.count("\n") == 1, err


# --- small data: rounds of whole epochs beyond the prefetch depth, or a refusal ----------------


def test_one_batch_epochs_are_repeated_beyond_the_prefetch_depth(folder, tmp_path, capsys):
    """The docker-check case in small (issue 23): an epoch of one batch. DALI holds a batch or two
    of the next epoch ready before a round starts; a round must deliver MIN_BATCHES_BEYOND_PREFETCH
    more, in whole epochs, and last --min-seconds."""
    rc, out, err = _run(["--data", str(folder), "--batch-size", "12", "--image-size", "32", "--epochs", "2",
                         "--warmup", "1", "--workers", "1", "--min-seconds", "0.3", "--no-progress", "--no-plot",
                         "--device", "cpu", "--peers", "ours,dali,torchvision,timm", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    _, d = _result(tmp_path)
    check_schema(d)
    rows = {r["name"]: r for r in d["rows"]}
    assert rows["dali"]["prefetch_depth"] == 2 and rows["torchvision"]["prefetch_depth"] == 2  # 1 worker x 2
    for r in rows.values():
        assert r["batches_per_epoch"] == 1
        for e in r["epochs"]:
            assert e["epochs"] == e["batches"] >= r["prefetch_depth"] + bench.MIN_BATCHES_BEYOND_PREFETCH
            assert e["seconds"] >= 0.3


def test_a_data_set_smaller_than_a_batch_is_refused_before_any_row_is_built(folder, tmp_path, capsys,
                                                                             monkeypatch):
    built = []
    monkeypatch.setattr(bench, "build_row", lambda *a: built.append(a))
    rc, out, err = _run(["--data", str(folder), *TINY, "--batch-size", "16", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and built == [] and out == ""
    assert err.startswith("dali-mixup bench: the data set has 12 images, fewer than one batch of 16")
    assert err.count("\n") == 1 and not (tmp_path / "o").exists(), err


def test_shards_smaller_than_a_batch_are_refused_at_the_first_epoch(folder, tmp_path, capsys):
    """WebDataset shards do not say their size up front: the first epoch does."""
    shards = _write_shards(folder, tmp_path / "shards")
    rc, out, err = _run(["--data", str(shards), *TINY, "--batch-size", "16", "--peers", "ours", "--quiet",
                         "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and out == ""
    assert err == ("dali-mixup bench: " + bench.too_few_images(12, 16) + "\n"), err


# --- untrusted rows: marked, and no verdict drawn from them ------------------------------------


def _rows(**rounds):
    """Rows as the bench records them, from each row's images/s per timed round."""
    return [{"name": n, "label": bench.ALL_LABELS[n], "device": "cpu", "status": "ok", "note": "",
             "epochs": [{"images_per_s": v} for v in rates]} for n, rates in rounds.items()]


def test_trust_needs_two_rounds_and_a_small_spread():
    ok, why = bench.trust(bench.summarize([{"images_per_s": 100.0}]), 1)
    assert not ok and "one timed round" in why
    s = bench.summarize([{"images_per_s": v} for v in (90.0, 100.0, 110.0)])
    assert s["spread_pct"] == pytest.approx(20.0) and bench.trust(s, 3) == (True, "")
    s = bench.summarize([{"images_per_s": v} for v in (80.0, 100.0, 130.0)])
    ok, why = bench.trust(s, 3)
    assert s["spread_pct"] > bench.UNTRUSTED_SPREAD_PCT and not ok and "spread 50%" in why


def test_an_untrusted_row_is_marked_and_gives_no_verdict():
    """The seen case: plain DALI at a 258 % spread; ours against it got 'MISSED' from nothing."""
    rows = _rows(ours=[600.0, 610.0, 590.0], dali=[50089.0, 2000.0, 131000.0], torchvision=[200.0, 205.0, 210.0])
    bench._finish_rows(rows)
    targets = {c["against"]: c for c in bench.check_targets(rows, "cpu")}
    assert [r["trusted"] for r in rows] == [True, False, True]
    assert targets["dali"]["verdict"] == "withheld" and targets["dali"]["met"] is None
    assert "dali untrusted (spread" in targets["dali"]["note"]
    assert targets["torchvision"]["verdict"] == "met" and targets["torchvision"]["met"] is True
    assert targets["timm"]["verdict"] == "not measured"
    result = {"rows": rows, "targets": list(targets.values())}
    table = bench.format_table(result)
    dali_line = next(line for line in table.splitlines() if line.startswith(bench.LABELS["dali"]))
    assert dali_line.endswith("UNTRUSTED")
    assert "UNTRUSTED dali: spread" in table
    (verdict,) = [line for line in table.splitlines() if line.startswith("target ours >= 0.9 x dali")]
    assert "no verdict" in verdict and "MISSED" not in verdict and " met" not in verdict
    assert "untrusted: spread" in bench.format_markdown(result)


def test_one_timed_round_gives_no_verdict(folder, tmp_path, capsys):
    rc, out, err = _run(["--data", str(folder), *TINY, "--epochs", "1", "--no-plot", "--device", "cpu",
                         "--peers", "ours,torchvision", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    _, d = _result(tmp_path)
    check_schema(d)
    assert not any(r["trusted"] for r in d["rows"])
    assert {c["verdict"] for c in d["targets"]} == {"withheld", "not measured"}
    assert "MISSED" not in out and " met" not in out and out.count("UNTRUSTED") == 4


# --- the timm row ------------------------------------------------------------------------------


def test_timm_row_on_the_cpu_says_what_it_delivers(folder, tmp_path, capsys):
    rc, out, err = _run(["--data", str(folder), *TINY, "--no-plot", "--device", "cpu", "--peers", "ours,timm",
                         "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    _, d = _result(tmp_path)
    check_schema(d)
    timm_row = d["rows"][1]
    assert timm_row["name"] == "timm" and timm_row["status"] == "ok", timm_row
    assert timm_row["label"] == bench.LABELS["timm"] + " (uint8, not normalised)" and timm_row["label"] in out
    assert timm_row["output"].startswith("uint8, not normalised")
    assert timm_row["prefetch_depth"] == 2  # 1 worker x prefetch factor 2, no PrefetchLoader
    assert all(e["images"] == 12 * e["epochs"] for e in timm_row["epochs"])  # 12 = 3 full batches of 4
    (t,) = [c for c in d["targets"] if c["against"] == "timm"]
    assert t["ratio"] == pytest.approx(d["rows"][0]["images_per_s"]["median"] / timm_row["images_per_s"]["median"])


@pytest.mark.parametrize("prefetcher", [None, True])
def test_timm_batches_are_mixed_like_the_other_rows(folder, prefetcher):
    """uint8 NCHW without the prefetcher; normalised float32 with it; soft targets summing to 1,
    some of them mixed."""
    import torch

    args = argparse.Namespace(data=str(folder), images=None, classes=3, seed=0, progress=False, workers=1,
                              image_size=32, batch_size=4, dtype="float32", alpha=1.0, cutmix=None,
                              timm_prefetcher=prefetcher)
    data = bench.resolve_data(args)
    loader = bench.build_row("timm", args, data, "cpu", 3)
    batches = [b[0] for b in loader]
    assert len(batches) == len(loader) == 3
    x = torch.cat([b["data"] for b in batches])
    y = torch.cat([b["label"] for b in batches])
    assert x.shape == (12, 3, 32, 32) and y.shape == (12, 3)
    assert torch.allclose(y.sum(1), torch.ones(12)) and (y.max(1).values < 1).any()
    if prefetcher:
        assert x.dtype == torch.float32 and x.min() < 0 < x.max() and x.abs().max() < 3
    else:
        assert x.dtype == torch.uint8 and x.float().std() > 10


def test_timm_row_skipped_with_a_note(folder, tmp_path, capsys, monkeypatch):
    """Where timm is missing, and at an odd batch size (FastCollateMixup mixes i with N - 1 - i)."""
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    rc, out, err = _run(["--data", str(folder), *TINY, "--no-plot", "--peers", "ours,timm",
                         "--out", str(tmp_path / "a")], capsys)
    assert rc == 0, err
    _, d = _result(tmp_path / "a")
    assert d["rows"][1]["status"] == "skipped" and "timm is not installed" in d["rows"][1]["note"]
    assert "note: timm skipped: timm is not installed" in err
    monkeypatch.delitem(sys.modules, "timm")
    rc, out, err = _run(["--data", str(folder), *TINY, "--batch-size", "3", "--no-plot", "--peers", "ours,timm",
                         "--out", str(tmp_path / "b")], capsys)
    assert rc == 0, err
    _, d = _result(tmp_path / "b")
    assert d["rows"][1]["status"] == "skipped" and "even batch size" in d["rows"][1]["note"]


def test_train_step_has_the_timm_feed(folder, tmp_path, capsys):
    """benchmarks/train_step.py: timm's loader with its prefetcher feeds the same model."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"
    spec = importlib.util.spec_from_file_location("train_step", path)
    train_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_step)
    rc = train_step.main(["--data", str(folder), "--device", "cpu", "--models", "tiny:32", "--batch-size", "4",
                          "--feeds", "ours,timm", "--warmup", "0", "--rounds", "1", "--workers", "1",
                          "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr()
    (f,) = tmp_path.glob("train-step-*.json")
    (m,) = json.loads(f.read_text())["models"]
    timm_feed = m["feeds"]["timm"]
    assert timm_feed["status"] == "ok" and timm_feed["label"] == train_step.LABELS["timm"], timm_feed
    assert timm_feed["rounds"][0]["images"] == 12 and timm_feed["images_per_s"]["median"] > 0


# --- partial results and logs ------------------------------------------------------------------


def test_the_json_is_written_after_every_timed_round(folder, tmp_path, capsys, monkeypatch):
    """A run stopped in its second timed round (a stage timeout, Ctrl-C) keeps the first."""
    real = bench.EpochRunner.measure
    calls = []

    def measure(self, bar, min_seconds):
        calls.append(self.name)
        if len(calls) == 3:  # ours, dali, then ours again: round 2
            raise KeyboardInterrupt
        return real(self, bar, min_seconds)

    monkeypatch.setattr(bench.EpochRunner, "measure", measure)
    rc, out, err = _run(["--data", str(folder), *TINY, "--no-plot", "--peers", "ours,dali", "--out", str(tmp_path)],
                        capsys)
    assert rc == 130 and "interrupted" in err
    _, d = _result(tmp_path)
    check_schema(d, complete=False)
    assert [len(r["epochs"]) for r in d["rows"]] == [1, 1]


def test_logs_off_a_terminal_are_one_line_per_round(folder, tmp_path, capsys):
    """stderr is not a terminal here: no bar, no carriage return, one line per row and round."""
    argv = [a for a in TINY if a != "--no-progress"]
    rc, out, err = _run(["--data", str(folder), *argv, "--warmup", "1", "--no-plot", "--peers", "ours,torchvision",
                         "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    assert "\r" not in err and "\r" not in out
    rounds = [line for line in err.splitlines() if line.startswith("round ")]
    assert len(rounds) == 3 * 2 and sum("(warm-up)" in line for line in rounds) == 2
    _, d = _result(tmp_path)
    first = d["rows"][0]["epochs"][0]
    assert (f"round 2/3 ours: {first['images_per_s']:.0f} images/s ({first['images']} images, {first['batches']} "
            f"batches, {first['epochs']} epochs in {first['seconds']:.2f} s)") in rounds
    assert err.startswith("dali-mixup bench: ") and "built 2 rows: ours" in err


def test_quiet_prints_the_table_alone(folder, tmp_path, capsys):
    rc, out, err = _run(["--data", str(folder), *TINY, "--quiet", "--peers", "ours,torchvision", "--device", "cpu",
                         "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    _, d = _result(tmp_path)
    assert err == "" and out == bench.format_table(d) + "\n"
    assert (tmp_path / f"bench-{d['hardware']}.png").exists()


def test_bars_only_on_a_terminal(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    modes = {}
    for name, stderr in (("tty", Tty()), ("file", io.StringIO())):
        monkeypatch.setattr(sys, "stderr", stderr)
        modes[name] = [bench.Log.for_args(p.parse_args(argv)).mode for argv in ([], ["--no-progress"], ["--quiet"])]
    assert modes == {"tty": ["bars", "lines", "quiet"], "file": ["lines", "lines", "quiet"]}
