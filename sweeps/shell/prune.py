"""Keep only what can be chosen: once a study has selected, the model files of its search trials that are
no candidate (stopped early, failed, or beaten by the tuned trial) are deleted. The candidates' checkpoints
(every seed: the test phase evaluates them, the bundle and the registry ship one) are never touched.

A pruned seed keeps its metrics.json, config.yaml and history; ``pruned.json`` beside them says what went,
written before the file is deleted (an interrupted prune is finished by the next one, and ``--resume``
never fine-tunes a finished seed again: metrics.json marks it done). MLflow tags the trial's run
``dkan.checkpoint=pruned``. ``--keep-checkpoints all`` turns this off.
"""

from __future__ import annotations

from pathlib import Path

from dkan import runfolder
from sweeps.core.plan import Plan, StudySpec
from sweeps.core.selection import Selection
from sweeps.shell.tracker import Tracker
from sweeps.tracking import trial_tags

PRUNED = "pruned.json"
TAG_CHECKPOINT = "dkan.checkpoint"


def prunable(plan: Plan, study: StudySpec, selection: Selection) -> dict[str, list[Path]]:
    """{trial id: its finished seeds' model files} of every trial no candidate stands on."""
    keep = {c.trial.trial_id for c in selection.candidates.values()}
    out: dict[str, list[Path]] = {}
    for t in selection.trials:
        if t.trial_id is None or t.trial_id in keep:
            continue
        files = [plan.layout.trial_seed(study.key, t.trial_id, s) / runfolder.FINAL for s in plan.seeds]
        done = [f for f in files if f.is_file() and runfolder.done_metrics(f.parent) is not None]
        if done:
            out[t.trial_id] = done
    return out


def prune_checkpoints(plan: Plan, study: StudySpec, selection: Selection, parent: str | None = None) -> int:
    """Delete what ``prunable`` finds (unless ``--keep-checkpoints all``); the bytes freed. Each pruned trial's
    run (under the study's run ``parent``) is tagged."""
    if plan.budget.keep_checkpoints == "all":
        return 0
    freed, found = 0, prunable(plan, study, selection)
    for files in found.values():
        for f in files:
            size = f.stat().st_size
            runfolder.write_json(f.parent / PRUNED, {"file": f.name, "bytes": size, "why": (
                "not a candidate once the study selected: it cannot be chosen and the test phase does not use it "
                "(--keep-checkpoints all keeps it)")})
            f.unlink(missing_ok=True)
            freed += size
    if found:
        tracker = Tracker(plan.tracking_uri, plan.dataset)
        for trial_id in found:
            run_id = tracker.find(**trial_tags(study.key, parent, trial_id))
            if run_id:
                tracker.tags(run_id, {TAG_CHECKPOINT: "pruned"})
    return freed
