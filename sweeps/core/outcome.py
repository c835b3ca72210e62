"""A study's outcome, typed: its candidates and the one recommended on val, what the test phase measured
and says of the recommendation, and the model to ship. Every output writer (``sweeps.outputs``) is a
function of (plan, layout, outcome).

The statistics (``findings``): per test row mean, sample sd and 95% t interval over seeds, AP_B
retention against the base model, and the recommendation minus every other candidate paired over
seeds on test, with their sentences. Test never switches the choice: where another candidate beats
the recommendation on test by more than noise (the 95% interval of the paired difference above 0),
the recommendation line says so plainly. The model to ship is the recommended candidate's seed with
the best AP_all on the selection split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dkan import runfolder
from dkan.data.prepared import is_synthetic
from dkan.evaluation.aggregate import aggregate_seeds
from dkan.evaluation.stats import describe, paired, retention_per_seed, verdict
from dkan.names import metric_key
from dkan.reference import reference_table_rows
from sweeps.core.layout import model_in
from sweeps.core.plan import Plan, StudySpec
from sweeps.core.selection import Selection
from sweeps.core.shape import KINDS, ROW_NAMES, SIMPLEST

PerRow = dict[str, dict[int, dict[str, float]]]  # {row: {seed: AP metrics on test}} (sweeps.shell.testphase)


@dataclass(frozen=True)
class Findings:
    """What the test phase says: the table, paired comparisons and their sentences, AP_B retention."""

    table: dict[str, dict]  # {row label: aggregate over seeds}
    comparisons: dict[str, dict]  # "<recommended>_vs_<other>": stats.paired on AP_all (test)
    verdicts: list[str]
    retention: dict[str, float]  # {row label: mean AP_B after fine-tuning / the base model's AP_B}
    reference: dict[str, dict]  # the paper's rows (voc07), {} when it has none for this split and K
    recommendation: str  # the one line: what ships, why, what test says


@dataclass(frozen=True)
class Shipped:
    """The model a study ships (bundle, registry): one seed's fine-tune of the recommended candidate."""

    seed: int
    checkpoint: Path


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and where its weights came from (``sweeps.outputs.registry``)."""

    name: str  # registered model name
    version: str
    uri: str  # models:/<name>/<version>
    run_id: str  # the run it was logged to
    checkpoint: Path  # the model_final.pt it holds
    seed: int = 0  # the few-shot seed of the shipped model (0: base model)


@dataclass(frozen=True)
class Registered:
    """The study's models in the MLflow Model Registry."""

    model: ModelRef  # the shipped model (alias ``champion``)
    base: ModelRef | None  # the split's base model (None when the sweep logged none)


@dataclass(frozen=True)
class StudyOutcome:
    study: StudySpec
    parent_run: str  # the study's MLflow run
    base_checkpoint: Path
    selection: Selection
    per_row: PerRow  # {row: {seed: AP metrics}} on test
    findings: Findings
    shipped: Shipped
    registered: Registered | None = None  # set once the models are registered
    cost: dict[str, Any] | None = None  # {"estimate": ..., "actual": ...} (sweeps.core.estimate), set by run_study

    @property
    def key(self) -> str:
        return self.study.key


def conclude(plan: Plan, study: StudySpec, parent_run: str, base_ckpt: Path, selection: Selection,
             per_row: PerRow) -> StudyOutcome:
    return StudyOutcome(study, parent_run, Path(base_ckpt), selection, per_row,
                        findings(plan, study, selection, per_row), shipped(plan, study, selection, per_row))


def describe_candidate(selection: Selection, name: str) -> str:
    """"DKAN fka_weight 1, lka_weight 0.01, fka_tau 5, lka_tau 5 (authors' defaults)", "TFA", ..."""
    return KINDS[name].sentence(selection.candidates[name].point)


