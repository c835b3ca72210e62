"""sweeps.shell.console.TrialConsole: driven with fake Trial objects, as Tune's driver would call it (no Ray run)."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest

import sweeps.shell.console as console
from sweeps.core.jobspec import WorkerResources
from sweeps.core.plan import Budget, ClassSplitSpec, Plan
from sweeps.core.progress import JobsReport, TrialReport, error_line
from sweeps.core.space import DISTILL_SPACE
from sweeps.shell.console import TrialConsole

HP = {"fka_weight": 1.0, "lka_weight": 0.01, "fka_tau": 5.0, "lka_tau": 5.0}


class Clock:
    """time.time() under the test's control."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(console.time, "time", c)
    return c


def trial(tid: str, status: str = "RUNNING", **kw) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config=dict(HP), status=status, **kw)


def result(seed: int, done: int, ap: float, mean: float) -> dict:
    """A trial's report after ``done`` seeds, the last ``seed`` at ``ap``, the running mean ``mean``."""
    earlier = {s: {"AP_all": mean} for s in range(1, done)}  # the mean is given, not recomputed
    r = TrialReport("val", {**{s: m["AP_all"] for s, m in earlier.items()}, seed: ap},
                    {"AP_base": mean, "AP_novel": mean, "AP_all": mean}, seed)
    return r.to_metrics()


def test_one_line_per_trial_event(clock, capsys):
    c = TrialConsole("k", n_seeds=3, objective="val_AP_all", trials=3, every=0, interval=0)
    a, b, f = trial("a_00000"), trial("a_00001"), trial("a_00002")
    c.on_trial_start(0, [a], a)
    c.on_trial_result(0, [a], a, result(1, 1, 0.123, 0.123))
    c.on_trial_result(0, [a], a, result(1, 1, 0.123, 0.123))  # a restarted trial repeats its report: one line
    c.on_trial_start(0, [a, b], b)
    c.on_trial_result(0, [a, b], b, result(1, 1, 0.05, 0.05))
    c.on_trial_complete(0, [a, b], b)  # ASHA stopped it after one seed
    for s, done in ((2, 2), (3, 3)):
        c.on_trial_result(0, [a], a, result(s, done, 0.2, 0.15))
    clock.now += 120
    c.on_trial_complete(0, [a], a)
    f.error_msg = "Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: CUDA out of memory\n"
    c.on_trial_start(0, [f], f)
    c.on_trial_error(0, [f], f)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[k] trial 1 (a_00000) started: fka_weight=1, lka_weight=0.01, fka_tau=5, lka_tau=5",
        "[k] trial 1: seed 1 done (1/3 seeds), AP_all 12.3; mean val_AP_all 12.3",
        "[k] trial 2 (a_00001) started: fka_weight=1, lka_weight=0.01, fka_tau=5, lka_tau=5",
        "[k] trial 2: seed 1 done (1/3 seeds), AP_all 5.0; mean val_AP_all 5.0",
        "[k] trial 2: stopped early after 1/3 seeds (mean val_AP_all 5.0)",
        "[k] trial 1: seed 2 done (2/3 seeds), AP_all 20.0; mean val_AP_all 15.0",
        "[k] trial 1: seed 3 done (3/3 seeds), AP_all 20.0; mean val_AP_all 15.0",
        "[k] trial 1: done, mean val_AP_all 15.0 over 3 seeds in 2.0 min",
        "[k] trial 3 (a_00002) started: fka_weight=1, lka_weight=0.01, fka_tau=5, lka_tau=5",
        "[k] trial 3: failed: RuntimeError: CUDA out of memory",
    ]
    assert (c.stopped, c.failed, len(c.durations)) == (1, 1, 2)


