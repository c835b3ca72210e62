from __future__ import annotations

import filecmp

from dkan.data.coco import class_names
from dkan.data.synthetic import CLASSES, generate_synthetic
from dkan.data.voc import load_voc


def test_seeded_and_reproducible(tmp_path):
    a = generate_synthetic(tmp_path / "a", per_class=3, seed=5)
    b = generate_synthetic(tmp_path / "b", per_class=3, seed=5)
    c = generate_synthetic(tmp_path / "c", per_class=3, seed=6)
    assert filecmp.cmp(a / "IMAGES" / "scratches_3.jpg", b / "IMAGES" / "scratches_3.jpg", shallow=False)
    assert (a / "ANNOTATIONS" / "crazing_2.xml").read_text() == (b / "ANNOTATIONS" / "crazing_2.xml").read_text()
    assert (a / "ANNOTATIONS" / "crazing_2.xml").read_text() != (c / "ANNOTATIONS" / "crazing_2.xml").read_text()


def test_neu_det_layout_all_classes_and_boxes_inside(tmp_path):
    root = generate_synthetic(tmp_path / "s", per_class=8, seed=0)
    coco, _, _ = load_voc(root)  # validates: images decode, boxes positive and inside
    assert class_names(coco) == sorted(CLASSES)
    assert len(coco["images"]) == 48
    per_class = {c["id"]: 0 for c in coco["categories"]}
    for a in coco["annotations"]:
        per_class[a["category_id"]] += 1
        x, y, w, h = a["bbox"]
        assert w >= 2 and h >= 2 and x >= 0 and y >= 0 and x + w <= 200 and y + h <= 200
    assert min(per_class.values()) >= 8  # every image holds at least one box of its own class
