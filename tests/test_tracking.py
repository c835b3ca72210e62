"""MLflow tracking pieces without Ray: artifacts beside the sqlite store (a copied store relocated), batched
params and metrics, the dataset input, the base run's loss curve, trial names, the loss history fit writes."""

from __future__ import annotations

import shutil

import pytest
import yaml

from dkan import runfolder


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module (creating an MLflow database costs seconds)."""
    from sweeps.shell.tracker import Tracker

    out = tmp_path_factory.mktemp("track") / "sweep"
    return out, Tracker(f"sqlite:///{out / 'mlflow.db'}", "prepared")


def test_artifacts_live_beside_the_store_and_follow_a_copy(store, tmp_path):
    from mlflow.tracking import MlflowClient

    from sweeps.shell.tracker import Tracker
    from sweeps.tracking import main as tracking_main
    from sweeps.tracking import relocate_store

    out, tracker = store
    run = tracker.run("r", {"dkan.sweep_key": "copy-test"})
    tracker.client.log_text(run, "hello", "notes/a.txt")
    assert (out / "mlartifacts").is_dir() and any((out / "mlartifacts").rglob("a.txt"))
    exp = tracker.client.get_experiment(tracker.experiment_id)
    assert exp.artifact_location == (out / "mlartifacts").as_uri()

    copy = tmp_path / "elsewhere" / "sweep"
    shutil.copytree(out, copy)
    moved = tmp_path / "gone"
    out.rename(moved)  # the original is away: only the copy can answer
    try:
        assert tracking_main(["relocate", str(copy)]) == 0  # python -m sweeps.tracking relocate RUN_DIR
        assert relocate_store(copy / "mlflow.db") == 0  # done once
        assert tracking_main(["relocate", str(tmp_path / "nothing")]) == 2
        client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
        assert client.get_run(run).info.artifact_uri.startswith((copy / "mlartifacts").as_uri() + "/")
        got = client.download_artifacts(run, "notes/a.txt", str(tmp_path / "dl"))
        assert open(got).read() == "hello"
        # a Tracker opened on the copy relocates by itself (and finds the experiment)
        assert Tracker(f"sqlite:///{copy / 'mlflow.db'}", "prepared").experiment_id == tracker.experiment_id
    finally:
        moved.rename(out)


def test_params_and_metric_series_are_batched(store):
    from sweeps.tracking import flatten

    _, tracker = store
    params = {f"p{i}": i for i in range(130)}  # more than one log_batch of params
    run = tracker.run("batch", {"dkan.sweep_key": "batch"}, params)
    tracker.series(run, [("loss", 1.0 / (i + 1), i) for i in range(1200)] + [("nan", float("nan"), 0)])
    data = tracker.client.get_run(run).data
    assert len(data.params) == 130 and data.params["p129"] == "129"
    history = tracker.client.get_metric_history(run, "loss")
    assert len(history) == 1200 and sorted(m.step for m in history)[-1] == 1199
    assert "nan" not in data.metrics
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}


def test_dataset_input_names_the_prepared_data_and_its_manifest_digest(store, synthetic_prepared):
    import hashlib

    _, tracker = store
    run = tracker.run("ds", {"dkan.sweep_key": "ds"})
    tracker.dataset(run, synthetic_prepared, "train")
    [inp] = tracker.client.get_run(run).inputs.dataset_inputs
    assert inp.dataset.name == synthetic_prepared.name
    assert inp.dataset.digest == hashlib.sha256((synthetic_prepared / "dataset.yaml").read_bytes()).hexdigest()[:16]
    assert str(synthetic_prepared) in inp.dataset.source and inp.tags[0].value == "train"


def test_base_run_has_config_metrics_and_loss_curve(store, synthetic_prepared, tmp_path):
    from sweeps.outputs.mlflow_log import log_base_run

    out, tracker = store
    folder = tmp_path / "base"
    runfolder.write_yaml(folder / runfolder.CONFIG, {"optim": {"lr": 0.02, "iterations": 3}, "data": {"split": 1}})
    runfolder.write_json(folder / runfolder.METRICS, {"AP_base": 0.25, "train_seconds": 1.5})
    for it in (1, 2, 3):
        runfolder.append_jsonl(folder / runfolder.HISTORY, {"iteration": it, "loss": 3.0 - it, "lr": 0.02})
    run = log_base_run(tracker, out, "split1", folder / runfolder.FINAL, synthetic_prepared)
    assert log_base_run(tracker, out, "split1", folder / runfolder.FINAL, synthetic_prepared) == run  # resume-safe
    r = tracker.client.get_run(run)
    assert r.data.tags["dkan.run_kind"] == "base" and r.info.status == "FINISHED"
    assert r.data.params["optim.lr"] == "0.02" and r.data.metrics["val_AP_base"] == 0.25
    assert [(m.step, m.value) for m in tracker.client.get_metric_history(run, "loss")] == [(1, 2.0), (2, 1.0), (3, 0.0)]
    assert [a.path for a in tracker.client.list_artifacts(run)] == ["config.yaml"]


def test_trial_names_read_like_their_hyperparameters():
    from sweeps.shell.trial_logger import trial_name

    hp = {"fka_weight": 0.4412, "lka_weight": 0.01436, "fka_tau": 2.0}
    assert trial_name(3, hp) == "trial 3: fka 0.44 / lka 0.014"
    assert trial_name(1, {}) == "trial 1"


def test_two_run_folders_sharing_a_store_number_and_find_only_their_own_trials(store, synthetic_prepared):
    """The same study key in two run folders (one tracking server): each study's trials are numbered from 1
    and found again (a resume) under their own study's run."""
    from types import SimpleNamespace

    from sweeps.outputs.mlflow_log import log_trials
    from sweeps.shell.trial_logger import TrialLogger

    out, tracker = store
    key, names = "shared_split1_1shot", {}
    for folder in ("a", "b"):
        tags = {"dkan.sweep_key": f"{folder}|{key}", "dkan.run_kind": "sweep"}
        parent = tracker.run(f"{folder}: split1, 1-shot", tags)
        logger = TrialLogger(tracker.uri, "prepared", parent, key, 2)
        for i in (1, 2):
            logger.on_trial_start(0, [], SimpleNamespace(trial_id=f"t{i}", config={"fka_weight": float(i)}))
        runs = {t: tracker.client.get_run(r) for t, r in logger.run_ids.items()}
        names[folder] = sorted(r.info.run_name for r in runs.values())
        assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parent}
        again = TrialLogger(tracker.uri, "prepared", parent, key, 2)  # a resume finds the same runs
        again.on_trial_start(0, [], SimpleNamespace(trial_id="t1", config={"fka_weight": 1.0}))
        assert again.run_ids["t1"] == logger.run_ids["t1"]
        done = {"trial_id": "t2", "config": {"seed": 1}, "wall_s": 1.0, "state": "completed", "seeds_done": 2}
        log_trials(tracker, key, [done], "t2", "chosen", synthetic_prepared, "v", (1, 0), parent)
        assert tracker.client.get_run(logger.run_ids["t2"]).data.tags.get("dkan.selected") == "true"
    assert names["a"] == names["b"] == ["trial 1: fka 1", "trial 2: fka 2"]


def test_registered_names_are_sanitised():
    from sweeps.outputs.registry import registered_name

    assert registered_name("NEU-DET", "split1", "5shot") == "NEU-DET-split1-5shot"
    assert registered_name("my data", "base-a/b", "base") == "my-data-base-a-b-base"


def test_fit_writes_a_loss_history(synthetic_prepared, tmp_path):
    from dkan.engine.train import fit
    from tests.test_train import base_cfg

    fit(base_cfg(synthetic_prepared, tmp_path / "b"), progress=False)
    rows = runfolder.read_jsonl(tmp_path / "b" / runfolder.HISTORY)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and "lr" in r and any(k.startswith("loss_") for k in r) for r in rows)
    assert yaml.safe_load((tmp_path / "b" / runfolder.CONFIG).read_text())["optim"]["iterations"] == 4
