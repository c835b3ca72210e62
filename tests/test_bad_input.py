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
    refused(tmp_path, tiny_voc, r"beta-x_y_2\.xml: image file .*beta-x_y_2\.jpg cannot be decoded.*replace the corrupt image")


def test_malformed_xml(tiny_voc, tmp_path):
    (tiny_voc / "ANNOTATIONS" / "alpha_4.xml").write_text("<annotation><size>")
    refused(tmp_path, tiny_voc, r"alpha_4\.xml: malformed XML .*repair the file")


def test_non_numeric_box(tiny_voc, tmp_path):
    (tiny_voc / "ANNOTATIONS" / "alpha_4.xml").write_text(voc_xml("alpha_4.jpg", [("alpha", ("a", 1, 9, 9))]))
    refused(tmp_path, tiny_voc, r"alpha_4\.xml: missing or non-numeric")


def test_unknown_class_name(tiny_voc, tmp_path):
    (tiny_voc / "ANNOTATIONS" / "alpha_5.xml").write_text(voc_xml("alpha_5.jpg", [("alpah", (1, 1, 9, 9))]))
    refused(tmp_path, tiny_voc, r"alpha_5\.xml: unknown class name 'alpah' \(known: alpha, beta-x_y\).*--classes", classes=["alpha", "beta-x_y"])


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
        "images": [{"id": 1, "file_name": "a_1.jpg", "width": 64, "height": 64}, {"id": 2, "file_name": "A_1.JPG", "width": 64, "height": 64}],
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
    with pytest.raises(DataError, match=r"trainval, class 'alpha'.*K=9 is larger than the class offers \(it appears in 8 images\).*--shots up to 8"):
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
