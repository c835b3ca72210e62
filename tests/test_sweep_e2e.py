"""The sweep for real: local Ray, Ray Train per seed, Optuna + the race scheduler (and ASHA), MLflow, export,
resume, a cluster.

The first tests read the session's shared sweep (``tests.sweeps_shared``: interrupted by Ctrl+C and by
SIGKILL, resumed, with another sweep beside it); the last one runs its own sweep on a multi-node
``ray.cluster_utils.Cluster``."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.sweeps_shared import KEY

pytestmark = pytest.mark.slow
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def mlflow_runs(out: Path, experiment: str = "prepared") -> tuple:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id])


def _kinds(runs) -> dict[str, list]:
    kinds: dict[str, list] = {}
    for r in runs:
        kinds.setdefault(r.data.tags.get("dkan.run_kind"), []).append(r)
    return kinds


def test_tiny_sweep_end_to_end(shared_sweep):
    """Candidates on val, the rule, the test phase evaluating their checkpoints, statistics, MLflow; a
    baseline (TFA) recommended, and every output says so and ships it."""
    out = shared_sweep.out
    table = json.loads((out / "results" / f"{KEY}.json").read_text())
    md = (out / "results" / f"{KEY}.md").read_text()
    assert "| TFA 2-shot |" in md
    rec = table["recommendation"]
    assert rec["candidate"] == "tfa" and rec["method"] == "tfa"
    # the default space searches the lr too: TFA's one run is at the profile's (a baseline's trials at --trials 2)
    assert rec["line"].startswith("recommended: TFA optim.lr 0.01: best on val")
    assert md.count("recommended: ") == 1 and table["verdict"][0] == rec["line"]
    assert all(not st["replaced"] for st in table["candidates"]["steps"])  # a margin of 99 points: TFA stays
    # every candidate on test, from its val checkpoints (nothing fine-tuned on test), and their statistics
    per_seed = table["per_seed"]
    assert {"tfa", "plain", "dkan_defaults", "base"} <= set(per_seed) <= {"tfa", "plain", "dkan_defaults", "dkan",
                                                                        "base"}
    assert set(per_seed["base"]) == {"0"} and all(set(per_seed[r]) == {"1", "2"} for r in per_seed if r != "base")
    assert not list((out / "runs" / KEY).glob("test_*/seed*/model_final.pt"))
    tfa = [per_seed["tfa"][s]["AP_all"] for s in ("1", "2")]
    assert table["table"]["TFA 2-shot"]["AP_all"]["std"] == pytest.approx(np.std(tfa, ddof=1))
    for other in set(per_seed) - {"tfa", "base"}:
        diffs = [per_seed["tfa"][s]["AP_all"] - per_seed[other][s]["AP_all"] for s in ("1", "2")]
        assert table["stats"][f"tfa_vs_{other}"]["mean_diff"] == pytest.approx(np.mean(diffs))
    # the val candidates' own per-seed scores are the ones the rule compared
    val = table["candidates"]["candidates"]
    assert set(val) >= {"tfa", "plain", "dkan_defaults"} and all(len(c["seed_objective"]) == 2 for c in val.values())
    # MLflow, read with MLflow's own client
    client, runs = mlflow_runs(out)
    kinds = _kinds(runs)
    [parent] = kinds["sweep"]
    assert len(kinds["trial"]) == 2 and len(kinds["candidate"]) == 3
    assert {r.info.run_name for r in kinds["candidate"]} == {"candidate: tfa", "candidate: plain",
                                                             "candidate: dkan_defaults"}
    assert {r.info.run_name for r in kinds["test"]} == {f"test: {r}" for r in per_seed}
    children = kinds["trial"] + kinds["candidate"] + kinds["test"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert all(r.info.status == "FINISHED" and r.data.tags["dkan.state"].startswith(("completed", "stopped early"))
               for r in kinds["trial"] + kinds["candidate"])
    assert {"fka_weight", "lka_weight", "fka_tau", "lka_tau"} <= set(kinds["trial"][0].data.params)
    assert "val_AP_all" in kinds["trial"][0].data.metrics
    [chosen] = [r for r in runs if r.data.tags.get("dkan.selected") == "true"]
    assert chosen.info.run_name == "candidate: tfa" and parent.data.tags["dkan.recommended"] == "tfa"
    assert parent.data.tags["dkan.recommendation"] == rec["line"]
    exp = client.get_experiment_by_name("prepared")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens it on training runs
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "bundle", "plots", f"{KEY}.md", f"{KEY}.json", f"{KEY}_per_class_ap.json"}
    # what ships is the recommendation: the bundle's model and config, the registered model and its alias
    cfg = yaml.safe_load((out / "best_configs" / KEY / "config.yaml").read_text())
    assert cfg["provenance"]["mlflow_run_id"] == parent.info.run_id and cfg["threads"] == 1
    assert cfg["distill"]["method"] == "tfa" and cfg["provenance"]["recommendation"]["line"] == rec["line"]
    assert cfg["provenance"]["mlflow_model_alias"] == "models:/prepared-split1-2shot@champion"
    version = client.get_model_version_by_alias("prepared-split1-2shot", "champion")
    assert cfg["provenance"]["mlflow_model_uri"] == f"models:/prepared-split1-2shot/{version.version}"
    assert {p.name for p in (out / "plots" / KEY).glob("*.png")} >= {"pr_curves.png", "seed_spread.png", "hparams.png"}
    report = (out / "report.md").read_text()
    assert report.startswith("# Sweep report") and f"- **{KEY}**: {rec['line']}" in report
    assert (out / "report.html").is_file()
    # storage: the seeds' model files are deltas (the bundle's against its own base), and once the study
    # selected, the search trials no candidate stands on lost theirs (metrics kept, MLflow told); the
    # candidates' every seed kept (the test phase evaluated them)
    from dkan.model.checkpoint import is_delta

    trial_of = {r.data.tags["dkan.trial_id"]: r for r in kinds["trial"] + kinds["candidate"]}
    pruned = {p.parent.parent.name for p in (out / "runs" / KEY).glob("*/seed*/pruned.json")}
    assert 1 <= len(pruned) <= 2 and all(trial_of[t].data.tags["dkan.run_kind"] == "trial" for t in pruned)
    assert all(client.get_run(trial_of[t].info.run_id).data.tags["dkan.checkpoint"] == "pruned" for t in pruned)
    for t in pruned:
        for seed_dir in (out / "runs" / KEY / t).glob("seed*"):
            assert not (seed_dir / "model_final.pt").exists() and (seed_dir / "metrics.json").is_file()
    for r in kinds["candidate"]:
        files = [out / "runs" / KEY / r.data.tags["dkan.trial_id"] / f"seed{s}" / "model_final.pt" for s in (1, 2)]
        assert all(f.is_file() and is_delta(f) for f in files), files
    assert is_delta(out / "best_configs" / KEY / "model.pt")
    # the logged (registered) model is the delta and its base beside it; the base file is one file in the folder
    logged = [p for p in out.glob("mlartifacts/**/artifacts/base_model.pt")]
    assert logged and all(os.path.samefile(p, out / "best_configs" / KEY / "base_model.pt") for p in logged)
    # the estimate made before the study beside what it cost; the study's own rates calibrate the next one
    cost = table["cost"]
    assert cost["estimate"]["finetunes"] >= cost["actual"]["seed_finetunes"] >= 2 * 3  # 3 candidates x 2 seeds
    assert cost["actual"]["test_evaluations"] == 2 * (len(per_seed) - 1) + 1 and cost["actual"]["disk_mb"] > 0
    # in units: each finished seed fine-tune once (2 iterations x batch 2), although the sweep was resumed twice
    assert cost["actual"]["finetune_images"] >= cost["actual"]["seed_finetunes"] * 2 * 2  # one finished after its
    assert cost["actual"]["finetune_images"] % (2 * 2) == 0  # last iteration has no step rate: counted here only
    assert cost["actual"]["finetune_images"] <= cost["estimate"]["finetune_images"]
    assert "cost: estimated " in md and " actual " in md
    calibrated = json.loads((out.parent / "cache" / "calibration" / "cpu-quick_w1.json").read_text())
    assert calibrated["s_per_iter"] > 0 and calibrated["source"] == f"calibrated on this cluster ({KEY})"


def test_interrupted_sweep_resumes_without_losing_or_duplicating_trials(shared_sweep):
    """Ctrl+C mid-search (Tune saves, exit 130), then SIGKILL of the resumed driver alone (a crash: nothing its
    Ray ran outlives it by more than a few seconds, the agents Ray keeps a minute included), then --resume:
    every trial once in MLflow with a final state, no point sampled twice."""
    from dkan.names import HPARAMS

    c, k = shared_sweep.ctrl_c, shared_sweep.sigkill
    assert c["seen"] and c["code"] == 130, c["output"]
    assert "Resume with the same command plus --resume" in c["output"]
    assert k["seen"] and k["code"] == -signal.SIGKILL, k
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= set(k["ray_processes"]), k
    assert k["gone_after_s"] is not None and k["gone_after_s"] <= 10, k
    _, runs = mlflow_runs(shared_sweep.out)
    trials = _kinds(runs)["trial"] + _kinds(runs)["candidate"]
    assert len(trials) == 5 and len({r.data.tags["dkan.trial_id"] for r in trials}) == 5
    assert all(r.info.status == "FINISHED" for r in trials), [(r.info.run_name, r.info.status) for r in trials]
    points = {tuple(r.data.params.get(k) for k in HPARAMS) for r in _kinds(runs)["trial"]}
    assert len(points) == 2 and ("1.0", "0.01", "5.0", "5.0") not in points  # Optuna's state came back: the
    # defaults (run as a candidate, told to the search) were not sampled again, nor any point twice
    assert len(_kinds(runs)["sweep"]) == 1


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


def test_own_dataset_on_a_cluster_that_loses_a_node_then_ddp_across_two_nodes(tmp_path):
    """One sweep on a 3-node cluster (``--address``) of a data set shaped unlike NEU-DET (grayscale tiles, own
    class names, many small defects, defect-free images) with ``--base/--novel``: the split's name keys the
    outputs and the input size comes from the data. The node running the trial's Train worker is removed
    after its first seed (a spare is up, as an autoscaler's would be): the trial is retried and goes on at
    seed 2, seed 1 is not re-run. Then a 2-worker DDP fine-tune on the two nodes left, one worker each."""
    import threading

    import ray
    from ray.cluster_utils import Cluster

    from dkan.config import DataConfig, FinetuneConfig, OptimConfig
    from dkan.data.prepare import PrepareConfig, prepare_data
    from sweeps.core.jobspec import SeedJob, WorkerResources
    from sweeps.run_tune import main
    from sweeps.shell.jobs import run_jobs
    from tests.conftest import tiny_model_config

    data = tmp_path / "tiles"
    prepare_data(PrepareConfig(out=str(data), synthetic=True, synthetic_kind="tiles", synthetic_images=60,
                               synthetic_size=256, seeds=[1, 2], shots=[2]))
    keep = ("min_size", "max_size", "anchor_sizes", "box_head", "weights")  # the size is the data's choice
    model = [f"model.{k}={json.dumps(v, separators=(',', ':'))}" for k, v in vars(tiny_model_config()).items()
             if k not in keep]
    out = tmp_path / "sweep"
    # the head holds no CPU: a trial's driver (0.01 CPU) and its 1-CPU worker land on different nodes
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    seen: dict[str, object] = {}

    def remove_the_worker_node_after_seed_1() -> None:
        try:
            end = time.time() + 900
            while time.time() < end:
                done = list((out / "runs").glob("*/*/seed1/metrics.json"))
                if done:
                    break
                time.sleep(0.1)
            else:
                return
            [victim] = [n for n in nodes if n.node_id == _node_of_train_worker()]
            seen.update(seed1=done[0], seed1_mtime=done[0].stat().st_mtime_ns,
                        seeds_done_before=len(list(done[0].parent.parent.glob("seed*/metrics.json"))))
            cluster.remove_node(victim, allow_graceful=False)
            seen["removed"] = victim
        except Exception as e:  # noqa: BLE001 - reported by the assertions below
            seen["error"] = repr(e)

    watcher = threading.Thread(target=remove_the_worker_node_after_seed_1, daemon=True)
    watcher.start()
    try:
        args = ["--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--address",
                cluster.address, "--profile", "cpu-quick", "--shots", "2", "--seeds", "1-2", "--trials", "1",
                "--candidates", "tfa", "--base-iterations", "2", "--finetune-iterations", "10",
                "--base", "pit,burr,stain", "--novel", "crack,dent",
                *[x for m in model for x in ("--set", m, "--base-set", m)],
                "--set", "optim.batch_size=2", "--base-set", "optim.batch_size=2"]
        assert main(args) == 0
        watcher.join(timeout=5)
        assert "error" not in seen and "removed" in seen, seen
        # DDP: 2 workers of 1 CPU on the two nodes of 1 CPU left: one worker per node
        base = next((tmp_path / "cache" / "base").glob("*/model_final.pt"))
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")]) == 2
        cfg = FinetuneConfig(
            model=replace(_base_model(base), box_head="cosine"),
            data=DataConfig(root=str(data), split=None, base=["pit", "burr", "stain"], novel=["crack", "dent"]),
            optim=OptimConfig(lr=0.01, batch_size=2, iterations=2, warmup_iters=1), base_checkpoint=str(base),
            shots=2, out=str(tmp_path / "ddp"))
        [m] = run_jobs([SeedJob("dkan", 1, cfg)], WorkerResources(workers=2, cpus_per_worker=1.0), "ddp2",
                       str(tmp_path / "storage"))
        assert m["world_size"] == 2 and "AP_all" in m and (tmp_path / "ddp" / "model_final.pt").exists()
    finally:
        ray.shutdown()
        cluster.shutdown()
    # the node loss: retried, seed 1 kept
    assert seen["seeds_done_before"] == 1  # the node went while the trial still had seed 2 to run
    trial_dir = Path(seen["seed1"]).parent.parent
    assert sorted(p.parent.name for p in trial_dir.glob("seed*/metrics.json")) == ["seed1", "seed2"]
    assert Path(seen["seed1"]).stat().st_mtime_ns == seen["seed1_mtime"]  # seed 1 was not run again
    key = "tiles_base-pit-burr-stain-novel-crack-dent_2shot"
    _, runs = mlflow_runs(out, "tiles")
    [trial] = [r for r in runs if r.data.tags.get("dkan.run_kind") == "candidate" and "tfa" in r.info.run_name]
    assert trial.info.status == "FINISHED" and trial.data.tags["dkan.state"] == "completed", trial.data.tags
    assert any(r.info.run_name == "base-pit-burr-stain-novel-crack-dent, 2-shot" for r in runs)
    # the data set's own classes and input size
    results = json.loads((out / "results" / f"{key}.json").read_text())
    assert set(results["per_seed"]["tfa"]) == {"1", "2"}
    exported = yaml.safe_load((out / "best_configs" / key / "config.yaml").read_text())
    assert exported["distill"]["method"] == results["recommendation"]["method"]  # what ships is what is said
    assert exported["data"]["base"] == ["pit", "burr", "stain"] and exported["data"]["novel"] == ["crack", "dent"]
    assert exported["data"]["split"] is None
    chosen = yaml.safe_load((data / "dataset.yaml").read_text())["input_size"]
    assert exported["model"]["min_size"] == chosen["min_size"]
    assert exported["model"]["anchor_sizes"] == chosen["anchor_sizes"]
    per_class = json.loads((out / "results" / f"{key}_per_class_ap.json").read_text())
    assert set(next(iter(per_class.values()))) == {"pit", "burr", "stain", "crack", "dent"}


def _base_model(path: Path):
    """The model config a base checkpoint was trained with (the student must share its input size)."""
    from dkan.config import BaseTrainConfig, from_dict
    from dkan.model.checkpoint import load_checkpoint

    return from_dict(BaseTrainConfig, load_checkpoint(path)["meta"]["config"]).model


def test_two_sweeps_on_one_machine_both_complete(shared_sweep):
    """Each sweep starts its own local Ray; ASHA stops a trial in B (its Train run is killed, and Ray Train's
    cleaner must free its CPUs in the right cluster) while A races. Both finish; before the fix both hung."""
    assert shared_sweep.other_code == 0, shared_sweep.other_log
    assert (shared_sweep.other_out / "results" / f"{KEY}.json").is_file()
    assert (shared_sweep.out / "results" / f"{KEY}.json").is_file()


def test_the_console_ends_the_study_with_its_recommendation_and_no_library_chatter(shared_sweep):
    """Sweep B's whole console (stdout and stderr, a plain run without --verbose)."""
    console = shared_sweep.other_console
    assert console.count(f"[{KEY}] recommended: ") == 1
    for chatter in ("View detailed results", "TensorBoard", "Token authentication is enabled", "Add type hints",
                    "Downloading artifacts"):
        assert chatter not in console, chatter
    assert not re.search(r"\sINFO\s", console)  # Ray's, MLflow's and Optuna's log lines at INFO
