"""The test phase of one study: the selected config and TFA over every seed, on test.

Their (method, seed) jobs are packed into as many trials as run at once, each one Ray Train run.
A seed the search already fine-tuned with the selected config is evaluated, not trained again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import tune

from dkan import runfolder
from sweeps.jobs import SeedJob, finetune_job, run_jobs
from sweeps.plan import DRIVER_CPU, Plan, Study
from sweeps.search import fit_tuner

REUSE_COST, TRAIN_COST = 1.0, 3.0  # evaluating a reused checkpoint costs about a third of a fine-tune


def final_dir(runs_dir: Path, method: str, seed: int) -> Path:
    return Path(runs_dir) / f"final_{method}" / f"seed{seed}"


def final_jobs(plan: Plan, study: Study, trial_id: str, hparams: dict[str, float]) -> list[SeedJob]:
    """DKAN with ``hparams`` (reusing the search trial's checkpoints that exist) and TFA, every seed."""
    jobs = []
    for s in plan.seeds:
        ckpt = study.runs_dir / trial_id / f"seed{s}" / runfolder.FINAL
        reuse = str(ckpt) if ckpt.is_file() else None  # a seed the trial did not finish is fine-tuned here
        out = final_dir(study.runs_dir, "dkan", s)
        jobs.append(finetune_job(study.template, "dkan", s, out, "test", hparams, reuse))
    tfa = [finetune_job(study.template, "tfa", s, final_dir(study.runs_dir, "tfa", s), "test") for s in plan.seeds]
    return jobs + tfa


def pack(jobs: list[SeedJob], bins: int) -> list[list[SeedJob]]:
    """Jobs into at most ``bins`` groups of about equal cost (largest first, each to the lightest group)."""
    def cost(j: SeedJob) -> float:
        return REUSE_COST if j.reuse else TRAIN_COST

    groups: list[list[SeedJob]] = [[] for _ in range(max(1, min(bins, len(jobs))))]
    for j in sorted(jobs, key=cost, reverse=True):
        min(groups, key=lambda g: sum(map(cost, g))).append(j)
    return [sorted(g, key=lambda j: (j.method, j.seed)) for g in groups if g]


def final_trial(config: dict[str, Any], *, plan: Plan, groups: list[list[SeedJob]]) -> None:
    """One share of the test phase: the packed group ``config["group"]``."""
    name = f"final_{tune.get_context().get_trial_id()}"
    run_jobs(groups[config["group"]], plan.resources, name, plan.train_storage, in_trial=True)


def run_test_phase(plan: Plan, study: Study, trial_id: str, hparams: dict[str, float],
                   resume: bool) -> dict[str, dict[int, dict[str, float]]]:
    """{method: {seed: AP metrics}} on test for the selected DKAN config and TFA."""
    jobs = final_jobs(plan, study, trial_id, hparams)
    groups = pack(jobs, plan.max_concurrent)
    path = plan.out / "ray_results" / f"{study.key}_test"
    trainable = tune.with_resources(tune.with_parameters(final_trial, plan=plan, groups=groups), {"cpu": DRIVER_CPU})
    grid = fit_tuner(path, trainable, resume, lambda: tune.Tuner(
        trainable, param_space={"group": tune.grid_search(list(range(len(groups))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=plan.max_concurrent),
        run_config=tune.RunConfig(name=path.name, storage_path=str(path.parent), verbose=1)))
    for r in grid:
        if r.error:
            raise RuntimeError(f"test evaluation failed: {r.error}")
    out: dict[str, dict[int, dict[str, float]]] = {}
    for job in jobs:
        m = runfolder.done_metrics(job.out)
        if m is None:
            raise RuntimeError(f"test evaluation of {job.label} left no results in {job.out}")
        out.setdefault(job.method, {})[job.seed] = {k: v for k, v in m.items() if k.startswith("AP")}
    return out
