"""``dali-mixup bench``: options, data resolution, the JSON it writes, errors (exit code 2).

Runs are tiny (a dozen 32-px images, one epoch) so the file stays fast; the figures are not
looked at, only the shape of what comes out.
"""

import argparse
import dataclasses
import io
import json
import os
import tarfile

import pytest

pytest.importorskip("nvidia.dali")

from dali_mixup.tools import bench, cli  # noqa: E402
from dali_mixup.tools.datasets import synthetic_imagenet  # noqa: E402
from dali_mixup.tools.meta import hardware_slug  # noqa: E402

TINY = ["--batch-size", "4", "--image-size", "32", "--epochs", "2", "--warmup", "0", "--workers", "1",
        "--no-progress"]


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


def check_schema(d):
    """The JSON's contract (benchmarks/README.md): the keys a reader of results relies on."""
    assert d["schema"] == bench.SCHEMA
    for key in ("created", "options", "metadata", "hardware", "dataset", "baseline", "rows", "targets"):
        assert key in d, key
    meta = d["metadata"]
    assert set(meta["git"]) == {"commit", "dirty"}
    assert meta["python"] and meta["versions"]["torch"] and "nvidia.dali" in meta["versions"] and "cupy" in meta["versions"]
    assert meta["cpu"]["model"] and meta["cpu"]["cores"] >= 1
    assert "gpu" in meta and (meta["gpu"] is None or {"name", "driver"} <= set(meta["gpu"]))
    assert {"before", "after"} <= set(meta["load_average"]) and "cpu_busy_before" in meta
    for opt in ("data", "images", "batch_size", "image_size", "epochs", "warmup", "quick", "device", "workers",
                "out", "cutmix", "peers", "alpha", "seed", "min_seconds", "min_seconds_resolved"):
        assert opt in d["options"], opt
    assert d["dataset"]["num_classes"] >= 1
    assert d["baseline"] == "torchvision"
    for r in d["rows"]:
        assert r["name"] in bench.ROWS and r["status"] in ("ok", "skipped", "failed")
        assert {"label", "device", "note", "ratio_to_baseline", "ratio_to_dali"} <= set(r)
        if r["status"] == "ok":
            s = r["images_per_s"]
            assert s["min"] <= s["median"] <= s["max"] and s["median"] > 0 and s["spread_pct"] >= 0
            assert len(r["epochs"]) == d["options"]["epochs"]
            for e in r["epochs"]:
                assert e["images"] > 0 and e["seconds"] > 0 and e["batches"] >= 1 and e["epochs"] >= 1
                assert e["seconds"] >= d["options"]["min_seconds_resolved"]
        if r["name"] == "ours" and r["status"] == "ok":  # the iterator's host time per batch
            h = r["host_ms_per_batch"]
            assert h["dali"] > 0 and h["mix"] > 0 and h["batch"] >= h["dali"] + h["mix"] - 1e-6
    for c in d["targets"]:
        assert {"row", "against", "target_ratio", "ratio", "met"} <= set(c)


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
                         "--peers", "ours,dali,dali-mixup,dali-torch,torchvision"], capsys)
    assert rc == 0, err
    assert (tmp_path / "cache" / "dali-mixup" / "datasets").is_dir()
    path, d = _result(out_dir)
    check_schema(d)
    hw = d["hardware"]
    assert path.name == f"bench-{hw}.json" and (out_dir / f"bench-{hw}.png").stat().st_size > 1000
    assert str(d["metadata"]["cpu"]["cores"]) + "c" in hw
    assert [r["name"] for r in d["rows"]] == list(bench.ROWS)
    assert all(r["status"] == "ok" for r in d["rows"]), [(r["name"], r["note"]) for r in d["rows"]]
    assert all(e["images"] == 12 for r in d["rows"] for e in r["epochs"])  # PARTIAL: every sample, once
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
    assert {c["against"] for c in d["targets"]} == {"torchvision", "dali"}


def test_file_list_and_webdataset_shards(folder, tmp_path, capsys):
    files = sorted(folder.rglob("*.jpg"))
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{f} {classes.index(f.parent.name)}\n" for f in files))
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(2):
        with tarfile.open(shards / f"shard-{s}.tar", "w") as tf:
            for i, f in enumerate(files[s::2]):
                for name, data in ((f"s{s}_{i:04d}.jpg", f.read_bytes()),
                                   (f"s{s}_{i:04d}.cls", str(classes.index(f.parent.name)).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    for data, kind in ((lst, "file_list"), (shards, "shards"), (str(shards / "*.tar"), "shards")):
        out_dir = tmp_path / f"out-{kind}-{len(str(data))}"
        rc, out, err = _run(["--data", str(data), *TINY, "--epochs", "1", "--no-plot", "--out", str(out_dir),
                             "--peers", "ours,dali-mixup,torchvision"], capsys)
        assert rc == 0, err
        _, d = _result(out_dir)
        check_schema(d)
        assert d["dataset"]["kind"] == kind
        assert all(r["status"] == "ok" for r in d["rows"]), [(r["name"], r["note"]) for r in d["rows"]]
        assert all(r["epochs"][0]["images"] == 12 for r in d["rows"])


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


def test_min_seconds_default_is_per_device():
    assert bench.MIN_SECONDS["cpu"] == 0 and bench.MIN_SECONDS["gpu"] > 0


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
