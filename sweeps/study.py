"""One study, one (class split, K): search -> selection -> test phase -> a typed ``StudyOutcome``, then
each output written from (plan, layout, outcome).

    search      sweeps.search      Optuna TPE through Ray Tune over the seeds, ASHA between seeds (on val)
    selection   sweeps.selection   the tuned candidate and the authors' defaults, from the search's grid
    test phase  sweeps.testphase   TFA, defaults, tuned and the base model on test, reusing checkpoints
    outcome     sweeps.outcome     statistics, verdicts, the model to ship
    outputs     sweeps.outputs     registry (first: the bundle records its model URIs), results, figures,
                                   bundle, MLflow logging
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sweeps.outcome import StudyOutcome, conclude
from sweeps.outputs.export import write_bundle
from sweeps.outputs.figures import write_figures
from sweeps.outputs.mlflow_log import log_study, open_study_run
from sweeps.outputs.registry import register
from sweeps.outputs.results import write_results
from sweeps.plan import ClassSplitSpec, Plan
from sweeps.search import run_search
from sweeps.selection import select
from sweeps.testphase import run_test_phase

WRITERS = (write_results, write_figures, write_bundle, log_study)  # each f(plan, layout, outcome), in this order


def run_study(plan: Plan, split: ClassSplitSpec, shots: int, base_ckpt: Path, resume: bool) -> StudyOutcome:
    study = plan.study(split, shots, base_ckpt)
    parent = open_study_run(plan, study)
    grid = run_search(plan, study, parent, resume)
    selection = select(plan, study, grid)
    per_row = run_test_phase(plan, study, selection, base_ckpt, resume)
    outcome = conclude(plan, study, parent, base_ckpt, selection, per_row)
    outcome = replace(outcome, registered=register(plan, plan.layout, outcome))
    for write in WRITERS:
        write(plan, plan.layout, outcome)
    return outcome
