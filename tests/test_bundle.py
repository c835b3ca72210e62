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
from PIL import Image

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
def bundle(tmp_path, synthetic_prepared) -> Path:
    """A bundle exported the way a sweep's is (``write_bundle``) around a random-weight tiny model."""
    from conftest import tiny_model_config

    from dkan.bundle import write_bundle
    from dkan.config import FinetuneConfig, to_dict
    from dkan.data.splits import NEU_DET_SPLITS
    from dkan.model.checkpoint import save_checkpoint
    from dkan.model.detector import build_detector

    torch.manual_seed(0)
    classes = list(NEU_DET_SPLITS[1].base) + list(NEU_DET_SPLITS[1].novel)
    cfg = to_dict(FinetuneConfig(model=tiny_model_config(min_size=64, max_size=64)))
    cfg["data"]["root"] = str(synthetic_prepared)
    meta = {"stage": "finetune", "classes": classes, "base": classes[:3], "novel": classes[3:], "config": cfg,
            "iteration": 0}
    model = build_detector(FinetuneConfig(model=tiny_model_config(min_size=64, max_size=64)).model, len(classes))
    ckpt = tmp_path / "ft" / "model_final.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "meta": meta})
    save_checkpoint(tmp_path / "base" / "model_final.pt", {"model": model.state_dict(), "meta": meta})
    return write_bundle(tmp_path / "bundle", cfg, tmp_path / "base" / "model_final.pt", ckpt, classes, {"sweep": "t"})


def _predict(bundle: Path, image: Path, capsys) -> tuple[int, str]:
    from dkan.cli import main

    capsys.readouterr()
    code = main(["predict", "--bundle", str(bundle), str(image), "--out", str(bundle.parent / "det.json"),
                 "--device", "cpu"])
    return code, capsys.readouterr().err


def _rewrite_model(path: Path, change) -> None:
    """``path``'s checkpoint changed by ``change(payload)`` and saved again (a new file: the bundle's weights
    are hard links of the run folder's)."""
    from dkan.model.checkpoint import save_checkpoint

    payload = torch.load(path, map_location="cpu", weights_only=True)
    change(payload)
    path.unlink()
    save_checkpoint(path, payload)


def test_a_bundle_loads_only_as_exported(bundle, tmp_path, capsys):
    from dkan.bundle import CONFIG, MANIFEST, MODEL, check_bundle

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(image)
    assert json.loads((bundle / MANIFEST).read_text())["files"].keys() == {"config.yaml", "model.pt",
                                                                           "base_model.pt", "classes.txt"}
    assert _predict(bundle, image, capsys)[0] == 0  # as exported: runs
    (bundle.parent / "det.json").unlink()
    edited = bundle.parent / "edited"  # config.yaml is the input `dkan finetune --config` may be handed edited
    shutil.copytree(bundle, edited)
    cfg = yaml.safe_load((edited / CONFIG).read_text())
    (edited / CONFIG).write_text(yaml.safe_dump({**cfg, "fewshot_seed": 7}))
    check_bundle(edited / CONFIG, cfg, skip=(CONFIG,))  # what finetune --config checks: the rest, unchanged
    code, err = _predict(edited, image, capsys)
    assert code == 2 and "config.yaml: changed since the bundle was written" in err  # what predict runs: all of it

    def new_head(payload):  # the box predictor changed after export
        payload["model"]["roi_heads.box_predictor.cls_score.weight"] += 1.0

    _rewrite_model(bundle / MODEL, new_head)
    code, err = _predict(bundle, image, capsys)
    assert code == 2 and "model.pt: changed since the bundle was written (" in err
    assert "Fix: re-export it" in err and not (bundle.parent / "det.json").exists()


