"""Keep only what can be chosen: after selection the non-candidate trials' model files go, nothing else."""

from __future__ import annotations

from types import SimpleNamespace

from dkan import runfolder
from sweeps.core.layout import RunLayout
from sweeps.shell.prune import PRUNED, prune_checkpoints
from sweeps.tracking import sqlite_uri

KEY = "tiles_split1_2shot"


def _seed(layout: RunLayout, trial: str, seed: int, done: bool = True) -> None:
    d = layout.trial_seed(KEY, trial, seed)
    d.mkdir(parents=True)
    (d / runfolder.FINAL if done else d / runfolder.LAST).write_bytes(b"x" * 1000)
    runfolder.write_yaml(d / runfolder.CONFIG, {"seed": seed})
    if done:
        runfolder.write_json(d / runfolder.METRICS, {"AP_all": 0.5})


def _plan(tmp_path, keep: str):
    layout = RunLayout(tmp_path / "out")
    return SimpleNamespace(layout=layout, seeds=(1, 2), budget=SimpleNamespace(keep_checkpoints=keep),
                           tracking_uri=sqlite_uri(layout.mlflow_db), dataset="tiles")


def test_prune_deletes_only_finished_seeds_of_trials_no_candidate_stands_on_and_finishes_an_interrupted_one(tmp_path):
    plan = _plan(tmp_path, "selected")
    layout = plan.layout
    for s in (1, 2):
        _seed(layout, "tfa_trial", s)
        _seed(layout, "tuned_trial", s)
    _seed(layout, "beaten", 1)
    _seed(layout, "beaten", 2, done=False)  # stopped mid-seed: its last.pt is resume state, not a chosen model
    _seed(layout, "stopped", 1)
    # a prune cut off between its note and the deletion: the next one finishes it
    runfolder.write_json(layout.trial_seed(KEY, "stopped", 1) / PRUNED, {"file": runfolder.FINAL})
    trial = lambda i: SimpleNamespace(trial_id=i)  # noqa: E731
    selection = SimpleNamespace(
        candidates={"tfa": SimpleNamespace(trial=trial("tfa_trial")),
                    "dkan": SimpleNamespace(trial=trial("tuned_trial"))},
        trials=[trial("tfa_trial"), trial("tuned_trial"), trial("beaten"), trial("stopped"), trial(None)])
    study = SimpleNamespace(key=KEY)
    assert prune_checkpoints(_plan(tmp_path, "all"), study, selection) == 0  # --keep-checkpoints all
    assert len(list(layout.runs(KEY).glob("*/seed*/model_final.pt"))) == 6
    assert prune_checkpoints(plan, study, selection) == 2000
    left = sorted(str(p.relative_to(layout.runs(KEY))) for p in layout.runs(KEY).glob("*/seed*/*.pt"))
    assert left == ["beaten/seed2/last.pt", "tfa_trial/seed1/model_final.pt", "tfa_trial/seed2/model_final.pt",
                    "tuned_trial/seed1/model_final.pt", "tuned_trial/seed2/model_final.pt"]
    for t in ("beaten", "stopped"):  # metrics, config and the note stay
        d = layout.trial_seed(KEY, t, 1)
        assert runfolder.done_metrics(d) == {"AP_all": 0.5} and (d / runfolder.CONFIG).is_file()
        assert runfolder.read_json(d / PRUNED)["file"] == runfolder.FINAL
    assert prune_checkpoints(plan, study, selection) == 0  # nothing left to prune: a resumed study is a no-op
