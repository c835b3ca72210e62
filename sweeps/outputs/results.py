"""A study's result files: ``OUT/results/<key>.md`` (the test table, retention, verdicts, what was
selected, how the search went, the paper's rows), ``<key>.json`` (all of it, per seed) and
``<key>_per_class_ap.json``; each written whole or not at all."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dkan import runfolder
from dkan.evaluation.aggregate import to_json, to_markdown
from dkan.names import HEADLINE, PER_CLASS_PREFIX
from dkan.reference import METRIC as REFERENCE_METRIC
from dkan.reference import protocol as reference_protocol
from sweeps.layout import RunLayout
from sweeps.outcome import StudyOutcome
from sweeps.plan import Plan


def search_lines(search: Mapping[str, Any], n_seeds: int | None = None) -> list[str]:
    """How a search went (a results file's ``search`` block): the counts, then each failed trial with
    its hyperparameters and the last line of its error."""
    every = f"ran all {n_seeds} seeds" if n_seeds else "ran every seed"
    failed = search.get("failed") or []
    lines = [f"search: {search['trials']} trials: {search.get('all_seeds', 0)} {every}, "
             f"{search.get('stopped_early', 0)} stopped early, {len(failed)} failed"]
    for f in failed:
        hp = ", ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}"
                       for k, v in (f.get("hyperparameters") or {}).items())
        err = (str(f.get("error") or "error").strip().splitlines() or ["error"])[-1][:300]
        lines.append(f"  - failed ({hp}) after {f.get('seeds_done', '?')} seed(s): {err}")
    return lines


def markdown(plan: Plan, outcome: StudyOutcome) -> str:
    """The study's results as markdown (also what the sweep prints at the end of a study)."""
    f, study, sel = outcome.findings, outcome.study, outcome.selection
    names = [m for m in next(iter(f.table.values())) if m.startswith(PER_CLASS_PREFIX)]
    title = (f"{plan.dataset}, {study.split.name}, {study.shots}-shot, test, seeds {plan.seeds[0]}-{plan.seeds[-1]} "
             f"({plan.metric} AP50 in points, mean ± sample std [95% CI])")
    if plan.protocol == "paper":
        title += " -- PAPER PROTOCOL: hyperparameters selected on test"
    parts = [title, to_markdown(f.table, [*HEADLINE, *names], metric=plan.metric, ci=True)]
    parts.append("AP_B retention (AP_B after fine-tuning / the base model's): "
                 + ", ".join(f"{k} {v * 100:.0f}%" for k, v in f.retention.items() if not math.isnan(v)))
    parts += [f"- {v}" for v in f.verdicts]
    parts.append("tuned hyperparameters: " + ", ".join(f"{k}={v:.4g}" for k, v in sel.tuned.hparams.items())
                 + "; authors' defaults: " + ", ".join(f"{k}={v:g}" for k, v in sel.defaults.hparams.items()))
    parts.append("\n".join(search_lines(sel.search_summary(), len(plan.seeds))))
    if f.reference:
        ours = {k: v for k, v in f.table.items() if not k.startswith("base")}
        parts.append("Compared with the paper (VOC07 11-point AP50; the paper used one few-shot seed and chose its "
                     "best checkpoint on test):\n\n"
                     + to_markdown({**ours, **f.reference}, list(HEADLINE), metric=REFERENCE_METRIC))
    return "\n\n".join(parts)


def write_results(plan: Plan, layout: RunLayout, outcome: StudyOutcome) -> list[Path]:
    """OUT/results/<key>.md, .json and _per_class_ap.json (each written atomically)."""
    f, study, key = outcome.findings, outcome.study, outcome.key
    per_class = {name: {m.removeprefix(PER_CLASS_PREFIX): agg[m]["mean"] for m in agg if m.startswith(PER_CLASS_PREFIX)}
                 for name, agg in f.table.items()}
    full = {"study": {"dataset": plan.dataset, "split": study.split.name, "shots": study.shots}, "metric": plan.metric,
            "table": f.table, "per_seed": outcome.per_row, "best_hyperparameters": outcome.selection.tuned.hparams,
            "stats": f.comparisons, "verdict": f.verdicts, "retention": f.retention, "reference": f.reference,
            "reference_protocol": reference_protocol() if f.reference else None,
            "seed_finetunes_in_search": outcome.selection.finetunes, "search": outcome.selection.search_summary()}
    return [
        runfolder.write_text_atomic(layout.results_md(key), markdown(plan, outcome) + "\n"),
        runfolder.write_text_atomic(layout.results_json(key), to_json(full)),
        runfolder.write_text_atomic(layout.per_class_json(key), to_json(per_class)),
    ]
