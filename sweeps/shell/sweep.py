"""A whole sweep: Ray started (or joined), the plan completed on the cluster, then per class split its
base model and per K one study (``sweeps.study``), and at the end one report over every study."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from dkan import runfolder
from sweeps.core.estimate import plan_line
from sweeps.core.jobspec import SeedJob
from sweeps.core.outcome import StudyOutcome
from sweeps.core.plan import ClassSplitSpec, Plan, complete_plan
from sweeps.outputs.registry import register_base
from sweeps.outputs.report import write_sweep_report
from sweeps.outputs.results import markdown
from sweeps.shell.console import quiet_libraries
from sweeps.shell.jobs import run_jobs
from sweeps.shell.localray import start_local_ray, stop_local_ray
from sweeps.study import run_study


def start_ray(address: str | None, num_cpus: int | None, verbose: bool = False) -> bool:
    """Join ``address``, or start a local Ray; True when local. A local Ray gets one logical CPU
    more than the machine has: the trial drivers' (they only wait on their Train runs)."""
    import logging

    import ray

    level = logging.INFO if verbose else quiet_libraries()
    # On Ctrl+C Tune waits up to this long for each trial to stop (600 s by default); a trial is
    # blocked in its Train run, so stop it sooner: it resumes from its last finished seed.
    os.environ.setdefault("TUNE_FORCE_TRIAL_CLEANUP_S", "15")
    if address is not None:
        ray.init(address=address, log_to_driver=False, logging_level=level)
        return False
    # loopback only, token auth, and found by its own processes beside other local Rays (localray)
    start_local_ray((num_cpus or os.cpu_count() or 1) + 1, level)
    return True


def ensure_base(plan: Plan, split: ClassSplitSpec) -> Path:
    """The split's base model (``base_model``), logged to MLflow as a run of kind base and registered."""
    ckpt = base_model(plan, split)
    register_base(plan, split, ckpt)
    return ckpt


def base_model(plan: Plan, split: ClassSplitSpec) -> Path:
    """The split's base model: given, cached (same config and data), or trained now through Ray Train."""
    if plan.base_checkpoint:
        return plan.base_checkpoint
    d = plan.base_cache_dir(split)
    # two sweeps sharing --cache-dir: one trains this base model, the other waits and then reuses it
    with runfolder.exclusive(plan.cache.lock_of(d), f"base model ({split.name}): another sweep is training "
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
    [m] = run_jobs([job], res, f"base_{d.name}", plan.layout.train_storage, watch=True,
                   max_failures=plan.budget.max_failures, session=plan.session)
    print(f"base model ({split.name}): val AP_base {m['AP_base'] * 100:.1f} in {time.time() - t:.0f} s", flush=True)
    return d / runfolder.FINAL


def run_sweep(plan: Plan, address: str | None, num_cpus: int | None, resume: bool) -> list[StudyOutcome]:
    """Every (split, K) study of the plan; Ray is shut down at the end, whatever happens."""
    import ray

    local = start_ray(address, num_cpus, plan.verbose)
    try:
        plan = complete_plan(plan, [n["Resources"] for n in ray.nodes() if n.get("Alive")], local)
        print(plan.describe(), flush=True)
        print(plan_line(plan), flush=True)
        outcomes = []
        for split in plan.splits:
            base = ensure_base(plan, split)
            for shots in plan.shots:
                outcome = run_study(plan, split, shots, base, resume)
                reg = outcome.registered
                model = f"; registered: models:/{reg.model.name}@champion" if reg else ""
                print(f"\n{markdown(plan, outcome)}\nexported: {plan.layout.bundle(outcome.key)}{model}\n"
                      f"[{outcome.key}] {outcome.findings.recommendation}\n", flush=True)
                outcomes.append(outcome)
        write_sweep_report(plan.out)  # OUT/report.html and report.md over every study
        return outcomes
    finally:
        if local:
            stop_local_ray()
        else:
            ray.shutdown()
