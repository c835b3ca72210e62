"""The sweep's cost in machine-free units (the plan's bound, a study's actual) and the estimate's FLOP model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeps.core.inputs import build_plan
from sweeps.core.plan import complete_plan
from sweeps.run_tune import main, parse_args


def _plan(data: Path, tmp_path: Path, *extra: str):
    args = ["--data", str(data), "--shots", "1", "--seeds", "1-2", "--out", str(tmp_path / "o"), "--cache-dir",
            str(tmp_path / "c"), "--profile", "cpu-quick", "--trials", "4", "--finetune-iterations", "10", *extra]
    return complete_plan(build_plan(parse_args(args)), [{"CPU": 3.0}], local=True)


def _images(data: Path, split: str) -> int:
    return len(json.loads((data / "annotations" / f"{split}.json").read_text())["images"])


def test_the_counter_gives_torchvisions_documented_flops_for_faster_rcnn_r50_fpn():
    import torch
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, fasterrcnn_resnet50_fpn

    from sweeps.core.flops import eval_image_flops, padded_size

    with torch.device("meta"):  # no weights, no memory: the architecture alone
        model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    documented = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["_ops"]  # GFLOPS as multiply-adds
    assert padded_size(800, 800, 800, 1333) == (800, 800)
    assert eval_image_flops(model, (800, 800), 1000) / 2e9 == pytest.approx(documented, rel=1e-3)


def test_one_convolution_by_hand_and_the_canvas_the_transform_makes():
    import torch

    from sweeps.core.flops import counted, padded_size

    conv = torch.nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=False, device="meta")
    x = torch.zeros(1, 3, 64, 96, device="meta")
    assert counted(lambda: conv(x)) == 2 * (32 * 48) * 8 * (3 * 3 * 3)  # outputs x taps, 2 per multiply-add
    assert counted(lambda: conv(x.requires_grad_()).sum().backward()) == 3 * 2 * (32 * 48) * 8 * 27  # + 2 grads
    assert padded_size(200, 200, 800, 1333) == (800, 800)  # NEU-DET at the paper's test size
    assert padded_size(375, 500, 800, 1333) == (800, 1088)  # the longer side 1066, padded to 32
    assert padded_size(100, 1000, 800, 1333) == (160, 1344)  # the longer side holds it at 1333


def test_the_detectors_step_costs_follow_what_trains_and_what_the_cache_holds():
    from dkan.profiles import base_config, finetune_config
    from sweeps.core.flops import count_flops

    f = count_flops(base_config("cpu-quick").model, finetune_config("cpu-quick").model, 3, 6, (200, 200))
    step = f.finetune_step
    # TFA trains the last layer on cached FPN features; plain trains FPN, RPN and box head on the cached body;
    # DKAN adds the teacher's box head; base training runs and trains all of it
    assert 0 < step["tfa"] < step["plain"] < step["dkan"] < f.base_step
    assert f.finetune_miss["tfa"] > f.finetune_miss["plain"]  # a TFA miss computes the FPN too
    assert 0 < f.delta_params < f.params


def test_the_plans_bound_in_units_counts_every_seed_fine_tune_and_evaluation(synthetic_prepared, tmp_path):
    from sweeps.core.estimate import bound_units, counts, plan_line

    plan = _plan(synthetic_prepared, tmp_path)
    finetunes, _, evaluations, _ = counts(plan)
    units = bound_units(plan)
    assert units.finetune_images == finetunes * 10 * 4  # 10 iterations x cpu-quick's batch of 4
    assert units.eval_images == (finetunes * _images(synthetic_prepared, "val")
                                 + evaluations * _images(synthetic_prepared, "test"))
    line = plan_line(plan)
    assert f"at most {units.finetune_images * 1:,} fine-tune iteration-images" in line
    assert "base-training iteration-images" in line  # no base model yet: its training is in the bill


def test_a_studys_actual_counts_the_seeds_its_runs_trained_once(synthetic_prepared, tmp_path):
    from dkan import runfolder
    from sweeps.core.estimate import measured

    plan = _plan(synthetic_prepared, tmp_path)
    study = plan.study(plan.splits[0], 1, tmp_path / "base.pt")
    root = plan.layout.runs(study.key)

    def seed(trial: str, n: int, **m) -> None:
        runfolder.write_json(root / trial / f"seed{n}" / runfolder.METRICS,
                             {"iterations": 10, "s_per_iter": 1.0, "fit_seconds": 12.0, "train_seconds": 10.0,
                              "eval_split": "val", **m})

    seed("full", 1)
    seed("full", 2)  # resumed from its last.pt after a lost worker: one finished seed, its iterations once
    seed("stopped", 1)  # stopped early after its first seed: the second never ran
    (root / "stopped" / "seed2").mkdir(parents=True)  # a seed that started and was lost: nothing finished
    (root / "full" / "seed1" / runfolder.CONFIG).write_text("optim: {batch_size: 2}\n")  # its point's batch size
    seed("test_row", 1, source="reused", eval_split="test", iterations=0)
    actual = measured(plan, study, 60.0)
    assert actual["seed_finetunes"] == 3 and actual["test_evaluations"] == 1
    assert actual["finetune_images"] == 10 * 2 + 10 * 4 + 10 * 4
    assert actual["eval_images"] == 3 * _images(synthetic_prepared, "val") + _images(synthetic_prepared, "test")
    from sweeps.outputs.mlflow_log import cost_metrics
    from sweeps.outputs.results import cost_line

    cost = {"estimate": {"wall_s": 60.0, "finetunes": 12, "disk_mb": 1.0, "source": "test", "finetune_images": 480,
                         "eval_images": 999}, "actual": actual}
    assert "at most 480 and 999 estimated, 100 fine-tune iteration-images" in cost_line(cost)
    assert cost_metrics(cost) == {"finetune_images": 100.0, "eval_images": float(actual["eval_images"])}


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_a_device_rate_that_is_not_a_positive_number_is_one_clear_line(synthetic_prepared, tmp_path, capsys, value):
    code = main(["--data", str(synthetic_prepared), "--profile", "cpu-quick", "--out", str(tmp_path / "o"),
                 "--dry-run", f"--device-tflops={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: --device-tflops {float(value)}: ") and "Fix: " in err[0]
    assert not (tmp_path / "o").exists()


def test_the_paper_dry_run_prints_time_gpu_hours_and_disk_before_any_base_model(synthetic_prepared, tmp_path,
                                                                                  capsys):
    cache = tmp_path / "cache"
    code = main(["--data", str(synthetic_prepared), "--shots", "1", "--seeds", "1-2", "--profile", "paper", "--dry-run",
                 "--out", str(tmp_path / "o"), "--cache-dir", str(cache)])
    out = capsys.readouterr().out
    assert code == 0 and "no rates" not in out
    [gpu] = [ln for ln in out.splitlines() if ln.startswith("  on 1 GPU")]
    assert " GPU-hours, " in gpu and " MB " in gpu and "model: " in gpu and "x0.5 to x2" in gpu
    assert "for 1 base model(s)" in gpu
    assert not cache.exists()  # a dry run writes nothing, not even the FLOP count
    faster = main(["--data", str(synthetic_prepared), "--shots", "1", "--seeds", "1-2", "--profile", "paper",
                   "--dry-run", "--out", str(tmp_path / "o"), "--cache-dir", str(cache), "--device-tflops", "1000"])
    cpu_line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  estimate"))
    assert faster == 0 and "at --device-tflops 1000" in cpu_line