def findings(plan: Plan, study: StudySpec, selection: Selection, per_row: PerRow) -> Findings:
    label = {row: f"{name} {study.shots}-shot" if row != "base" else name for row, name in ROW_NAMES.items()}
    table = {label[row]: aggregate_seeds(per_row[row]) for row in ROW_NAMES if row in per_row}
    key = metric_key("AP_all", plan.metric)

    def col(row: str) -> dict[int, float]:
        return {s: m.get(key, math.nan) for s, m in per_row[row].items()}

    rec = selection.recommended
    others = [c for c in selection.candidates if c != rec]
    comparisons = {f"{rec}_vs_{o}": paired(col(rec), col(o)) for o in others}
    name = "AP_all" if plan.metric == "coco" else f"AP_all ({plan.metric})"
    verdicts = [verdict(ROW_NAMES[rec], ROW_NAMES[o], comparisons[f"{rec}_vs_{o}"], name,
                        keep=ROW_NAMES[rec]) for o in others]
    ap_b = metric_key("AP_base", plan.metric)
    base_ap = next(iter(per_row["base"].values())).get(ap_b, math.nan) if "base" in per_row else math.nan
    retention = {label[row]: describe(list(retention_per_seed(per_row[row], base_ap, ap_b).values()))["mean"]
                 for row in selection.candidates if row in per_row}
    # the paper's NEU-DET rows, for a numbered NEU-DET split of real data (never beside the synthetic set)
    paperlike = study.split.number and not is_synthetic(plan.data_root)
    reference = reference_table_rows(study.split.number, study.shots) if paperlike else {}
    line = recommendation(plan, selection, comparisons, name)
    return Findings(table, comparisons, verdicts, retention, reference, line)


def recommendation(plan: Plan, selection: Selection, on_test: dict[str, dict], metric: str) -> str:
    """The study's one line: what ships, why (the rule on the selection split), what test says of it."""
    rec, n = selection.recommended, selection.n_seeds
    why = (f"best on {plan.select_split} over {n} seeds by the rule" if len(selection.candidates) > 1
           else f"the only candidate ({plan.select_split}, {n} seeds)")
    worse = {o.split("_vs_", 1)[1]: d for o, d in on_test.items()  # another candidate better beyond noise
             if math.isfinite(d.get("ci95_high", math.nan)) and d["ci95_high"] < 0}
    disagree = ""
    if worse:
        beaten = ", ".join(f"{ROW_NAMES[o]} beats it on test by {_pts(-d['mean_diff'])} {metric} (95% CI "
                           f"{_pts(-d['ci95_high'])} to {_pts(-d['ci95_low'])})" for o, d in worse.items())
        disagree = f"TEST DISAGREES: {beaten}; the choice stands (made on {plan.select_split})"
    simplest = SIMPLEST.name
    if rec != simplest and f"{rec}_vs_{simplest}" in on_test:
        d = on_test[f"{rec}_vs_{simplest}"]
        sure = _above_zero(d)
        said = (f"test {'confirms' if sure else 'does not confirm'} ({_diff(d, metric)} vs {SIMPLEST.label}, "
                f"95% CI {_pts(d['ci95_low'])} to {_pts(d['ci95_high'])})") + (f"; {disagree}" if disagree else "")
    else:  # never "no other candidate beats it" beside a candidate that does
        said = disagree or "test: " + ("no other candidate beats it beyond noise" if on_test else "nothing to compare")
    paper = " [PAPER PROTOCOL: chosen on test]" if plan.protocol == "paper" else ""
    return f"recommended: {describe_candidate(selection, rec)}: {why}; {said}{paper}"


def _above_zero(d: dict) -> bool:
    return math.isfinite(d.get("ci95_low", math.nan)) and d["ci95_low"] > 0


def _pts(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v * 100:.1f}"


def _diff(d: dict, metric: str) -> str:
    v = d["mean_diff"]
    return f"{'n/a' if not math.isfinite(v) else f'{v * 100:+.1f}'} {metric}"


def shipped(plan: Plan, study: StudySpec, selection: Selection, per_row: PerRow) -> Shipped:
    """The recommended candidate's seed with the best AP_all on the selection split (its runs there); test
    decides only when the runs left no seed's metrics. Its checkpoint: the one those runs made (the test
    phase evaluated it), or the test phase's own fine-tune of that seed."""
    layout, choice = plan.layout, selection.choice

    def score(seed: int) -> float:
        m = runfolder.done_metrics(layout.trial_seed(study.key, choice.trial.trial_id, seed)) or {}
        v = m.get("AP_all", math.nan) if m.get("eval_split", plan.select_split) == plan.select_split else math.nan
        return -math.inf if math.isnan(v) else v

    scores = {s: score(s) for s in plan.seeds}
    if all(v == -math.inf for v in scores.values()):
        scores = {int(s): m.get("AP_all", -math.inf) for s, m in per_row[selection.recommended].items()}
    seed = max(scores, key=lambda s: (scores[s], -s))
    ckpt = model_in(layout.test_seed(study.key, selection.recommended, seed))
    return Shipped(seed, ckpt or layout.trial_seed(study.key, choice.trial.trial_id, seed) / runfolder.FINAL)