def test_overall_line_counts_and_time_left(clock, capsys):
    # study 2 of 3, 4 trials each, 2 at once; trials take 60 s and 180 s: mean 120 s
    c = TrialConsole("k", n_seeds=2, objective="val_AP_all", trials=4, study_index=1, n_studies=3, concurrent=2,
                     every=0, interval=0)
    a, b, r = trial("a"), trial("b"), trial("r")
    c.on_trial_start(0, [a], a)
    clock.now += 60
    c.on_trial_complete(0, [a], a)  # no result: stopped early with 0 seeds
    c.on_trial_start(0, [b], b)
    clock.now += 180
    c.on_trial_result(0, [b], b, result(1, 1, 0.1, 0.1))
    c.on_trial_result(0, [b], b, result(2, 2, 0.1, 0.1))
    c.on_trial_complete(0, [b], b)
    capsys.readouterr()
    trials = [trial("a", "TERMINATED"), trial("b", "TERMINATED"), r, trial("p", "PENDING")]
    line = c.overall(trials)
    # left: (4 - 2 done - 1 running + 0.5 running) + 4 trials of the next study = 5.5 trials x 120 s / 2 = 5.5 min
    assert line == ("progress: study 2/3 (search), trials 2/4 done (1 stopped early, 0 failed), 1 running; "
                    "4.0 min elapsed, about 5.5 min left in the searches")
    assert capsys.readouterr().out == line + "\n"
    # a running trial whose start was seen: what is left of the mean shrinks as it runs
    c.on_trial_start(0, trials, r)
    clock.now += 90
    later = c.overall(trials)  # (1 waiting + (120 - 90) s left of r) / 2 + 4 x 120 s / 2 = 315 s
    assert later.endswith("5.5 min elapsed, about 5.2 min left in the searches"), later


def test_overall_line_every_n_events_and_every_interval(clock, capsys):
    c = TrialConsole("k", n_seeds=1, objective="val_AP_all", trials=5, every=2, interval=60)
    c.setup(total_num_samples=5)
    a, b = trial("a"), trial("b")
    c.on_trial_start(0, [a], a)
    assert "progress:" not in capsys.readouterr().out
    c.on_trial_start(0, [a, b], b)  # the second event
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("progress: study 1/1 (search), trials 0/5 done")
    assert out[-1].endswith("time left: after a trial")
    clock.now += 59
    c.on_step_end(0, [a, b])
    assert capsys.readouterr().out == ""
    clock.now += 2
    c.on_step_end(0, [a, b])
    assert "2 running; 1.0 min elapsed" in capsys.readouterr().out


def test_pickles_for_tune_restore_and_knows_its_study(tmp_path):
    plan = Plan(data_root=tmp_path, dataset="d", splits=(ClassSplitSpec("split1", 1), ClassSplitSpec("split2", 2)),
                shots=(1, 3, 5), seeds=(1, 2, 3), profile="cpu-quick", budget=Budget(trials=7),
                space=dict(DISTILL_SPACE), resources=WorkerResources(), out=tmp_path, tracking_uri="sqlite:///x.db",
                protocol="val", base_checkpoint=None, cache_dir=tmp_path, max_concurrent=2)
    study = SimpleNamespace(split=plan.splits[1], shots=3, key="d_split2_3shot")
    c = pickle.loads(pickle.dumps(TrialConsole.for_study(plan, study)))
    assert (c.key, c.study_index, c.n_studies, c.total, c.n_seeds, c.concurrent) == ("d_split2_3shot", 4, 6, 7, 3, 2)
    assert c.objective == "val_AP_all"


def test_error_line_takes_the_exception_from_a_tune_error_file(tmp_path):
    text = ("Failure # 1 (occurred at 2026-11-22_10-00-00)\n"
            "ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n"
            "Traceback (most recent call last):\n"
            '  File "/x/jobs.py", line 3, in run\n    raise e\n'
            "dkan.errors.CheckpointError: /a/b.pt: not a dkan checkpoint. Fix: pass a model_final.pt\n")
    assert error_line(text) == "dkan.errors.CheckpointError: /a/b.pt: not a dkan checkpoint. Fix: pass a model_final.pt"
    assert error_line(None) == "unknown error"
    f = tmp_path / "error.txt"
    f.write_text(text)
    t = SimpleNamespace(error_file=str(f), get_error=lambda: None)
    assert console._trial_error(t).startswith("dkan.errors.CheckpointError: /a/b.pt")
    assert "unknown error" in console._trial_error(SimpleNamespace())


