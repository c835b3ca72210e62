"""The paired per-seed scheduler (sweeps/shell/schedulers.py): its test, its grace, and its replay through
Ray Tune on a recording of real fine-tunes (tests/fixtures/trial_recording.json)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from scripts.bench_harness import Recording, replay
from sweeps.core.progress import TrialReport
from sweeps.shell.schedulers import PairedSeedScheduler, make_scheduler, paired_worse, seed_values

FIXTURE = Path(__file__).parent / "fixtures" / "trial_recording.json"


def test_paired_t_stops_a_consistently_worse_trial_and_not_a_noisy_one():
    best = [0.30, 0.10, 0.50, 0.20]  # seeds differ a lot; the differences do not
    assert paired_worse([v - 0.02 for v in best], best, alpha=0.05)
    assert not paired_worse([0.31, 0.05, 0.52, 0.18], best, alpha=0.05)  # mean below, but noisy
    assert not paired_worse([v + 0.02 for v in best], best, alpha=0.2)  # better
    assert not paired_worse([0.1], [0.5], alpha=0.2)  # one pair: no spread to test


def test_wilcoxon_cannot_reach_small_levels_on_few_seeds():
    best = [0.3, 0.1, 0.5, 0.2]
    worse = [v - 0.05 for v in best]
    assert not paired_worse(worse[:3], best[:3], alpha=0.1, test="wilcoxon")  # exact p = 1/8
    assert paired_worse(worse, best, alpha=0.1, test="wilcoxon")  # p = 1/16


def _result(aps: list[float]) -> dict:
    """A trial's report after len(aps) seeds, as Tune hands it to a scheduler (flattened)."""
    from ray.tune.utils import flatten_dict

    return flatten_dict(TrialReport.of_seeds("val", [(s, {"AP_all": v}) for s, v in enumerate(aps, 1)]).to_metrics())


def test_seed_values_reads_each_seed_and_leaves_out_nan():
    r = _result([0.1, float("nan"), 0.3])
    assert seed_values(r) == {1: 0.1, 3: 0.3} and r["seeds_done"] == 3 and r["val_AP_all"] == pytest.approx(0.2)
    assert seed_values({"jobs_done": 1}) == {}


def _report(sched: PairedSeedScheduler, trial: str, aps: list[float]) -> str:
    return sched.on_trial_result(None, SimpleNamespace(trial_id=trial), _result(aps))


def test_never_stops_before_grace_and_stops_a_bad_trial_at_grace():
    s = PairedSeedScheduler(n_seeds=10, grace_seeds=3, alpha=0.1)
    s.set_search_properties("val_AP_all", "max")
    good = [0.5 + 0.01 * i for i in range(10)]
    for n in range(1, 11):
        assert _report(s, "good", good[:n]) == "CONTINUE"
    bad = [v - 0.3 for v in good]
    assert [_report(s, "bad", bad[:n]) for n in (1, 2, 3)] == ["CONTINUE", "CONTINUE", "STOP"]
    assert s.stopped == {"bad": 3}


def test_the_first_trials_are_compared_with_each_other():
    """No trial has run every seed yet: the incumbent is the best of the most complete ones."""
    s = make_scheduler("paired", n_seeds=10, grace=2, alpha=0.1)
    s.set_search_properties("val_AP_all", "max")
    assert _report(s, "a", [0.5, 0.6]) == "CONTINUE"
    assert _report(s, "b", [0.2]) == "CONTINUE"
    assert _report(s, "b", [0.2, 0.31]) == "STOP"  # 0.3 below a on both seeds, same spread


@pytest.mark.slow
def test_replay_of_the_recording_keeps_the_all_seeds_choice_with_fewer_finetunes(tmp_path):
    """Ray Tune's real Tuner over the recorded per-seed APs: the paired rule selects what every
    trial on every seed would, runs fewer seed fine-tunes, and stops no trial before grace."""
    from sweeps.shell.localray import start_local_ray, stop_local_ray

    rec = Recording.load(FIXTURE)
    assert len(rec.trials) >= 6 and len(rec.seeds) >= 4
    start_local_ray(4)
    try:
        r = make_scheduler("paired", len(rec.seeds), grace=2, alpha=0.1)
        out = replay(rec, r, max_concurrent=2, storage=tmp_path, name="paired", seconds_per_seed=0.05)
    finally:
        stop_local_ray()
    assert out["selected"] == rec.all_seeds_choice()
    assert out["finetunes"] < len(rec.trials) * len(rec.seeds)
    assert out["min_seeds_run"] >= 2
    assert set(out["seeds_per_trial"]) == set(rec.trials)


def test_race_compares_a_trial_with_the_runs_before_it_and_never_stops_them():
    """A search trial under --scheduler race is stopped by a fixed candidate's seeds (a rival), though no other
    search trial has reported yet; the rival is never stopped, nor reported."""
    rival = [0.5, 0.3, 0.6, 0.4]
    s = make_scheduler("race", n_seeds=4, grace=2, alpha=0.1, rivals={"candidates:tfa": dict(enumerate(rival, 1))})
    s.set_search_properties("val_AP_all", "max")
    assert s.incumbent("t1") == "rival:candidates:tfa"
    assert _report(s, "t1", [0.1]) == "CONTINUE"  # grace
    assert _report(s, "t1", [0.1, -0.09]) == "STOP" and s.stopped == {"t1": 2}
    assert _report(s, "t2", [0.55, 0.35]) == "CONTINUE"  # better than the rival: goes on
    with pytest.raises(ValueError, match="scheduler"):
        make_scheduler("racing", n_seeds=4, grace=2)
