from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

NEU_DET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "NEU-DET"


def pytest_configure(config):
    # Every Ray of the session runs with Ray's default for a new local cluster, token auth (the
    # product's default). A process that has started a token-auth Ray cannot run actors on a later
    # auth-disabled one (they die "cancelled before it started running"): one mode per process.
    os.environ.pop("RAY_AUTH_MODE", None)
    if os.environ.get("CI", "").lower() == "true" and not (NEU_DET / "ANNOTATIONS").is_dir():
        raise pytest.UsageError(
            f"CI=true but the real NEU-DET is missing at {NEU_DET}: the real-data tests must run in CI"
        )


@pytest.fixture(scope="session")
def neu_det() -> Path:
    if not (NEU_DET / "ANNOTATIONS").is_dir():
        pytest.skip(f"real NEU-DET not found at {NEU_DET} (required under CI=true)")
    return NEU_DET


def voc_xml(filename: str, objects: list[tuple[str, tuple]], size=(64, 64), depth=1) -> str:
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    dims = f"<width>{size[0]}</width><height>{size[1]}</height><depth>{depth}</depth>"
    return f"<annotation><filename>{filename}</filename><size>{dims}</size>{objs}</annotation>"


def make_voc(root: Path, images: dict[str, list[tuple[str, tuple]]], size=(64, 64), filename_of=None) -> Path:
    """A tiny VOC folder: {stem: [(class, (x1, y1, x2, y2)), ...]} -> IMAGES/stem.jpg + ANNOTATIONS/stem.xml."""
    (root / "IMAGES").mkdir(parents=True, exist_ok=True)
    (root / "ANNOTATIONS").mkdir(parents=True, exist_ok=True)
    for i, (stem, objs) in enumerate(images.items()):
        Image.new("RGB", size, (i * 7 % 255, 90, 90)).save(root / "IMAGES" / f"{stem}.jpg")
        fn = filename_of(stem) if filename_of else f"{stem}.jpg"
        (root / "ANNOTATIONS" / f"{stem}.xml").write_text(voc_xml(fn, objs, size))
    return root


@pytest.fixture
def tiny_voc(tmp_path: Path) -> Path:
    """Two classes, 10 images each, one or two boxes per image."""
    images = {}
    for cls in ("alpha", "beta-x_y"):
        for n in range(1, 11):
            objs = [(cls, (5, 5, 30, 40))] + ([(cls, (35, 35, 60, 60))] if n % 3 == 0 else [])
            images[f"{cls}_{n}"] = objs
    return make_voc(tmp_path / "voc", images)


@pytest.fixture(scope="session")
def synthetic_prepared(tmp_path_factory) -> Path:
    """A small prepared synthetic dataset shared by the tests that only read it."""
    from dkan.data.prepare import PrepareConfig, prepare_data

    out = tmp_path_factory.mktemp("syn") / "prepared"
    prepare_data(PrepareConfig(out=str(out), synthetic=True, synthetic_per_class=12, seeds=[1, 2], shots=[1, 2, 5]))
    return out


def tiny_model_config(**kw):
    """A ResNet-18 FPN small enough for CPU tests (trains a step in well under a second)."""
    from dkan.config import ModelConfig

    base = dict(
        backbone="resnet18", fpn_channels=32, representation_size=64, min_size=128, max_size=128,
        rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50, rpn_batch_size_per_image=64, box_batch_size_per_image=32,
    )
    return ModelConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def shared_sweep(synthetic_prepared, tmp_path_factory):
    """The session's one shared tiny sweep (interrupted twice, resumed, with a second sweep beside it):
    ``tests.sweeps_shared``. Tests that only read its outputs take it; none may change its folder."""
    from tests.sweeps_shared import run_shared

    return run_shared(synthetic_prepared, tmp_path_factory.mktemp("shared"))