def test_verbose_option_reaches_the_plan(synthetic_prepared, tmp_path):
    from sweeps.core.inputs import build_plan
    from sweeps.run_tune import parse_args

    common = ["--data", str(synthetic_prepared), "--out", str(tmp_path / "o"), "--shots", "1", "--seeds", "1"]
    assert build_plan(parse_args([*common, "--verbose"])).verbose is True
    assert build_plan(parse_args(common)).verbose is False


def test_base_training_progress_skips_a_killed_runs_stale_file(tmp_path, capsys):
    """The 30 s progress line of base training reads progress.json: one left by an earlier, killed run
    is not shown as this run's progress; the file this run writes is."""
    import json
    import os
    import threading
    import time

    from dkan.profiles import base_config
    from sweeps.core.jobspec import SeedJob
    from sweeps.shell.jobs import _print_progress

    cfg = base_config("cpu-quick")
    cfg.out = str(tmp_path / "base")
    job = SeedJob("base", 0, cfg, label="base/x")
    job.out.mkdir()
    stale = job.out / "progress.json"
    stale.write_text(json.dumps({"iteration": 76, "iterations": 100, "loss": 0.8, "eta_s": 60}))
    os.utime(stale, (time.time() - 600, time.time() - 600))
    stop = threading.Event()
    t = threading.Thread(target=_print_progress, args=([job], "base_x", stop, 0.05))
    t.start()
    time.sleep(0.3)
    assert "iteration 76/100" not in capsys.readouterr().out
    stale.write_text(json.dumps({"iteration": 3, "iterations": 100, "loss": 1.5, "eta_s": 120}))
    time.sleep(0.3)
    stop.set()
    t.join()
    assert "base_x: iteration 3/100, loss 1.500, about 2.0 min left" in capsys.readouterr().out


def test_test_phase_says_what_it_runs_and_each_job_done(clock, capsys):
    c = console.TestPhaseConsole("k", n_jobs=4, n_train=2, groups=2)
    c.setup()
    g1, g2 = trial("g1"), trial("g2")
    def done(n: int, label: str) -> dict:
        return JobsReport(n, label).to_metrics()

    c.on_trial_result(0, [g1, g2], g1, done(1, "tfa/1"))
    clock.now += 90
    c.on_trial_result(0, [g1, g2], g2, done(1, "dkan/1"))
    c.on_trial_result(0, [g1, g2], g2, done(1, "dkan/1"))  # a restarted group repeats it
    c.on_trial_result(0, [g1, g2], g1, done(2, "base/0"))
    assert capsys.readouterr().out.splitlines() == [
        "[k] test phase: 4 jobs on test (2 fine-tunes, 2 evaluations of checkpoints the search made or the base "
        "model) in 2 group(s) at once",
        "[k] test: tfa/1 done (1/4, 0.0 min)",
        "[k] test: dkan/1 done (2/4, 1.5 min)",
        "[k] test: base/0 done (3/4, 1.5 min)",
    ]


def test_a_tune_state_pickled_before_the_modules_moved_still_loads():
    """Tune pickles its callbacks with its state; one saved under the old module names (sweeps.console) resumes."""
    import pickle

    from sweeps.shell.search import alias_moved_modules

    blob = pickle.dumps(TrialConsole("k", 2, "val_AP_all", 3), protocol=0)
    old = blob.replace(b"sweeps.shell.console", b"sweeps.console")
    assert old != blob
    alias_moved_modules()
    assert pickle.loads(old).key == "k"

