from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_model_config
from PIL import Image

from dkan.bundle import BundleError
from dkan.cli import main
from dkan.config import BaseTrainConfig, DataConfig, to_dict
from dkan.data.images import collect_images, read_image
from dkan.data.splits import NEU_DET_SPLITS
from dkan.evaluation.coco_ap import ap50_per_class
from dkan.inference import (
    ModelError,
    evaluation_detections,
    load_bundle_model,
    load_checkpoint_model,
    load_model,
    load_model_uri,
)
from dkan.model.checkpoint import save_checkpoint
from dkan.model.detector import build_detector
from dkan.predict import predict_images

CLASSES = NEU_DET_SPLITS[1].base


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, synthetic_prepared) -> Path:
    """A random-weight tiny base model saved with fit's payload shape ({"model", "meta"})."""
    torch.manual_seed(0)
    cfg = BaseTrainConfig(
        model=tiny_model_config(min_size=64, max_size=64, box_detections_per_img=30),
        data=DataConfig(root=str(synthetic_prepared), split=1),
    )
    model = build_detector(cfg.model, len(CLASSES))
    meta = {
        "stage": "base",
        "classes": list(CLASSES),
        "base": list(CLASSES),
        "novel": [],
        "config": to_dict(cfg),
        "iteration": 0,
    }
    path = tmp_path_factory.mktemp("ckpt") / "model_final.pt"
    save_checkpoint(path, {"model": model.state_dict(), "meta": meta})
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(d / "rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (80, 80), dtype=np.uint8), mode="L").save(d / "sub" / "gray.png")
    Image.fromarray(rng.integers(0, 65535, (64, 72), dtype=np.uint16)).save(d / "deep16.png")
    (d / "notes.md").write_text("not an image, not collected")
    return d


def test_collect_images_from_folders_lists_and_files(images, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# a comment\nimgs/rgb.jpg\n\n" + str(images / "deep16.png") + "\n")
    found = collect_images([images, listing, tmp_path / "missing.jpg"])
    assert [p.name for p in found] == ["deep16.png", "rgb.jpg", "gray.png", "rgb.jpg", "deep16.png", "missing.jpg"]
    assert found[3] == tmp_path / "imgs" / "rgb.jpg"  # relative to the list's folder


def test_grayscale_and_16_bit_images_load_as_3_channel_model_inputs(images):
    for name, hw in (("sub/gray.png", (80, 80)), ("deep16.png", (64, 72)), ("rgb.jpg", (96, 128))):
        img = read_image(images / name)
        assert img.dtype == torch.float32 and tuple(img.shape) == (3, *hw) and 0 <= img.min() <= img.max() <= 1
    gray = read_image(images / "sub" / "gray.png")
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert gray[0, 0, 0] == pytest.approx(np.array(Image.open(images / "sub" / "gray.png"))[0, 0] / 255)
    deep = np.array(Image.open(images / "deep16.png")).astype(float)
    assert read_image(images / "deep16.png")[0].numpy() == pytest.approx(deep / 65535, abs=1e-6)  # not saturated


def test_predict_matches_the_model_and_writes_coco_json(checkpoint, images, tmp_path):
    loaded = load_checkpoint_model(checkpoint)
    assert loaded.classes == CLASSES and not loaded.model.training
    paths = collect_images([images])
    pred = predict_images(loaded, paths, batch_size=1, score_thresh=0.0, progress=False)  # no padding by a batch
    assert pred.failed == [] and pred.n_images == 3
    assert [c["name"] for c in pred.coco["categories"]] == list(CLASSES)
    with torch.no_grad():
        direct = loaded.model([read_image(paths[1])])[0]
    mine = [a for a in pred.coco["annotations"] if a["image_id"] == 2]
    assert len(mine) == len(direct["scores"]) > 0
    x1, y1, x2, y2 = direct["boxes"][0].tolist()
    assert mine[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)
    assert mine[0]["score"] == pytest.approx(float(direct["scores"][0]))
    im2 = pred.coco["images"][1]
    assert (im2["file_name"], im2["width"], im2["height"]) == (str(paths[1]), 128, 96)
    assert {a["id"] for a in pred.coco["annotations"]} == set(range(1, len(pred.coco["annotations"]) + 1))


def test_score_threshold_filters(checkpoint, images):
    loaded = load_checkpoint_model(checkpoint)
    all_dets = predict_images(loaded, collect_images([images]), score_thresh=0.0, progress=False).coco["annotations"]
    cut = float(np.median([a["score"] for a in all_dets]))
    kept = predict_images(loaded, collect_images([images]), score_thresh=cut, progress=False).coco["annotations"]
    assert 0 < len(kept) < len(all_dets) and min(a["score"] for a in kept) >= cut


def test_cli_predict_draws_and_skips_unreadable_images(checkpoint, images, tmp_path, capsys):
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    out, draw = tmp_path / "det.json", tmp_path / "drawn"
    rc = main(
        [
            "predict",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--draw",
            str(draw),
            "--score-thresh",
            "0",
            "--draw-thresh",
            "0",
            "--device",
            "cpu",
            "--batch-size",
            "3",
            str(images),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert len(res["images"]) == 3 and [f["file_name"] for f in res["failed"]] == [str(images / "broken.jpg")]
    assert "broken.jpg" in capsys.readouterr().err
    assert sorted(p.name for p in draw.iterdir()) == ["deep16.png", "gray.png", "rgb.png"]
    drawn, raw = np.array(Image.open(draw / "rgb.png")), np.array(Image.open(images / "rgb.jpg"))
    assert drawn.shape == raw.shape and (drawn != raw).any()  # boxes were drawn


def test_cli_predict_fails_only_when_every_image_fails(checkpoint, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    rc = main(
        [
            "predict",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "d.json"),
            "--device",
            "cpu",
            str(tmp_path / "bad.png"),
            str(tmp_path / "nope.jpg"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "bad.png" in err and "nope.jpg" in err and "no image could be read" in err
    missing = ["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e.json"), str(tmp_path / "no_dir")]
    assert main(missing) == 1
    (tmp_path / "emptydir").mkdir()
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "emptydir")]) == 2
    assert "no images" in capsys.readouterr().err


def test_bundle_with_relative_model_file_survives_a_copy(checkpoint, images, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model_seed1.pt").write_bytes(checkpoint.read_bytes())
    (bundle / "base_model.pt").write_bytes(checkpoint.read_bytes())
    cfg = {
        "model": to_dict(tiny_model_config(min_size=64, max_size=64)),
        "base_checkpoint": "base_model.pt",
        "provenance": {"sweep": "x"},
    }
    (bundle / "best.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_bundle_model(bundle)
    assert loaded.classes == CLASSES and loaded.source.endswith("model_seed1.pt")
    moved = tmp_path / "elsewhere" / "b"
    moved.parent.mkdir()
    bundle.rename(moved)
    (moved / "model_seed2.pt").write_bytes(checkpoint.read_bytes())
    with pytest.raises(BundleError, match="expected one model file.*provenance.model_file"):
        load_bundle_model(moved)
    cfg["provenance"]["model_file"] = "model_seed2.pt"
    (moved / "best.yaml").write_text(yaml.safe_dump(cfg))
    assert load_model(bundle=moved / "best.yaml").source.endswith("model_seed2.pt")


def test_model_uri_reads_the_checkpoint_among_downloaded_files(checkpoint, tmp_path):
    model_dir = tmp_path / "mlmodel" / "artifacts"
    model_dir.mkdir(parents=True)
    (model_dir / "model_final.pt").write_bytes(checkpoint.read_bytes())
    (tmp_path / "mlmodel" / "MLmodel").write_text("flavors: {}\n")
    loaded = load_model_uri((tmp_path / "mlmodel").as_uri())
    assert loaded.classes == CLASSES
    with pytest.raises(ModelError, match="no fit checkpoint"):
        (tmp_path / "ckpt_less").mkdir()
        (tmp_path / "ckpt_less" / "MLmodel").write_text("flavors: {}\n")
        load_model_uri((tmp_path / "ckpt_less").as_uri())


def test_wrong_inputs_are_clear_errors(checkpoint, tmp_path):
    with pytest.raises(ModelError, match="exactly one of"):
        load_model(checkpoint=checkpoint, bundle=tmp_path)
    with pytest.raises(Exception, match="not found"):
        load_checkpoint_model(tmp_path / "none.pt")


def test_evaluation_detections_give_the_evaluators_ap(checkpoint):
    ev = evaluation_detections(checkpoint, "test", device="cpu")
    assert ev.classes == CLASSES and len(ev.records) == len(ev.gt["images"]) and ev.detections
    from dkan.plots import pr_curves

    curves = pr_curves(ev.gt, ev.detections)
    want = ap50_per_class(ev.gt, ev.detections)
    for name, ap in want.items():
        if not math.isnan(ap):
            assert curves[name].ap == pytest.approx(ap)
