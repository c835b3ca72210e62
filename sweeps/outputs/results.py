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
from sweeps.core.layout import RunLayout
from sweeps.core.outcome import StudyOutcome, describe_candidate
from sweeps.core.plan import Plan, interval_words
from sweeps.core.selection import low, pareto_front
from sweeps.core.shape import LABELS


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
    parts = [title, f"**{f.recommendation}**", to_markdown(f.table, [*HEADLINE, *names], metric=plan.metric, ci=True)]
    parts.append("AP_B retention (AP_B after fine-tuning / the base model's): "
                 + ", ".join(f"{k} {v * 100:.0f}%" for k, v in f.retention.items() if not math.isnan(v)))
    parts += [f"- {v}" for v in f.verdicts]
    parts.append("\n".join(selection_lines(plan, outcome)))
    parts.append("\n".join(search_lines(sel.search_summary(), len(plan.seeds))))
    if outcome.cost:
        parts.append(cost_line(outcome.cost))
    if f.reference:
        ours = {k: v for k, v in f.table.items() if not k.startswith("base")}
        parts.append("Compared with the paper (VOC07 11-point AP50; the paper used one few-shot seed and chose its "
                     "best checkpoint on test):\n\n"
                     + to_markdown({**ours, **f.reference}, list(HEADLINE), metric=REFERENCE_METRIC))
    return "\n\n".join(parts)


def cost_line(cost: Mapping[str, Any]) -> str:
    """The estimate made before the study beside what it cost."""
    a, e = cost["actual"], cost.get("estimate")
    said = (f"estimated {e['wall_s'] / 60:.1f} min, {e['finetunes']} seed fine-tunes at most, {e['disk_mb']:.0f} MB "
            f"({e['source']})" if e else "no estimate (no rates yet)")
    units = ""
    if "finetune_images" in a:  # in units no machine changes (sweeps.core.estimate.Units); older results lack them
        bound = (f"at most {e['finetune_images']:,} and {e['eval_images']:,} estimated, "
                 if e and e.get("finetune_images") else "")
        units = (f"; {bound}{a['finetune_images']:,} fine-tune iteration-images and {a['eval_images']:,} evaluation "
                 "images spent")
    return (f"cost: {said}; actual {a['wall_s'] / 60:.1f} min (up to the registry), {a['seed_finetunes']} seed "
            f"fine-tunes, {a['test_evaluations']} test evaluations, {a['disk_mb']:.0f} MB{units}")


def selection_lines(plan: Plan, outcome: StudyOutcome) -> list[str]:
    """The selection on val as it happened: each candidate's mean, then each step of the rule."""
    sel = outcome.selection
    lines = [f"selection on {plan.select_split} ({sel.n_seeds} seeds; the tuned DKAN: {sel.how_tuned}):"]
    for name in sel.candidates:
        lines.append(f"  - {describe_candidate(sel, name)}: mean {plan.objective} "
                     f"{sel.candidates[name].trial.objective * 100:.1f}")
    for t in sel.trials:  # a fixed candidate the race stopped (--scheduler race): out, and said so
        if t.candidate and t.candidate not in sel.candidates and t.error is None and 0 < t.seeds_done < sel.n_seeds:
            lines.append(f"  - {LABELS.get(t.candidate, t.candidate)}: stopped after {t.seeds_done} of {sel.n_seeds} "
                         f"seeds (mean {plan.objective} {t.objective * 100:.1f}; a paired test found it worse than "
                         "the best run before it): not a candidate")
    for st in sel.steps:
        d = st.diff
        se1 = f"; mean - 1 SE {low(d, 'se1') * 100:.1f}" if sel.rule == "se1" else ""
        lines.append(f"  - {st.challenger} minus {st.incumbent}: {d['mean_diff'] * 100:+.1f} (95% CI "
                     f"{d['ci95_low'] * 100:.1f} to {d['ci95_high'] * 100:.1f}{se1}, {d['n']} seeds): "
                     + (f"{st.challenger} replaces {st.incumbent}" if st.replaced else f"{st.incumbent} stays")
                     + f" (it must gain at least {sel.margin * 100:g} points with {interval_words(sel.rule)} "
                       "above 0)")
    return lines


def write_results(plan: Plan, layout: RunLayout, outcome: StudyOutcome) -> list[Path]:
    """OUT/results/<key>.md, .json and _per_class_ap.json (each written atomically)."""
    f, study, key = outcome.findings, outcome.study, outcome.key
    per_class = {name: {m.removeprefix(PER_CLASS_PREFIX): agg[m]["mean"] for m in agg if m.startswith(PER_CLASS_PREFIX)}
                 for name, agg in f.table.items()}
    full = {"study": {"dataset": plan.dataset, "split": study.split.name, "shots": study.shots}, "metric": plan.metric,
            "recommendation": recommendation_record(outcome), "candidates": candidates_record(outcome),
            "table": f.table, "per_seed": outcome.per_row, "best_hyperparameters": outcome.selection.choice.point,
            "stats": f.comparisons, "verdict": [f.recommendation, *f.verdicts], "retention": f.retention,
            "reference": f.reference,
            "reference_protocol": reference_protocol() if f.reference else None,
            "seed_finetunes_in_search": outcome.selection.finetunes, "search": outcome.selection.search_summary(),
            "cost": outcome.cost}
    return [
        runfolder.write_text_atomic(layout.results_md(key), markdown(plan, outcome) + "\n"),
        runfolder.write_text_atomic(layout.results_json(key), to_json(full)),
        runfolder.write_text_atomic(layout.per_class_json(key), to_json(per_class)),
    ]


def recommendation_record(outcome: StudyOutcome) -> dict[str, Any]:
    """The recommendation as the results JSON, the report and the bundle's provenance record it."""
    sel = outcome.selection
    c = sel.choice
    return {"line": outcome.findings.recommendation, "candidate": c.name, "method": c.method, "point": c.point,
            "trial_id": c.trial.trial_id, "selected_on": c.trial.report.split if c.trial.report else None,
            "rule": sel.rule_sentence(), "rule_name": sel.rule,
            "tuned_how": sel.how_tuned}


def candidates_record(outcome: StudyOutcome) -> dict[str, Any]:
    sel = outcome.selection
    return {"candidates": {n: {"method": c.method, "point": c.point, "trial_id": c.trial.trial_id,
                               "seed_objective": c.seed_ap, "mean_objective": c.trial.objective}
                           for n, c in sel.candidates.items()},
            "steps": [{"challenger": st.challenger, "incumbent": st.incumbent, "diff": st.diff,
                       "replaced": st.replaced} for st in sel.steps],
            "pareto_front": [{"trial_id": t.trial_id, "point": t.point, "AP_novel": t.report.means["AP_novel"],
                              "retention": t.report.retention}
                             for t in pareto_front([t for t in sel.trials if t.method == "dkan"])]}
