"""The budgeted search's decisions (sweeps/core/strategy.py) and the strategies replayed on a grid made here
(sweeps/core/grid.py's generator: a known best config, noise per seed), no Ray: what each spends, counted by hand on
a tiny grid; racing; transfer; the one-SE and held-back-seeds rules; the refusals of the replay."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sweeps.core.grid import GridError, load_grid, parse_grid, synthetic_grid
from sweeps.core.strategy import (
    asha_continues,
    asha_milestones,
    confirmation_split,
    halve,
    ladder,
    one_se,
    race_drops,
    transfer_first,
)
from sweeps.core.strategy_replay import (
    STRATEGIES,
    Replay,
    apply_rule,
    check,
    draw,
    full_cost,
    judge,
    replay_once,
    run_study,
)

REPO = Path(__file__).resolve().parents[1]
L = 60  # full length of the tiny grid (rungs 15, 30, 60)


def tiny(points: int = 3, seeds: int = 4, **kw):
    """No noise of its own per (config, seed): every paired difference is constant, so every paired test decides;
    one learning speed: a shorter rung ranks as the full length does. The best config is p03."""
    return parse_grid(synthetic_grid(shots=(5, 10), seeds=seeds, points=points, noise=0.0, speeds=(0.3, 0.3),
                                     **kw), "tiny")


def by_val(grid, k: int) -> list[str]:
    """The points, best first by mean val at full length."""
    return sorted(grid.points, key=lambda c: -sum(grid.val(k, c, s) for s in grid.seeds[k]))


def one(grid, order: list[str]) -> Replay:
    return Replay({k: grid.seeds[k] for k in grid.shots}, {k: tuple(order) for k in grid.shots})


def cost(grid, name: str, order: list[str], rule: str = "ci95", **kw) -> list[int]:
    return [r.iterations for r in replay_once(grid, replace(STRATEGIES[name], **kw), rule, one(grid, order))]


def test_asha_rungs_and_cutoff_are_ray_tunes():
    assert asha_milestones(10, 3, 3) == [3, 9] and asha_milestones(4, 1, 2) == [1, 2] and asha_milestones(3, 3, 3) == []
    assert asha_continues(0.1, [], 3)  # the first trial at a rung always goes on
    assert not asha_continues(0.4, [0.5], 2) and asha_continues(0.5, [0.5], 2)
    assert not asha_continues(0.45, [0.3, 0.5, 0.7], 3)  # below the 2/3 quantile (0.567)
    rng = random.Random(1)
    for _ in range(200):  # Ray's cut-off: numpy's percentile at (1 - 1/reduction) * 100
        rec, v, rf = [rng.random() for _ in range(rng.randint(1, 7))], rng.random(), rng.choice([2, 3, 4])
        assert asha_continues(v, rec, rf) == (not v < np.nanpercentile(rec, (1 - 1 / rf) * 100))
    assert [(v.seeds, v.iterations) for v in ladder(10, (15, 30, 60), 3, 3, False)] == [(3, 60), (9, 60), (10, 60)]
    assert [(v.seeds, v.iterations) for v in ladder(4, (15, 30, 60), 1, 2, True)] == \
        [(1, 15), (1, 30), (1, 60), (2, 60), (4, 60)]
    assert halve({"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.0}, 3) == ["b", "c"]
    assert halve({"a": 0.1, "b": 0.3}, 3) == ["b"] and halve({"a": 0.1, "b": 0.3}, 3, at_least=2) == ["b", "a"]


def test_each_strategy_spends_what_it_should():
    g = tiny()
    best, high, low = by_val(g, 5)
    assert best == "p03"
    fixed = 3 * 4 * L  # the fixed candidates, every seed at full length
    assert cost(g, "full", [best, high, low]) == [6 * 4 * L] * 2
    # ASHA on seeds (grace 1, reduction 2: rungs at 1 and 2 seeds): the best first runs on, each worse stops at 1 seed
    assert cost(g, "asha", [best, high, low], grace=1, reduction=2) == [fixed + 4 * L + L + L] * 2
    # worst first: each trial beats the ones before it, so none stops
    assert cost(g, "asha", [low, high, best], grace=1, reduction=2) == [6 * 4 * L] * 2
    # on iterations too: a worse trial stops after 15 iterations of one seed
    assert cost(g, "asha-iters", [best, high, low], grace=1, reduction=2) == [fixed + 4 * L + 15 + 15] * 2
    # racing (grace 2): every config runs 2 seeds; the worse points drop; the fixed ones run on (protected)
    assert cost(g, "lockstep", [low, best, high], grace=2) == [6 * 2 * L + 4 * 2 * L] * 2
    assert cost(g, "lockstep-all", [low, best, high], grace=2) == [6 * 2 * L + 1 * 2 * L] * 2
    # halving on iterations over the grace seeds: 6 at 15, 2 to 30 and to 60 (a race needs two), then the race
    # drops the worse after the 2 grace seeds and the best runs the last 2 seeds
    assert cost(g, "lockstep-iters-all", [low, best, high], grace=2) == \
        [6 * 2 * 15 + 2 * 2 * 15 + 2 * 2 * 30 + 2 * L] * 2
    # the same with the fixed ones on every seed: the 3 points halved (2 left) over 2 seeds, then 2 seeds more
    assert cost(g, "lockstep-iters", [low, best, high], grace=2) == \
        [fixed + 3 * 2 * 15 + 2 * 2 * 15 + 2 * 2 * 30 + 2 * L] * 2
    # the paired scheduler (grace 2): each trial after the best stops at 2 seeds; worst first, none stops
    assert cost(g, "paired", [best, high, low], grace=2) == [fixed + 4 * L + 2 * L + 2 * L] * 2
    assert cost(g, "paired", [low, high, best], grace=2) == [6 * 4 * L] * 2
    # shared: K=10 races only K=5's best point and the fixed ones, at full length: 4 configs on the 2 grace seeds,
    # then the best alone
    assert cost(g, "lockstep-iters-all-shared", [low, best, high], grace=2, transfer_points=1) == \
        [6 * 2 * 15 + 2 * 2 * 15 + 2 * 2 * 30 + 2 * L, 4 * 2 * L + 2 * L]
    # a search that meets 2 of the 3 points (the sweep's --trials 12 meets 11 besides the defaults)
    rep = draw(g, random.Random(0), n_points=2)
    assert [r.iterations for r in replay_once(g, STRATEGIES["full"], "ci95", rep)] == [5 * 4 * L] * 2
    assert full_cost(g, rep) == 2 * 5 * 4 * L
    # confirm: the search on the first 2 seeds, the 4 candidates (3 fixed + the tuned) on the 2 held back
    assert cost(g, "full", [best, high, low], rule="confirm") == [6 * 2 * L + 4 * 2 * L] * 2


def test_racing_drops_a_clearly_worse_config_after_the_grace_seeds_and_never_the_best():
    best = {1: 0.30, 2: 0.10, 3: 0.50, 4: 0.20}
    worse = {s: v - 0.05 + 0.002 * s for s, v in best.items()}
    first = lambda n: {"best": dict(list(best.items())[:n]), "worse": dict(list(worse.items())[:n])}  # noqa: E731
    assert race_drops(first(2), grace=3, alpha=0.1) == set()  # before the grace seeds: nothing
    assert race_drops(first(3), grace=3, alpha=0.1) == {"worse"}
    assert race_drops(first(3), grace=3, alpha=0.1, protected=["worse"]) == set()
    g = parse_grid(synthetic_grid(seeds=10, seed=3), "noisy")
    rng = random.Random(0)
    for _ in range(10):
        rep = draw(g, rng)
        for r in replay_once(g, STRATEGIES["lockstep-all"], "ci95", rep):
            assert len(r.seed_ap["p03"]) == 10  # the best ran every seed
            assert min(len(r.seed_ap[c]) for c in g.points) < 10  # and something was dropped


def test_transfer_puts_the_other_studys_best_first():
    assert transfer_first(["p02", "p09", "p01"], ["p01", "p05", "p09", "p02"], 2) == ["p02", "p09", "p01", "p05"]
    assert transfer_first(["p02", "p09", "p01"], ["p01", "p05", "p03"], 2) == ["p02", "p09", "p01"]  # not met else
    g = tiny(points=6)
    order = by_val(g, 5)[::-1]  # the search would meet the best last
    k5, k10 = replay_once(g, STRATEGIES["asha-first"], "ci95", one(g, order))
    assert k5.ranking[0] == "p03"
    plain = run_study(g, STRATEGIES["asha"], "ci95", 10, g.seeds[10], tuple(order))
    assert k10.iterations < plain.iterations  # the best met first sets ASHA's cut-off high
    s5, s10 = replay_once(g, replace(STRATEGIES["lockstep-iters-all-shared"], grace=2), "ci95", one(g, order))
    assert s5.ranking[0] == "p03" and len(s5.ranking) == 6
    assert set(s10.seed_ap) == {"tfa", "plain", "dkan_defaults", *s5.ranking[:3]} and s10.recommended == "p03"


def test_one_se_picks_the_simplest_within_one_standard_error():
    base = {1: 0.30, 2: 0.10, 3: 0.50, 4: 0.20, 5: 0.40}
    near = {s: v + (0.02 if s % 2 else -0.012) for s, v in base.items()}  # best by 0.7 points, SE 0.8
    far = {s: v + 0.05 for s, v in base.items()}
    assert one_se({"tfa": base, "dkan": near}) == "tfa"
    assert one_se({"tfa": base, "dkan": far}) == "dkan"
    assert one_se({"tfa": base, "plain": {s: v + 0.048 for s, v in base.items()}, "dkan": far}) == "dkan"
    assert one_se({"tfa": base, "plain": {s: v + 0.048 + (0.004 if s % 2 else -0.004) for s, v in base.items()},
                   "dkan": far}) == "plain"


def test_the_ci95_rule_is_selections_and_the_held_back_seeds_are_the_last():
    base = {0: 0.30, 1: 0.10, 2: 0.50, 3: 0.20}
    cands = {"tfa": "tfa", "dkan": "p01"}
    assert apply_rule("ci95", cands, {"tfa": base, "p01": {s: v + 0.003 for s, v in base.items()}}) == "tfa"
    assert apply_rule("ci95", cands, {"tfa": base, "p01": {s: v + 0.02 + 0.001 * s for s, v in base.items()}}) \
        == "p01"
    assert confirmation_split(list(range(10)), 5) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    with pytest.raises(ValueError):
        confirmation_split([0, 1], 2)


def test_judge_regret_is_zero_for_the_best_on_test_and_positive_else():
    g = tiny()
    full = replay_once(g, STRATEGIES["full"], "ci95", one(g, list(g.points)))[0]
    assert full.recommended == "p03"
    assert judge(g, full, full, g.seeds[5])["regret"] == pytest.approx(0.0, abs=1e-6)
    worse = replace(full, recommended="tfa")
    j = judge(g, worse, full, g.seeds[5])
    assert j["regret"] > 1 and j["vs_reference"] > 1 and j["significantly_worse"] and not j["same"]


def _grid_file(tmp_path: Path, **changes) -> Path:
    d = synthetic_grid(seeds=4, points=3) | changes
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(d))
    return path


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_cut_off_recording_is_read_with_the_seeds_it_holds_whole(tmp_path):
    d = synthetic_grid(seeds=3, points=3)
    cells = d.pop("cells")
    _script("record_grid")._write(tmp_path / "grid.json", d, cells[:-1])  # as the recorder writes, one cell short
    g = load_grid(tmp_path / "grid.json", expect_dataset="synthetic")
    assert g.seeds == {5: (1, 2, 3), 10: (1, 2)} and g.rungs == (15, 30, 60) and len(g.points) == 3
    assert g.val(10, "p03", 2, 15) < g.val(10, "p03", 2) and g.test(5, "tfa", 3) > 0


def test_the_replay_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(GridError, match="version 2"):
        load_grid(_grid_file(tmp_path, version=2))
    with pytest.raises(GridError, match="not 'neu-det'.*--expect-dataset"):
        load_grid(_grid_file(tmp_path), expect_dataset="neu-det")
    (tmp_path / "torn.json").write_text('{"version": 1, "cells": [')
    with pytest.raises(GridError, match="not JSON"):
        load_grid(tmp_path / "torn.json")
    g = load_grid(_grid_file(tmp_path))
    with pytest.raises(GridError, match="--strategies bogus: unknown"):
        check(g, ["asha", "bogus"], ["ci95"])
    with pytest.raises(GridError, match="grace"):
        check(g, ["lockstep"], ["confirm"])  # 4 seeds, 2 held back: the search's 2 are within the 3 grace seeds
    assert [s.grace for s in check(g, ["lockstep"], ["confirm"], grace=1)] == [1]
    one_rung = parse_grid(synthetic_grid(seeds=6, points=3, rungs=(60,)), "one-rung")
    with pytest.raises(GridError, match="training length"):
        check(one_rung, ["asha-iters"], ["ci95"])
    check(one_rung, ["asha"], ["ci95"])


def test_the_benchmark_script_refuses_with_one_line_and_writes_nothing(tmp_path, capsys):
    bench = _script("bench_strategies")
    out = tmp_path / "out.json"
    path = _grid_file(tmp_path)
    for argv in (["--grid", str(path), "--expect-dataset", "neu-det"], ["--grid", str(path), "--strategies", "x"],
                 ["--grid", str(path), "--strategies", "asha-iters", "--rules", "confirm"]):
        assert bench.main([*argv, "--out", str(out), "--replays", "2"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("bench_strategies: ") and "Fix:" in err and "\n" not in err
        assert not out.exists()
    assert bench.main(["--grid", str(path), "--strategies", "full,asha", "--grace", "1", "--rules", "ci95",
                       "--replays", "3", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {(r["strategy"], r["rule"]) for r in doc["rows"]} == {("full", "ci95"), ("asha", "ci95")}
    assert all(r["ratio"] >= 1 for r in doc["rows"]) and doc["replays"] == 3


def _seeds_run(grid, k: int, order: list[str], scheduler) -> dict[str, int]:
    """Each point's seeds under a real Tune scheduler, fed one trial after another (no Ray start)."""
    from types import SimpleNamespace

    from ray.tune.utils import flatten_dict

    from sweeps.core.progress import TrialReport

    ran = {}
    for c in order:
        trial, done = SimpleNamespace(trial_id=c), []
        scheduler.on_trial_add(None, trial)
        for s in grid.seeds[k]:
            done.append((s, {"AP_all": grid.val(k, c, s)}))
            if scheduler.on_trial_result(None, trial, flatten_dict(TrialReport.of_seeds("val", done).to_metrics())) \
                    == "STOP":
                break
        ran[c] = len(done)
    return ran


