"""The sweep for real: local Ray, Ray Train per seed, Optuna + ASHA, MLflow, export, resume, two nodes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import tiny_model_config

pytestmark = pytest.mark.slow
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
REPO = Path(__file__).resolve().parents[1]


def tiny_args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    model = [
        f"model.{k}={json.dumps(v, separators=(',', ':'))}"
        for k, v in vars(tiny_model_config()).items()
        if k not in ("box_head", "weights")
    ]
    sets = [x for m in model for x in ("--set", m, "--base-set", m)]
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--profile",
        "cpu-quick",
        "--shots",
        "2",
        "--seeds",
        "1-2",
        "--trials",
        "2",
        "--base-iterations",
        "3",
        "--finetune-iterations",
        "2",
        "--grace-seeds",
        "1",
        "--reduction-factor",
        "2",
        "--num-cpus",
        "4",
        *sets,
        "--set",
        "optim.batch_size=2",
        "--base-set",
        "optim.batch_size=2",
        *extra,
    ]


def mlflow_runs(out: Path, experiment: str = "prepared") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id])


def test_tiny_sweep_end_to_end(synthetic_prepared, tmp_path):
    from sweeps.run_tune import main

    out = tmp_path / "sweep"
    assert main(tiny_args(synthetic_prepared, out, tmp_path / "cache")) == 0
    key = "prepared_split1_2shot"
    table = json.loads((out / "results" / f"{key}.json").read_text())
    assert set(table["per_seed"]["dkan"]) == set(table["per_seed"]["tfa"]) == {"1", "2"}
    assert "| TFA 2-shot |" in (out / "results" / f"{key}.md").read_text()
    # the test rows and their statistics, recomputed from the per-seed results
    import numpy as np

    per_seed = table["per_seed"]
    assert set(per_seed) == {"tfa", "dkan", "dkan_defaults", "base"} and set(per_seed["base"]) == {"0"}
    tfa = [per_seed["tfa"][s]["AP_all"] for s in ("1", "2")]
    assert table["table"]["TFA 2-shot"]["AP_all"]["std"] == pytest.approx(np.std(tfa, ddof=1))
    diffs = [per_seed["dkan"][s]["AP_all"] - per_seed["dkan_defaults"][s]["AP_all"] for s in ("1", "2")]
    assert table["stats"]["tuned_vs_defaults"]["mean_diff"] == pytest.approx(np.mean(diffs))
    assert len(table["verdict"]) == 2 and all("seeds" in v for v in table["verdict"])
    # MLflow, read with MLflow's own client
    client, runs = mlflow_runs(out)
    kinds = {}
    for r in runs:
        kinds.setdefault(r.data.tags.get("dkan.run_kind"), []).append(r)
    parent = kinds["sweep"][0]
    assert len(kinds["sweep"]) == 1 and len(kinds["trial"]) == 2
    assert {r.info.run_name for r in kinds["test"]} == {"test: tfa", "test: dkan", "test: dkan_defaults", "test: base"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in kinds["trial"] + kinds["test"])
    assert all(
        r.info.status == "FINISHED" and r.data.tags["dkan.state"].startswith(("completed", "stopped early"))
        for r in kinds["trial"]
    )
    assert {"fka_weight", "lka_weight", "fka_tau", "lka_tau"} <= set(kinds["trial"][0].data.params)
    assert "val_AP_all" in kinds["trial"][0].data.metrics
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "bundle",
        f"{key}.md",
        f"{key}.json",
        f"{key}_per_class_ap.json",
    }
    # the exported bundle, copied elsewhere, re-runs through the CLI to the same weights as the sweep's run
    # of its selected seed (its model.pt)
    bundle = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(out / "best_configs" / key, bundle)
    exported = bundle / "config.yaml"
    cfg = yaml.safe_load(exported.read_text())
    assert cfg["provenance"]["mlflow_run_id"] == parent.info.run_id and cfg["threads"] == 1
    best_trial = next(
        r
        for r in kinds["trial"]
        if all(float(r.data.params[k]) == pytest.approx(v) for k, v in cfg["provenance"]["hyperparameters"].items())
    )
    seed = cfg["fewshot_seed"]
    trial_ckpt = out / "runs" / key / best_trial.data.tags["dkan.trial_id"] / f"seed{seed}" / "model_final.pt"
    from dkan.cli import main as dkan_main

    threads = torch.get_num_threads()
    try:
        assert dkan_main(["finetune", "--config", str(exported)]) == 0
    finally:
        torch.set_num_threads(threads)
    a = torch.load(trial_ckpt, weights_only=False)["model"]
    b = torch.load(bundle / "reproduce" / "model_final.pt", weights_only=False)["model"]
    shipped = torch.load(bundle / "model.pt", weights_only=True)["model"]  # the bundle's model is that seed's
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], shipped[k]) for k in a)


@pytest.mark.parametrize("how", ["ctrl_c", "sigkill"])
def test_interrupted_sweep_resumes_without_losing_or_duplicating_trials(synthetic_prepared, tmp_path, how):
    """Ctrl+C (Tune saves, exit 130), or SIGKILL of the driver and every Ray process it started (a crash),
    mid-search; then --resume: every trial once in MLflow with a final state, no point sampled twice."""
    out = tmp_path / "sweep"
    args = tiny_args(synthetic_prepared, out, tmp_path / "cache", "--trials", "3")
    cmd = [sys.executable, str(REPO / "sweeps" / "run_tune.py"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            start_new_session=True)  # its own process group: the driver and its Ray processes
    # interrupt once the search has reported its first seed result
    deadline = time.time() + 600
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        # the console's line for a trial's first finished seed (Tune's own tables only with --verbose)
        if "mean val_AP_all" in line or "val_AP_all=" in line or not line and proc.poll() is not None:
            break
    assert proc.poll() is None, "".join(lines[-30:])
    if how == "ctrl_c":
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=300)
        assert proc.returncode == 130, "".join(lines[-20:]) + rest[-3000:]
        assert "Resume with the same command plus --resume" in rest
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
    from dkan.names import HPARAMS
    from sweeps.run_tune import main

    assert main([*args, "--resume"]) == 0
    _, runs = mlflow_runs(out)
    trials = [r for r in runs if r.data.tags.get("dkan.run_kind") == "trial"]
    assert len(trials) == 3 and len({r.data.tags["dkan.trial_id"] for r in trials}) == 3
    assert all(r.info.status == "FINISHED" for r in trials), [(r.info.run_name, r.info.status) for r in trials]
    points = {tuple(r.data.params.get(k) for k in HPARAMS) for r in trials}
    assert len(points) == 3  # Optuna's state came back with Tune's: no point proposed twice
    assert len([r for r in runs if r.data.tags.get("dkan.run_kind") == "sweep"]) == 1


def test_two_node_cluster_ddp_finetune_and_tiny_sweep(synthetic_prepared, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from dkan.config import DataConfig, FinetuneConfig, OptimConfig
    from sweeps.jobs import SeedJob, WorkerResources, run_jobs

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        from sweeps.run_tune import main

        # a tiny sweep on the two-node cluster (main connects and disconnects itself)
        assert (
            main(
                tiny_args(
                    synthetic_prepared, tmp_path / "sweep", tmp_path / "cache",
                    "--address",
                    cluster.address,
                    "--trials",
                    "1",
                    "--seeds",
                    "1",
                )
            )
            == 0
        )
        base = next((tmp_path / "cache" / "base").glob("*/model_final.pt"))
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        # 2 DDP workers of 1 CPU on nodes of 1 CPU each: one worker per node
        cfg = FinetuneConfig(
            model=tiny_model_config(box_head="cosine"), data=DataConfig(root=str(synthetic_prepared), split=1),
            optim=OptimConfig(lr=0.01, batch_size=2, iterations=2, warmup_iters=1), base_checkpoint=str(base), shots=2,
            out=str(tmp_path / "ddp"),
        )
        [m] = run_jobs(
            [SeedJob("dkan", 1, cfg)], WorkerResources(workers=2, cpus_per_worker=1.0),
            "ddp2",
            str(tmp_path / "storage"),
        )
        assert m["world_size"] == 2 and "AP_all" in m and (tmp_path / "ddp" / "model_final.pt").exists()
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_own_dataset_with_a_user_given_split_sweeps_end_to_end(tmp_path):
    """A dataset shaped unlike NEU-DET (grayscale tiles, own class names, many small defects, defect-free
    images) swept with --base/--novel: the split's name keys the outputs, the input size comes from the data."""
    from dkan.data.prepare import PrepareConfig, prepare_data
    from sweeps.run_tune import main

    data = tmp_path / "tiles"
    prepare_data(PrepareConfig(out=str(data), synthetic=True, synthetic_kind="tiles", synthetic_images=60,
                               synthetic_size=256, seeds=[1], shots=[2]))
    keep = ("min_size", "max_size", "anchor_sizes", "box_head", "weights")  # the size is the data's choice
    model = [f"model.{k}={json.dumps(v, separators=(',', ':'))}" for k, v in vars(tiny_model_config()).items()
             if k not in keep]
    args = ["--data", str(data), "--out", str(tmp_path / "sweep"), "--cache-dir", str(tmp_path / "cache"),
            "--profile", "cpu-quick", "--shots", "2", "--seeds", "1", "--trials", "1", "--base-iterations", "2",
            "--finetune-iterations", "1", "--num-cpus", "2", "--base", "pit,burr,stain", "--novel", "crack,dent",
            *[x for m in model for x in ("--set", m, "--base-set", m)],
            "--set", "optim.batch_size=2", "--base-set", "optim.batch_size=2"]
    assert main(args) == 0
    key = "tiles_base-pit-burr-stain-novel-crack-dent_2shot"
    results = json.loads((tmp_path / "sweep" / "results" / f"{key}.json").read_text())
    assert set(results["per_seed"]["dkan"]) == {"1"}
    exported = yaml.safe_load((tmp_path / "sweep" / "best_configs" / key / "config.yaml").read_text())
    assert exported["data"]["base"] == ["pit", "burr", "stain"] and exported["data"]["novel"] == ["crack", "dent"]
    assert exported["data"]["split"] is None
    chosen = yaml.safe_load((data / "dataset.yaml").read_text())["input_size"]
    assert exported["model"]["min_size"] == chosen["min_size"]
    assert exported["model"]["anchor_sizes"] == chosen["anchor_sizes"]
    per_class = json.loads((tmp_path / "sweep" / "results" / f"{key}_per_class_ap.json").read_text())
    assert set(next(iter(per_class.values()))) == {"pit", "burr", "stain", "crack", "dent"}
    _, runs = mlflow_runs(tmp_path / "sweep", "tiles")
    assert any(r.info.run_name == "base-pit-burr-stain-novel-crack-dent, 2-shot" for r in runs)


