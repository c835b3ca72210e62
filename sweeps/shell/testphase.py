"""The test phase of one study, on test over every seed: every candidate (TFA, plain, DKAN with the
authors' defaults and tuned) and the base model (for AP_B retention). It only confirms or does not
confirm what the selection chose on val: the checkpoints the runs on val made are evaluated, nothing
is fine-tuned twice.

The (candidate, seed) jobs are packed into as many Tune trials as run at once, each one Ray Train run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ray import tune

from dkan import runfolder
from dkan.errors import DkanError
from sweeps.core.jobspec import DRIVER_CPU, SeedJob, finetune_job
from sweeps.core.outcome import PerRow
from sweeps.core.plan import Plan, StudySpec, fits_now
from sweeps.core.selection import Selection
from sweeps.shell.console import TestPhaseConsole
from sweeps.shell.jobs import run_jobs
from sweeps.shell.search import fit_tuner, result_errors

REUSE_COST, TRAIN_COST = 1.0, 3.0  # evaluating a reused checkpoint costs about a third of a fine-tune
SHARED_COST = 0.2  # a reused TFA or base-model checkpoint beside another one: only its last layer runs


def row_jobs(plan: Plan, study: StudySpec, selection: Selection, base_ckpt: Path) -> dict[str, list[SeedJob]]:
    """The test rows' jobs, every seed: each candidate's checkpoints from its runs on val, evaluated (a seed it
    did not finish there is fine-tuned here), and the base model (evaluated once)."""
    layout, rows = plan.layout, {}
    for name, c in selection.candidates.items():
        jobs = []
        for s in plan.seeds:
            ckpt = layout.trial_seed(study.key, c.trial.trial_id, s) / runfolder.FINAL
            reuse = str(ckpt) if ckpt.is_file() else None
            jobs.append(finetune_job(study.template, c.method, s, layout.test_seed(study.key, name, s), "test",
                                     c.point, reuse, name))
        rows[name] = jobs
    base_cfg = replace(plan.base_template(study.split), out=str(layout.test_seed(study.key, "base", 0)),
                       eval_split="test")
    rows["base"] = [SeedJob("base", 0, base_cfg, reuse=str(base_ckpt), label="base/0")]
    return rows


def pack(jobs: list[SeedJob], bins: int) -> list[list[SeedJob]]:
    """Jobs into at most ``bins`` groups of about equal cost (largest first, each to the lightest group). The
    reused TFA and base-model checkpoints go together: they differ in the last layer only, and a group
    evaluates its checkpoints in one pass (``dkan.engine.evaluate_many``), everything before it once."""
    shared = [j for j in jobs if j.reuse and j.method in ("tfa", "base")]
    units = [[j] for j in jobs if j not in shared] + ([shared] if shared else [])

    def cost(unit: list[SeedJob]) -> float:
        if unit is shared:
            return REUSE_COST + SHARED_COST * (len(unit) - 1)
        return REUSE_COST if unit[0].reuse else TRAIN_COST

    groups: list[list[list[SeedJob]]] = [[] for _ in range(max(1, min(bins, len(units))))]
    for u in sorted(units, key=cost, reverse=True):
        min(groups, key=lambda g: sum(map(cost, g))).append(u)
    return [sorted((j for u in g for j in u), key=lambda j: (j.method, j.seed)) for g in groups if g]


def run_group(config: dict[str, Any], *, plan: Plan, groups: list[list[SeedJob]]) -> None:
    """One share of the test phase (a Tune trial): the packed group ``config["group"]``."""
    name = f"test_{tune.get_context().get_trial_id()}"
    run_jobs(groups[config["group"]], plan.resources, name, plan.layout.train_storage, in_trial=True,
             max_failures=plan.budget.max_failures, session=plan.session)


class TestPhaseFailed(DkanError, RuntimeError):
    """A test-phase group failed: the sweep stops with its error, not a traceback; finished jobs are kept."""


def raise_failed_groups(key: str, grid) -> None:
    """``TestPhaseFailed`` with the count and the first error when any group (a Tune result) failed."""
    errors = result_errors(grid)
    if errors:
        raise TestPhaseFailed(
            f"test phase of {key}: {len(errors)} of {len(grid)} group(s) failed; the first error: {errors[0]}. "
            "Fix: fix the cause, then rerun with --resume (finished test jobs are kept, only the rest run)")


def concurrency_now(plan: Plan) -> int:
    """How many groups run at once: the plan's number, fewer when the cluster lost nodes since the plan
    was made (a group whose workers find no room waits for ever)."""
    if plan.local:
        return plan.max_concurrent
    import ray

    alive = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    return min(plan.max_concurrent, fits_now(plan.resources, alive, local=False))


def run_test_phase(plan: Plan, study: StudySpec, selection: Selection, base_ckpt: Path, resume: bool) -> PerRow:
    """{row: {seed: AP metrics}} on test; a row per candidate (``tfa``, ``plain``, ``dkan_defaults``, ``dkan``)
    and ``base``."""
    rows = row_jobs(plan, study, selection, base_ckpt)
    jobs = list({j.out: j for js in rows.values() for j in js}.values())  # a row may share another's jobs
    at_once = concurrency_now(plan)
    groups = pack(jobs, at_once)
    path = plan.layout.tune_state(study.key, "test")
    trainable = tune.with_resources(tune.with_parameters(run_group, plan=plan, groups=groups), {"cpu": DRIVER_CPU})
    console = TestPhaseConsole(study.key, len(jobs), sum(1 for j in jobs if not j.reuse), len(groups))
    grid = fit_tuner(path, trainable, resume, lambda: tune.Tuner(
        trainable, param_space={"group": tune.grid_search(list(range(len(groups))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=at_once),
        run_config=tune.RunConfig(name=path.name, storage_path=str(path.parent), verbose=1 if plan.verbose else 0,
                                  callbacks=[console],
                                  failure_config=tune.FailureConfig(max_failures=plan.budget.max_failures))))
    raise_failed_groups(study.key, grid)
    out: PerRow = {}
    for row, jobs_of_row in rows.items():
        for job in jobs_of_row:
            m = runfolder.done_metrics(job.out)
            if m is None:
                raise RuntimeError(f"test evaluation of {job.label} left no results in {job.out}")
            out.setdefault(row, {})[job.seed] = {k: v for k, v in m.items() if "AP" in k}
    return out
