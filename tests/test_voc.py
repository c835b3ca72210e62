from __future__ import annotations

import pytest

from dkan.data.coco import class_names, to_records
from dkan.data.voc import load_voc
from tests.conftest import make_voc


def test_reads_boxes_classes_and_ids_in_file_order(tiny_voc):
    coco, img_dir, _ = load_voc(tiny_voc)
    assert class_names(coco) == ["alpha", "beta-x_y"]  # hyphen + underscore survive
    assert [im["id"] for im in coco["images"]] == list(range(1, 21))
    assert [im["file_name"] for im in coco["images"]][:3] == ["alpha_1.jpg", "alpha_10.jpg", "alpha_2.jpg"]
    a = coco["annotations"][0]
    assert a["bbox"] == [5.0, 5.0, 25.0, 35.0] and a["area"] == 25.0 * 35.0  # w = xmax - xmin
    rec = to_records(coco, img_dir)[0]
    assert rec.boxes == ((5.0, 5.0, 30.0, 40.0),) and rec.labels == ("alpha",) and rec.path == img_dir / "alpha_1.jpg"


def test_filename_quirks_use_the_xml_stem(tmp_path):
    # NEU-DET: <filename> lacks ".jpg" or names another stem; <depth> says 1 for 3-channel JPEGs
    odd = {"a_1": "a_1", "a_2": "patches_99.jpg"}
    root = make_voc(tmp_path, {"a_1": [("a", (1, 1, 9, 9))], "a_2": [("a", (1, 1, 9, 9))]}, filename_of=odd.get)
    coco, _, _ = load_voc(root)
    assert [im["file_name"] for im in coco["images"]] == ["a_1.jpg", "a_2.jpg"]


def test_given_class_list_fixes_order_and_ids(tiny_voc):
    coco, _, _ = load_voc(tiny_voc, classes=["beta-x_y", "alpha"])
    assert class_names(coco) == ["beta-x_y", "alpha"]
    assert coco["annotations"][0]["category_id"] == 2


@pytest.mark.realdata
def test_real_neu_det_reads_with_all_quirks(neu_det):
    coco, _, _ = load_voc(neu_det)
    assert len(coco["images"]) == 1800 and len(coco["annotations"]) == 4189
    assert class_names(coco) == ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    assert all(im["width"] == 200 and im["height"] == 200 for im in coco["images"])
