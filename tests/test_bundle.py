"""From sweep to production: the session's shared tiny sweep (``tests.sweeps_shared``), then its MLflow runs,
registered models, the run folder copied elsewhere, and the exported bundle re-run from a copy; plus the
bundle's path rules without a sweep."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.sweeps_shared import KEY

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def test_bundle_paths_are_relative_to_the_yaml(tmp_path):
    from dkan.bundle import resolve_paths

    cfg = {"provenance": {"bundle": 1}, "base_checkpoint": "base_model.pt", "out": "reproduce",
           "data": {"root": "/abs/data"}}
    got = resolve_paths(cfg, tmp_path / "b" / "config.yaml")
    assert got["base_checkpoint"] == str(tmp_path / "b" / "base_model.pt")
    assert got["out"] == str(tmp_path / "b" / "reproduce") and got["data"]["root"] == "/abs/data"
    plain = {"base_checkpoint": "runs/base/model_final.pt", "out": "runs/x"}  # not a bundle: relative to the cwd
    assert resolve_paths(plain, tmp_path / "config.yaml") == plain


def test_pyfunc_input_forms():
    import pandas as pd

    from sweeps.outputs.pyfunc_model import as_images

    assert as_images(pd.DataFrame({"image": ["a.jpg", "b.png"]})) == [("a.jpg", "a.jpg"), ("b.png", "b.png")]
    assert as_images(["c.jpg"]) == [("c.jpg", "c.jpg")]
    [(name, img)] = as_images(np.full((20, 30, 3), 255, dtype=np.uint8))
    assert name == "0" and img.shape == (3, 20, 30) and float(img.max()) == 1.0
    batch = as_images(np.zeros((2, 20, 30), dtype=np.uint8))  # two grayscale images
    assert [n for n, _ in batch] == ["0", "1"] and batch[1][1].shape == (3, 20, 30)


@pytest.fixture
def sweep(shared_sweep) -> Path:
    return shared_sweep.out


def _client(out: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("prepared")
    return client, client.search_runs([exp.experiment_id])


@pytest.mark.slow
def test_runs_worth_opening_and_registered_models(sweep):
    client, runs = _client(sweep)
    kinds: dict[str, list] = {}
    for r in runs:
        kinds.setdefault(r.data.tags.get("dkan.run_kind"), []).append(r)
    [base] = kinds["base"]
    assert base.data.params["optim.iterations"] == "3" and "val_AP_base" in base.data.metrics
    assert [m.step for m in client.get_metric_history(base.info.run_id, "loss")] == [1, 2, 3]
    trials = kinds["trial"]
    assert all(r.info.run_name.startswith("trial ") and ": fka " in r.info.run_name for r in trials)
    for r in trials + kinds["candidate"]:  # every run on val, search trials and fixed candidates alike
        dkan = r.data.params["distill.method"] == "dkan"  # its searched values (a baseline has none of DKAN's)
        assert {"optim.lr", "distill.fka_tau", "shots"} <= set(r.data.params)
        assert ("fka_weight" in r.data.params) == dkan
        assert "config.yaml" in {a.path for a in client.list_artifacts(r.info.run_id)}
        assert r.data.tags["dkan.code_version"] and r.data.metrics["cost_cpu_s"] > 0
        [ds] = r.inputs.dataset_inputs
        assert ds.dataset.name == "prepared" and ds.dataset.digest
    [chosen] = [r for r in runs if r.data.tags.get("dkan.selected") == "true"]
    assert "**Recommended**" in chosen.data.tags["mlflow.note.content"]
    [parent] = kinds["sweep"]
    assert {"bundle", f"{KEY}.md"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    names = {m.name for m in client.search_registered_models()}
    assert {"prepared-split1-2shot", "prepared-split1-base"} <= names
    assert parent.data.tags["dkan.model.uri"] == "models:/prepared-split1-2shot/1"


@pytest.mark.slow
def test_copied_run_folder_serves_its_artifacts_and_models(sweep, tmp_path, synthetic_prepared):
    import mlflow

    from dkan.cli import main as dkan_main
    from sweeps.tracking import relocate_store

    copy = tmp_path / "archive" / "sweep"
    shutil.copytree(sweep, copy)
    away = sweep.with_name("away")
    sweep.rename(away)  # only the copy can answer
    try:
        assert relocate_store(copy / "mlflow.db") > 0
        client, runs = _client(copy)
        parent = next(r for r in runs if r.data.tags.get("dkan.run_kind") == "sweep")
        got = client.download_artifacts(parent.info.run_id, f"{KEY}.md", str(tmp_path / "dl"))
        assert "TFA 2-shot" in Path(got).read_text()
        image = next(p for p in synthetic_prepared.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".bmp"))
        uri = f"sqlite:///{copy / 'mlflow.db'}"
        from dkan.inference import using_tracking_uri

        with using_tracking_uri(uri):  # given back as it was: later tests see no MLFLOW_TRACKING_URI
            model = mlflow.pyfunc.load_model("models:/prepared-split1-2shot/1")
            import pandas as pd

            det = model.predict(pd.DataFrame({"image": [str(image)]}), params={"score_thresh": 0.0})
        assert list(det.columns)[:4] == ["image", "category", "category_id", "score"]
        assert set(det["image"]) <= {str(image)} and (det["width"] >= 0).all()
        threads = torch.get_num_threads()
        out_json = tmp_path / "pred.json"
        try:
            rc = dkan_main(["predict", str(image), "--model-uri", "models:/prepared-split1-base/1",
                            "--tracking-uri", uri, "--out", str(out_json), "--device", "cpu"])
        finally:
            torch.set_num_threads(threads)
        assert rc == 0 and len(json.loads(out_json.read_text())["images"]) == 1
    finally:
        away.rename(sweep)


@pytest.mark.slow
def test_bundle_copy_reproduces_the_selected_model_and_predicts(sweep, tmp_path, synthetic_prepared):
    from dkan.cli import main as dkan_main

    bundle = sweep / "best_configs" / KEY
    assert {"config.yaml", "model.pt", "base_model.pt", "classes.txt"} <= {p.name for p in bundle.iterdir()}
    copy = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(bundle, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    prov = cfg["provenance"]
    assert cfg["base_checkpoint"] == "base_model.pt" and cfg["out"] == "reproduce" and prov["model_file"] == "model.pt"
    assert prov["mlflow_model_uri"] == "models:/prepared-split1-2shot/1"
    assert prov["mlflow_base_model_uri"] == "models:/prepared-split1-base/1"
    assert prov["verdict"][0] == prov["recommendation"]["line"] and prov["method"] == "tfa"
    assert (copy / "classes.txt").read_text().split() == prov["classes"]
    threads = torch.get_num_threads()
    try:
        assert dkan_main(["finetune", "--config", str(copy / "config.yaml")]) == 0
        image = next(p for p in synthetic_prepared.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".bmp"))
        rc = dkan_main(["predict", str(image), "--bundle", str(copy), "--out", str(tmp_path / "p.json"),
                        "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    a = torch.load(copy / "model.pt", weights_only=True)["model"]
    b = torch.load(copy / "reproduce" / "model_final.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the bundle re-makes its model bit for bit
    # and its model is the selected trial's fine-tune of the selected seed, as the sweep made it
    _, runs = _client(sweep)
    [chosen] = [r for r in runs if r.data.tags.get("dkan.selected") == "true"]
    trial = sweep / "runs" / KEY / chosen.data.tags["dkan.trial_id"] / f"seed{cfg['fewshot_seed']}"
    t = torch.load(trial / "model_final.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], t[k]) for k in a)
    assert rc == 0 and json.loads((tmp_path / "p.json").read_text())["info"]["model"].endswith("model.pt")
