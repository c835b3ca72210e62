"""A study's bundle, ``OUT/best_configs/<key>/`` (the format: ``dkan.bundle``): the recommended candidate's
shipped model (a TFA or plain model when one of those is recommended), the base model, the class list
and the fine-tune config that made the model (the CPU thread count the sweep used,
so a re-run matches bit for bit), with a provenance section: how it was selected, val and test
metrics, verdicts, MLflow run and model URIs, code version."""

from __future__ import annotations

import json
from pathlib import Path

import dkan
from dkan import bundle
from dkan.evaluation.aggregate import to_json
from dkan.model.checkpoint import load_checkpoint
from sweeps.core.layout import RunLayout
from sweeps.core.outcome import StudyOutcome
from sweeps.core.plan import Plan
from sweeps.outputs.results import recommendation_record
from sweeps.tracking import mask_uri


def export_bundle(plan: Plan, layout: RunLayout, outcome: StudyOutcome) -> Path:
    """The bundle of ``outcome``; `dkan finetune --config <copy>/config.yaml` re-makes its model.pt bit for
    bit (same device kind) and `dkan predict --bundle <copy>` runs it."""
    ckpt = outcome.shipped.checkpoint
    meta = load_checkpoint(ckpt, "selected model", "re-run the sweep with --resume")["meta"]
    cfg = {**meta["config"], "eval_split": "test"}  # exactly what made the model (threads, device)
    registered = outcome.registered
    choice = outcome.selection.choice
    provenance = {
        "recommendation": recommendation_record(outcome), "method": choice.method,
        "selected_seed": cfg.get("fewshot_seed"),
        "selected_how": f"the seed with the best AP_all on {plan.select_split} among the recommended candidate's",
        "sweep": outcome.key, "protocol": plan.protocol, "selected_on": plan.select_split,
        "hyperparameters": choice.point,
        "selection_metrics": choice.trial.report.named_means() if choice.trial.report else {},
        "test_metrics": json.loads(to_json(outcome.findings.table)), "metric": plan.metric,
        "verdict": [outcome.findings.recommendation, *outcome.findings.verdicts], "mlflow_run_id": outcome.parent_run,
        "mlflow_model_uri": registered.model.uri if registered else None,
        "mlflow_model_alias": f"models:/{registered.model.name}@champion" if registered else None,
        "mlflow_base_model_uri": registered.base.uri if registered and registered.base else None,
        "mlflow_tracking_uri": mask_uri(plan.tracking_uri), "code_version": dkan.code_version(),
        "note": "config.yaml re-makes model.pt; change fewshot_seed (and out) to fine-tune another seed",
    }
    return bundle.write_bundle(layout.bundle(outcome.key), cfg, outcome.base_checkpoint, ckpt, list(meta["classes"]),
                              provenance)
