from __future__ import annotations

import torch

from dkan.data.coco import to_records
from dkan.data.dataset import DetectionDataset, build_transforms, collate
from dkan.data.voc import load_voc


def _ds(tiny_voc, **tf):
    coco, img_dir, _ = load_voc(tiny_voc)
    return DetectionDataset(to_records(coco, img_dir), ["alpha", "beta-x_y"], build_transforms(**tf))


def test_item_is_float_rgb_with_torchvision_targets(tiny_voc):
    img, t = _ds(tiny_voc, train=False)[0]
    assert img.shape == (3, 64, 64) and img.dtype == torch.float32 and 0.0 <= img.min() and img.max() <= 1.0
    assert t["boxes"].tolist() == [[5.0, 5.0, 30.0, 40.0]] and t["labels"].tolist() == [1] and t["image_id"] == 1


def test_labels_follow_class_order_background_zero(tiny_voc):
    coco, img_dir, _ = load_voc(tiny_voc)
    ds = DetectionDataset(to_records(coco, img_dir), ["beta-x_y", "alpha"])
    assert ds[0][1]["labels"].tolist() == [2]


def test_flip_moves_boxes_with_the_image(tiny_voc):
    img, t = _ds(tiny_voc, train=True, hflip=1.0, vflip=1.0)[0]
    assert t["boxes"].tolist() == [[64 - 30, 64 - 40, 64 - 5, 64 - 5]]
    plain, _ = _ds(tiny_voc, train=False)[0]
    assert torch.equal(img, plain.flip(-1).flip(-2))
    assert _ds(tiny_voc, train=False, hflip=1.0)[0][1]["boxes"].tolist() == [[5.0, 5.0, 30.0, 40.0]]  # no flips at test


def test_resize_scales_boxes_and_normalize_centres(tiny_voc):
    img, t = _ds(tiny_voc, train=False, size=128, normalize=True)[0]
    assert img.shape == (3, 128, 128)
    assert t["boxes"].tolist() == [[10.0, 10.0, 60.0, 80.0]]
    assert img.min() < 0  # (x - mean) / std


def test_images_are_cached_and_collate_keeps_lists(tiny_voc):
    ds = _ds(tiny_voc, train=False)
    first = ds.image(3)
    assert ds.image(3) is first
    imgs, targets = collate([ds[0], ds[5]])
    assert len(imgs) == 2 and targets[1]["image_id"] == 6
