from __future__ import annotations

import filecmp

import pytest
import yaml

from dkan.data.coco import load_coco_json
from dkan.data.fewshot import fewshot_path
from dkan.data.prepare import PrepareConfig, prepare_data
from dkan.data.prepared import PreparedData, without_images_of
from dkan.errors import DataError


def test_writes_splits_fewshot_files_and_manifest(tiny_voc, tmp_path):
    out = tmp_path / "out"
    res = prepare_data(PrepareConfig(out=str(out), source=str(tiny_voc), seeds=[1, 2], shots=[1, 2], val_fraction=0.2))
    assert res.status == "written"
    tv, train, val, test = (
        load_coco_json(out / "annotations" / f"{s}.json") for s in ("trainval", "train", "val", "test")
    )
    ids = lambda c: {im["id"] for im in c["images"]}  # noqa: E731
    assert len(ids(test)) == 4 and len(ids(tv)) == 16  # 20% of each class held out as test
    assert ids(train) | ids(val) == ids(tv) and not ids(train) & ids(val) and not ids(tv) & ids(test)
    assert len(ids(val)) == 4
    assert len(list((out / "annotations" / "fewshot-split").rglob("*.json"))) == 2 * 2 * 2
    assert "beta-x_y" in res.summary and "all (images)" in res.summary
    data = PreparedData.load(out)
    assert data.classes == ("alpha", "beta-x_y") and data.image_root == tiny_voc / "IMAGES"
    assert all(r.path.is_file() for r in data.records(data.split("val")))
    # val evaluation of a seed leaves out that seed's few-shot training images
    shots = data.fewshot(1, 2)
    assert not ids(without_images_of(val, shots)) & ids(shots)


def test_rerun_is_a_no_op_and_changed_inputs_are_refused(tiny_voc, tmp_path):
    out = tmp_path / "out"
    cfg = dict(out=str(out), source=str(tiny_voc), seeds=[1], shots=[1, 2])
    prepare_data(PrepareConfig(**cfg))
    before = (out / "annotations" / "trainval.json").stat().st_mtime_ns
    assert prepare_data(PrepareConfig(**cfg)).status == "up to date"
    assert (out / "annotations" / "trainval.json").stat().st_mtime_ns == before
    with pytest.raises(DataError, match=r"exists with different content .*--overwrite \(nothing was written\)"):
        prepare_data(PrepareConfig(**{**cfg, "seeds": [1, 2]}))
    assert not fewshot_path(out / "annotations", 2, 1, "alpha").exists()
    assert prepare_data(PrepareConfig(**{**cfg, "seeds": [1, 2]}), overwrite=True).status == "replaced"
    assert fewshot_path(out / "annotations", 2, 1, "alpha").exists()
    assert yaml.safe_load((out / "dataset.yaml").read_text())["config"]["seeds"] == [1, 2]


def test_refuses_to_replace_a_folder_it_did_not_write(tiny_voc, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a folder written by `dkan prepare-data`"):
        prepare_data(PrepareConfig(out=str(out), source=str(tiny_voc), seeds=[1], shots=[1]), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_failure_mid_run_leaves_nothing_behind(tiny_voc, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="K=30"):
        prepare_data(PrepareConfig(out=str(out), source=str(tiny_voc), seeds=[1], shots=[1, 30]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voc"]  # no out, no staging folder


def test_synthetic_prepared_dataset_is_complete(synthetic_prepared):
    data = PreparedData.load(synthetic_prepared)
    assert data.image_root == synthetic_prepared / "synthetic" / "IMAGES"
    assert len(data.split("trainval")["images"]) + len(data.split("test")["images"]) == 72
    assert len(data.fewshot(2, 5)["annotations"]) == 30


@pytest.mark.realdata
def test_neu_det_with_reference_split_reproduces_the_authors_files(neu_det, tmp_path):
    out = tmp_path / "neu"
    res = prepare_data(PrepareConfig(out=str(out), source=str(neu_det), split_json=str(neu_det / "reference-split")))
    assert res.status == "written"
    ref = neu_det / "reference-split"
    mine, theirs = out / "annotations" / "fewshot-split", ref / "fewshot-split"
    n = 0
    for seed in range(1, 10):
        cmp = filecmp.dircmp(mine / str(seed), theirs / str(seed))
        assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
        n += len(cmp.same_files)
    assert n == 324
    assert len(list((mine / "10").glob("*.json"))) == 36
    for split in ("trainval", "test"):
        assert load_coco_json(out / "annotations" / f"{split}.json") == load_coco_json(ref / f"{split}.json")
    assert len(load_coco_json(out / "annotations" / "val.json")["images"]) == 216


def test_named_class_splits_are_checked_and_recorded(tiny_voc, tmp_path):
    f = tmp_path / "splits.yaml"
    f.write_text("a first:\n  base: [alpha]\nswap:\n  base: [beta-x_y]\n  novel: [alpha]\n")
    out = tmp_path / "out"
    prepare_data(PrepareConfig(out=str(out), source=str(tiny_voc), seeds=[1], shots=[1], class_splits=str(f)))
    splits = PreparedData.load(out).class_splits()
    assert list(splits) == ["a_first", "swap"]
    assert splits["a_first"].novel == ("beta-x_y",) and splits["swap"].base == ("beta-x_y",)
    f.write_text("bad:\n  base: [gamma]\n")
    with pytest.raises(DataError, match=r"split 'bad': unknown class names \['gamma'\]"):
        prepare_data(
            PrepareConfig(out=str(tmp_path / "o2"), source=str(tiny_voc), seeds=[1], shots=[1], class_splits=str(f))
        )


def test_summary_counts_by_class_name_when_category_ids_start_at_0(tmp_path):
    import json

    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    names = ["crazing", "inclusion", "scratches"]
    images, anns = [], []
    for i in range(9):
        Image.new("L", (64, 64), 100 + i).save(src / f"s{i}.png")
        images.append({"id": i + 1, "file_name": f"s{i}.png", "width": 64, "height": 64})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": i % 3, "bbox": [5, 5, 20, 20], "area": 400,
                     "iscrowd": 0})
    (src / "coco.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for i, n in enumerate(names)]}))
    res = prepare_data(PrepareConfig(out=str(tmp_path / "out"), source=str(src / "coco.json"), seeds=[1], shots=[1],
                                     val_fraction=0.0, test_fraction=0.0))
    data = PreparedData.load(tmp_path / "out")
    assert list(data.classes) == names
    rows = {line.split()[0]: line.split()[1] for line in res.summary.splitlines()[2:5]}
    assert rows == {"crazing": "3/3", "inclusion": "3/3", "scratches": "3/3"}  # each class its own 3 boxes
