"""A study's outcome, typed: what its search chose, what the test phase measured, what it says, and the
model to ship. Every output writer (``sweeps.outputs``) is a function of (plan, layout, outcome).

The statistics (``findings``): per test row mean, sample sd and 95% t interval over seeds, AP_B
retention against the base model, and paired comparisons over seeds (tuned minus defaults, DKAN
minus TFA) with their sentences. The model to ship (``shipped``) is the tuned candidate's seed
with the best AP_all on the selection split (val by default): test never chooses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from dkan import runfolder
from dkan.data.prepared import is_synthetic
from dkan.evaluation.aggregate import aggregate_seeds
from dkan.evaluation.stats import describe, paired, retention_per_seed, verdict
from dkan.names import metric_key
from dkan.reference import reference_table_rows
from sweeps.layout import model_in
from sweeps.plan import Plan, StudySpec
from sweeps.selection import Selection
from sweeps.testphase import PerRow

ROW_NAMES = {"tfa": "TFA", "dkan_defaults": "DKAN (authors' defaults)", "dkan": "DKAN (tuned)", "base": "base model"}


@dataclass(frozen=True)
class Findings:
    """What the test phase says: the table, paired comparisons and their sentences, AP_B retention."""

    table: dict[str, dict]  # {row label: aggregate over seeds}
    comparisons: dict[str, dict]  # tuned_vs_defaults, dkan_vs_tfa: stats.paired on AP_all
    verdicts: list[str]
    retention: dict[str, float]  # {row label: mean AP_B after fine-tuning / the base model's AP_B}
    reference: dict[str, dict]  # the paper's rows (voc07), {} when it has none for this split and K


@dataclass(frozen=True)
class Shipped:
    """The model a study ships (bundle, registry): one seed's fine-tune of the tuned candidate."""

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

    model: ModelRef  # the shipped model
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

    @property
    def key(self) -> str:
        return self.study.key


def conclude(plan: Plan, study: StudySpec, parent_run: str, base_ckpt: Path, selection: Selection,
             per_row: PerRow) -> StudyOutcome:
    return StudyOutcome(study, parent_run, Path(base_ckpt), selection, per_row, findings(plan, study, per_row),
                        shipped(plan, study, selection, per_row))


def findings(plan: Plan, study: StudySpec, per_row: PerRow) -> Findings:
    label = {row: f"{name} {study.shots}-shot" if row != "base" else name for row, name in ROW_NAMES.items()}
    table = {label[row]: aggregate_seeds(per_row[row]) for row in ROW_NAMES if row in per_row}
    key = metric_key("AP_all", plan.metric)

    def col(row: str) -> dict[int, float]:
        return {s: m.get(key, math.nan) for s, m in per_row[row].items()}

    comparisons = {"tuned_vs_defaults": paired(col("dkan"), col("dkan_defaults")),
                   "dkan_vs_tfa": paired(col("dkan"), col("tfa"))}
    name = "AP_all" if plan.metric == "coco" else f"AP_all ({plan.metric})"
    verdicts = [verdict("tuned", "the authors' defaults", comparisons["tuned_vs_defaults"], name, keep="the defaults"),
                verdict("DKAN (tuned)", "TFA", comparisons["dkan_vs_tfa"], name)]
    ap_b = metric_key("AP_base", plan.metric)
    base_ap = next(iter(per_row["base"].values())).get(ap_b, math.nan) if "base" in per_row else math.nan
    retention = {label[row]: describe(list(retention_per_seed(per_row[row], base_ap, ap_b).values()))["mean"]
                 for row in ("tfa", "dkan_defaults", "dkan") if row in per_row}
    # the paper's NEU-DET rows, for a numbered NEU-DET split of real data (never beside the synthetic set)
    paperlike = study.split.number and not is_synthetic(plan.data_root)
    reference = reference_table_rows(study.split.number, study.shots) if paperlike else {}
    return Findings(table, comparisons, verdicts, retention, reference)


def shipped(plan: Plan, study: StudySpec, selection: Selection, per_row: PerRow) -> Shipped:
    """The tuned candidate's seed with the best AP_all on the selection split (its search trial's seed
    runs); test decides only when the trial left no seed's metrics. Its checkpoint: the test phase's
    fine-tune of that seed, or the search trial's checkpoint it evaluated."""
    layout, trial = plan.layout, selection.tuned.trial_id

    def score(seed: int) -> float:
        m = runfolder.done_metrics(layout.trial_seed(study.key, trial, seed)) or {}
        v = m.get("AP_all", math.nan) if m.get("eval_split", plan.select_split) == plan.select_split else math.nan
        return -math.inf if math.isnan(v) else v

    scores = {s: score(s) for s in plan.seeds}
    if all(v == -math.inf for v in scores.values()):
        scores = {int(s): m.get("AP_all", -math.inf) for s, m in per_row["dkan"].items()}
    seed = max(scores, key=lambda s: (scores[s], -s))
    ckpt = model_in(layout.test_seed(study.key, "dkan", seed))
    return Shipped(seed, ckpt or layout.trial_seed(study.key, trial, seed) / runfolder.FINAL)
