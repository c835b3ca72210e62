from __future__ import annotations

import filecmp
import json
from collections import Counter

import pytest

from dkan.data.coco import load_coco_json
from dkan.data.fewshot import SHOTS, fewshot_path, load_fewshot, sample_fewshot
from dkan.data.voc import load_voc
from dkan.errors import DataError


def _boxes_per_class(coco):
    return Counter(a["category_id"] for a in coco["annotations"])


def test_each_k_holds_exactly_k_boxes_and_grows_from_the_previous(tiny_voc):
    coco, _, _ = load_voc(tiny_voc)
    sets = sample_fewshot(coco, seed=1, shots=[1, 2, 3, 5])
    for cls, cid in (("alpha", 1), ("beta-x_y", 2)):
        prev: set = set()
        for k in (1, 2, 3, 5):
            s = sets[(k, cls)]
            assert _boxes_per_class(s) == {cid: k}
            ids = {a["id"] for a in s["annotations"]}
            assert prev <= ids
            prev = ids
            assert {im["id"] for im in s["images"]} == {a["image_id"] for a in s["annotations"]}


def test_same_seed_same_sets_other_seed_other_sets(tiny_voc):
    coco, _, _ = load_voc(tiny_voc)
    a, b, c = (sample_fewshot(coco, seed=s, shots=[5]) for s in (7, 7, 8))
    assert a == b and a != c


def test_k_larger_than_a_class_offers_is_an_error(tiny_voc):
    coco, _, _ = load_voc(tiny_voc)
    with pytest.raises(DataError, match=r"K=11 is larger than the class offers \(10 images\)"):
        sample_fewshot(coco, seed=1, shots=[11])


def test_load_fewshot_merges_classes_per_image_and_names_missing_files(synthetic_prepared):
    ann = synthetic_prepared / "annotations"
    names = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    merged = load_fewshot(ann, seed=1, shots=2, names=names)
    per_class = [load_coco_json(fewshot_path(ann, 1, 2, n)) for n in names]
    assert len(merged["annotations"]) == 12 == sum(len(p["annotations"]) for p in per_class)
    assert len({im["id"] for im in merged["images"]}) == len(merged["images"])
    match = r"3seed_2shot_crazing_trainval\.json.*no few-shot file for seed 3, K=2.*prepare-data"
    with pytest.raises(DataError, match=match):
        load_fewshot(ann, seed=3, shots=2, names=names)
    with pytest.raises(DataError, match="K=4"):
        load_fewshot(ann, seed=1, shots=4, names=names)


@pytest.mark.realdata
def test_reproduces_all_324_authors_files_byte_for_byte(neu_det, tmp_path):
    ref = neu_det / "reference-split"
    trainval = load_coco_json(ref / "trainval.json")
    n = 0
    for seed in range(1, 10):
        for (k, cls), coco in sample_fewshot(trainval, seed, SHOTS).items():
            mine = tmp_path / f"{seed}_{k}_{cls}.json"
            mine.write_text(json.dumps(coco, indent=4))
            assert filecmp.cmp(mine, fewshot_path(ref, seed, k, cls), shallow=False), (seed, k, cls)
            n += 1
    assert n == 324


def test_images_with_many_boxes_each_give_at_least_k_instead_of_failing(caplog):
    """Every image holds 3 boxes of the class: exactly K=1 or 2 is impossible, so the fewest images
    reaching K are taken (seeded), with a warning; exactly reachable K keep the authors' sampler."""
    from dkan.data.fewshot import sample_fewshot

    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in range(1, 9)]
    anns = [{"id": 10 * i + j, "image_id": i, "category_id": 1, "bbox": [j * 10, 0, 5, 5], "area": 25, "iscrowd": 0}
            for i in range(1, 9) for j in range(3)]
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "pit"}]}
    sets = sample_fewshot(coco, seed=1, shots=[1, 3, 5])
    assert len(sets[(1, "pit")]["annotations"]) == 3 and len(sets[(1, "pit")]["images"]) == 1
    assert len(sets[(3, "pit")]["annotations"]) == 3  # exactly reachable: one image
    assert len(sets[(5, "pit")]["annotations"]) == 6 and len(sets[(5, "pit")]["images"]) == 2
    assert "no set of images holds exactly K=1" in caplog.text
    assert sample_fewshot(coco, seed=1, shots=[1, 3, 5]) == sets  # seeded


def test_a_class_file_edited_to_hold_no_box_of_its_class_is_refused(synthetic_prepared, tmp_path):
    import json
    import shutil

    from dkan.data.prepared import PreparedData
    from dkan.errors import DataError

    copy = tmp_path / "prepared"
    shutil.copytree(synthetic_prepared, copy)
    data = PreparedData.load(copy)
    name = data.classes[-1]
    path = fewshot_path(copy / "annotations", 1, 2, name)
    coco = json.loads(path.read_text())
    other = next(c["id"] for c in coco["categories"] if c["name"] != name)
    for a in coco["annotations"]:  # its boxes relabelled as another class
        a["category_id"] = other
    path.write_text(json.dumps(coco))
    with pytest.raises(DataError, match=rf"{path.name}: holds no box of class '{name}' \(\d+ boxes of other classes\)"
                                        r": a fine-tune would see 0 examples of it\. Fix: restore the file"):
        data.fewshot(1, 2)
    path.write_text(json.dumps({**coco, "annotations": []}))  # or none at all
    with pytest.raises(DataError, match=rf"holds no box of class '{name}' \(0 boxes"):
        data.fewshot(1, 2)
    assert data.fewshot(1, 1)["annotations"]  # the other K, untouched, loads
