"""The CLI drives base-train -> finetune -> evaluate from configs, flags and --set."""

from __future__ import annotations

import json

import pytest
import yaml

from dkan.cli import main
from tests.conftest import tiny_model_config

TINY = [f"model.{k}={json.dumps(v)}" for k, v in vars(tiny_model_config()).items() if k not in ("box_head", "weights")]


def sets(*items):
    return [x for s in items for x in ("--set", s)]


@pytest.fixture(scope="module")
def base_ckpt(synthetic_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_base")
    args = [
        "base-train",
        "--profile",
        "cpu-quick",
        "--data",
        str(synthetic_prepared),
        "--split",
        "1",
        "--out",
        str(out),
        "--iterations",
        "2",
        *sets(*TINY, "optim.batch_size=2", "optim.warmup_iters=1"),
    ]
    assert main(args) == 0
    return out / "model_final.pt"


def test_finetune_tfa_and_dkan_then_evaluate(base_ckpt, synthetic_prepared, tmp_path, capsys):
    for method in ("tfa", "dkan"):
        args = [
            "finetune",
            "--profile",
            "cpu-quick",
            "--data",
            str(synthetic_prepared),
            "--base-checkpoint",
            str(base_ckpt),
            "--shots",
            "2",
            "--fewshot-seed",
            "2",
            "--method",
            method,
            "--out",
            str(tmp_path / method),
            "--iterations",
            "2",
            *sets(*TINY, "optim.batch_size=2"),
        ]
        assert main(args) == 0
        assert "[val] AP_base" in capsys.readouterr().out
        saved = yaml.safe_load((tmp_path / method / "config.yaml").read_text())
        assert (
            saved["distill"]["method"] == method
            and saved["fewshot_seed"] == 2
            and saved["model"]["box_head"] == "cosine"
        )
    assert (
        main(
            ["evaluate", "--checkpoint", str(tmp_path / "dkan" / "model_final.pt"), "--json", str(tmp_path / "m.json")]
        )
        == 0
    )
    assert "[test] AP_base" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "m.json").read_text())) >= {"AP_base", "AP_novel", "AP_all"}


def test_finetune_config_file_reproduces_a_run(base_ckpt, synthetic_prepared, tmp_path, capsys):
    first = [
        "finetune",
        "--profile",
        "cpu-quick",
        "--data",
        str(synthetic_prepared),
        "--base-checkpoint",
        str(base_ckpt),
        "--shots",
        "2",
        "--out",
        str(tmp_path / "a"),
        "--iterations",
        "2",
        *sets(*TINY, "optim.batch_size=2"),
    ]
    assert main(first) == 0
    cfg_file = tmp_path / "a" / "config.yaml"
    again = yaml.safe_load(cfg_file.read_text())
    again["out"] = str(tmp_path / "b")
    (tmp_path / "exported.yaml").write_text(yaml.safe_dump(again))
    assert main(["finetune", "--config", str(tmp_path / "exported.yaml")]) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert {k: v for k, v in a.items() if k.startswith("AP")} == {k: v for k, v in b.items() if k.startswith("AP")}


def test_profile_notice_print_config_and_bad_keys(tmp_path, capsys):
    assert main(["base-train", "--print-config"]) == 0
    cap = capsys.readouterr()
    assert "notice: no --profile given; using 'cpu-quick'" in cap.err and "backbone: resnet18" in cap.out
    assert main(["finetune", "--profile", "paper", "--print-config"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert (
        out["model"]["backbone"] == "resnet101" and out["optim"]["iterations"] == 8000 and out["optim"]["lr"] == 0.001
    )
    assert main(["base-train", "--profile", "cpu-quick", "--set", "optim.lrr=1", "--print-config"]) == 2
    assert "unknown key 'optim.lrr'" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("distill:\n  fka_wieght: 2\n")
    assert main(["finetune", "--config", str(tmp_path / "bad.yaml"), "--print-config"]) == 2
    assert "unknown key(s) ['fka_wieght']" in capsys.readouterr().err


def test_missing_base_checkpoint_is_a_clear_error(synthetic_prepared, tmp_path, capsys):
    args = [
        "finetune",
        "--profile",
        "cpu-quick",
        "--data",
        str(synthetic_prepared),
        "--base-checkpoint",
        str(tmp_path / "none.pt"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    assert "none.pt: base checkpoint not found" in capsys.readouterr().err
