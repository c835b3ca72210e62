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


def test_tiles_are_large_grayscale_with_many_small_defects_and_some_empty(tmp_path):
    from PIL import Image

    from dkan.data.synthetic import TILE_CLASSES, generate_tiles

    root = generate_tiles(tmp_path / "t", images=16, seed=0, size=320)
    coco, img_dir, _ = load_voc(root)
    assert class_names(coco) == sorted(TILE_CLASSES)
    with Image.open(img_dir / "tile_0001.png") as im:
        assert im.mode == "L" and im.size == (320, 320)
    per_image = {im["id"]: 0 for im in coco["images"]}
    for a in coco["annotations"]:
        per_image[a["image_id"]] += 1
        assert max(a["bbox"][2], a["bbox"][3]) <= 30  # small: at most 56 px at 640, halved here
    counts = sorted(per_image.values())
    assert counts[0] == 0 and all(5 <= c <= 10 for c in counts if c) and sum(c == 0 for c in counts) <= 6
    again = generate_tiles(tmp_path / "t2", images=2, seed=0, size=320)
    assert (again / "ANNOTATIONS" / "tile_0002.xml").read_text() == (root / "ANNOTATIONS" / "tile_0002.xml").read_text()
