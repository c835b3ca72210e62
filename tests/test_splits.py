from __future__ import annotations

import pytest

from dkan.data.coco import class_names
from dkan.data.splits import NEU_DET_SPLITS, primary_class, resolve_class_split, restrict_classes, stratified_split
from dkan.data.voc import load_voc
from dkan.errors import DataError

NEU = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def test_paper_splits_partition_the_six_classes():
    for s in NEU_DET_SPLITS.values():
        assert sorted(s.all) == sorted(NEU) and not set(s.base) & set(s.novel)
    assert NEU_DET_SPLITS[1].base == ("crazing", "inclusion", "patches")


def test_user_split_defaults_novel_to_the_rest_and_rejects_bad_names():
    cs = resolve_class_split(NEU, base=["scratches", "crazing"])
    assert cs.base == ("scratches", "crazing") and cs.novel == ("inclusion", "patches", "pitted_surface", "rolled-in_scale")
    with pytest.raises(DataError, match="unknown class names"):
        resolve_class_split(NEU, base=["cracks"])
    with pytest.raises(DataError, match="no such NEU-DET split"):
        resolve_class_split(NEU, split=4)
    with pytest.raises(DataError, match="disjoint"):
        resolve_class_split(NEU, base=["crazing"], novel=["crazing", "patches"])
    assert resolve_class_split(NEU, base=NEU, novel=[]).novel == ()


def test_stratified_split_is_seeded_disjoint_and_per_class(tiny_voc):
    coco, _, _ = load_voc(tiny_voc)
    keep, held = stratified_split(coco, 0.2, seed=3)
    assert (keep, held) == stratified_split(coco, 0.2, seed=3)
    assert stratified_split(coco, 0.2, seed=4)[1] != held
    assert not set(keep) & set(held) and len(keep) + len(held) == 20
    prim = primary_class(coco)
    assert sorted(prim[i] for i in held) == [1, 1, 2, 2]  # 20% of each class's 10 images
    assert stratified_split(coco, 0.0, seed=0)[1] == []


def test_restrict_classes_renumbers_and_drops_empty_images(tiny_voc):
    coco, _, _ = load_voc(tiny_voc)
    only_b = restrict_classes(coco, ["beta-x_y"])
    assert class_names(only_b) == ["beta-x_y"] and len(only_b["images"]) == 10
    assert {a["category_id"] for a in only_b["annotations"]} == {1}
    assert len(restrict_classes(coco, ["beta-x_y"], drop_empty=False)["images"]) == 20