def _node_of_train_worker(timeout: float = 60.0) -> str:
    """The node id of the alive Ray Train worker (read from the GCS's actor table)."""
    from ray._private.state import actors

    end = time.time() + timeout
    while time.time() < end:
        alive = [a for a in actors().values() if a["ActorClassName"] == "RayTrainWorker" and a["State"] == "ALIVE"]
        if alive:
            return alive[0]["Address"]["NodeID"]
        time.sleep(0.2)
    raise AssertionError("no Ray Train worker came up")


def test_worker_node_removed_mid_sweep_is_retried_and_goes_on_at_the_next_seed(synthetic_prepared, tmp_path):
    """Fault 1: the node running a trial's Train worker is removed after its first seed (a spare node is
    up, as an autoscaler's would be): the trial is retried and goes on at seed 2; seed 1 is not re-run.
    (The shared prepared set has seeds 1-2; Ray's Cluster.add_node works only from the main thread.)"""
    import threading

    from ray.cluster_utils import Cluster

    from sweeps.run_tune import main

    # the head holds no CPU: a trial's driver (0.01 CPU) and its 1-CPU worker land on different nodes
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    out = tmp_path / "sweep"
    seen: dict[str, object] = {}

    def remove_the_worker_node_after_seed_1() -> None:
        try:
            end = time.time() + 600
            while time.time() < end:
                done = list((out / "runs").glob("*/*/seed1/metrics.json"))
                if done:
                    break
                time.sleep(0.1)
            else:
                return
            node_id = _node_of_train_worker()
            [victim] = [n for n in nodes if n.node_id == node_id]
            seen["seed1_mtime"] = done[0].stat().st_mtime_ns
            seen["seed1"] = done[0]
            seen["seeds_done_before"] = len(list(done[0].parent.parent.glob("seed*/metrics.json")))
            cluster.remove_node(victim, allow_graceful=False)
            seen["removed"] = node_id
        except Exception as e:  # noqa: BLE001 - reported by the assertions below
            seen["error"] = repr(e)

    watcher = threading.Thread(target=remove_the_worker_node_after_seed_1, daemon=True)
    watcher.start()
    try:
        args = tiny_args(synthetic_prepared, out, tmp_path / "cache", "--address", cluster.address, "--trials", "1",
                         "--seeds", "1-2", "--finetune-iterations", "10")
        assert main(args) == 0
    finally:
        watcher.join(timeout=5)
        cluster.shutdown()
    assert "error" not in seen and "removed" in seen, seen
    assert seen["seeds_done_before"] == 1  # the node went while the trial still had seed 2 to run
    trial_dir = Path(seen["seed1"]).parent.parent
    assert sorted(p.parent.name for p in trial_dir.glob("seed*/metrics.json")) == ["seed1", "seed2"]
    assert Path(seen["seed1"]).stat().st_mtime_ns == seen["seed1_mtime"]  # seed 1 was not run again
    _, runs = mlflow_runs(out)
    [trial] = [r for r in runs if r.data.tags.get("dkan.run_kind") == "trial"]
    assert trial.info.status == "FINISHED" and trial.data.tags["dkan.state"] == "completed", trial.data.tags
