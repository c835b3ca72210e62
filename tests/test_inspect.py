"""Dataset statistics, the input size they suggest, and `dkan inspect-data`."""

from __future__ import annotations

import pytest
import yaml
from conftest import make_voc
from PIL import Image

from dkan.cli import main
from dkan.data.inspect import inspect_data
from dkan.data.prepare import PrepareConfig, prepare_data
from dkan.data.stats import anchor_sizes_for, choose_input_size, dataset_stats


def _stats(short: float, long_: float, p5: float, p95: float) -> dict:
    return {
        "short_side_median": short,
        "long_side_median": long_,
        "box_size": {"p5": p5, "p50": (p5 + p95) / 2, "p95": p95},
    }


def test_native_size_when_within_the_cap():
    c = choose_input_size(_stats(200, 200, 25.5, 149.3))  # NEU-DET's numbers
    assert (c.min_size, c.max_size, c.anchor_sizes) == (200, 200, [16, 32, 64, 128, 256])
    assert "native" in c.reason and "cover" in c.reason


def test_large_images_shrink_until_the_small_boxes_keep_16_px():
    c = choose_input_size(_stats(1024, 2048, 64, 400))  # p5 box 64 px at 1024: 256 px keeps 16
    assert c.min_size == 256 and c.max_size == 512
    assert c.anchor_sizes == [16, 32, 64, 128, 256] and "keeps ~16 px" in c.reason


def test_the_cap_binds_and_says_so():
    c = choose_input_size(_stats(2048, 2048, 20, 60), cap=640)
    assert c.min_size == 640 and "the cap" in c.reason and "1638" in c.reason
    assert c.anchor_sizes[0] == 8  # resized p5 is 6 px; anchors never below 8
    assert "smaller than that will mostly be missed (fix: a larger input, --set model.min_size=...)" in c.reason
    assert anchor_sizes_for(3, 2000) == [8, 16, 32, 64, 128]  # span too wide: the small end wins


def test_dataset_stats_per_class_and_empty_images():
    coco = {
        "images": [
            {"id": 1, "width": 100, "height": 50},
            {"id": 2, "width": 300, "height": 150},
            {"id": 3, "width": 100, "height": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 40, 10]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 30, 30]},
        ],
        "categories": [{"id": 1, "name": "pit"}, {"id": 2, "name": "crack"}],
    }
    s = dataset_stats(coco)
    assert s["width"] == {"min": 100.0, "median": 100.0, "max": 300.0} and s["short_side_median"] == 50.0
    assert s["defect_free_images"] == 1 and s["boxes_per_image"]["max"] == 2.0
    assert s["box_size_per_class"]["crack"] == {"p5": 20.0, "p50": 20.0, "p95": 20.0}
    assert s["box_size_per_class"]["pit"]["p50"] == 20.0 and s["box_aspect_w_over_h"]["p95"] > 3.5
    yaml.safe_dump(s)  # plain types only


@pytest.fixture(scope="module")
def small_tiles(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiles") / "prepared"
    prepare_data(
        PrepareConfig(
            out=str(out),
            synthetic=True,
            synthetic_kind="tiles",
            synthetic_images=40,
            synthetic_size=160,
            seeds=[1],
            shots=[1, 2],
        )
    )
    return out


def test_prepare_records_stats_and_the_suggested_input(small_tiles):
    meta = yaml.safe_load((small_tiles / "dataset.yaml").read_text())
    assert meta["classes"] == ["burr", "crack", "dent", "pit", "stain", "void"]
    assert meta["stats"]["width"]["median"] == 160 and set(meta["stats"]["box_size_per_class"]) == set(meta["classes"])
    assert meta["stats"]["defect_free_images"] >= 1 and meta["stats"]["boxes_per_image"]["median"] >= 5
    assert meta["input_size"]["min_size"] == 160 and meta["input_size"]["anchor_sizes"][0] == 8
    assert meta["config"]["synthetic_kind"] == "tiles"


def test_inspect_reports_counts_warns_on_tiny_boxes_and_writes_a_png(small_tiles, tmp_path):
    png = tmp_path / "fig" / "inspect.png"
    r = inspect_data(small_tiles, out_png=png, min_size=80)
    assert "pit" in r.text and "defect-free" in r.text and "with several classes" in r.text
    assert any("'pit'" in w and "under 8 px at input size 80" in w for w in r.warnings)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 400
    assert not any("under 8 px" in w for w in inspect_data(small_tiles, min_size=640).warnings)


def test_inspect_warns_on_classes_below_k_and_imbalance(tmp_path, capsys):
    images = {f"big_{n}": [("big", (5, 5, 40, 40)), ("big", (42, 42, 60, 60))] for n in range(1, 31)}
    images.update({f"rare_{n}": [("rare", (5, 5, 40, 40))] for n in range(1, 4)})
    voc = make_voc(tmp_path / "voc", images)
    out = tmp_path / "prep"
    prepare_data(PrepareConfig(out=str(out), source=str(voc), seeds=[1], shots=[2]))  # K=1: no one-box big image
    assert main(["inspect-data", str(out), "--max-shots", "5"]) == 0
    text = capsys.readouterr().out
    assert "warning: class 'rare': in 2 trainval images, fewer than K=5" in text
    assert "warning: heavy imbalance" in text and "'big'" in text


def _moved_images(prepared, tmp_path):
    """A copy of ``prepared`` whose dataset.yaml's image_root points at an existing folder without its images."""
    import shutil

    copy = tmp_path / "prepared"
    shutil.copytree(prepared, copy)
    (tmp_path / "other").mkdir()
    meta = yaml.safe_load((copy / "dataset.yaml").read_text())
    (copy / "dataset.yaml").write_text(yaml.safe_dump({**meta, "image_root": "../other"}))
    return copy


def test_inspect_and_base_train_check_that_the_images_are_there(synthetic_prepared, tmp_path, capsys):
    copy = _moved_images(synthetic_prepared, tmp_path)
    png = tmp_path / "inspect.png"
    capsys.readouterr()
    assert main(["inspect-data", str(copy), "--out", str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {copy / 'dataset.yaml'}: ") and "images its annotations list are not in its " \
        "image folder" in err and "Fix: set image_root in dataset.yaml" in err and len(err.splitlines()) == 1
    assert not png.exists()
    out = tmp_path / "bt"
    assert main(["base-train", "--data", str(copy), "--out", str(out), "--iterations", "1", "--profile", "cpu-quick",
                 "--device", "cpu", "--set", "model.weights=null", "--set", "model.backbone=resnet18"]) == 2
    err = capsys.readouterr().err.strip()
    assert "dataset.yaml: " in err and "Fix: set image_root in dataset.yaml" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_inspect_applies_the_pixel_limit(synthetic_prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DKAN_MAX_IMAGE_PIXELS", "1000")  # below the synthetic images' 200 x 200
    assert main(["inspect-data", str(synthetic_prepared)]) == 2
    assert "200 x 200 pixels (40000 pixels) is above the limit of 1000 pixels" in capsys.readouterr().err
