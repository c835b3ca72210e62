"""Every input checked once, at the edge (issue: no path escapes, no user file overwritten, no traceback):
one table per kind of input, each case a clear error naming the file or flag and the fix, nothing
written where it should not be, exit 2 from the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dkan.cli import main as dkan
from dkan.errors import DkanError
from tests.conftest import tiny_model_config


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


# ---------------------------------------------------------------- dataset.yaml, the tool's own file read back


@pytest.fixture
def prepared(synthetic_prepared, tmp_path) -> Path:
    """A copy of the shared prepared set whose dataset.yaml a test may edit (its image folder made absolute)."""
    import yaml

    out = tmp_path / "prepared"
    shutil.copytree(synthetic_prepared, out)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    meta["image_root"] = str((synthetic_prepared / meta["image_root"]).resolve())
    (out / "dataset.yaml").write_text(yaml.safe_dump(meta))
    return out


def _edit(root: Path, fn) -> None:
    import yaml

    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    (root / "dataset.yaml").write_text(fn(meta) if callable(fn) else fn if isinstance(fn, str) else yaml.safe_dump(fn))


@pytest.mark.parametrize("edit, said", [
    ("{not: [yaml", "malformed: not plain YAML"),
    ("- a\n- b\n", "malformed: a mapping expected, got list"),
    ("!!python/object/apply:os.system ['echo hi']\n", "malformed: not plain YAML"),
    (lambda m: __import__("yaml").safe_dump({k: v for k, v in m.items() if k != "classes"}),
     "'classes' missing or not a list"),
    (lambda m: __import__("yaml").safe_dump({**m, "classes": ["a", "../b"]}), "unsafe names ['../b']"),
    (lambda m: __import__("yaml").safe_dump({**m, "classes": ["a", "a"]}), "duplicates"),
    (lambda m: __import__("yaml").safe_dump({**m, "image_root": "/nowhere/at/all"}), "/nowhere/at/all does not exist"),
    (lambda m: __import__("yaml").safe_dump({**m, "class_splits": {"../../../tmp/x": {
        "base": m["classes"][:3], "novel": m["classes"][3:]}}}), "split names become file and folder names"),
    (lambda m: __import__("yaml").safe_dump({**m, "class_splits": {"mine": {
        "base": m["classes"][:3] + m["classes"][:1], "novel": m["classes"][3:]}}}), "classes listed twice"),
    (lambda m: __import__("yaml").safe_dump({**m, "class_splits": {"mine": {"base": list(m["classes"]), "novel": []}}}),
     "no novel classes"),
    (lambda m: __import__("yaml").safe_dump({**m, "class_splits": ["x"]}), "'class_splits' is not a mapping"),
])
def test_a_malformed_dataset_yaml_is_named_for_every_reader(prepared, tmp_path, capsys, edit, said):
    from sweeps.run_tune import main as sweep

    _edit(prepared, edit)
    for argv in (["inspect-data", str(prepared)], ["base-train", "--profile", "cpu-quick", "--data", str(prepared),
                                                   "--out", str(tmp_path / "b")]):
        assert dkan(argv) == 2
        err = capsys.readouterr().err
        assert "dataset.yaml" in err and said in err and "Fix:" in err and "Traceback" not in err
    outside = tmp_path.parent / "tmp"
    before = _tree(outside)
    assert sweep(["--data", str(prepared), "--shots", "2", "--seeds", "1-2", "--out", str(tmp_path / "s"),
                  "--cache-dir", str(tmp_path / "c"), "--dry-run"]) == 2
    assert said in capsys.readouterr().err and _tree(outside) == before and not (tmp_path / "s").exists()


def test_names_become_paths_only_through_the_one_rule():
    from dkan.names import unsafe_name
    from sweeps.core.layout import RunLayout, UnsafeName, study_key

    for bad in ("../x", "a/b", "a\\b", ".hidden", "", "x" * 300, "a\0b"):
        assert unsafe_name(bad)
        with pytest.raises(UnsafeName):
            study_key("data", bad, 5)
        with pytest.raises(UnsafeName):
            RunLayout(Path("/out")).bundle(bad)
    assert unsafe_name("rolled-in_scale") is None and study_key("d", "split1", 5) == "d_split1_5shot"


# ---------------------------------------------------------------- few-shot lists


@pytest.mark.parametrize("name, text, said", [
    ("box_1shot_alpha_train.txt", "", "lists no image"),
    ("box_0shot_alpha_train.txt", "alpha_1\n", "K=0: a few-shot list holds at least one box"),
    ("box_1000shot_alpha_train.txt", "{alpha}\n", "fewer than K=1000"),
    ("box_1shot_alpha_train.txt", b"\xff\xfe\x00bad", "not UTF-8 text"),
    ("box_1shot_alpha_train.txt", None, "is a folder, not a few-shot list"),
])
def test_bad_fewshot_lists_are_refused_at_import(tiny_voc, tmp_path, name, text, said):
    from dkan.data.prepare import PrepareConfig, prepare_data
    from dkan.data.prepared import PreparedData
    from dkan.errors import DataError

    probe = tmp_path / "probe"
    prepare_data(PrepareConfig(out=str(probe), source=str(tiny_voc), seeds=[1], shots=[1]))
    tv = PreparedData.load(probe).split("trainval")
    first = {c: next(im["file_name"][:-4] for im in tv["images"] if im["file_name"].startswith(c + "_"))
             for c in ("alpha", "beta-x_y")}
    lists = tmp_path / "lists"
    lists.mkdir()
    k = name.split("shot")[0].removeprefix("box_")
    (lists / f"box_{k}shot_beta-x_y_train.txt").write_text(first["beta-x_y"] + "\n")
    path = lists / name
    if text is None:
        path.mkdir()
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text.format(alpha=first["alpha"]))
    with pytest.raises(DataError, match=said):
        prepare_data(PrepareConfig(out=str(tmp_path / "o"), source=str(tiny_voc), fewshot_from=str(lists)))
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- class splits and seeds given to the sweep


@pytest.mark.parametrize("extra, said", [
    (["--base", "crazing,inclusion,patches,pitted_surface,rolled-in_scale,scratches"], "no novel classes"),
    (["--base", "crazing,crazing", "--novel", "patches"], "classes listed twice"),
    (["--shots", "0"], "--shots 0: every value must be at least 1"),
])
def test_bad_class_splits_and_shots_are_refused_before_ray(synthetic_prepared, tmp_path, capsys, extra, said):
    import ray

    from sweeps.run_tune import main as sweep

    argv = ["--data", str(synthetic_prepared), "--shots", "2", "--seeds", "1-2", "--out", str(tmp_path / "s"), *extra]
    assert sweep(argv) == 2
    err = capsys.readouterr().err
    assert said in err and "prepare-data" not in err and not ray.is_initialized()


def test_a_seed_range_too_large_is_a_clear_error_not_a_memory_error(capsys):
    from sweeps.run_tune import main as sweep

    with pytest.raises(SystemExit) as e:
        sweep(["--seeds", "1-100000000000", "--dry-run"])
    assert e.value.code == 2 and "more than 10000 values" in capsys.readouterr().err


# ---------------------------------------------------------------- predict, evaluate, inspect-data


def _base_checkpoint(path: Path, data: Path, size: int):
    """A random-weight tiny base model of split 1 at input ``size``, with fit's payload shape."""
    from dkan.config import BaseTrainConfig, DataConfig, to_dict
    from dkan.data.splits import NEU_DET_SPLITS
    from dkan.model.checkpoint import save_checkpoint
    from dkan.model.detector import build_detector

    torch.manual_seed(0)
    cfg = BaseTrainConfig(model=tiny_model_config(min_size=size, max_size=size), data=DataConfig(root=str(data)))
    classes = list(NEU_DET_SPLITS[1].base)
    meta = {"stage": "base", "classes": classes, "base": classes, "novel": [], "config": to_dict(cfg), "iteration": 0}
    save_checkpoint(path, {"model": build_detector(cfg.model, len(classes)).state_dict(), "meta": meta})
    return cfg


