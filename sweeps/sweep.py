"""A whole sweep: Ray started (or joined), the plan completed on the cluster, then per class split
its base model and per K one study: search on val, test phase, results, MLflow, export."""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path

from dkan import runfolder
from dkan.names import HPARAMS
from dkan.profiles import authors_defaults
from sweeps.figures import study_figures, write_sweep_report
from sweeps.jobs import SeedJob, run_jobs
from sweeps.localray import start_local_ray, stop_local_ray
from sweeps.models import find_base, log_base, log_selected
from sweeps.plan import ClassSplitSpec, Plan, complete_plan
from sweeps.report import StudyResult, TrialOutcome, export_best, findings, markdown, search_summary, write_results
from sweeps.space import first_points
from sweeps.tracking import Tracker, log_study, study_run, track_search


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join ``address``, or start a local Ray; True when local. A local Ray gets one logical CPU
    more than the machine has: the trial drivers' (they only wait on their Train runs)."""
    import ray

    # On Ctrl+C Tune waits up to this long for each trial to stop (600 s by default); a trial is
    # blocked in its Train run, so stop it sooner: it resumes from its last finished seed.
    os.environ.setdefault("TUNE_FORCE_TRIAL_CLEANUP_S", "15")
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return False
    # loopback only, token auth, and found by its own processes beside other local Rays (localray)
    start_local_ray((num_cpus or os.cpu_count() or 1) + 1)
    return True


def ensure_base(plan: Plan, split: ClassSplitSpec) -> Path:
    """The split's base model (``_base_model``), logged to MLflow as a run of kind base and registered."""
    ckpt = _base_model(plan, split)
    log_base(plan, split, ckpt)
    return ckpt


def _base_model(plan: Plan, split: ClassSplitSpec) -> Path:
    """The split's base model: given, cached (same config and data), or trained now through Ray Train."""
    if plan.base_checkpoint:
        return plan.base_checkpoint
    d = plan.base_cache_dir(split)
    # two sweeps sharing --cache-dir: one trains this base model, the other waits and then reuses it
    with runfolder.exclusive(d.parent / f"{d.name}.lock", f"base model ({split.name}): another sweep is training "
                             f"it into {d}; waiting for it to finish"):
        return _cached_or_trained_base(plan, split, d)


def _cached_or_trained_base(plan: Plan, split: ClassSplitSpec, d: Path) -> Path:
    m = runfolder.done_metrics(d)
    if m is not None and (d / runfolder.FINAL).is_file():
        print(f"base model ({split.name}): cached at {d} (val AP_base {m['AP_base'] * 100:.1f})")
        return d / runfolder.FINAL
    cfg = replace(plan.base_template(split), out=str(d))
    print(f"base model ({split.name}): training {cfg.optim.iterations} iterations -> {d}", flush=True)
    t = time.time()
    # base training runs alone: give it the CPUs of every concurrent slot that fit on one node
    cpus = min(plan.node_cpus, plan.resources.cpus_per_worker * max(1, plan.max_concurrent))
    job = SeedJob("base", 0, cfg, label=f"base/{split.name}")
    res = replace(plan.resources, cpus_per_worker=cpus)
    [m] = run_jobs([job], res, f"base_{d.name}", plan.train_storage, watch=True,
                   max_failures=plan.budget.max_failures, session=plan.session)
    print(f"base model ({split.name}): val AP_base {m['AP_base'] * 100:.1f} in {time.time() - t:.0f} s", flush=True)
    return d / runfolder.FINAL


def run_study(plan: Plan, split: ClassSplitSpec, shots: int, base_ckpt: Path, tracker: Tracker,
              resume: bool) -> StudyResult:
    from sweeps.search import pick_best, run_search
    from sweeps.testphase import Trial, run_test_phase

    study = plan.study(split, shots, base_ckpt)
    params = {"split": split.name, "shots": shots, "seeds": f"{plan.seeds[0]}-{plan.seeds[-1]}",
              "trials": plan.budget.trials, "protocol": plan.protocol, "profile": plan.profile, "metric": plan.metric}
    parent = study_run(tracker, plan.out, study.key, split.name, shots, params)
    grid = run_search(plan, study, parent, resume)
    best = pick_best(grid, plan.objective, len(plan.seeds))
    tuned = Trial({k: float(best.config[k]) for k in HPARAMS}, best.metrics["trial_id"])
    defaults = Trial(first_points(plan.space, authors_defaults(split.number))[0])
    for r in grid:  # the search ran the defaults first: reuse that trial's checkpoints
        if r.metrics and all(math.isclose(float(r.config[k]), v) for k, v in defaults.hparams.items()):
            defaults = replace(defaults, trial_id=r.metrics["trial_id"])
            break
    finetunes = sum(int(r.metrics.get("seeds_done", 0)) for r in grid if r.metrics)
    search = search_summary([TrialOutcome({k: float(r.config[k]) for k in HPARAMS if k in r.config},
                                          int((r.metrics or {}).get("seeds_done", 0)),
                                          None if r.error is None else f"{type(r.error).__name__}: {r.error}")
                             for r in grid], len(plan.seeds))
    per_row = run_test_phase(plan, study, tuned, defaults, base_ckpt, resume)
    figures = study_figures(plan, study, per_row, grid, tuned.trial_id)  # OUT/plots/<key>/*.png
    found = findings(plan, study, per_row)
    md = markdown(plan, study, found, tuned.hparams, defaults.hparams, search)
    files = write_results(plan, study, md, found, per_row, tuned.hparams, finetunes, search)
    track_search(tracker, plan, study, grid, tuned, best.metrics, found.verdicts)  # configs, cost, the winner
    model = log_selected(plan, study, tracker, parent, tuned.trial_id, per_row)  # registered <dataset>-<split>-<K>shot
    export = export_best(plan, study, tuned.hparams, best.metrics, found, parent, model,
                         find_base(tracker, plan.out, split.name))
    for png in figures.values():
        tracker.client.log_artifact(parent, str(png), "plots")
    log_study(tracker, plan.out, study.key, parent, tuned.hparams, per_row, best.metrics, finetunes, [export, *files],
              found.verdicts)
    return StudyResult(study.key, tuned.hparams, dict(best.metrics), found.table, md, export, finetunes)


def run_sweep(plan: Plan, address: str | None, num_cpus: int | None, resume: bool) -> list[StudyResult]:
    """Every (split, K) study of the plan; Ray is shut down at the end, whatever happens."""
    import ray

    local = start_ray(address, num_cpus)
    try:
        plan = complete_plan(plan, [n["Resources"] for n in ray.nodes() if n.get("Alive")], local)
        print(plan.describe(), flush=True)
        tracker = Tracker(plan.tracking_uri, plan.dataset)
        results = []
        for split in plan.splits:
            base = ensure_base(plan, split)
            for shots in plan.shots:
                r = run_study(plan, split, shots, base, tracker, resume)
                print(f"\n{r.markdown}\nexported: {r.export_path}\n", flush=True)
                results.append(r)
        write_sweep_report(plan.out)  # OUT/report.html and report.md over every study
        return results
    finally:
        if local:
            stop_local_ray()
        else:
            ray.shutdown()
