"""Tune trainables: a search trial (one hyperparameter set over seeds) and a test-phase trial
(one method over seeds). Both run their seeds in one Ray Train run (``run_seeds``) that reports
after every seed: the running mean of AP_base / AP_novel / AP_all and ``seeds_done`` (ASHA's
time axis). A restored trial skips the seeds whose results are on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sweeps.seed_run import WorkerResources, run_seeds

HPARAMS = ("fka_weight", "lka_weight", "fka_tau", "lka_tau")
METRIC = "AP_all"


def seed_config(template: dict[str, Any], hparams: dict[str, float], seed: int, out: str, eval_split: str, method: str = "dkan") -> dict[str, Any]:
    """The fine-tune config of one seed: the template with these hyperparameters."""
    cfg = json.loads(json.dumps(template))
    cfg["distill"].update({k: float(hparams[k]) for k in HPARAMS if k in hparams})
    cfg["distill"]["method"] = method
    cfg.update(fewshot_seed=seed, out=out, eval_split=eval_split)
    return cfg


def search_trial(config: dict[str, Any], *, template: dict[str, Any], seeds: list[int], eval_split: str, runs_dir: str, res: WorkerResources, storage: str) -> None:
    """One hyperparameter set over the seeds, on ``eval_split`` (val; test under --protocol paper)."""
    from ray import tune

    trial = tune.get_context().get_trial_id()
    jobs = [{"seed": s, "cfg": seed_config(template, config, s, str(Path(runs_dir) / trial / f"seed{s}"), eval_split)} for s in seeds]
    run_seeds(jobs, res, trial, storage, "val_" if eval_split == "val" else "test_")


def final_trial(config: dict[str, Any], *, template: dict[str, Any], seeds: list[int], runs_dir: str, res: WorkerResources, storage: str) -> None:
    """One method (the best DKAN config, or TFA) on test over the seeds. A seed whose search
    checkpoint exists (``config["final"]["reuse"][seed]``) is evaluated, not trained again."""
    spec = config["final"]
    method, reuse = spec["method"], spec.get("reuse") or {}
    jobs = [
        {"seed": s, "reuse": reuse.get(str(s)), "cfg": seed_config(template, spec.get("hparams") or {}, s, str(final_dir(runs_dir, method, s)), "test", method)}
        for s in seeds
    ]
    run_seeds(jobs, res, f"final_{method}_{Path(runs_dir).name}", storage, "test_")


def final_dir(runs_dir: str | Path, method: str, seed: int) -> Path:
    return Path(runs_dir) / f"final_{method}" / f"seed{seed}"