def test_asha_and_paired_stop_where_the_sweeps_schedulers_do():
    from sweeps.shell.schedulers import make_scheduler

    g = parse_grid(synthetic_grid(seeds=10, seed=5), "noisy")
    for name in ("asha", "paired"):
        for order in (list(g.points), list(g.points)[::-1]):
            mine = run_study(g, STRATEGIES[name], "ci95", 5, g.seeds[5], tuple(order))
            sched = make_scheduler(name, 10, grace=3, reduction=3, alpha=0.1,
                                   metric="val_AP_all")
            sched.set_search_properties("val_AP_all", "max")
            theirs = _seeds_run(g, 5, order, sched)
            assert {c: len(mine.seed_ap[c]) for c in order} == theirs
            assert min(theirs.values()) < 10  # something stopped


def test_race_stops_where_the_sweeps_race_scheduler_does():
    """--scheduler race: the fixed candidates' run raced among themselves, then the search's trials compared with
    them and with each other (their per-seed AP handed over as rivals): the replay's race, seed for seed."""
    from sweeps.shell.schedulers import make_scheduler

    g = parse_grid(synthetic_grid(seeds=10, seed=5), "noisy")
    for order in (list(g.points), list(g.points)[::-1]):
        mine = run_study(g, STRATEGIES["race"], "ci95", 5, g.seeds[5], tuple(order))
        fixed_run = make_scheduler("race", 10, grace=3, alpha=0.1)
        fixed_run.set_search_properties("val_AP_all", "max")
        theirs = _seeds_run(g, 5, list(g.fixed), fixed_run)
        rivals = {c: {s: g.val(5, c, s) for s in g.seeds[5][:theirs[c]]} for c in g.fixed}
        search = make_scheduler("race", 10, grace=3, alpha=0.1, metric="val_AP_all", rivals=rivals)
        search.set_search_properties("val_AP_all", "max")
        theirs.update(_seeds_run(g, 5, order, search))
        assert {c: len(mine.seed_ap[c]) for c in [*g.fixed, *order]} == theirs
        assert min(theirs.values()) < 10 and not set(search.stopped) & {f"rival:{c}" for c in g.fixed}
    # paired (not race) ignores rivals: the search compares its trials only with each other
    assert make_scheduler("paired", 10, grace=3, rivals={"tfa": {1: 0.9, 2: 0.9, 3: 0.9}}).incumbent("x") is None
