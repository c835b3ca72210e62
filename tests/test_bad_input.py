"""Each bad input gives a clear error naming the file or value and the fix, and writes nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dkan.data.prepare import PrepareConfig, prepare_data
from dkan.data.prepared import PreparedData
from dkan.data.voc import load_voc
from dkan.errors import DataError
from tests.conftest import make_voc, voc_xml


def refused(tmp_path: Path, source: Path, match: str, **kw) -> DataError:
    out = tmp_path / "out"
    with pytest.raises(DataError, match=match) as e:
        prepare_data(PrepareConfig(out=str(out), source=str(source), seeds=[1], shots=[1], **kw))
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*")), "nothing may be written"
    assert "Fix:" in str(e.value)
    return e.value


def test_missing_image_file(tiny_voc, tmp_path):
    (tiny_voc / "IMAGES" / "alpha_3.jpg").unlink()
    e = refused(tmp_path, tiny_voc, r"alpha_3\.xml: image file not found")
    assert "restore the image" in str(e)


def test_corrupt_jpeg(tiny_voc, tmp_path):
    path = tiny_voc / "IMAGES" / "beta-x_y_2.jpg"
    path.write_bytes(path.read_bytes()[:200])  # truncated
    refused(tmp_path, tiny_voc, r"beta-x_y_2\.xml: image file .*beta-x_y_2\.jpg cannot be decoded.*replace the corrupt")


def test_malformed_xml(tiny_voc, tmp_path):
    (tiny_voc / "ANNOTATIONS" / "alpha_4.xml").write_text("<annotation><size>")
    refused(tmp_path, tiny_voc, r"alpha_4\.xml: malformed XML .*repair the file")


def test_non_numeric_box(tiny_voc, tmp_path):
    (tiny_voc / "ANNOTATIONS" / "alpha_4.xml").write_text(voc_xml("alpha_4.jpg", [("alpha", ("a", 1, 9, 9))]))
    refused(tmp_path, tiny_voc, r"alpha_4\.xml: missing or non-numeric")


@pytest.mark.parametrize("name, why", [("x" * 201, r"'xxxx+\.\.\. \(201 characters\): the class name is longer than"),
                                       ("a/b", r"'a/b': the class name holds a path separator")])
def test_voc_class_name_too_long_or_with_a_separator_has_its_own_message(tiny_voc, tmp_path, name, why):
    (tiny_voc / "ANNOTATIONS" / "alpha_5.xml").write_text(voc_xml("alpha_5.jpg", [(name, (1, 1, 9, 9))]))
    e = refused(tmp_path, tiny_voc, r"alpha_5\.xml, class " + why)
    assert "bndbox" not in str(e) and str(e).count("Fix:") == 1 and len(str(e)) < 400


def test_unknown_class_name(tiny_voc, tmp_path):
    (tiny_voc / "ANNOTATIONS" / "alpha_5.xml").write_text(voc_xml("alpha_5.jpg", [("alpah", (1, 1, 9, 9))]))
    refused(tmp_path, tiny_voc, r"alpha_5\.xml: unknown class name 'alpah' \(known: alpha, beta-x_y\).*--classes",
            classes=["alpha", "beta-x_y"])


@pytest.mark.parametrize("box", [(10, 10, 10, 20), (10, 10, 20, 5)])
def test_zero_or_negative_area_box(tiny_voc, tmp_path, box):
    (tiny_voc / "ANNOTATIONS" / "alpha_6.xml").write_text(voc_xml("alpha_6.jpg", [("alpha", box)]))
    refused(tmp_path, tiny_voc, r"alpha_6\.xml: box .* has zero or negative area.*fix or delete this box")


def test_box_partly_outside_is_clipped_with_a_warning(tiny_voc, caplog):
    (tiny_voc / "ANNOTATIONS" / "alpha_7.xml").write_text(voc_xml("alpha_7.jpg", [("alpha", (50, -3, 70, 20))]))
    with caplog.at_level(logging.WARNING):
        coco, _, _ = load_voc(tiny_voc)
    assert "alpha_7.xml: box [50.0, -3.0, 70.0, 20.0] reaches outside the 64x64 image; clipped" in caplog.text
    img = next(im["id"] for im in coco["images"] if im["file_name"] == "alpha_7.jpg")
    assert [a["bbox"] for a in coco["annotations"] if a["image_id"] == img] == [[50.0, 0.0, 14.0, 20.0]]


def test_box_wholly_outside_is_an_error(tiny_voc, tmp_path):
    (tiny_voc / "ANNOTATIONS" / "alpha_7.xml").write_text(voc_xml("alpha_7.jpg", [("alpha", (70, 10, 90, 20))]))
    refused(tmp_path, tiny_voc, r"alpha_7\.xml: box .* lies wholly outside the 64x64 image")


def test_duplicate_image_names_in_coco(tmp_path):
    make_voc(tmp_path / "d", {"a_1": [("a", (1, 1, 9, 9))]})
    coco = {
        "images": [{"id": 1, "file_name": "a_1.jpg", "width": 64, "height": 64},
                   {"id": 2, "file_name": "A_1.JPG", "width": 64, "height": 64}],
        "annotations": [], "categories": [{"id": 1, "name": "a"}],
    }
    src = tmp_path / "d" / "IMAGES" / "coco.json"
    src.write_text(json.dumps(coco))
    refused(tmp_path, src, r"duplicate image name 'A_1.JPG' \(also .*a_1.jpg\).*rename or remove one")


def test_empty_dataset(tmp_path):
    (tmp_path / "empty" / "IMAGES").mkdir(parents=True)
    (tmp_path / "empty" / "ANNOTATIONS").mkdir()
    refused(tmp_path, tmp_path / "empty", r"ANNOTATIONS: the dataset is empty")


def test_not_a_dataset_folder(tmp_path):
    (tmp_path / "nothing").mkdir()
    refused(tmp_path, tmp_path / "nothing", r"nothing: not a VOC folder .*IMAGES/ and ANNOTATIONS/")


def test_k_larger_than_a_class_offers(tiny_voc, tmp_path):
    out = tmp_path / "out"
    match = r"trainval, class 'alpha'.*K=9 is larger than the class offers \(it appears in 8 images\).*--shots up to 8"
    with pytest.raises(DataError, match=match):
        prepare_data(PrepareConfig(out=str(out), source=str(tiny_voc), seeds=[1], shots=[1, 9]))
    assert not out.exists()


def test_seed_or_k_with_no_split_file(synthetic_prepared):
    data = PreparedData.load(synthetic_prepared)
    with pytest.raises(DataError, match=r"fewshot-split/9/9seed_1shot_.*no few-shot file for seed 9, K=1"):
        data.fewshot(seed=9, shots=1)
    with pytest.raises(DataError, match=r"no few-shot file for seed 1, K=3.*--seeds 1 --shots 3"):
        data.fewshot(seed=1, shots=3)


def test_not_a_prepared_dataset(tmp_path):
    with pytest.raises(DataError, match=r"not a prepared dataset .*dkan prepare-data"):
        PreparedData.load(tmp_path)


def test_out_exists_with_different_content(tiny_voc, tmp_path):
    out = tmp_path / "out"
    prepare_data(PrepareConfig(out=str(out), source=str(tiny_voc), seeds=[1], shots=[1]))
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(DataError, match=r"out: exists with different content.*choose another --out"):
        prepare_data(PrepareConfig(out=str(out), source=str(tiny_voc), seeds=[1], shots=[1], val_fraction=0.3))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot


def test_bad_fractions_and_seeds(tiny_voc, tmp_path):
    refused(tmp_path, tiny_voc, r"--val-fraction 1.5: must be in \[0, 1\)", val_fraction=1.5)
    with pytest.raises(DataError, match="exactly one"):
        prepare_data(PrepareConfig(out=str(tmp_path / "o"), source=str(tiny_voc), synthetic=True))


# --- shapes that used to crash (tracebacks) or pass silently: each a clear error before any work ---


@pytest.mark.parametrize("size, box, match", [
    (("inf", 64), (5, 5, 30, 40), r"<width> is inf, expected a finite positive number"),
    ((64, "nan"), (5, 5, 30, 40), r"<height> is nan, expected a finite positive number"),
    ((-64, 64), (5, 5, 30, 40), r"<width> is -64.0, expected a finite positive number"),
    ((64, 64), (5, 5, "inf", 40), r"<xmax> is inf, expected a finite number"),
])
def test_voc_non_finite_or_negative_numbers(tiny_voc, tmp_path, size, box, match):
    (tiny_voc / "ANNOTATIONS" / "alpha_4.xml").write_text(voc_xml("alpha_4.jpg", [("alpha", box)], size=size))
    refused(tmp_path, tiny_voc, r"alpha_4\.xml: missing or non-numeric .*" + match)


def test_voc_folder_named_like_an_annotation(tiny_voc, tmp_path):
    (tiny_voc / "ANNOTATIONS" / "x.xml").mkdir()
    refused(tmp_path, tiny_voc, r"x\.xml: is a folder, not an annotation file.*Fix: move or rename it")


def _coco_source(root: Path, coco) -> Path:
    make_voc(root, {"a_1": [("a", (1, 1, 9, 9))], "a_2": [("a", (1, 1, 9, 9))]})
    src = root / "IMAGES" / "coco.json"
    src.write_text(json.dumps(coco))
    return src


def _good_coco() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a_1.jpg", "width": 64, "height": 64},
                   {"id": 2, "file_name": "a_2.jpg", "width": 64, "height": 64}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8], "area": 64, "iscrowd": 0},
                        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 8, 8], "area": 64, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}],
    }


def test_the_good_coco_baseline_passes(tmp_path):
    from dkan.data.validate import validate_coco

    src = _coco_source(tmp_path / "d", _good_coco())
    assert len(validate_coco(_good_coco(), src.parent, str(src))["annotations"]) == 2


def _set(path: str, value):
    def edit(coco):
        *keys, last = path.split(".")
        node = coco
        for k in keys:
            node = node[int(k)] if k.isdigit() else node[k]
        if value is DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
        return coco
    return edit


DELETE = object()


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["images"], r"not a COCO detection file \(the top level is a list\)"),
    (_set("images.0.id", DELETE), r"\(images\[0\]\): image id None is missing or not an integer.*Fix: give every"),
    (_set("images.0.id", "1"), r"\(images\[0\]\): image id '1' is missing or not an integer"),
    (_set("images.1.id", 1), r"duplicate image id 1 .*Fix: give every image a unique id"),
    (_set("images.0.width", float("inf")), r"\(images\[0\]\): width inf is not a finite positive number"),
    (_set("annotations.0.bbox", [1, 1, 5]), r"\(annotations\[0\]\): bbox \[1, 1, 5\] is not 4 finite numbers"),
    (_set("annotations.0.bbox", "1,1,5,5"), r"\(annotations\[0\]\): bbox '1,1,5,5' is not 4 finite numbers"),
    (_set("annotations.0.bbox", [1, 1, float("nan"), 5]), r"bbox \[1, 1, nan, 5\] is not 4 finite numbers"),
    (_set("annotations.0.id", "1"), r"\(annotations\[0\]\): id '1' is missing or not an integer"),
    (_set("annotations.0.image_id", "1"), r"\(annotations\[0\]\): image_id '1' is missing or not an integer"),
    (_set("annotations.0.category_id", 1.0), r"\(annotations\[0\]\): category_id 1.0 is missing or not an integer"),
    (_set("annotations.1.id", 1), r"\(annotations\[1\]\): duplicate annotation id 1 \(also annotations\[0\]\)"),
    (_set("categories.0.name", DELETE), r"\(categories\[0\]\): category id 1 has no name"),
    (_set("categories.0.id", "1"), r"\(categories\[0\]\): category .* has no integer id"),
    (_set("categories.0.name", "../x"), r", class '\.\./x': the class name holds a path separator"),
    (_set("images.1.file_name", "../../../../etc/hostname"), r"\(image id 2, \.\./\.\./\.\./\.\./etc/hostname\): image "
     r"file name '\.\./\.\./\.\./\.\./etc/hostname' leaves the image folder .*Fix: give each image's file name"),
    (_set("images.1.file_name", "/etc/hostname"), r"image file name '/etc/hostname' leaves the image folder"),
])
def test_coco_shapes(tmp_path, edit, match):
    src = _coco_source(tmp_path / "d", edit(_good_coco()))
    refused(tmp_path, src, r"coco\.json.*" + match)


@pytest.mark.parametrize("item, match", [
    ("optim.batch_size=0", r"--set\.optim\.batch_size: 0 is out of range\. Fix: set it to at least 1"),
    ("optim.iterations=-5", r"optim\.iterations: -5 is out of range\. Fix: set it to at least 1 \(or set optim\.epo"),
    ("optim.lr=0", r"optim\.lr: 0\.0 is out of range\. Fix: set it to a positive number"),
    ("optim.lr=-1e-3", r"optim\.lr: -0\.001 is out of range"),
    ("optim.warmup_iters=-1", r"optim\.warmup_iters: -1 is out of range\. Fix: set it to 0 or more"),
    ("optim.lr=fast", r"optim\.lr: expected a number, got 'fast'"),
    ("optim.lr=.nan", r"optim\.lr: expected a finite number, got nan"),
    ("optim.lrr=1", r"unknown key 'optim\.lrr'.*Fix: use one of those"),
    ("optim.lr=!!python/object/apply:os.system ['touch PWNED']", r"not a plain YAML value .*python/object.*Fix: "),
    ("shots=0", r"shots: 0 is out of range\. Fix: set it to at least 1 \(K per class\)"),
    ("fewshot_seed=0", r"fewshot_seed: 0 is out of range"),
])
def test_bad_set_overrides(item, match, tmp_path, monkeypatch):
    from dkan.config import ConfigError, FinetuneConfig, apply_overrides

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=match) as e:
        apply_overrides(FinetuneConfig(), [item])
    assert "Fix:" in str(e.value) and "--shots 0" not in str(e.value).split("Fix:")[1]
    assert not (tmp_path / "PWNED").exists()


def test_numeric_strings_and_epochs_are_accepted(tmp_path):
    from dkan.config import BaseTrainConfig, apply_overrides, load_yaml

    cfg = apply_overrides(BaseTrainConfig(), ["optim.lr=1e-3", "optim.weight_decay=5E-4"])
    assert cfg.optim.lr == 0.001 and cfg.optim.weight_decay == 0.0005  # YAML 1.1 reads these as strings
    assert apply_overrides(BaseTrainConfig(), ["optim.iterations=0", "optim.epochs=2"]).optim.epochs == 2.0
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 2e-2\n")
    assert load_yaml(BaseTrainConfig, tmp_path / "c.yaml").optim.lr == 0.02


def test_set_with_python_tag_through_the_cli(tmp_path, capsys, monkeypatch):
    from dkan.cli import main

    monkeypatch.chdir(tmp_path)
    tagged = "seed=!!python/object/apply:os.system ['touch PWNED']"
    assert main(["base-train", "--profile", "cpu-quick", "--set", tagged, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set") and "not a plain YAML value" in err and "Traceback" not in err
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("flag, match", [
    (["--seeds", "0"], r"--seeds \[0\]: need one or more seeds, each 1 or more\. Fix: pass e\.g\. --seeds 1-10"),
    (["--seeds", "0-3"], r"--seeds \[0, 1, 2, 3\]: need one or more seeds, each 1 or more"),
    (["--shots", "0"], r"--shots \[0\]: need one or more K, each 1 or more\. Fix: pass e\.g\. --shots 1,2,3,5,10,30"),
])
def test_prepare_data_seed_and_shot_ranges(tiny_voc, tmp_path, capsys, flag, match):
    import re

    from dkan.cli import main

    assert main(["prepare-data", "--source", str(tiny_voc), "--out", str(tmp_path / "o"), *flag]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and "--shots 0" not in err.split("Fix:")[1]
    assert not (tmp_path / "o").exists()


def test_fewshot_seed_or_k_below_one_does_not_suggest_preparing_it(synthetic_prepared):
    data = PreparedData.load(synthetic_prepared)
    for seed, shots in ((1, 0), (0, 1)):
        with pytest.raises(DataError, match=r"seeds and K start at 1") as e:
            data.fewshot(seed=seed, shots=shots)
        assert "--shots 0" not in str(e.value) and "--seeds 0" not in str(e.value)


def test_nan_loss_names_iteration_term_and_images_and_points_at_the_data(synthetic_prepared, tmp_path, monkeypatch):
    import dkan.engine.train as train_mod
    from dkan.config import BaseTrainConfig, DataConfig, OptimConfig
    from tests.conftest import tiny_model_config

    real_step = train_mod.train_step

    def nan_box(*a, **k):
        losses = real_step(*a, **k)
        losses["loss_box_reg"] = losses["loss_box_reg"] * float("nan")
        return losses

    monkeypatch.setattr(train_mod, "train_step", nan_box)
    cfg = BaseTrainConfig(model=tiny_model_config(), data=DataConfig(root=str(synthetic_prepared), split=1),
                          optim=OptimConfig(lr=0.01, batch_size=2, iterations=2, warmup_iters=0),
                          out=str(tmp_path / "n"))
    with pytest.raises(train_mod.TrainingError) as e:
        train_mod.fit(cfg, progress=False)
    msg = str(e.value)
    assert msg.startswith("iteration 0: loss term loss_box_reg is nan")
    images = msg.split("Batch images: ")[1].split(". Fix:")[0].split(", ")
    assert len(images) == 2 and all(Path(p).is_file() and p.endswith(".jpg") for p in images)
    assert "Fix: check the boxes of these images (dkan inspect-data), or lower optim.lr" in msg
    assert not (tmp_path / "n" / "model_final.pt").exists()


# ---------------------------------------------------------------- one sweep per run folder (--out's lock)

HOLD = ("import sys, time\nfrom pathlib import Path\nfrom dkan.runfolder import exclusive\n"
        "with exclusive(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(120)\n")


def _holder(lock: Path):
    """A process holding ``lock`` (this worktree's dkan), once it says so."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert p.stdout.readline().strip() == "held"
    return p


def _sweep_on(out: Path, *extra: str) -> int:
    """A sweep that stops at its plan (no such data set) if it gets past the lock: no Ray is ever started."""
    from sweeps.run_tune import main as sweep

    return sweep(["--data", str(out.parent / "no-such-data"), "--shots", "1", "--seeds", "1", "--out", str(out),
                  *extra])


def test_a_second_sweep_or_resume_on_a_run_folder_in_use_is_refused_naming_the_holder(tmp_path, capsys):
    from dkan.cli import main as dkan
    from sweeps.core.layout import RunLayout

    out = tmp_path / "sweep"
    (out / "ray_results").mkdir(parents=True)  # what --resume looks for
    holder = _holder(RunLayout(out).lock)
    try:
        for run in (lambda: _sweep_on(out), lambda: _sweep_on(out, "--resume"),
                    lambda: dkan(["sweep", "--data", str(tmp_path / "x"), "--out", str(out)])):
            assert run() == 2
            err = capsys.readouterr().err
            assert f"error: --out {out}: in use by another sweep, pid {holder.pid} on " in err, err
            assert f"Fix: wait for it to end, or stop it (kill {holder.pid};" in err and "no-such-data" not in err
            assert len(err.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_sweep_is_taken_over_with_a_note_and_released_on_exit(tmp_path, capsys):
    from dkan.runfolder import LockHeld, exclusive
    from sweeps.core.layout import RunLayout

    out = tmp_path / "sweep"
    lock = RunLayout(out).lock
    holder = _holder(lock)
    holder.kill()  # SIGKILL: the kernel frees the lock, the record stays
    holder.wait()
    assert f'"pid": {holder.pid}' in lock.read_text()
    assert _sweep_on(out) == 2  # past the lock, refused at its plan
    got = capsys.readouterr()
    assert f"note: {lock} was held by pid {holder.pid} on " in got.out and "taken over" in got.out
    assert "no-such-data" in got.err and "in use" not in got.err
    assert lock.read_text() == ""  # released: the record cleared, and the lock free for the next one
    with exclusive(lock) as stale:
        assert stale is None
        with pytest.raises(LockHeld, match=f"held by pid {__import__('os').getpid()} on "):
            with exclusive(lock):
                pass


def test_a_sweep_stopped_at_a_bad_input_leaves_no_run_folder_behind(tmp_path, capsys):
    out = tmp_path / "new" / "sweep"
    assert _sweep_on(out) == 2
    assert "no-such-data" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- a list flag never stands empty for its default

@pytest.mark.parametrize("argv", [
    *[["sweep", f"--{flag}={value}"] for flag in ("candidates", "base", "novel", "shots", "seeds", "splits")
      for value in ("", ",")],
    ["prepare-data", "--synthetic", "--out", "o", "--classes="], ["prepare-data", "--synthetic", "--out", "o",
                                                                  "--seeds=,"],
    ["prepare-data", "--synthetic", "--out", "o", "--shots="], ["finetune", "--base=,"], ["base-train", "--novel="],
    ["evaluate", "--checkpoint", "x.pt", "--base="], ["evaluate", "--checkpoint", "x.pt", "--novel=,"],
])
def test_an_empty_list_flag_is_refused_naming_the_flag(argv, capsys):
    from dkan.cli import main

    flag, value = argv[-1].split("=")
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: argument {flag}: {value!r} is an empty list. Fix: " in last and "leave the flag out" in last


def test_list_flags_still_read_their_values():
    from dkan.cli import build_parser

    args = build_parser().parse_args(["sweep", "--candidates", " tfa, dkan,", "--base", "a,b", "--shots", "1,3"])
    assert args.candidates == ["tfa", "dkan"] and args.base == "a,b" and args.shots == [1, 3]


def test_voc_filename_leaving_the_image_folder_is_refused_as_such(tiny_voc, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tiny_voc / "outside.jpg")  # a real image, beside IMAGES/
    (tiny_voc / "IMAGES" / "alpha_3.jpg").unlink()
    (tiny_voc / "ANNOTATIONS" / "alpha_3.xml").write_text(voc_xml("../outside.jpg", [("alpha", (5, 5, 30, 40))]))
    refused(tmp_path, tiny_voc, r"alpha_3\.xml: image file name '\.\./outside\.jpg' leaves the image folder .*IMAGES")


def test_prepared_annotations_edited_to_leave_the_image_folder(synthetic_prepared, tmp_path):
    import shutil

    from dkan.data.prepared import PreparedData

    copy = tmp_path / "prepared"
    shutil.copytree(synthetic_prepared, copy)
    test = copy / "annotations" / "test.json"
    coco = json.loads(test.read_text())
    coco["images"][0]["file_name"] = "../../../../etc/hostname"
    test.write_text(json.dumps(coco))
    data = PreparedData.load(copy)
    with pytest.raises(DataError, match=r"image file name '\.\./\.\./\.\./\.\./etc/hostname' leaves the image folder"):
        data.records(data.split("test"))
