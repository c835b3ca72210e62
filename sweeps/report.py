"""A study's outputs: the test table with its statistics (markdown, JSON, per-class JSON) and the best-config
export."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkan
from dkan import runfolder
from dkan.config import to_dict
from dkan.evaluation.aggregate import aggregate_seeds, to_json, to_markdown
from dkan.evaluation.stats import describe, paired, retention_per_seed, verdict
from dkan.names import HEADLINE, PER_CLASS_PREFIX, metric_key
from dkan.reference import METRIC as REFERENCE_METRIC
from dkan.reference import protocol as reference_protocol
from dkan.reference import reference_table_rows
from dkan.report import search_lines
from sweeps.jobs import finetune_job
from sweeps.plan import Plan, Study
from sweeps.tracking import mask_uri

PerRow = dict[str, dict[int, dict[str, float]]]  # {row: {seed: metrics}}
ROW_NAMES = {"tfa": "TFA", "dkan_defaults": "DKAN (authors' defaults)", "dkan": "DKAN (tuned)", "base": "base model"}


@dataclass(frozen=True)
class StudyResult:
    key: str
    best_hparams: dict[str, float]
    best_val: dict[str, float]
    table: dict[str, dict]
    markdown: str
    export_path: Path
    seed_finetunes: int


@dataclass(frozen=True)
class Findings:
    """What the test phase says: the table, paired comparisons and their sentences, AP_B retention."""

    table: dict[str, dict]  # {row label: aggregate over seeds}
    comparisons: dict[str, dict]  # tuned_vs_defaults, dkan_vs_tfa: stats.paired on AP_all
    verdicts: list[str]
    retention: dict[str, float]  # {row label: mean AP_B after fine-tuning / the base model's AP_B}
    reference: dict[str, dict]  # the paper's rows (voc07), {} when it has none for this split and K


@dataclass(frozen=True)
class TrialOutcome:
    """One search trial as the results list it: its hyperparameters, seeds run and error (None if it ran)."""

    hparams: dict[str, float]
    seeds_done: int
    error: str | None = None


def search_summary(outcomes: list[TrialOutcome], n_seeds: int) -> dict[str, Any]:
    """How the search went: trials that ran every seed, were stopped early, or failed (each named)."""
    failed = [o for o in outcomes if o.error is not None]
    ok = [o for o in outcomes if o.error is None]
    return {"trials": len(outcomes), "all_seeds": sum(o.seeds_done == n_seeds for o in ok),
            "stopped_early": sum(o.seeds_done < n_seeds for o in ok),
            "failed": [{"hyperparameters": o.hparams, "seeds_done": o.seeds_done, "error": o.error} for o in failed]}


def search_line(summary: dict[str, Any], n_seeds: int) -> str:
    return "\n".join(search_lines(summary, n_seeds))


def is_synthetic(root: Path) -> bool:
    """Whether the prepared data set at ``root`` was generated (``prepare-data --synthetic``)."""
    import yaml

    try:
        meta = yaml.safe_load((Path(root) / "dataset.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    return bool((meta.get("config") or {}).get("synthetic"))


def findings(plan: Plan, study: Study, per_row: PerRow) -> Findings:
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


def markdown(plan: Plan, study: Study, f: Findings, hparams: dict[str, float], defaults: dict[str, float],
             search: dict[str, Any] | None = None) -> str:
    names = [m for m in next(iter(f.table.values())) if m.startswith(PER_CLASS_PREFIX)]
    title = (f"{plan.dataset}, {study.split.name}, {study.shots}-shot, test, seeds {plan.seeds[0]}-{plan.seeds[-1]} "
             f"({plan.metric} AP50 in points, mean ± sample std [95% CI])")
    if plan.protocol == "paper":
        title += " -- PAPER PROTOCOL: hyperparameters selected on test"
    parts = [title, to_markdown(f.table, [*HEADLINE, *names], metric=plan.metric, ci=True)]
    parts.append("AP_B retention (AP_B after fine-tuning / the base model's): "
                 + ", ".join(f"{k} {v * 100:.0f}%" for k, v in f.retention.items() if not math.isnan(v)))
    parts += [f"- {v}" for v in f.verdicts]
    parts.append("tuned hyperparameters: " + ", ".join(f"{k}={v:.4g}" for k, v in hparams.items())
                 + "; authors' defaults: " + ", ".join(f"{k}={v:g}" for k, v in defaults.items()))
    if search is not None:
        parts.append(search_line(search, len(plan.seeds)))
    if f.reference:
        ours = {k: v for k, v in f.table.items() if not k.startswith("base")}
        parts.append("Compared with the paper (VOC07 11-point AP50; the paper used one few-shot seed and chose its "
                     "best checkpoint on test):\n\n"
                     + to_markdown({**ours, **f.reference}, list(HEADLINE), metric=REFERENCE_METRIC))
    return "\n\n".join(parts)


def write_results(plan: Plan, study: Study, md: str, f: Findings, per_row: PerRow, hparams: dict[str, float],
                  finetunes: int, search: dict[str, Any] | None = None) -> list[Path]:
    """OUT/results/<key>.md, .json and _per_class_ap.json (each written atomically)."""
    d = plan.out / "results"
    per_class = {name: {m.removeprefix(PER_CLASS_PREFIX): agg[m]["mean"] for m in agg if m.startswith(PER_CLASS_PREFIX)}
                 for name, agg in f.table.items()}
    full = {"study": {"dataset": plan.dataset, "split": study.split.name, "shots": study.shots}, "metric": plan.metric,
            "table": f.table, "per_seed": per_row, "best_hyperparameters": hparams,
            "stats": f.comparisons, "verdict": f.verdicts, "retention": f.retention, "reference": f.reference,
            "reference_protocol": reference_protocol() if f.reference else None, "seed_finetunes_in_search": finetunes,
            "search": search}
    return [
        runfolder.write_text_atomic(d / f"{study.key}.md", md + "\n"),
        runfolder.write_text_atomic(d / f"{study.key}.json", to_json(full)),
        runfolder.write_text_atomic(d / f"{study.key}_per_class_ap.json", to_json(per_class)),
    ]


def code_version() -> str:
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        if rev.returncode == 0:
            return f"{dkan.__version__}+{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return dkan.__version__


def export_best(plan: Plan, study: Study, hparams: dict[str, float], selection: dict[str, Any], f: Findings,
                run_id: str, model: Any = None, base: Any = None) -> Path:
    """best_configs/<key>/, a portable bundle: config.yaml (the fine-tune that made model.pt; its paths relative
    to it: base_checkpoint base_model.pt, out reproduce/), model.pt (the selected seed's model), base_model.pt,
    classes.txt and the provenance (MLflow model URIs, run ids, verdicts). ``model``/``base``: the sweeps.models
    ModelRef of the selected and of the base model. `dkan finetune --config <copy>/config.yaml` re-makes
    model.pt bit for bit (same device kind); `dkan predict --bundle <copy>` runs it."""
    from dkan.model.checkpoint import load_checkpoint

    bundle = plan.out / "best_configs" / study.key
    bundle.mkdir(parents=True, exist_ok=True)
    _place(Path(study.template.base_checkpoint), bundle / BUNDLE_BASE)
    if model is not None:
        _place(Path(model.checkpoint), bundle / BUNDLE_MODEL)
        meta = load_checkpoint(bundle / BUNDLE_MODEL, "selected model", "re-run the sweep with --resume")["meta"]
        cfg, classes = dict(meta["config"]), list(meta["classes"])  # exactly what made model.pt (threads, device)
    else:
        job = finetune_job(study.template, "dkan", plan.seeds[0], Path("."), "test", hparams)
        cfg = to_dict(job.cfg)
        cfg["threads"] = max(1, int(plan.resources.cpus_per_worker))  # the sweep's: a re-run matches bit for bit
        classes = []
    cfg.update(base_checkpoint=BUNDLE_BASE, out="reproduce", eval_split="test")
    if classes:
        runfolder.write_text_atomic(bundle / "classes.txt", "".join(f"{c}\n" for c in classes))
    chosen = {k: v for k, v in selection.items() if k.startswith(("val_", "test_")) and "seed" not in k}
    cfg["provenance"] = {
        "bundle": 1,  # paths in this file are relative to its folder (dkan finetune --config resolves them)
        "model_file": BUNDLE_MODEL if model is not None else None, "classes": classes,
        "selected_seed": cfg.get("fewshot_seed"),
        "selected_how": f"the seed with the best AP_all on {plan.select_split} among the tuned config's seeds",
        "sweep": study.key, "protocol": plan.protocol, "selected_on": plan.select_split, "hyperparameters": hparams,
        "selection_metrics": chosen,
        "test_metrics": json.loads(to_json(f.table)), "metric": plan.metric, "verdict": f.verdicts,
        "mlflow_run_id": run_id, "mlflow_model_uri": getattr(model, "uri", None),
        "mlflow_base_model_uri": getattr(base, "uri", None), "mlflow_tracking_uri": mask_uri(plan.tracking_uri),
        "code_version": code_version(),
        "note": "config.yaml re-makes model.pt; change fewshot_seed (and out) to fine-tune another seed",
    }
    runfolder.write_yaml(bundle / BUNDLE_CONFIG, cfg)
    return bundle


BUNDLE_CONFIG, BUNDLE_MODEL, BUNDLE_BASE = "config.yaml", "model.pt", "base_model.pt"


def _place(src: Path, dst: Path) -> None:
    """``src`` at ``dst``: a hard link where the file system allows (no second copy of the weights), else a copy."""
    import os
    import shutil

    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
