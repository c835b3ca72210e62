"""Sweep inputs are checked before any work (no Ray needed for these)."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from dkan.config import FinetuneConfig
from dkan.runfolder import done_metrics
from sweeps.core.inputs import build_plan, check_data
from sweeps.core.jobspec import SeedJob, WorkerResources
from sweeps.core.plan import Budget, ClassSplitSpec, Plan, PlanError, check_resources, complete_plan
from sweeps.core.space import DISTILL_SPACE, Range
from sweeps.run_tune import main, parse_args
from sweeps.shell.jobs import progress_report
from sweeps.tracking import TrackingError, check_tracking_uri

SPLIT1 = (ClassSplitSpec("split1", 1),)


def test_resources_beyond_the_cluster_are_errors_not_hangs():
    cluster = {"CPU": 4.0, "GPU": 1.0}
    assert check_resources(WorkerResources(1, 1.0, 0.0), cluster) == 3  # 4 x (1 + 0.01 for the trial's driver) > 4
    assert check_resources(WorkerResources(1, 1.0, 0.0), cluster, driver_cpu=0.0) == 4  # drivers on CPUs of their own
    assert check_resources(WorkerResources(2, 1.0, 0.5), cluster) == 1
    assert check_resources(WorkerResources(1, 1.0, 0.25), cluster) == 3
    with pytest.raises(PlanError, match=r"needs 2 GPUs \(2 workers x 1\) but the cluster has 1"):
        check_resources(WorkerResources(2, 1.0, 1.0), cluster)
    with pytest.raises(
        PlanError,
        match=r"needs 6 CPUs \(3 workers x 2 \+ 0.01 for its trial driver\) but the cluster has 4.*lower --workers",
    ):
        check_resources(WorkerResources(3, 2.0, 0.0), cluster)
    # enough in total, but no single node holds one worker: an error, not a hang
    two_small = [{"CPU": 1.0}, {"CPU": 1.0}]
    assert check_resources(WorkerResources(2, 1.0, 0.0), {"CPU": 2.0}, two_small, driver_cpu=0.0) == 1
    with pytest.raises(
        PlanError, match=r"needs 2 CPUs \(2 workers x 1 \+ 0.01 for its trial driver\) but the cluster has 2"
    ):
        check_resources(WorkerResources(2, 1.0, 0.0), {"CPU": 2.0}, two_small)
    with pytest.raises(PlanError, match=r"one worker needs 2 CPUs .* the largest node has 1 CPUs"):
        check_resources(WorkerResources(1, 2.0, 0.0), {"CPU": 2.0}, two_small)
    # three 1-CPU nodes hold 3 CPUs, but two drivers (0.01 CPU) on two nodes leave one slot for two workers
    three_small = [{"CPU": 0.0}, {"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]
    assert check_resources(WorkerResources(1, 1.0, 0.0), {"CPU": 3.0}, three_small) == 1
    assert check_resources(WorkerResources(1, 1.0, 0.0), {"CPU": 3.0}, three_small, driver_cpu=0.0) == 3
    # nodes of 8 CPUs and one GPU each: a driver never costs a worker's slot there
    gpu_nodes = [{"CPU": 8.0}] + [{"CPU": 8.0, "GPU": 1.0}] * 4
    assert check_resources(WorkerResources(1, 4.0, 1.0), {"CPU": 40.0, "GPU": 4.0}, gpu_nodes) == 4
    # two 2-CPU nodes: three drivers can leave two slots for three workers, so two trials at once
    assert check_resources(WorkerResources(1, 1.0, 0.0), {"CPU": 4.0}, [{"CPU": 2.0}] * 2) == 2


def test_missing_shots_and_bad_seeds(synthetic_prepared):
    check_data(synthetic_prepared, SPLIT1, [1, 2], [1, 2])
    with pytest.raises(PlanError, match=r"no few-shot files for seed 1, K=3 .*seeds present: \[1, 2\].*--shots"):
        check_data(synthetic_prepared, SPLIT1, [3], [1, 2])
    with pytest.raises(PlanError, match=r"no few-shot files for seed 3, K=1"):
        check_data(synthetic_prepared, SPLIT1, [1], [1, 2, 3])
    with pytest.raises(PlanError, match="seeds start at 1"):
        check_data(synthetic_prepared, SPLIT1, [1], [0, 1])


def test_unreachable_tracking_uri_fails_fast():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingError, match="MLflow server unreachable"):
        check_tracking_uri(f"http://127.0.0.1:{port}", timeout=2)


def test_cli_refuses_bad_input_before_starting_ray(synthetic_prepared, tmp_path, capsys):
    base = ["--data", str(synthetic_prepared), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]
    assert main([*base, "--shots", "7"]) == 2
    assert "no few-shot files for seed 1, K=7" in capsys.readouterr().err
    (tmp_path / "space.yaml").write_text("fka_tau: {low: 9, high: 2}\n")
    assert main([*base, "--shots", "1", "--seeds", "1-2", "--search-space", str(tmp_path / "space.yaml")]) == 2
    assert "inverted or empty bounds" in capsys.readouterr().err
    assert main([*base, "--shots", "1", "--seeds", "1-2", "--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert "unreachable" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_base_cache_key_follows_config_and_data(synthetic_prepared, tmp_path):
    args_list = ["--data", str(synthetic_prepared), "--shots", "1", "--seeds", "1-2", "--out", str(tmp_path / "o"),
                 "--cache-dir", str(tmp_path / "c"), "--profile", "cpu-quick"]
    args = parse_args(args_list)
    plan = build_plan(args)
    same = build_plan(args)
    other = build_plan(
        parse_args(
            [
                *["--data", str(synthetic_prepared), "--shots", "1", "--seeds", "1-2", "--out", str(tmp_path / "o")],
                "--cache-dir",
                str(tmp_path / "c"),
                "--profile",
                "cpu-quick",
                "--base-iterations",
                "7",
            ]
        )
    )
    s1, s2 = ClassSplitSpec("split1", 1), ClassSplitSpec("split2", 2)
    assert plan.base_cache_dir(s1) == same.base_cache_dir(s1) != other.base_cache_dir(s1)
    assert plan.base_cache_dir(s1) != plan.base_cache_dir(s2)
    assert plan.study(s1, 2, tmp_path / "b.pt").template.shots == 2
    assert isinstance(plan.budget, Budget) and isinstance(plan, Plan)
    assert plan.space == {**DISTILL_SPACE, "optim.lr": Range(0.01 / 5, 0.01 * 5, True)}  # cpu-quick's lr 0.01
    assert build_plan(parse_args([*args_list, "--set", "optim.lr=0.002"])).space["optim.lr"] == Range(
        0.002 / 5, 0.002 * 5, True)  # around the fine-tune's lr the user set


def test_points_file_is_checked_against_the_space(tmp_path):
    from sweeps.core.inputs import load_points

    f = tmp_path / "p.yaml"
    f.write_text("- {fka_weight: 2, lka_weight: 0.1, fka_tau: 3, lka_tau: 4}\n")
    assert load_points(str(f), DISTILL_SPACE) == [
        {"fka_weight": 2.0, "lka_weight": 0.1, "fka_tau": 3.0, "lka_tau": 4.0}
    ]
    f.write_text("- {fka_weight: 20, lka_weight: 0.1, fka_tau: 3, lka_tau: 4}\n")
    with pytest.raises(PlanError, match=r"fka_weight=20 lies outside the space \(fka_weight log \[0.01, 10\]\)"):
        load_points(str(f), DISTILL_SPACE)
    f.write_text("- {fka_weight: 2}\n")
    with pytest.raises(PlanError, match="must set"):
        load_points(str(f), DISTILL_SPACE)
    assert load_points(None, DISTILL_SPACE) == []
    # a key of the space the entry leaves out takes the profile's value; one outside the space is refused
    space = {**DISTILL_SPACE, "optim.lr": Range(0.0005, 0.05, True)}
    f.write_text("- {fka_weight: 2, lka_weight: 0.1, fka_tau: 3, lka_tau: 4}\n"
                 "- {fka_weight: 2, lka_weight: 0.1, fka_tau: 3, lka_tau: 4, optim.lr: 0.003}\n")
    got = load_points(str(f), space, FinetuneConfig())
    assert [p["optim.lr"] for p in got] == [FinetuneConfig().optim.lr, 0.003]
    f.write_text("- {fka_weight: 2, lka_weight: 0.1, fka_tau: 3, lka_tau: 4, optim.momentum: 0.5}\n")
    with pytest.raises(PlanError, match="may set"):
        load_points(str(f), space)


def test_seed_results_on_disk_and_running_report(tmp_path):
    assert done_metrics(tmp_path) is None  # not finished
    (tmp_path / "metrics.json").write_text('{"AP_all": 0.5')  # cut off mid-write: not finished either
    assert done_metrics(tmp_path) is None
    (tmp_path / "metrics.json").write_text('{"AP_all": 0.5, "AP_base": 0.6, "AP_novel": NaN, "fit_seconds": 3.0}')
    done = done_metrics(tmp_path)
    cfg = FinetuneConfig()
    per_seed = [
        (SeedJob("dkan", 1, cfg), done),
        (SeedJob("dkan", 2, cfg), {"AP_all": 0.3, "AP_base": 0.2, "AP_novel": 0.4, "fit_seconds": 5.0}),
    ]
    from ray.tune.utils import flatten_dict

    from sweeps.core.progress import JobsReport, TrialReport

    r = progress_report(per_seed, "val")
    assert (r.seeds_done, r.last_seed, r.fit_seconds_total, r.seed_ap) == (2, 2, 8.0, {1: 0.5, 2: 0.3})
    assert r.objective == pytest.approx(0.4) and r.means["AP_base"] == pytest.approx(0.4)
    assert r.means["AP_novel"] == pytest.approx(0.4)  # the NaN seed is left out of the mean
    sent = r.to_metrics()  # what crosses Ray: Tune's own keys and names, read back typed (also when flattened)
    assert sent["seeds_done"] == 2 and sent["val_AP_all"] == pytest.approx(0.4)
    assert TrialReport.from_result(sent) == TrialReport.from_result(flatten_dict(sent)) == r
    mixed = progress_report(per_seed, None)  # the test phase's jobs: counts only
    assert mixed == JobsReport(2, "", 8.0) and TrialReport.from_result(mixed.to_metrics()) is None
    named = [(replace(j, label=f"{j.method}/{j.seed}"), m) for j, m in per_seed]
    assert progress_report(named, None).last_job == "dkan/2"
    assert progress_report(named, None, new=2).last_job == "dkan/1, dkan/2"  # a group's pass: one report for both


def test_test_phase_jobs_are_packed_into_balanced_trials():
    from sweeps.shell.testphase import pack

    cfg = FinetuneConfig()
    jobs = [SeedJob("dkan", s, cfg, reuse=f"/x/seed{s}/model_final.pt") for s in (1, 2, 3)] + [
        SeedJob("tfa", s, cfg) for s in (1, 2, 3)
    ]
    groups = pack(jobs, 2)
    assert sorted((j.method, j.seed) for g in groups for j in g) == sorted((j.method, j.seed) for j in jobs)
    cost = [sum(1 if j.reuse else 3 for j in g) for g in groups]
    assert len(groups) == 2 and max(cost) - min(cost) <= 1  # 12 units: 6 / 6, not 3 evaluations vs 3 fine-tunes
    assert pack(jobs, 1) == [sorted(jobs, key=lambda j: (j.method, j.seed))]
    assert len(pack(jobs[:1], 4)) == 1
    # reused TFA seeds and the base model share all but the last layer: one group evaluates them in one pass
    reused = [SeedJob(m, s, cfg, reuse=f"/x/{m}{s}.pt") for m in ("tfa", "plain", "dkan") for s in (1, 2, 3)]
    groups = pack([*reused, SeedJob("base", 0, cfg, reuse="/x/base.pt")], 2)
    together = [g for g in groups if any(j.method == "tfa" for j in g)]
    assert len(together) == 1 and {(j.method, j.seed) for j in together[0] if j.method in ("tfa", "base")} == {
        ("tfa", 1), ("tfa", 2), ("tfa", 3), ("base", 0)}
    assert sorted(len(g) for g in groups) == [4, 6]  # 1 + 3 x 0.2 + 2 others (3.6) against 4 others


def test_dkan_sweep_has_exactly_the_options_of_run_tune(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]

    def options(cmd: list[str]) -> list[str]:
        r = subprocess.run([sys.executable, *cmd, "--help"], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return sorted(set(w for w in r.stdout.replace("[", " ").replace("]", " ").split() if w.startswith("--")))

    script = options([str(repo / "sweeps" / "run_tune.py")])  # run as a file from another folder: no sys.path edits
    assert "--shots" in script and "--resume" in script
    assert options(["-m", "dkan.cli", "sweep"]) == script


def test_max_failures_zero_is_kept_and_the_plan_names_the_retries(synthetic_prepared, tmp_path):
    common = ["--data", str(synthetic_prepared), "--shots", "1", "--seeds", "1-2", "--out", str(tmp_path / "o"),
              "--cache-dir", str(tmp_path / "c"), "--profile", "cpu-quick"]
    assert build_plan(parse_args(common)).budget.max_failures == 2
    off = build_plan(parse_args([*common, "--max-failures", "0"]))
    assert off.budget.max_failures == 0  # 0 means no retries, never "the default"
    done = complete_plan(off, [{"CPU": 3.0}], local=True)
    assert done.session and done.session != complete_plan(off, [{"CPU": 3.0}], local=True).session
    assert "retried up to 0 time(s)" in done.describe()


def test_best_trial_skips_failed_ones_and_all_failed_is_a_clear_error():
    from types import SimpleNamespace as R

    from dkan.errors import DkanError
    from sweeps.core.progress import TrialReport
    from sweeps.core.selection import pick_best, trial_summaries
    from sweeps.core.shape import RunSpec
    from sweeps.core.space import DISTILL_SPACE

    def seeds(*aps):
        return {"trial_id": f"t{aps}", **TrialReport.of_seeds("val", [(s, {"AP_all": a}) for s, a in
                                                                       enumerate(aps, 1)]).to_metrics()}

    ok = R(error=None, metrics=seeds(0.3, 0.3), config={"fka_weight": 1.0})
    better_but_failed = R(error=RuntimeError("x"), metrics=seeds(0.9), config={"fka_weight": 2.0})
    partial = R(error=None, metrics=seeds(0.8), config={"fka_weight": 3.0})  # stopped early: not picked over ok
    trials = trial_summaries([ok, better_but_failed, partial], RunSpec("search", "dkan", DISTILL_SPACE))
    assert pick_best(trials, 2) == trials[0] and trials[0].point == {"fka_weight": 1.0}
    lost = R(error=RuntimeError("Traceback ...\nActorDiedError: the node running it was removed"), metrics={},
             config={})
    with pytest.raises(DkanError, match=r"\(2 of 2 failed; the first error: ActorDiedError: the node running it was "
                       r"removed\)\. Fix: .* --resume"):
        pick_best(trial_summaries([lost, better_but_failed]), 2)


def test_a_failed_test_phase_group_is_a_clear_error_naming_the_fix():
    from types import SimpleNamespace

    from dkan.errors import DkanError
    from sweeps.shell.testphase import raise_failed_groups

    ok = SimpleNamespace(error=None)
    bad = SimpleNamespace(error=RuntimeError(
        "ray::ImplicitFunc.train()\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
        "sweeps.shell.jobs.SeedFailed: base/0: DataError: data/x: not a prepared dataset"))
    raise_failed_groups("neu-det_split1_5shot", [ok, ok])  # nothing failed: nothing raised
    with pytest.raises(DkanError, match=r"test phase of neu-det_split1_5shot: 1 of 2 group\(s\) failed; the first "
                       r"error: sweeps.shell.jobs.SeedFailed: base/0: DataError: data/x: not a prepared dataset\. "
                       r"Fix: .*--resume"):
        raise_failed_groups("neu-det_split1_5shot", [ok, bad])


def test_the_estimate_counts_every_candidate_and_trial_and_scales_with_the_rates(synthetic_prepared, tmp_path):
    from sweeps.core.estimate import Rates, counts, estimate, plan_line, runs_of

    fixed_lr = tmp_path / "fixed_lr.yaml"
    fixed_lr.write_text("optim.lr: {choices: [0.01]}\n")  # one choice fixes it: the baselines have nothing to search
    common = ["--data", str(synthetic_prepared), "--shots", "1", "--seeds", "1-2", "--out", str(tmp_path / "o"),
              "--cache-dir", str(tmp_path / "c"), "--profile", "cpu-quick", "--trials", "4",
              "--finetune-iterations", "10"]
    plan = complete_plan(build_plan(parse_args([*common, "--search-space", str(fixed_lr)])), [{"CPU": 3.0}],
                         local=True)  # 2 at once
    # tfa, plain, the defaults and 3 more DKAN trials, 2 seeds each; every candidate's seeds kept and tested
    assert counts(plan) == ((3 + 3) * 2, 4 * 2, 4 * 2 + 1, 6 + 2)
    rates = Rates(s_per_iter=1.0, s_per_seed=5.0, s_per_eval=2.0, s_per_run=10.0, model_mb=100.0, delta_share=0.2,
                  source="test")
    e = estimate(plan, rates)
    trial = 2 * (10 * 1.0 + 5.0) + 10.0  # its 2 seeds one after another, and its Train run's start
    test = 10.0 + 5 * 2.0  # 9 evaluations in 2 groups side by side
    assert e.wall_s == pytest.approx((2 + 2) * trial + test)  # 3 candidates, then 3 trials: 2 waves each
    assert e.worker_h == pytest.approx((6 * trial + 2 * 10.0 + 9 * 2.0) / 3600) and e.unit == "CPU"
    # TFA's seeds are a few KB; the tuned DKAN is the defaults' files in 1 of the 4 DKAN trials
    assert e.disk_mb == pytest.approx((8 - 2 - 2 / 4) * 100 * 0.2)
    slower = estimate(plan, replace(rates, overhead=1.5))  # a calibrated study's measured overhead
    assert slower.wall_s == pytest.approx(1.5 * e.wall_s)
    assert "seed fine-tunes at most" in e.line()
    tfa_only = complete_plan(build_plan(parse_args([*common, "--candidates", "tfa"])), [{"CPU": 3.0}], local=True)
    assert counts(tfa_only) == (2, 2, 3, 1 + 2)  # at --trials 4 its lr search is its profile value alone
    assert "built-in" in plan_line(plan)  # no calibration and no base model yet: the 2-core measurement
    eight = complete_plan(build_plan(parse_args([*common[:-4], "--trials", "8", *common[-2:]])), [{"CPU": 3.0}],
                          local=True)
    # the default space holds the lr: TFA and plain search it too, a quarter of the trials each, profile values first
    assert runs_of(eight) == [1, 7, 2, 2] and counts(eight)[0] == 12 * 2
    two = complete_plan(build_plan(parse_args([*common[:-4], "--trials", "2", *common[-2:]])), [{"CPU": 3.0}],
                        local=True)
    assert runs_of(two) == [3, 1]  # a baseline's one trial is its profile values: side by side with the defaults


@pytest.mark.parametrize("extra", [[], ["--trials", "8"], ["--trials", "1"], ["--candidates", "tfa,dkan"],
                                   ["--candidates", "plain"]])
def test_the_runs_on_val_are_the_runs_the_shape_and_the_estimate_count(synthetic_prepared, tmp_path, monkeypatch,
                                                                      extra):
    """sweeps.study.run_on_val makes the Tune runs of the study's shape, in its order, each with the trials and
    candidates it lists (what estimate.runs_of counts); the fixed run holds the candidates of the shape that
    run side by side, DKAN's search is told its defaults' result."""
    import sweeps.study
    from sweeps.core.estimate import runs_of
    from sweeps.core.shape import NAMES

    made = []
    monkeypatch.setattr(sweeps.study, "tune_run", lambda plan, study, parent, resume, spec: made.append(spec) or [])
    plan = build_plan(parse_args(["--data", str(synthetic_prepared), "--shots", "1", "--seeds", "1-2", "--out",
                                  str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), *extra]))
    study = plan.study(plan.splits[0], 1, tmp_path / "base.pt")
    sweeps.study.run_on_val(plan, study, "parent", None, resume=False)
    assert [(s.name, len(s.fixed) or s.trials) for s in made] == [(r.name, r.trials) for r in plan.shape.runs]
    assert [len(s.fixed) or s.trials for s in made] == runs_of(plan)
    fixed = [name for s in made for name in s.fixed]
    assert fixed == [c.name for r in plan.shape.runs for c in r.fixed] and fixed == sorted(fixed, key=NAMES.index)
    assert set(plan.candidate_names()) <= set(NAMES) and plan.candidate_names() == sorted(plan.candidate_names(),
                                                                                          key=NAMES.index)
    search = [s for s in made if s.name == "search"]
    assert all(len(s.prior) == 1 and s.prior[0][0] == s2.fixed["dkan_defaults"][1] for s in search
               for s2 in made if "dkan_defaults" in s2.fixed)


def test_test_rows_name_their_jobs_by_row_and_reuse_the_val_checkpoints(synthetic_prepared, tmp_path):
    from sweeps.core.selection import Candidate, Selection, TrialSummary
    from sweeps.shell.testphase import row_jobs

    plan = complete_plan(build_plan(parse_args([
        "--data", str(synthetic_prepared), "--shots", "1", "--seeds", "1-2", "--out", str(tmp_path / "o"),
        "--cache-dir", str(tmp_path / "c"), "--profile", "cpu-quick"])), [{"CPU": 3.0}], local=True)
    study = plan.study(*plan.studies()[0], tmp_path / "base.pt")
    ran = plan.layout.trial_seed(study.key, "t_defaults", 1) / "model_final.pt"  # seed 2 did not finish on val
    ran.parent.mkdir(parents=True)
    ran.write_bytes(b"x")

    def cand(name: str, method: str, trial_id: str) -> Candidate:
        return Candidate(name, method, {}, TrialSummary(trial_id, method, {}, None, None))

    cands = {"tfa": cand("tfa", "tfa", "t_tfa"), "dkan_defaults": cand("dkan_defaults", "dkan", "t_defaults"),
             "dkan": cand("dkan", "dkan", "t_tuned")}
    rows = row_jobs(plan, study, Selection(cands, "tfa", (), (), 2, 0.5, ""), tmp_path / "base.pt")
    labels = [j.label for jobs in rows.values() for j in jobs]
    # two DKAN rows, one method: the progress lines tell them apart by the row's name
    assert labels == ["tfa/1", "tfa/2", "dkan_defaults/1", "dkan_defaults/2", "dkan/1", "dkan/2", "base/0"]
    assert [j.reuse for j in rows["dkan_defaults"]] == [str(ran), None]  # the unfinished seed is fine-tuned here


@pytest.mark.parametrize("scheduler", ["race", "asha"])
def test_race_hands_the_fixed_candidates_seeds_to_the_search(synthetic_prepared, tmp_path, monkeypatch, scheduler):
    """--scheduler race: the fixed candidates' run is raced (a paired scheduler on its Tuner) and DKAN's search
    gets each finished run's per-seed AP as rivals (a failed one and a baseline's own search none); under asha the
    fixed run has no scheduler and the search ignores the rivals."""
    from types import SimpleNamespace

    import sweeps.study
    from sweeps.core.progress import TrialReport
    from sweeps.shell.schedulers import PairedSeedScheduler
    from sweeps.shell.search import _fixed_config, _search_config

    def result(name: str, aps: list[float], error=None):
        m = TrialReport.of_seeds("val", [(s, {"AP_all": v}) for s, v in enumerate(aps, 1)]).to_metrics()
        return SimpleNamespace(config={"candidate": name}, metrics=m, error=error)

    made = []

    def fake_run(plan, study, parent, resume, spec):
        made.append(spec)
        if not spec.fixed:
            return []
        return [result("tfa", [0.1, 0.2]), result("plain", [0.3]), result("dkan_defaults", [0.5, 0.4], error="x")]

    monkeypatch.setattr(sweeps.study, "tune_run", fake_run)
    plan = build_plan(parse_args(["--data", str(synthetic_prepared), "--shots", "1", "--seeds", "1-2", "--out",
                                  str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--trials", "8",
                                  "--scheduler", scheduler]))
    plan = complete_plan(plan, [{"CPU": 3.0}], local=True)
    study = plan.study(plan.splits[0], 1, tmp_path / "base.pt")
    sweeps.study.run_on_val(plan, study, "parent", None, resume=False)
    [search] = [s for s in made if s.name == "search"]
    assert search.rivals == {"candidates:tfa": {1: 0.1, 2: 0.2}, "candidates:plain": {1: 0.3}}
    assert all(not s.rivals for s in made if s.name.startswith("search_"))
    fixed_sched, search_sched = _fixed_config(plan).scheduler, _search_config(plan, study, search).scheduler
    if scheduler == "race":
        assert isinstance(fixed_sched, PairedSeedScheduler) and fixed_sched.incumbent("x") is None
        assert search_sched.incumbent("x") == "rival:candidates:tfa"  # the most seeds, then the best mean
        assert "race: each run (the fixed candidates too) stops" in plan.describe()
    else:
        assert fixed_sched is None and not isinstance(search_sched, PairedSeedScheduler)
