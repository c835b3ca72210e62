"""The selection rule on hand-made per-seed tables (no Ray): simplest first, a candidate replaces the one
standing only when it beats it on the same seeds by the margin with the paired interval above 0; trials
stopped early are never candidates; the Pareto pick; the recommendation line and what test says."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from sweeps.core.jobspec import WorkerResources
from sweeps.core.outcome import describe_candidate, recommendation
from sweeps.core.plan import Budget, ClassSplitSpec, Plan
from sweeps.core.progress import TrialReport
from sweeps.core.selection import Candidate, Selection, pareto_front, recommend, select
from sweeps.core.shape import ROW_NAMES, RunSpec
from sweeps.core.space import DISTILL_SPACE

DEFAULTS = {"fka_weight": 1.0, "lka_weight": 0.01, "fka_tau": 5.0, "lka_tau": 5.0}


def _plan(tmp_path, seeds=(1, 2, 3, 4, 5), **kw) -> Plan:
    return Plan(data_root=tmp_path, dataset="d", splits=(ClassSplitSpec("split1", 1),), shots=(5,), seeds=seeds,
                profile="cpu-quick", budget=Budget(trials=4), space=dict(DISTILL_SPACE), resources=WorkerResources(),
                out=tmp_path, tracking_uri="sqlite:///x.db", protocol="val", base_checkpoint=None, cache_dir=tmp_path,
                **kw)


def _report(aps, novel=None, retention=math.nan) -> TrialReport:
    per_seed = [(s, {"AP_all": a, "AP_base": a, "AP_novel": a if novel is None else novel}) for s, a in
                enumerate(aps, 1)]
    r = TrialReport.of_seeds("val", per_seed)
    return TrialReport(r.split, r.seed_ap, r.means, r.last_seed, 0.0, retention)


def _result(tid, aps, config, error=None, **kw):
    return SimpleNamespace(config=config, error=error, metrics={"trial_id": tid, **_report(aps, **kw).to_metrics()})


def _cand(name, aps) -> Candidate:
    from sweeps.core.selection import TrialSummary

    return Candidate(name, name.split("_")[0], {}, TrialSummary(name, name.split("_")[0], {}, _report(aps), None))


BASE = [0.20, 0.30, 0.25, 0.22, 0.28]


def test_a_candidate_replaces_a_simpler_one_only_when_clearly_better_on_the_same_seeds():
    up = [v + 0.03 for v in BASE]  # +3 points on every seed: replaces
    noisy = [0.35, 0.20, 0.33, 0.15, 0.34]  # +2.4 on average, but the interval spans 0: does not
    tiny = [v + 0.002 for v in BASE]  # better on every seed, by less than the margin: does not
    cands = {"tfa": _cand("tfa", BASE), "plain": _cand("plain", noisy), "dkan_defaults": _cand("dkan_defaults", tiny),
             "dkan": _cand("dkan", up)}
    rec, steps = recommend(cands, 0.005)
    assert rec == "dkan" and [(s.challenger, s.incumbent, s.replaced) for s in steps] == [
        ("plain", "tfa", False), ("dkan_defaults", "tfa", False), ("dkan", "tfa", True)]
    assert steps[-1].diff["mean_diff"] == pytest.approx(0.03) and steps[-1].diff["ci95_low"] > 0
    tie = {"tfa": _cand("tfa", BASE), "dkan_defaults": _cand("dkan_defaults", list(BASE))}
    assert recommend(tie, 0.005)[0] == "tfa"  # a tie keeps the simpler one
    worse = {"tfa": _cand("tfa", BASE), "dkan": _cand("dkan", [v - 0.05 for v in BASE])}
    assert recommend(worse, 0.0)[0] == "tfa"
    assert recommend({"dkan": _cand("dkan", BASE)}, 0.005) == ("dkan", [])


def test_select_reads_the_runs_drops_early_stopped_trials_and_a_baseline_can_win(tmp_path):
    plan = _plan(tmp_path)
    fixed = RunSpec("candidates", fixed={"tfa": ("tfa", {}), "plain": ("plain", {}),
                                         "dkan_defaults": ("dkan", DEFAULTS)})
    search = RunSpec("search", "dkan", DISTILL_SPACE, 3)
    cands = [_result("c1", [v + 0.05 for v in BASE], {"candidate": "tfa"}),
             _result("c2", BASE, {"candidate": "plain"}),
             _result("c3", BASE, {"candidate": "dkan_defaults"})]
    trials = [_result("s1", [0.9], {**DEFAULTS, "fka_weight": 3.0}),  # stopped early at 0.9: never a candidate
              _result("s2", [v + 0.01 for v in BASE], {**DEFAULTS, "fka_weight": 0.3}),
              _result("s3", [0.1] * 5, {**DEFAULTS, "fka_weight": 9.0}, error=RuntimeError("boom"))]
    sel = select(plan, [(fixed, cands), (search, trials)])
    assert list(sel.candidates) == ["tfa", "plain", "dkan_defaults", "dkan"]
    assert sel.candidates["dkan"].trial.trial_id == "s2" and sel.candidates["dkan"].point["fka_weight"] == 0.3
    assert sel.recommended == "tfa" and sel.choice.method == "tfa"  # TFA leads by 5 points on every seed
    assert sel.search_summary() == {"trials": 3, "all_seeds": 1, "stopped_early": 1, "failed": [
        {"hyperparameters": {**DEFAULTS, "fka_weight": 9.0}, "seeds_done": 5, "error": "RuntimeError: boom",
         "method": "dkan"}]}
    assert sel.finetunes == 3 * 5 + 1 + 5 + 5
    # the defaults beat every complete search trial: no separate tuned candidate
    sel = select(plan, [(fixed, cands), (search, trials[:1])])
    assert "dkan" not in sel.candidates and "dkan_defaults" in sel.candidates


def test_a_baselines_own_search_gives_its_candidate(tmp_path):
    plan = _plan(tmp_path, seeds=(1, 2))
    spec = RunSpec("search_tfa", "tfa", {"optim.lr": DISTILL_SPACE["fka_tau"]}, 2)
    sel = select(plan, [(spec, [_result("a", [0.1, 0.2], {"optim.lr": 2.0}),
                                _result("b", [0.3, 0.2], {"optim.lr": 3.0})])])
    assert list(sel.candidates) == ["tfa"] and sel.choice.point == {"optim.lr": 3.0}


def test_every_candidate_failing_is_a_clear_error(tmp_path):
    from dkan.errors import DkanError

    fixed = RunSpec("candidates", fixed={"tfa": ("tfa", {})})
    bad = SimpleNamespace(config={"candidate": "tfa"}, error=RuntimeError("Traceback\nDataError: bad box"), metrics={})
    with pytest.raises(DkanError, match="no trial reported a result .*DataError: bad box"):
        select(_plan(tmp_path), [(fixed, [bad])])


def test_the_pareto_pick_keeps_the_retention_asked_for(tmp_path):
    plan = _plan(tmp_path, seeds=(1, 2), objective_kind="pareto", min_retention=0.9)
    fixed = RunSpec("candidates", fixed={"dkan_defaults": ("dkan", DEFAULTS)})
    search = RunSpec("search", "dkan", DISTILL_SPACE, 3)
    grid = [_result("hi_novel", [0.5, 0.5], {**DEFAULTS, "fka_weight": 0.1}, novel=0.6, retention=0.7),
            _result("balanced", [0.4, 0.4], {**DEFAULTS, "fka_weight": 2.0}, novel=0.4, retention=0.95),
            _result("dominated", [0.45, 0.45], {**DEFAULTS, "fka_weight": 5.0}, novel=0.3, retention=0.9)]
    defaults = [_result("d", [0.3, 0.3], {"candidate": "dkan_defaults"}, novel=0.2, retention=0.99)]
    front = {t.trial_id for t in pareto_front(select(plan, [(search, grid)]).trials)}
    assert front == {"hi_novel", "balanced"}
    sel = select(plan, [(fixed, defaults), (search, grid)])
    assert sel.candidates["dkan"].trial.trial_id == "balanced"  # the best AP_all among the front keeping 90%
    assert "keep 90% of the base model's AP_B" in sel.how_tuned


def test_the_recommendation_line_says_what_ships_and_what_test_says(tmp_path):
    plan = _plan(tmp_path)
    cands = {"tfa": _cand("tfa", BASE), "dkan_defaults": Candidate("dkan_defaults", "dkan", DEFAULTS,
                                                                   _cand("x", BASE).trial)}
    sel = Selection(cands, "dkan_defaults", (), (), 5, 0.005, "")
    assert describe_candidate(sel, "dkan_defaults") == ("DKAN fka_weight 1, lka_weight 0.01, fka_tau 5, lka_tau 5 "
                                                        "(authors' defaults)")
    sure = {"dkan_defaults_vs_tfa": {"mean_diff": 0.055, "ci95_low": 0.041, "ci95_high": 0.07}}
    line = recommendation(plan, sel, sure, "AP_all")
    assert line == ("recommended: DKAN fka_weight 1, lka_weight 0.01, fka_tau 5, lka_tau 5 (authors' defaults): best "
                    "on val over 5 seeds by the rule; test confirms (+5.5 AP_all vs TFA, 95% CI 4.1 to 7.0)")
    against = {"dkan_defaults_vs_tfa": {"mean_diff": -0.04, "ci95_low": -0.06, "ci95_high": -0.02}}
    line = recommendation(plan, sel, against, "AP_all")
    assert "test does not confirm (-4.0 AP_all vs TFA" in line
    assert f"TEST DISAGREES: {ROW_NAMES['tfa']} beats it on test by 4.0 AP_all (95% CI 2.0 to 6.0); the choice " \
           "stands (made on val)" in line
    alone = Selection({"tfa": _cand("tfa", BASE)}, "tfa", (), (), 5, 0.005, "")
    assert recommendation(plan, alone, {}, "AP_all") == ("recommended: TFA: the only candidate (val, 5 seeds); "
                                                         "test: nothing to compare")
    # TFA recommended on val and beaten on test: the line says so, never "no other candidate beats it" beside it
    kept = Selection({"tfa": _cand("tfa", BASE), "dkan_defaults": _cand("dkan_defaults", BASE)}, "tfa", (), (), 5,
                     0.005, "")
    beaten = {"tfa_vs_dkan_defaults": {"mean_diff": -0.02, "ci95_low": -0.039, "ci95_high": -0.002}}
    line = recommendation(plan, kept, beaten, "AP_all")
    assert line.startswith("recommended: TFA: best on val over 5 seeds by the rule; TEST DISAGREES: ")
    assert "beats it on test by 2.0 AP_all (95% CI 0.2 to 3.9); the choice stands (made on val)" in line
    assert "no other candidate" not in line


def test_se1_takes_a_steady_small_gain_the_95_percent_rule_leaves():
    """Gains of 1, 3, -1, 3.5, 1 points (mean 1.5, SE 0.81): the 95% CI reaches below 0 (ci95 keeps TFA), one
    standard error below the mean does not (se1 takes DKAN); a gain under the margin is refused by both."""
    gains = [0.01, 0.03, -0.01, 0.035, 0.01]
    cands = {"tfa": _cand("tfa", BASE), "dkan": _cand("dkan", [b + g for b, g in zip(BASE, gains)])}
    assert recommend(cands, 0.005)[0] == "tfa"
    rec, [step] = recommend(cands, 0.005, rule="se1")
    assert rec == "dkan" and step.replaced and step.diff["ci95_low"] < 0
    assert recommend(cands, 0.02, rule="se1")[0] == "tfa"  # the margin still holds
    with pytest.raises(ValueError, match="selection rule"):
        recommend(cands, 0.005, rule="se2")
