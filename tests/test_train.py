"""fit() end to end on a tiny synthetic set: base -> DKAN / TFA fine-tune, determinism, resume, errors."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch

from dkan.config import (
    BaseTrainConfig,
    ConfigError,
    DataConfig,
    DistillConfig,
    FinetuneConfig,
    OptimConfig,
    apply_overrides,
    from_dict,
    load_yaml,
    save_yaml,
)
from dkan.engine.train import TrainingError, fit
from dkan.model.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import tiny_model_config


def base_cfg(data, out, **kw) -> BaseTrainConfig:
    return BaseTrainConfig(
        model=tiny_model_config(), data=DataConfig(root=str(data), split=1),
        optim=OptimConfig(lr=0.01, batch_size=2, iterations=4, warmup_iters=2), out=str(out), checkpoint_every=2, **kw,
    )


def ft_kwargs(data, base_ckpt, out, method):
    return dict(
        model=tiny_model_config(box_head="cosine"), data=DataConfig(root=str(data), split=1),
        optim=OptimConfig(lr=0.01, batch_size=2, iterations=3, warmup_iters=1), base_checkpoint=str(base_ckpt), shots=2,
        fewshot_seed=1, out=str(out), checkpoint_every=2, distill=DistillConfig(method=method),
    )


@contextmanager
def ctrl_c_at_step_4(monkeypatch):
    """fit's 4th training step raises KeyboardInterrupt (as Ctrl+C would); the real step is back afterwards."""
    import dkan.engine.train as train_mod

    real_step, calls = train_mod.train_step, []

    def step(*a, **k):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real_step(*a, **k)

    monkeypatch.setattr(train_mod, "train_step", step)
    try:
        yield
    finally:
        monkeypatch.setattr(train_mod, "train_step", real_step)


