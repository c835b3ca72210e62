"""One study, one (class split, K): the runs on val -> selection -> test phase -> a typed ``StudyOutcome``,
then each output written from (plan, layout, outcome).

    on val      sweeps.shell.search      the fixed candidates (TFA, plain, DKAN's defaults) side by side, then
                                   DKAN's search (told the defaults' result), then a baseline's own
                                   search where the space holds keys it uses
    selection   sweeps.core.selection   the candidates, simplest first, and the one recommended by the rule
    pruning     sweeps.shell.prune       the model files of trials no one can choose deleted (--keep-checkpoints)
    test phase  sweeps.shell.testphase   every candidate's val checkpoints and the base model, evaluated on test
    outcome     sweeps.core.outcome     statistics, the recommendation and what test says of it, the model to ship
    outputs     sweeps.outputs     registry (first: the bundle records its model URIs), results, figures,
                                   bundle, MLflow logging
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path

from dkan import runfolder
from dkan.config import authors_defaults
from sweeps.core.estimate import estimate, measured, rates_for
from sweeps.core.outcome import StudyOutcome, conclude
from sweeps.core.plan import ClassSplitSpec, Plan, PlanError, StudySpec
from sweeps.core.progress import TrialReport
from sweeps.core.selection import select
from sweeps.core.shape import RunSpec
from sweeps.core.space import first_points, of_method
from sweeps.outputs.dedupe import link_duplicates
from sweeps.outputs.export import export_bundle
from sweeps.outputs.figures import write_figures
from sweeps.outputs.mlflow_log import log_study, open_study_run
from sweeps.outputs.registry import register
from sweeps.outputs.results import write_results
from sweeps.shell.prune import prune_checkpoints
from sweeps.shell.search import tune_run
from sweeps.shell.testphase import run_test_phase

WRITERS = (write_results, write_figures, export_bundle, log_study)  # each f(plan, layout, outcome), in this order


def run_study(plan: Plan, split: ClassSplitSpec, shots: int, base_ckpt: Path, resume: bool) -> StudyOutcome:
    study = plan.study(split, shots, base_ckpt)
    t0, rates = time.time(), rates_for(plan, base_ckpt)
    guess = estimate(plan, rates) if rates else None
    print(f"[{study.key}] {guess.line() if guess else 'estimate: no rates for this profile yet'}", flush=True)
    parent = open_study_run(plan, study)
    runs = run_on_val(plan, study, parent, base_val_ap(plan, base_ckpt), resume)
    selection = select(plan, runs)
    freed = prune_checkpoints(plan, study, selection, parent)  # what no one can choose, before the test phase
    if freed:
        print(f"[{study.key}] pruned the model files of the trials no one can choose: {freed / 2**20:.0f} MiB freed "
              "(--keep-checkpoints all keeps them)", flush=True)
    per_row = run_test_phase(plan, study, selection, base_ckpt, resume)
    outcome = conclude(plan, study, parent, base_ckpt, selection, per_row)
    outcome = replace(outcome, registered=register(plan, plan.layout, outcome))
    cost = {"estimate": asdict(guess) if guess else None, "actual": measured(plan, study, time.time() - t0)}
    outcome = replace(outcome, cost=cost)
    for write in WRITERS:
        write(plan, plan.layout, outcome)
    link_duplicates(plan.out)  # a split's base model, in every study's bundle and logged model: one file
    return outcome


def run_on_val(plan: Plan, study: StudySpec, parent: str, base_ap: float | None, resume: bool) -> list:
    """Every run of the study on the selection split, in the order of its shape (``sweeps.core.shape``):
    [(RunSpec, ResultGrid), ...]."""
    space, runs = plan.space, []
    defaults = {c.method: first_points(of_method(space, c.method), study.template, authors_defaults(study.split.number))
                for c in plan.shape.of_role("defaults")}
    for shape in plan.shape.runs:
        if shape.fixed:  # a baseline at its profile values, a method at its authors' defaults
            fixed = {c.name: (c.method, defaults[c.method] if c.role == "defaults"
                              else first_points(of_method(space, c.method), study.template)) for c in shape.fixed}
            spec = RunSpec(shape.name, fixed=fixed, base_ap=base_ap)
        elif shape.method in defaults:  # the tuned method's search, told its defaults' result
            start = defaults[shape.method]
            told = [c.name for c in plan.shape.of_role("defaults") if c.method == shape.method]
            prior = tuple((start, _objective(runs, name)) for name in told)
            points = tuple(p for p in plan.extra_points if p != start)
            spec = RunSpec(shape.name, shape.method, shape.space, shape.trials, points, prior, base_ap=base_ap,
                           rivals=_rivals(runs))
        else:  # a baseline's own search over the keys it uses, its profile values first
            start = first_points(shape.space, study.template)
            spec = RunSpec(shape.name, shape.method, shape.space, shape.trials, (start,), base_ap=base_ap)
        runs.append((spec, tune_run(plan, study, parent, resume, spec)))
    return runs


def _rivals(runs: list) -> dict[str, dict[int, float]]:
    """Each finished trial of the study's runs so far: its per-seed AP_all (what --scheduler race compares the
    next run's trials with)."""
    out = {}
    for spec, grid in runs:
        for i, r in enumerate(grid):
            report = TrialReport.from_result(r.metrics) if r.error is None else None
            if report and report.finite_seed_ap():
                out[f"{spec.name}:{(r.config or {}).get('candidate', i)}"] = report.finite_seed_ap()
    return out


def _objective(runs: list, candidate: str) -> float:
    for _, grid in runs:
        for r in grid:
            if (r.config or {}).get("candidate") == candidate and r.error is None:
                report = TrialReport.from_result(r.metrics)
                return report.objective if report else math.nan
    return math.nan


def base_val_ap(plan: Plan, base_ckpt: Path) -> float | None:
    """The base model's AP_base on the selection split (its run folder's metrics), for the retention; the
    Pareto search cannot go without it."""
    m = runfolder.done_metrics(Path(base_ckpt).parent) or {}
    if m.get("eval_split", "val") == plan.select_split and "AP_base" in m:
        return float(m["AP_base"])
    if plan.objective_kind == "pareto":
        raise PlanError(f"{base_ckpt}: --objective pareto needs the base model's AP_base on {plan.select_split} "
                        f"(its metrics.json from dkan base-train). Fix: pass a base model trained by dkan base-train "
                        "or the sweep, or drop --objective pareto")
    return None
