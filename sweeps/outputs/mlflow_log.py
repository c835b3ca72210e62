"""A sweep's run tree in MLflow, besides what ``sweeps.shell.trial_logger`` writes while trials run.

One experiment per dataset. In it: ``base model: <split>`` (kind ``base``: config, val metrics, loss
curve, dataset), and per study a parent run ``<split>, <K>-shot`` (kind ``sweep``) with its trials
(kind ``trial``) and test rows (kind ``test``: per seed and mean / sd / 95% CI) as children. When a
study ends, ``log_study`` gives each trial run its full config, code version, dataset and cost (and,
after a store outage, its last metrics and end state), tags and describes the selected trial, and
logs the study's files, verdicts and selection metrics on the parent. Every run is found again by
its tags: a resumed sweep adds no duplicates.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import dkan
from dkan import bundle, runfolder, yamlio
from dkan.evaluation.aggregate import aggregate_seeds
from dkan.model.checkpoint import load_checkpoint
from dkan.names import HEADLINE
from sweeps.core.jobspec import finetune_job
from sweeps.core.layout import RunLayout
from sweeps.core.outcome import StudyOutcome
from sweeps.core.plan import Plan, StudySpec
from sweeps.core.selection import TrialSummary
from sweeps.shell.tracker import Tracker
from sweeps.tracking import (
    TAG_CODE,
    TAG_KEY,
    TAG_KIND,
    TAG_NOTE,
    TAG_SELECTED,
    flatten,
    trial_state,
    trial_tags,
)


def open_study_run(plan: Plan, study: StudySpec) -> str:
    """The parent run of one (split, K) study (found again on resume)."""
    params = {"split": study.split.name, "shots": study.shots, "seeds": f"{plan.seeds[0]}-{plan.seeds[-1]}",
              "trials": plan.budget.trials, "protocol": plan.protocol, "profile": plan.profile, "metric": plan.metric}
    tracker = Tracker(plan.tracking_uri, plan.dataset)
    return tracker.run(f"{study.split.name}, {study.shots}-shot", {TAG_KEY: f"{plan.out}|{study.key}",
                                                                    TAG_KIND: "sweep"}, params)


def log_study(plan: Plan, layout: RunLayout, outcome: StudyOutcome) -> None:
    """Everything a finished study adds to MLflow (module docstring); then its parent run is finished."""
    tracker = Tracker(plan.tracking_uri, plan.dataset)
    log_search(tracker, plan, layout, outcome)
    parent, key = outcome.parent_run, outcome.key
    for row, seeds in outcome.per_row.items():
        c = outcome.selection.candidates.get(row)
        params = {**(c.point if c else {}), "row": row, **({"method": c.method} if c else {})}
        run = tracker.run(f"test: {row}", {TAG_KEY: f"{plan.out}|{key}|test|{row}", TAG_KIND: "test"}, params, parent)
        for seed, m in seeds.items():
            tracker.metrics(run, {f"seed_{k}": v for k, v in m.items() if k in HEADLINE}, step=seed)
        stats = ("mean", "std", "ci95_low", "ci95_high")
        tracker.metrics(run, {f"{k}_{s}": v[s] for k, v in aggregate_seeds(seeds).items() for s in stats})
        tracker.finish(run, "completed")
    for f in (layout.results_md(key), layout.results_json(key), layout.per_class_json(key)):
        tracker.client.log_artifact(parent, str(f))
    for name in (bundle.CONFIG, bundle.CLASSES):  # the bundle's config and class list (the weights: the models)
        if (layout.bundle(key) / name).is_file():
            tracker.client.log_artifact(parent, str(layout.bundle(key) / name), "bundle")
    for png in sorted(layout.plots(key).glob("*.png")):
        tracker.client.log_artifact(parent, str(png), "plots")
    for i, sentence in enumerate(outcome.findings.verdicts):
        tracker.client.set_tag(parent, f"dkan.verdict.{i}", sentence[:4000])
    tracker.tags(parent, {"dkan.recommendation": outcome.findings.recommendation,
                          "dkan.recommended": outcome.selection.recommended})
    best = outcome.selection.choice.trial.report
    selection = {f"best_{k}": v for k, v in (best.named_means() if best else {}).items()}
    tracker.metrics(parent, selection | {"seed_finetunes": outcome.selection.finetunes} | cost_metrics(outcome.cost))
    bound = {f"bound_{k}": v for k, v in ((outcome.cost or {}).get("estimate") or {}).items() if k in UNITS}
    run = tracker.client.get_run(parent)
    tracker.params(parent, {k: v for k, v in bound.items() if k not in run.data.params})  # a resumed study: once
    tracker.finish(parent, "completed")


UNITS = ("finetune_images", "eval_images")  # sweeps.core.estimate.Units: the estimate's bound, the study's actual


def cost_metrics(cost: dict[str, Any] | None) -> dict[str, float]:
    """What the study spent, in units no machine changes (its parent run's metrics)."""
    actual = (cost or {}).get("actual") or {}
    return {k: float(actual[k]) for k in UNITS if k in actual}


def log_search(tracker: Tracker, plan: Plan, layout: RunLayout, outcome: StudyOutcome) -> None:
    """``log_trials`` for a study's finished search: each trial's first seed config as it ran."""
    study, sel = outcome.study, outcome.selection
    trials = [_trial_record(plan, layout, study, t) for t in sel.trials if t.trial_id]
    note = (f"**Recommended** for {study.key} ({sel.recommended}, mean {plan.objective} "
            f"{sel.choice.trial.objective:.4f} over {len(plan.seeds)} seeds), by the rule: {sel.rule_sentence()}."
            f"\n\n{outcome.findings.recommendation}\n\nOn test:\n"
            + "\n".join(f"- {v}" for v in outcome.findings.verdicts))
    log_trials(tracker, study.key, trials, sel.choice.trial.trial_id, note, plan.data_root, dkan.code_version(),
               plan.resources.trial_cost(), outcome.parent_run)


def _trial_record(plan: Plan, layout: RunLayout, study: StudySpec, t: TrialSummary) -> dict[str, Any]:
    first = plan.seeds[0]
    folder = layout.trial_seed(study.key, t.trial_id, first)
    # the seed's own config.yaml (threads and device as run); built again if the trial never started it
    cfg = _read_yaml(folder / runfolder.CONFIG) or asdict(finetune_job(
        study.template, t.method, first, folder, plan.select_split, t.point).cfg)
    return {"trial_id": t.trial_id, "config": cfg, "point": t.point, "wall_s": t.wall_s, "seeds_done": t.seeds_done,
            "state": trial_state(t.seeds_done, len(plan.seeds), t.error is not None),
            "last_metrics": t.report.named_means() if t.report else {}}


def log_trials(tracker: Tracker, key: str, trials: list[dict[str, Any]], selected: str | None, note: str,
               data_root: Path, code_version: str, cost_per_s: tuple[float, float], parent: str | None = None) -> None:
    """What each trial run gets once its study's search is over (resume-safe; done once per run): its
    full fine-tune config (params and config.yaml), code version, dataset, cost (CPU/GPU seconds:
    ``cost_per_s`` = (CPUs, GPUs) a trial holds, times its wall time); the selected one tagged and described.

    ``trials``: {"trial_id", "config": the fine-tune config dict of its first seed, "point", "wall_s", and optional
    "state" (``trial_state``), "last_metrics" (its last selection metrics) and "seeds_done"}: a run whose end or
    last result never reached the store (an outage) gets them here."""
    for t in trials:
        run_id = tracker.find(**trial_tags(key, parent, t["trial_id"]))
        if run_id is None:
            continue
        run = tracker.client.get_run(run_id)
        missing = {k: v for k, v in (t.get("last_metrics") or {}).items() if run.data.metrics.get(k) != v}
        if missing:  # its last result never reached the store (an outage while it ran)
            tracker.metrics(run_id, missing, step=int(t.get("seeds_done", 0)))
        if run.info.status == "RUNNING" and t.get("state"):  # its end never reached the store
            tracker.finish(run_id, t["state"], status="FAILED" if t["state"] == "failed" else "FINISHED")
        if "dkan.logged" not in run.data.tags:  # its searched values (a fixed candidate's too) and its config
            tracker.params(run_id, {k: v for k, v in (t.get("point") or {}).items() if k not in run.data.params}
                           | flatten(t["config"]))
            tracker.client.log_text(run_id, yamlio.dumps(t["config"]), "config.yaml")
            tracker.dataset(run_id, data_root, "train")
            wall = float(t.get("wall_s") or 0.0)
            tracker.metrics(run_id, {"wall_s": wall, "cost_cpu_s": wall * cost_per_s[0],
                                     "cost_gpu_s": wall * cost_per_s[1]})
            tracker.tags(run_id, {TAG_CODE: code_version, "dkan.logged": "true"})
        if t["trial_id"] == selected:
            tracker.tags(run_id, {TAG_SELECTED: "true", TAG_NOTE: note})


def _read_yaml(path: Path) -> dict | None:
    try:
        return yamlio.read(Path(path))
    except (OSError, yamlio.BadYaml):
        return None


def log_base_run(tracker: Tracker, out: Path, split: str, ckpt: Path, data_root: Path) -> str:
    """The base model's run (kind ``base``): its config (params and config.yaml), val metrics, the loss
    curve (metric ``loss`` by iteration, from the run folder's history) and dataset; found again on resume."""
    tags = {TAG_KEY: f"{out}|base|{split}", TAG_KIND: "base"}
    found = tracker.find(**tags)
    if found:
        return found
    folder = Path(ckpt).parent
    cfg = (yamlio.read(folder / runfolder.CONFIG) if (folder / runfolder.CONFIG).is_file()
           else load_checkpoint(Path(ckpt), "base checkpoint", "pass a model_final.pt")["meta"]["config"])
    run_id = tracker.run(f"base model: {split}", tags, {"split": split, **flatten(cfg)})
    tracker.client.log_text(run_id, yamlio.dumps(cfg), "config.yaml")
    tracker.dataset(run_id, data_root, "train")
    history = runfolder.read_jsonl(folder / runfolder.HISTORY)
    tracker.series(run_id, [(k, v, int(h["iteration"])) for h in history for k, v in h.items() if k != "iteration"])
    m = runfolder.done_metrics(folder) or {}
    tracker.metrics(run_id, {f"val_{k}" if "AP" in k else k: v for k, v in m.items()})
    tracker.tags(run_id, {"dkan.checkpoint": str(ckpt)})
    tracker.finish(run_id, "completed")
    return run_id
