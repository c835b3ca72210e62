"""The paper profile is the authors' recipe; cpu-quick is unchanged; the paper's reference table ships."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from dkan.config import ConfigError, DistillConfig, ModelConfig, OptimConfig, authors_defaults
from dkan.model.detector import build_detector
from dkan.profiles import PAPER_WEIGHTS, base_config, finetune_config
from dkan.reference import protocol, reference_rows, reference_table_rows


def test_paper_profile_is_the_authors_recipe():
    base, ft = base_config("paper"), finetune_config("paper", split=1)
    m = base.model
    assert (m.backbone, m.weights, m.frozen_stages) == ("resnet101", "ResNet101_Weights.IMAGENET1K_V1", 1)
    assert m.train_min_sizes == list(range(640, 801, 32)) and (m.min_size, m.max_size) == (800, 1333)
    assert m.anchor_sizes == [32, 64, 128, 256, 512] and m.aspect_ratios == [0.5, 1.0, 2.0]
    assert (m.rpn_pre_nms_top_n_train, m.rpn_post_nms_top_n_train, m.rpn_post_nms_top_n_test) == (2000, 1000, 1000)
    assert m.box_batch_size_per_image == 512 and (base.data.hflip, base.data.vflip) == (0.5, 0.0)
    o = base.optim
    assert (o.lr, o.momentum, o.weight_decay, o.batch_size, o.epochs, o.lr_step_epochs) == (
        0.02,
        0.9,
        1e-4,
        4,
        24,
        [16, 22],
    )
    assert (o.warmup_iters, o.warmup_factor) == (140, 0.001)
    o = ft.optim
    assert (o.lr, o.batch_size, o.iterations, o.lr_steps, o.warmup_iters) == (0.001, 4, 8000, [7800], 20)
    assert ft.freeze_backbone and ft.model.box_head == "cosine" and ft.model.cosine_scale == 20.0


def test_authors_defaults_depend_on_the_split():
    assert authors_defaults(1) == {"fka_weight": 1.0, "fka_tau": 5.0, "lka_weight": 0.01, "lka_tau": 5.0}
    for split in (2, 3):
        assert authors_defaults(split) == {"fka_weight": 5.0, "fka_tau": 1.0, "lka_weight": 0.01, "lka_tau": 5.0}
        assert finetune_config("paper", split).distill == DistillConfig(**authors_defaults(split))
        assert finetune_config("paper", split).data.split == split
    assert authors_defaults(None) == authors_defaults(1)


def test_cpu_quick_keeps_its_values():
    ft, base = finetune_config("cpu-quick"), base_config("cpu-quick")
    assert ft.optim == OptimConfig(
        lr=0.01, batch_size=4, iterations=200, lr_steps=[160], warmup_iters=10, clip_grad_norm=10.0
    )
    assert base.optim == OptimConfig(
        lr=0.02, batch_size=4, iterations=600, lr_steps=[450, 550], warmup_iters=100, clip_grad_norm=10.0
    )
    assert ft.distill == DistillConfig() and ft.model.weights is None and ft.model.train_min_sizes == []
    assert (
        ft.model.cosine_norm == "graph" and ft.model.frozen_stages == 0 and (ft.data.hflip, ft.data.vflip) == (0.5, 0.5)
    )
    assert (ft.model.backbone, ft.model.fpn_channels, ft.model.min_size, ft.model.box_batch_size_per_image) == (
        "resnet18",
        128,
        200,
        64,
    )


def test_a_rescaled_schedule_keeps_its_shape_and_base_train_iterations_moves_the_steps(capsys):
    import yaml

    from dkan.cli import main

    quick = base_config("cpu-quick").optim  # 600 iterations, steps 450 and 550, warm-up 100
    r = quick.rescaled(100)
    assert (r.iterations, r.lr_steps, r.warmup_iters) == (100, [75, 92], 10)  # warm-up: at most a tenth
    assert finetune_config("cpu-quick").optim.rescaled(10).lr_steps == [8]
    paper = base_config("paper").optim.rescaled(240)  # 24 epochs, steps at epochs 16 and 22
    assert (paper.epochs, paper.iterations, paper.lr_steps, paper.warmup_iters) == (0.0, 240, [160, 220], 24)
    with pytest.raises(ConfigError, match="at least 1"):
        quick.rescaled(0)
    assert main(["base-train", "--profile", "cpu-quick", "--iterations", "300", "--print-config"]) == 0
    optim = yaml.safe_load(capsys.readouterr().out)["optim"]
    assert (optim["iterations"], optim["lr_steps"], optim["warmup_iters"]) == (300, [225, 275], 30)
    assert main(["finetune", "--profile", "cpu-quick", "--iterations", "50", "--set", "optim.lr_steps=[10]",
                 "--print-config"]) == 0  # --set comes after the rescale
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["lr_steps"] == [10]


def test_unavailable_pretrained_weights_stop_with_both_ways_and_none(monkeypatch):
    import torchvision.models._api as api

    def offline(*a, **k):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    cfg = ModelConfig(
        backbone="resnet18", weights="ResNet18_Weights.IMAGENET1K_V1", fpn_channels=32, representation_size=64
    )
    with pytest.raises(ConfigError) as e:
        build_detector(cfg, 3)
    msg = str(e.value)
    assert "--backbone-weights PATH" in msg and "torchvision enum" in msg and "--backbone-weights none" in msg
    assert "https://download.pytorch.org/models/resnet18" in msg
    build_detector(cfg, 3, pretrained=False)  # a model restored from a checkpoint needs no download
    scratch = build_detector(
        ModelConfig(backbone="resnet18", weights="none", fpn_channels=32, representation_size=64), 3
    )
    assert isinstance(scratch.backbone.body.bn1, torch.nn.BatchNorm2d)
    assert PAPER_WEIGHTS == "ResNet101_Weights.IMAGENET1K_V1"


def test_reference_table_ships_with_its_protocol():
    rows = reference_rows(1, 5)
    assert rows["DKAN"] == {"AP_base": 0.6501, "AP_novel": 0.4286, "AP_all": 0.5394}
    assert rows["TFA"] == {"AP_base": 0.5947, "AP_novel": 0.1800, "AP_all": 0.3873}
    assert reference_rows(1, 30)["TFA"]["AP_novel"] == 0.1474 and set(reference_rows(3, 10)) == {
        "FsDetView",
        "TFA",
        "FSCE",
        "MPSR",
        "DKAN",
    }
    assert reference_rows(1, 3) == {} and reference_rows(None, 5) == {} and reference_rows(4, 5) == {}
    assert "11-point" in protocol() and "seed 1" in protocol() and "selected on test" in protocol()
    table = reference_table_rows(2, 10)
    assert table["DKAN (paper: 1 seed, best on test)"]["voc07/AP_novel"]["mean"] == 0.3224
