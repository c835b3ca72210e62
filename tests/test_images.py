"""Images as they come, through the real loader: prepare-data (COCO JSON source) -> PreparedData -> Dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dkan.data.dataset import DetectionDataset, build_transforms
from dkan.data.images import decode_image
from dkan.data.prepare import PrepareConfig, prepare_data
from dkan.data.prepared import PreparedData
from dkan.data.splits import restrict_classes


def _coco_source(root, images: dict[str, tuple[np.ndarray, list[tuple[str, list[float]]]]], ext: str):
    """Write images (numpy arrays, saved by PIL) and a COCO JSON beside them; returns the JSON path."""
    root.mkdir(parents=True, exist_ok=True)
    cats = ["dent", "pit"]
    ims, anns = [], []
    for i, (stem, (arr, boxes)) in enumerate(images.items(), start=1):
        Image.fromarray(arr).save(root / f"{stem}{ext}")
        ims.append({"id": i, "file_name": f"{stem}{ext}", "width": arr.shape[1], "height": arr.shape[0]})
        for c, (x1, y1, x2, y2) in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cats.index(c) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    path = root / "ann.json"
    path.write_text(
        json.dumps(
            {"images": ims, "annotations": anns, "categories": [{"id": i + 1, "name": c} for i, c in enumerate(cats)]}
        )
    )
    return path


def _load(
    tmp_path, arrays: list[np.ndarray], ext: str, boxes_of=None, empty_every: int = 0, test_fraction: float = 0.25
):
    boxes_of = boxes_of or (lambda i, a: [("dent" if i % 2 else "pit", [2, 3, 12, 14])])
    imgs = {
        f"im{i:02d}": (a, [] if empty_every and i % empty_every == 0 else boxes_of(i, a)) for i, a in enumerate(arrays)
    }
    src = _coco_source(tmp_path / "src", imgs, ext)
    out = tmp_path / "prep"
    prepare_data(
        PrepareConfig(
            out=str(out), source=str(src), seeds=[1], shots=[1], val_fraction=0.0, test_fraction=test_fraction
        )
    )
    data = PreparedData.load(out)
    coco = restrict_classes(data.split("trainval"), data.classes, drop_empty=False)
    return data, DetectionDataset(data.records(coco), data.classes, build_transforms(train=False))


def test_grayscale_8bit_png_stays_one_channel_in_memory_and_three_per_item(tmp_path):
    arrays = [np.full((40, 30), 10 * i, np.uint8) for i in range(8)]
    _, ds = _load(tmp_path, arrays, ".png")
    assert ds.image(0).shape == (1, 40, 30) and ds.image(0).dtype == torch.uint8
    img, t = ds[0]
    assert img.shape == (3, 40, 30) and torch.equal(img[0], img[2])
    assert t["boxes"].shape == (1, 4)


def test_rgb_jpeg_keeps_colour(tmp_path):
    arrays = [np.stack([np.full((32, 48), v, np.uint8) for v in (200, 100, 20)], -1) for _ in range(8)]
    _, ds = _load(tmp_path, arrays, ".jpg")
    img, _ = ds[0]
    assert img.shape == (3, 32, 48) and img[0].mean() > img[1].mean() > img[2].mean()


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_scaled_by_the_dtype_range_not_saturated(tmp_path, ext):
    # a 12-bit sensor: values up to 4095 in a 16-bit file; convert("RGB") would make most of it white
    arrays = [np.tile(np.linspace(0, 4095, 50, dtype=np.uint16), (20, 1)) for _ in range(8)]
    arrays[0][0, 0] = 65535
    assert Image.fromarray(arrays[0]).mode == "I;16"
    _, ds = _load(tmp_path, arrays, ext)
    img, _ = ds[0]
    assert img.dtype == torch.float32 and img.shape == (3, 20, 50)
    raw = decode_image(tmp_path / "src" / f"im01{ext}")
    assert raw.dtype == torch.float32 and torch.allclose(raw[0, 0, -1], torch.tensor(4095 / 65535))
    assert abs(raw.max().item() - 4095 / 65535) < 1e-6 and raw.min().item() == 0.0
    assert decode_image(tmp_path / "src" / f"im00{ext}").max().item() == 1.0


def test_non_square_large_image_with_tens_of_boxes(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (1024, 2048), dtype=np.uint8) for _ in range(4)]

    def many(i, a):  # image 0: 40 boxes on a grid (the others one each, so a 1-shot set exists)
        if i:
            return [("dent" if i % 2 else "pit", [10, 10, 40, 50])]
        return [
            ("dent" if k % 3 else "pit", [50 * k, 100 + (k % 5) * 150, 50 * k + 30, 130 + (k % 5) * 150])
            for k in range(40)
        ]

    data, ds = _load(tmp_path, arrays, ".png", boxes_of=many, test_fraction=0.0)
    img, t = ds[0]
    assert img.shape == (3, 1024, 2048) and t["boxes"].shape == (40, 4) and len(t["labels"]) == 40
    assert t["boxes"][:, 2].max() <= 2048
    meta_stats = __import__("yaml").safe_load((data.root / "dataset.yaml").read_text())["stats"]
    assert meta_stats["width"]["max"] == 2048 and meta_stats["boxes_per_image"]["max"] == 40


def test_defect_free_images_kept_in_test_and_load_with_empty_targets(tmp_path):
    arrays = [np.full((32, 32), 100, np.uint8) for _ in range(16)]
    data, _ = _load(tmp_path, arrays, ".png", empty_every=4)
    test = data.split("test")
    empty_ids = {im["id"] for im in test["images"]} - {a["image_id"] for a in test["annotations"]}
    assert empty_ids  # a share of the defect-free images is held out for false-alarm counting
    ds = DetectionDataset(data.records(test), data.classes)
    i = next(k for k, r in enumerate(ds.records) if r.image_id in empty_ids)
    img, t = ds[i]
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)
    # few-shot files never draw them
    shots = data.fewshot(1, 1)
    assert all(any(a["image_id"] == im["id"] for a in shots["annotations"]) for im in shots["images"])


def _huge_png(path, side: int):
    """A side x side 1-bit PNG: a few KB on disk, side**2 pixels when decoded."""
    Image.new("1", (side, side)).save(path)
    return path


def test_prepare_data_refuses_an_image_above_the_pixel_limit_before_decoding_it(tmp_path):
    from dkan.errors import DataError

    arrays = [np.full((16, 16), 100 + i, dtype=np.uint8) for i in range(6)]
    src = _coco_source(tmp_path / "src", {f"im{i}": (a, [("dent", [2, 3, 12, 14])]) for i, a in enumerate(arrays)},
                       ".png")
    coco = json.loads(src.read_text())
    _huge_png(src.parent / "huge.png", 12000)  # 144 megapixels in 17 KB
    coco["images"].append({"id": 99, "file_name": "huge.png", "width": 12000, "height": 12000})
    src.write_text(json.dumps(coco))
    out = tmp_path / "prep"
    with pytest.raises(DataError, match=r"huge\.png: 12000 x 12000 pixels \(144 megapixels\) is above the limit of 64 "
                                        r"megapixels\. Fix: shrink or tile the image, or raise the limit"):
        prepare_data(PrepareConfig(out=str(out), source=str(src), seeds=[1], shots=[1]))
    assert not out.exists() and not list(tmp_path.glob(".prep.partial-*"))


@pytest.mark.parametrize("raw", ["-1", "0", "1e9", "lots"])
def test_the_pixel_limit_must_be_a_positive_whole_number(tmp_path, monkeypatch, raw):
    from dkan.errors import DataError

    monkeypatch.setenv("DKAN_MAX_IMAGE_PIXELS", raw)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match=rf"DKAN_MAX_IMAGE_PIXELS={raw}: not a positive whole number of pixels\. "
                                        r"Fix: set it to e\.g\. 200000000"):
        decode_image(tmp_path / "small.png")


def test_a_limit_above_pils_own_raises_pils_too(tmp_path, monkeypatch):
    from dkan.data.images import open_image
    from dkan.errors import DataError

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # given back after the test
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 100  # above what PIL itself refuses (twice its limit)
    huge = _huge_png(tmp_path / "huge.png", side)
    with pytest.raises(DataError, match=r"huge\.png: more than 179 megapixels, above the limit of 64 megapixels"):
        decode_image(huge)  # PIL refuses it first, and says so in the same words
    monkeypatch.setenv("DKAN_MAX_IMAGE_PIXELS", str(side * side))
    with open_image(huge) as im:  # the header only: PIL would refuse it as a decompression bomb without ours
        assert im.size == (side, side)
    assert Image.MAX_IMAGE_PIXELS == side * side
