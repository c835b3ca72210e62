"""What a person sees of a study's decision: the picture (its rows are the outcome's steps and intervals,
val beside test), the report with it at the top and the Wilcoxon floor said once, the MLflow parent run
holding it. A fake outcome from the typed classes; no Ray, nothing trained."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from dkan.config import FinetuneConfig
from dkan.evaluation.stats import paired, wilcoxon_floor
from sweeps.core.jobspec import WorkerResources
from sweeps.core.outcome import StudyOutcome, conclude
from sweeps.core.plan import Budget, ClassSplitSpec, Plan, StudySpec
from sweeps.core.progress import TrialReport
from sweeps.core.selection import Candidate, Selection, TrialSummary, recommend
from sweeps.core.space import DISTILL_SPACE
from sweeps.outputs.decision import DECISION_PNG, decision_rows, write_decision

KEY = "neu-det_split1_5shot"
SEEDS = (1, 2, 3)
# AP_all per seed on val: plain gains too little on TFA; the authors' defaults gain enough; the tuned one
# gains on them, but its interval reaches below 0
VAL = {"tfa": (0.300, 0.310, 0.305), "plain": (0.302, 0.311, 0.309), "dkan_defaults": (0.330, 0.338, 0.331),
       "dkan": (0.345, 0.336, 0.333)}
TEST = {"tfa": (0.280, 0.300, 0.290), "plain": (0.285, 0.296, 0.300), "dkan_defaults": (0.310, 0.305, 0.318),
        "dkan": (0.330, 0.328, 0.335)}


def _plan(out: Path) -> Plan:
    return Plan(data_root=out / "data", dataset="neu-det", splits=(ClassSplitSpec("split1", 1),), shots=(5,),
                seeds=SEEDS, profile="cpu-quick", budget=Budget(trials=3), space=dict(DISTILL_SPACE),
                resources=WorkerResources(), out=out, tracking_uri=f"sqlite:///{out / 'mlflow.db'}", protocol="val",
                base_checkpoint=None, cache_dir=out / "cache")


def _selection(plan: Plan) -> Selection:
    """The candidates with their val seeds, and the rule's own steps over them."""
    cands = {}
    for i, (name, aps) in enumerate(VAL.items()):
        method = "dkan" if name.startswith("dkan") else name
        point = {"fka_weight": 1.0 + i} if method == "dkan" else {}
        report = TrialReport.of_seeds("val", [(s, {"AP_all": a}) for s, a in zip(SEEDS, aps)])
        trial = TrialSummary(f"t{i}", method, point, report, None, candidate=None if name == "dkan" else name)
        cands[name] = Candidate(name, method, point, trial)
    rec, steps = recommend(cands, plan.budget.margin)
    trials = tuple(c.trial for c in cands.values())
    return Selection(cands, rec, tuple(steps), trials, len(SEEDS), plan.budget.margin, "the best mean val_AP_all")


def _outcome(plan: Plan) -> StudyOutcome:
    per_row = {row: {s: {"AP_all": a, "AP_base": 0.5, "AP_novel": a / 2} for s, a in zip(SEEDS, aps)}
               for row, aps in TEST.items()} | {"base": {0: {"AP_base": 0.6, "AP_all": 0.3}}}
    study = StudySpec(plan.splits[0], 5, KEY, FinetuneConfig())
    return conclude(plan, study, "parent", plan.out / "base.pt", _selection(plan), per_row)


def test_the_rows_are_the_rules_steps_with_their_val_and_test_intervals(tmp_path):
    plan = _plan(tmp_path)
    outcome = _outcome(plan)
    sel = outcome.selection
    assert sel.recommended == "dkan_defaults"  # the fake data decide as their comment says
    rows = decision_rows(sel, outcome.per_row)
    assert [(r.candidate, r.against, r.replaced, r.recommended) for r in rows] == [
        ("tfa", None, False, False), ("plain", "tfa", False, False), ("dkan_defaults", "tfa", True, True),
        ("dkan", "dkan_defaults", False, False)]
    for row, step in zip(rows[1:], sel.steps):
        assert row.selection == step.diff  # val: the interval the rule itself used
        expected = paired(dict(zip(SEEDS, TEST[row.candidate])), dict(zip(SEEDS, TEST[row.against])))
        assert row.test["mean_diff"] == pytest.approx(expected["mean_diff"])
        assert (row.test["ci95_low"], row.test["ci95_high"]) == pytest.approx((expected["ci95_low"],
                                                                                expected["ci95_high"]))
    # a row without test runs has no test interval, and the picture is still drawn
    no_test = {k: v for k, v in outcome.per_row.items() if k != "dkan"}
    assert decision_rows(sel, no_test)[-1].test is None
    path = write_decision(plan, plan.layout, outcome)
    assert path == plan.layout.plots(KEY) / DECISION_PNG
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 600 and im.size[1] > 300


def test_a_lone_candidate_stands_first_and_is_the_recommended_row(tmp_path):
    plan = _plan(tmp_path)
    sel = _selection(plan)
    only = Selection({"tfa": sel.candidates["tfa"]}, "tfa", (), sel.trials[:1], 3, sel.margin, "")
    [row] = decision_rows(only, {})
    assert (row.candidate, row.against, row.selection, row.test, row.recommended) == ("tfa", None, None, None, True)


def _results(plan: Plan, outcome: StudyOutcome) -> None:
    from sweeps.outputs.figures import write_figures
    from sweeps.outputs.results import write_results

    write_results(plan, plan.layout, outcome)
    with pytest.warns(UserWarning):  # the fake outcome has no checkpoints for the PR curves: a warning only
        made = write_figures(plan, plan.layout, outcome)
    assert made["decision"] == plan.layout.plots(KEY) / DECISION_PNG


