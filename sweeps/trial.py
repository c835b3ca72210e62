"""Tune trainables: a search trial (one hyperparameter set over seeds) and a test-phase trial
(a packed share of the best config's and TFA's (method, seed) jobs). Both run their jobs in one
Ray Train run (``run_seeds``) that reports after every seed; a search trial's reports carry the
running mean of AP_base / AP_novel / AP_all and ``seeds_done`` (ASHA's time axis). A restored
trial skips the seeds whose results are on disk.
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


def final_trial(config: dict[str, Any], *, template: dict[str, Any], runs_dir: str, res: WorkerResources, storage: str) -> None:
    """A share of the test phase: ``config["final"]`` lists (method, seed) jobs, the best DKAN
    config's and TFA's mixed. A job with a search checkpoint (``reuse``) is evaluated, not
    trained again; results land in ``final_dir``."""
    from ray import tune

    jobs = [
        {"seed": j["seed"], "label": f"{j['method']}/{j['seed']}", "reuse": j.get("reuse"),
         "cfg": seed_config(template, j.get("hparams") or {}, j["seed"], str(final_dir(runs_dir, j["method"], j["seed"])), "test", j["method"])}
        for j in config["final"]
    ]
    run_seeds(jobs, res, f"final_{tune.get_context().get_trial_id()}", storage, None)


def pack(jobs: list[dict[str, Any]], bins: int) -> list[list[dict[str, Any]]]:
    """Jobs into at most ``bins`` groups of about equal cost (largest first, each to the lightest
    group): evaluating a reused checkpoint costs about a third of a fine-tune."""
    cost = lambda j: 1.0 if j.get("reuse") else 3.0  # noqa: E731
    groups: list[list[dict[str, Any]]] = [[] for _ in range(max(1, min(bins, len(jobs))))]
    for j in sorted(jobs, key=cost, reverse=True):
        min(groups, key=lambda g: sum(map(cost, g))).append(j)
    return [sorted(g, key=lambda j: (j["method"], j["seed"])) for g in groups if g]


def final_dir(runs_dir: str | Path, method: str, seed: int) -> Path:
    return Path(runs_dir) / f"final_{method}" / f"seed{seed}"