@pytest.fixture(scope="module")
def base_model(synthetic_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    reported = []
    metrics = fit(base_cfg(synthetic_prepared, out), report=reported.append, progress=False)
    return out / "model_final.pt", metrics, reported


def test_base_training_writes_model_metrics_and_reports(base_model):
    path, metrics, reported = base_model
    ckpt = load_checkpoint(path)
    assert ckpt["meta"]["stage"] == "base" and ckpt["meta"]["classes"] == ["crazing", "inclusion", "patches"]
    assert reported == [metrics] and set(metrics) >= {"AP_base", "AP_all", "AP/crazing", "iterations", "s_per_iter"}
    assert json.loads((path.parent / "metrics.json").read_text())["iterations"] == 4
    assert not (path.parent / "last.pt").exists()


@pytest.mark.parametrize("method", ["dkan", "tfa"])
def test_finetune_saves_the_student_only(base_model, synthetic_prepared, tmp_path, method):
    cfg = FinetuneConfig(**ft_kwargs(synthetic_prepared, base_model[0], tmp_path / method, method))
    metrics = fit(cfg, progress=False)
    assert set(metrics) >= {"AP_base", "AP_novel", "AP_all", "AP/scratches"}
    ckpt = load_checkpoint(tmp_path / method / "model_final.pt")
    assert ckpt["meta"]["classes"] == [
        "crazing",
        "inclusion",
        "patches",
        "pitted_surface",
        "rolled-in_scale",
        "scratches",
    ]
    assert ckpt["model"]["roi_heads.box_predictor.cls_score.weight"].shape[0] == 7
    assert not any(k.startswith("teacher") for k in ckpt["model"])
    # the frozen backbone did not move
    base = load_checkpoint(base_model[0])["model"]
    assert torch.equal(
        ckpt["model"]["backbone.body.layer1.0.conv1.weight"], base["backbone.body.layer1.0.conv1.weight"]
    )
    assert torch.equal(ckpt["model"]["backbone.body.bn1.running_mean"], base["backbone.body.bn1.running_mean"])


def test_same_seed_same_metrics(base_model, synthetic_prepared, tmp_path):
    a = fit(FinetuneConfig(**ft_kwargs(synthetic_prepared, base_model[0], tmp_path / "a", "dkan")), progress=False)
    b = fit(FinetuneConfig(**ft_kwargs(synthetic_prepared, base_model[0], tmp_path / "b", "dkan")), progress=False)
    clock = ("train_seconds", "s_per_iter", "fit_seconds")  # wall-clock: differs run to run
    strip = lambda m: {k: v for k, v in m.items() if k not in clock}  # noqa: E731
    assert json.dumps(strip(a)) == json.dumps(strip(b))
    wa = load_checkpoint(tmp_path / "a" / "model_final.pt")["model"]
    wb = load_checkpoint(tmp_path / "b" / "model_final.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_continues_to_the_same_weights(base_model, synthetic_prepared, tmp_path, monkeypatch, capsys):
    kw = ft_kwargs(synthetic_prepared, base_model[0], tmp_path / "r", "dkan")
    kw["optim"] = OptimConfig(lr=0.01, batch_size=2, iterations=4, warmup_iters=1)
    full = fit(FinetuneConfig(**{**kw, "out": str(tmp_path / "full")}), progress=False)
    with ctrl_c_at_step_4(monkeypatch), pytest.raises(KeyboardInterrupt):
        fit(FinetuneConfig(**kw), progress=False)
    assert (tmp_path / "r" / "last.pt").exists()
    resumed = fit(FinetuneConfig(**kw), resume=True, progress=False)
    said = capsys.readouterr().out
    assert "resumed from" in said and "another config" not in said  # nothing changed: no note
    wf = load_checkpoint(tmp_path / "full" / "model_final.pt")["model"]
    wr = load_checkpoint(tmp_path / "r" / "model_final.pt")["model"]
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    aps = lambda m: json.dumps({k: v for k, v in m.items() if k.startswith("AP")})  # noqa: E731  (NaN-safe equality)
    assert aps(resumed) == aps(full)


def test_config_changes_names_each_changed_value_and_ignores_out():
    from dkan.engine.train import config_changes

    old = {"out": "a", "optim": {"iterations": 300, "lr_steps": [225, 275], "lr": 0.02}, "seed": 0}
    new = {"out": "b", "optim": {"iterations": 600, "lr_steps": [450, 550], "lr": 0.02}, "seed": 0}
    assert config_changes(old, new) == ["optim.iterations 300 -> 600", "optim.lr_steps [225, 275] -> [450, 550]"]
    assert config_changes(old, old) == []


def test_ctrl_c_in_base_training_resumes_from_last_pt(base_model, synthetic_prepared, tmp_path, monkeypatch):
    """Base training saves last.pt every checkpoint_every (200 by default, as fine-tuning) and resumes
    from it to the same weights as an uninterrupted run."""
    assert BaseTrainConfig().checkpoint_every > 0
    with ctrl_c_at_step_4(monkeypatch), pytest.raises(KeyboardInterrupt):
        fit(base_cfg(synthetic_prepared, tmp_path / "b"), progress=False)
    assert load_checkpoint(tmp_path / "b" / "last.pt", "resume checkpoint", "")["meta"]["iteration"] == 2
    fit(base_cfg(synthetic_prepared, tmp_path / "b"), resume=True, progress=False)
    full = load_checkpoint(base_model[0])["model"]
    resumed = load_checkpoint(tmp_path / "b" / "model_final.pt")["model"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_nan_loss_stops_at_once_naming_iteration_and_term(base_model, synthetic_prepared, tmp_path, monkeypatch):
    import dkan.engine.train as train_mod

    real_step = train_mod.train_step

    def nan_fka(*a, **k):
        losses = real_step(*a, **k)
        losses["loss_fka"] = losses["loss_fka"] * float("nan")
        return losses

    monkeypatch.setattr(train_mod, "train_step", nan_fka)
    with pytest.raises(TrainingError, match=r"iteration 0: loss term loss_fka is nan"):
        fit(FinetuneConfig(**ft_kwargs(synthetic_prepared, base_model[0], tmp_path / "n", "dkan")), progress=False)
    assert not (tmp_path / "n" / "model_final.pt").exists()


def test_bad_base_checkpoints(base_model, synthetic_prepared, tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt: base checkpoint not found.*dkan base-train"):
        fit(
            FinetuneConfig(**ft_kwargs(synthetic_prepared, tmp_path / "missing.pt", tmp_path / "x", "dkan")),
            progress=False,
        )
    kw = ft_kwargs(synthetic_prepared, base_model[0], tmp_path / "y", "dkan")
    kw["data"] = DataConfig(root=str(synthetic_prepared), split=2)
    with pytest.raises(
        CheckpointError,
        match=r"base checkpoint of classes \['crazing', 'inclusion', 'patches'\].*"
        r"split's base classes are \['inclusion', 'rolled-in_scale', 'scratches'\]",
    ):
        fit(FinetuneConfig(**kw), progress=False)
    ft = load_checkpoint(base_model[0])
    ft["meta"]["stage"] = "finetune"
    torch.save(ft, tmp_path / "ft.pt")
    with pytest.raises(CheckpointError, match="stage 'finetune'"):
        fit(FinetuneConfig(**ft_kwargs(synthetic_prepared, tmp_path / "ft.pt", tmp_path / "z", "dkan")), progress=False)
    kw = ft_kwargs(synthetic_prepared, base_model[0], tmp_path / "w", "dkan")
    kw["model"] = tiny_model_config(box_head="cosine", fpn_channels=16)
    with pytest.raises(ConfigError, match="model.fpn_channels: 16 differs from the base model's 32"):
        fit(FinetuneConfig(**kw), progress=False)
    kw = ft_kwargs(synthetic_prepared, base_model[0], tmp_path / "v", "dkan")
    kw["distill"] = DistillConfig(lka_student="cosine")
    with pytest.raises(ConfigError, match=r"distill.lka_student: 'cosine'. Fix: use one of \('scaled', 'raw'\)"):
        fit(FinetuneConfig(**kw), progress=False)
    kw["model"], kw["distill"] = tiny_model_config(box_head="fc"), DistillConfig(lka_student="raw")
    with pytest.raises(ConfigError, match="lka_student=raw: the raw cosines need model.box_head=cosine"):
        fit(FinetuneConfig(**kw), progress=False)
    assert not (tmp_path / "v").exists()  # nothing half-written


def test_config_yaml_roundtrip_unknown_keys_and_overrides(tmp_path):
    cfg = FinetuneConfig()
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(FinetuneConfig, tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("optim:\n  lr: 0.1\n  lr_stepz: [1]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml\.optim: unknown key\(s\) \['lr_stepz'\]"):
        load_yaml(FinetuneConfig, tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"expected int, got 'many'"):
        from_dict(FinetuneConfig, {"shots": "many"})
    c2 = apply_overrides(cfg, ["optim.lr=0.005", "distill.method=tfa", "model.anchor_sizes=[8, 16, 32, 64, 128]"])
    assert c2.optim.lr == 0.005 and c2.distill.method == "tfa" and c2.model.anchor_sizes[0] == 8
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        apply_overrides(cfg, ["optim.lrr=1"])


def test_the_two_configs_share_a_base_and_keep_the_saved_key_order():
    from dkan.config import TrainConfig, to_dict

    common = ["model", "data", "optim", "out", "seed", "eval_split", "checkpoint_every", "device", "threads",
              "precision"]
    # the order config.yaml files were written in before the common base (readers of old files see no change)
    assert list(to_dict(BaseTrainConfig())) == common
    assert list(to_dict(FinetuneConfig())) == [*common[:3], "distill", "base_checkpoint", "shots", "fewshot_seed",
                                               "freeze_backbone", *common[3:], "cache_mb", "checkpoint_format",
                                               "provenance"]
    assert isinstance(FinetuneConfig(), TrainConfig) and not isinstance(FinetuneConfig(), BaseTrainConfig)
    assert (BaseTrainConfig().out, FinetuneConfig().out) == ("runs/base", "runs/finetune")
    assert (BaseTrainConfig().model.box_head, FinetuneConfig().model.box_head) == ("fc", "cosine")


def test_with_values_sets_typed_dotted_keys_checked_as_a_file_is():
    from dkan.config import with_values

    cfg = FinetuneConfig()
    c2 = with_values(cfg, {"optim.lr": 0.02, "optim.iterations": 30, "distill.lka_student": "raw",
                           "model.anchor_sizes": [8, 16, 32, 64, 128], "shots": 3}, "point")
    assert (c2.optim.lr, c2.optim.iterations, c2.distill.lka_student, c2.shots) == (0.02, 30, "raw", 3)
    assert c2.model.anchor_sizes[0] == 8 and cfg.optim.lr == 0.001  # a new config; the old one unchanged
    assert isinstance(with_values(cfg, {"optim.lr": 1}).optim.lr, float)  # an int for a float: coerced, as YAML
    with pytest.raises(ConfigError, match=r"point\.optim\.iterations: expected int, got '30'"):
        with_values(cfg, {"optim.iterations": "30"}, "point")  # no string round trip: a string is a string
    with pytest.raises(ConfigError, match=r"point\.shots: expected int, got True"):
        with_values(cfg, {"shots": True}, "point")
    with pytest.raises(ConfigError, match=r"point\.optim\.lr: 0\.0 is out of range"):
        with_values(cfg, {"optim.lr": 0.0}, "point")
    with pytest.raises(ConfigError, match=r"point 'optim\.lrr': unknown key 'optim\.lrr'"):
        with_values(cfg, {"optim.lrr": 0.1}, "point")
    with pytest.raises(ConfigError, match=r"point 'optimm\.lr': unknown section 'optimm'"):
        with_values(cfg, {"optimm.lr": 0.1}, "point")
    # --set parses, then sets the same way
    assert apply_overrides(cfg, ["optim.lr=0.02", "distill.lka_student=raw"]) == with_values(
        cfg, {"optim.lr": 0.02, "distill.lka_student": "raw"})


def test_a_reused_checkpoint_is_scored_on_the_sweeps_data_not_the_root_it_recorded(base_model, synthetic_prepared,
                                                                                    tmp_path):
    from sweeps.core.jobspec import SeedJob
    from sweeps.shell.jobs import evaluate_reused

    ckpt = load_checkpoint(base_model[0])
    ckpt["meta"]["config"]["data"]["root"] = "data/elsewhere"  # trained in another folder (a --base-checkpoint)
    torch.save(ckpt, tmp_path / "moved.pt")
    cfg = replace(base_cfg(synthetic_prepared, tmp_path / "out"), eval_split="test")
    assert evaluate_reused([SeedJob("base", 0, cfg, reuse=str(tmp_path / "moved.pt"))], "cpu")
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["source"] == "reused" and m["eval_split"] == "test" and 0.0 <= m["AP_base"] <= 1.0