def test_the_report_opens_with_the_picture_and_says_the_wilcoxon_floor_once(tmp_path):
    from sweeps.outputs.report import write_report

    plan = _plan(tmp_path)
    outcome = _outcome(plan)
    _results(plan, outcome)
    floor = wilcoxon_floor(len(SEEDS))
    data = json.loads(plan.layout.results_json(KEY).read_text())
    assert sum(floor in v for v in data["verdict"]) == 3  # the results still say it per comparison
    out_html, out_md = write_report(tmp_path)
    md = out_md.read_text()
    top = md.index(f"![decision: {KEY}](plots/{KEY}/{DECISION_PNG})")
    assert top < md.index("| dataset |")  # above the main table
    assert md.count(f"plots/{KEY}/{DECISION_PNG}") == 1  # not again among the study's plots
    assert md.count(floor) == 1 and "3 seeds (1, 2, 3)" in md
    section = md[md.index(f"## {KEY}"):]
    assert section.index(floor) < section.index("- no significant difference")  # said before the bullets
    page = out_html.read_text()
    assert page.count(html.escape(floor)) == 1 and page.index("alt='decision") < page.index("<table>")
    assert page.count("<img alt='decision") == 1


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Plan:
    """A study logged to a sqlite store whose experiment is not the first (its id is not a guess)."""
    from mlflow.tracking import MlflowClient

    from sweeps.outputs.mlflow_log import log_study, open_study_run

    plan = _plan(tmp_path_factory.mktemp("logged"))
    MlflowClient(plan.tracking_uri).create_experiment("another data set")
    parent = open_study_run(plan, StudySpec(plan.splits[0], 5, KEY, FinetuneConfig()))
    outcome = _outcome(plan)
    outcome = StudyOutcome(**{**outcome.__dict__, "parent_run": parent})
    _results(plan, outcome)
    log_study(plan, plan.layout, outcome)
    return plan


def test_the_picture_is_an_artifact_of_the_studys_parent_run(logged):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(logged.tracking_uri)
    [parent] = client.search_runs([client.get_experiment_by_name("neu-det").experiment_id],
                                  "tags.`dkan.run_kind` = 'sweep'")
    assert f"plots/{DECISION_PNG}" in [a.path for a in client.list_artifacts(parent.info.run_id, "plots")]


def test_the_consoles_last_line_opens_the_runs_table_of_the_sweeps_experiment(logged, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    import sweeps.core.inputs
    import sweeps.shell.sweep
    from sweeps.run_tune import main

    monkeypatch.setattr(sweeps.core.inputs, "build_plan", lambda args, **kw: logged)
    monkeypatch.setattr(sweeps.shell.sweep, "run_sweep", lambda *a, **kw: [])  # the sweep itself: logged above
    assert main(["--out", str(logged.out), "--seeds", "1-3", "--shots", "5"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    eid = MlflowClient(logged.tracking_uri).get_experiment_by_name("neu-det").experiment_id
    assert eid not in ("0", "1")  # "another data set" came first
    assert last.endswith(f"then open http://127.0.0.1:5000/#/experiments/{eid}/runs")
    assert f"mlflow ui --backend-store-uri {logged.tracking_uri} --host 127.0.0.1 --port 5000" in last


def test_a_servers_address_drops_its_credentials_and_a_missing_experiment_is_named(logged, monkeypatch):
    import sweeps.shell.tracker as tracking

    monkeypatch.setattr(tracking, "experiment_id", lambda uri, name: "7")
    assert tracking.runs_address("https://alice:s3cret@mlflow.example:8443/", "neu-det") == \
        "open https://mlflow.example:8443/#/experiments/7/runs"
    monkeypatch.undo()
    line = tracking.runs_address(logged.tracking_uri, "tiles")  # no such experiment in the store
    assert line.endswith("then open http://127.0.0.1:5000 (experiment tiles)")


def test_the_floor_note_is_the_one_the_paired_test_writes():
    d = paired({1: 0.1, 2: 0.3, 3: 0.2}, {1: 0.0, 2: 0.1, 3: 0.15})
    assert d["note"] == wilcoxon_floor(3) and "smallest p = 0.25" in d["note"]
    assert wilcoxon_floor(6) == "" and math.isclose(2 / 2**5, 0.0625) and wilcoxon_floor(5) != ""


def test_a_fixed_candidate_the_race_stopped_is_named_in_the_selection_lines(tmp_path):
    """Under --scheduler race TFA may stop before the last seed: it is no candidate, and the results say why."""
    from dataclasses import replace

    from sweeps.outputs.results import selection_lines

    plan = _plan(tmp_path)
    outcome = _outcome(plan)
    sel = outcome.selection
    report = TrialReport.of_seeds("val", [(1, {"AP_all": 0.25}), (2, {"AP_all": 0.26})])
    stopped = TrialSummary("t9", "tfa", {}, report, None, candidate="tfa")
    cands = {k: v for k, v in sel.candidates.items() if k != "tfa"}
    rec, steps = recommend(cands, plan.budget.margin, rule="se1")
    sel = replace(sel, candidates=cands, recommended=rec, steps=tuple(steps),
                  trials=(stopped, *[t for t in sel.trials if t.candidate != "tfa"]), rule="se1")
    text = "\n".join(selection_lines(plan, replace(outcome, selection=sel)))
    assert "  - TFA: stopped after 2 of 3 seeds (mean val_AP_all 25.5; a paired test" in text
    assert "one standard error below its mean gain above 0" in text and "mean - 1 SE" in text
    assert not [ln for ln in text.splitlines() if ln.startswith("  - tfa minus") or " minus tfa" in ln]