@pytest.fixture
def model(tmp_path, synthetic_prepared) -> Path:
    _base_checkpoint(tmp_path / "model_final.pt", synthetic_prepared, 64)
    return tmp_path / "model_final.pt"


@pytest.fixture
def images(tmp_path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for n in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(d / n)
    return d


@pytest.mark.parametrize("extra, said", [
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--batch-size", "-1"], "--batch-size -1: must be at least 1"),
    (["--score-thresh", "nan"], "--score-thresh nan: a score threshold lies in [0, 1]"),
    (["--draw-thresh", "2"], "--draw-thresh 2.0: a score threshold lies in [0, 1]"),
    (["--draw", "{images}"], "--draw {images}: holds the inputs"),
    (["--draw", "{images}/a.png"], "is a file, not a folder"),
    (["--out", "{images}"], "is a folder"),
    (["--out", "{images}/a.png"], "is one of the inputs"),
])
def test_predict_refuses_bad_values_and_never_writes_over_its_inputs(model, images, tmp_path, capsys, extra, said):
    before = {p: p.read_bytes() for p in images.iterdir()}
    extra = [x.format(images=images) for x in extra]
    argv = ["predict", str(images), "--checkpoint", str(model), "--out", str(tmp_path / "d.json"), *extra]
    assert dkan(argv) == 2
    err = capsys.readouterr().err
    assert said.format(images=images) in err and "Fix:" in err
    assert {p: p.read_bytes() for p in images.iterdir()} == before  # nothing written over, nothing added
    assert not (tmp_path / "d.json").exists() and not list(tmp_path.glob(".*tmp*"))


def test_a_model_uri_without_a_store_creates_no_store(images, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert dkan(["predict", str(images), "--model-uri", "models:/nope/1", "--out", str(tmp_path / "d.json")]) == 2
    assert "needs its store" in capsys.readouterr().err
    uri = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    assert dkan(["predict", str(images), "--model-uri", "models:/nope/1", "--tracking-uri", uri]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not list(tmp_path.rglob("mlflow.db"))


def test_evaluate_and_inspect_check_their_outputs_and_values_before_work(model, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert dkan(["evaluate", "--checkpoint", str(model), "--json", str(blocker / "m.json")]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "is not a folder" in err and "--out" not in err
    for flag, value in (("--min-size", "-5"), ("--max-shots", "0")):
        assert dkan(["inspect-data", str(tmp_path), flag, value]) == 2
        assert f"{flag} {value}: must be at least 1" in capsys.readouterr().err


def test_an_image_above_the_pixel_limit_is_named_not_decoded(model, images, tmp_path, capsys, monkeypatch):
    from dkan.data.images import read_image
    from dkan.errors import DataError

    monkeypatch.setenv("DKAN_MAX_IMAGE_PIXELS", "1000")  # 48 x 48 = 2304 pixels
    with pytest.raises(DataError, match=r"48 x 48 pixels .* above the limit.*DKAN_MAX_IMAGE_PIXELS"):
        read_image(images / "a.png")
    assert dkan(["predict", str(images), "--checkpoint", str(model), "--out", str(tmp_path / "d.json")]) == 1
    assert "above the limit" in capsys.readouterr().err  # every image skipped and named: none read


def test_the_pyfunc_model_keeps_the_good_images_of_a_batch(model, images):
    import pandas as pd

    from dkan.inference import load_checkpoint_model
    from sweeps.outputs.pyfunc_model import DetectorModel

    m = DetectorModel()
    m.loaded = load_checkpoint_model(model)
    frame = m.predict(None, pd.DataFrame({"image": [str(images / "a.png"), str(images / "gone.png")]}),
                      {"score_thresh": 0.0})
    assert set(frame["image"]) <= {str(images / "a.png")}
    assert [f["image"] for f in frame.attrs["failed"]] == [str(images / "gone.png")]


# ---------------------------------------------------------------- a run folder read back: results, links, the store


def test_the_report_reads_nothing_from_outside_its_run_folder(tmp_path, capsys):
    from tests.test_report import _study

    run = tmp_path / "sweep"
    (run / "results").mkdir(parents=True)
    _study(run, 1, 5)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not yours")
    (run / "plots" / "x").mkdir(parents=True)
    (run / "plots" / "x" / "leak.png").symlink_to(secret)
    assert dkan(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "leak.png: links outside the run folder" in err and not (run / "report.html").exists()


@pytest.mark.parametrize("edit, said", [
    (lambda d: {**d, "verdict": 3}, "'verdict' is a int"),
    (lambda d: {**d, "table": {"TFA": [1, 2]}}, "table row 'TFA' is not a mapping"),
    (lambda d: {**d, "study": {"shots": "five"}}, "study.shots is 'five'"),
])
def test_a_malformed_results_file_is_named(tmp_path, capsys, edit, said):
    from tests.test_report import _study

    run = tmp_path / "sweep"
    (run / "results").mkdir(parents=True)
    _study(run, 1, 5)
    path = run / "results" / "neu-det_split1_5shot.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    assert dkan(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: malformed results: {said}" in err and "Fix:" in err and "Traceback" not in err


def test_relocate_refuses_what_is_not_a_store(tmp_path, capsys):
    from sweeps.tracking import main as tracking

    (tmp_path / "mlflow.db").write_text("not sqlite at all")
    assert tracking(["relocate", str(tmp_path)]) == 2
    assert "is not an MLflow store" in capsys.readouterr().err


def test_a_tracking_server_with_credentials_is_reached_with_them():
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from sweeps.tracking import TrackingError, check_tracking_uri

    want = "Basic " + base64.b64encode(b"alice:s3cret").decode()

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            ok = self.path == "/health" and self.headers.get("Authorization") == want
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(b"OK" if ok else b"no")

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        check_tracking_uri(f"http://alice:s3cret@127.0.0.1:{port}")  # reachable with its credentials
        with pytest.raises(TrackingError, match="401") as e:
            check_tracking_uri(f"http://alice:wrong@127.0.0.1:{port}")
        assert "wrong" not in str(e.value)
    finally:
        server.shutdown()


def test_a_base_checkpoint_of_another_input_size_is_refused_at_the_plan(synthetic_prepared, tmp_path, capsys):
    from sweeps.run_tune import main as sweep

    path = tmp_path / "base.pt"
    cfg = _base_checkpoint(path, synthetic_prepared, 96)
    argv = ["--data", str(synthetic_prepared), "--shots", "2", "--seeds", "1-2", "--out", str(tmp_path / "s"),
            "--base-checkpoint", str(path), "--profile", "cpu-quick", "--dry-run"]
    assert sweep(argv) == 2
    err = capsys.readouterr().err
    assert "--base-checkpoint model." in err and "differs from the base model's" in err and "Fix:" in err
    with pytest.raises(DkanError):  # the same check inside a fine-tune (the one function serves both)
        from dkan.engine.setup import check_student_fits

        check_student_fits(cfg.model, tiny_model_config(), path)