def test_one_flipped_byte_is_refused_on_every_path(bundle, tmp_path, capsys):
    from types import SimpleNamespace

    from dkan.bundle import MODEL, BundleError
    from dkan.cli import main
    from sweeps.outputs.pyfunc_model import DetectorModel
    from sweeps.outputs.registry import model_artifacts

    model = bundle / MODEL
    own = tmp_path / "own.pt"  # the MLflow model's file: its own copy, as MLflow keeps it
    shutil.copy(model, own)
    artifacts = model_artifacts(own, str(tmp_path))
    DetectorModel().load_context(SimpleNamespace(artifacts=artifacts))  # as logged: loads
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.unlink()  # a new file: the bundle's weights are hard links of the run folder's
    model.write_bytes(bytes(data))
    own.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"own.pt: changed since the MLflow model was written \(content hash"):
        DetectorModel().load_context(SimpleNamespace(artifacts=artifacts))
    capsys.readouterr()
    assert main(["finetune", "--config", str(bundle / "config.yaml"), "--set", "optim.iterations=1"]) == 2
    err = capsys.readouterr().err
    assert "model.pt: changed since the bundle was written" in err and not (bundle / "reproduce").exists()
    no_manifest = {k: v for k, v in artifacts.items() if k != "manifest"}
    with pytest.raises(BundleError, match="carries no manifest.*Fix: use the study's bundle"):
        DetectorModel().load_context(SimpleNamespace(artifacts=no_manifest))


def test_classes_edited_or_not_matching_the_model_are_refused(bundle, tmp_path, capsys):
    from dkan.bundle import BASE, CLASSES, CONFIG, MANIFEST, MODEL, write_manifest
    from dkan.cli import main

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(image)
    cfg = yaml.safe_load((bundle / CONFIG).read_text())
    five = cfg["provenance"]["classes"][:5]
    cfg["provenance"]["classes"] = five
    (bundle / CONFIG).write_text(yaml.safe_dump(cfg))
    (bundle / CLASSES).write_text("".join(f"{c}\n" for c in five))
    code, err = _predict(bundle, image, capsys)
    assert code == 2 and "config.yaml: changed since the bundle was written (" in err
    # the manifest made again over the edited files: the classes still disagree with the model's
    write_manifest(bundle / MANIFEST, {n: bundle / n for n in (CONFIG, MODEL, BASE, CLASSES)})
    code, err = _predict(bundle, image, capsys)
    assert code == 2 and f"{bundle / MODEL} (meta.classes): 6 classes" in err and "has 5 classes" in err
    (bundle / MANIFEST).unlink()  # no manifest at all: refused, with how to get one
    code, err = _predict(bundle, image, capsys)
    assert code == 2 and "manifest.json: missing" in err and "dkan sweep --resume --out RUN_FOLDER" in err
    assert main(["finetune", "--config", str(bundle / CONFIG)]) == 2
    assert "manifest.json: missing" in capsys.readouterr().err and not (bundle / "reproduce").exists()


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


def test_a_saved_mlflow_model_checks_its_files_when_it_loads(bundle, tmp_path):
    import mlflow

    from dkan.bundle import MODEL, BundleError
    from dkan.inference import load_model_uri
    from sweeps.outputs.registry import PYFUNC_FILE, model_artifacts

    staged = tmp_path / "staged"
    staged.mkdir()
    saved = tmp_path / "mlmodel"
    mlflow.pyfunc.save_model(path=str(saved), python_model=str(PYFUNC_FILE), pip_requirements=["pandas"],
                             artifacts=model_artifacts(bundle / MODEL, str(staged)))
    assert (saved / "artifacts" / "manifest.json").is_file()
    assert mlflow.pyfunc.load_model(str(saved)).unwrap_python_model().loaded.classes
    assert load_model_uri(saved.as_uri()).classes  # `dkan predict --model-uri`: the same files, checked
    model = saved / "artifacts" / MODEL
    data = bytearray(model.read_bytes())
    data[-100] ^= 0x01
    model.unlink()
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"artifacts/model\.pt: changed since the MLflow model was written"):
        mlflow.pyfunc.load_model(str(saved))
    with pytest.raises(BundleError, match=r"model\.pt: changed since the MLflow model was written.*Fix: log the model"):
        load_model_uri(saved.as_uri())
