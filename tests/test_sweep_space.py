"""The search space: any scalar key of the fine-tune config, checked against its type and the config's own
checks before any work; points applied to a config as --set values are."""

from __future__ import annotations

import pytest

from dkan.config import authors_defaults
from dkan.profiles import finetune_config
from sweeps.core.space import (
    DISTILL_SPACE,
    Choice,
    Range,
    SearchSpaceError,
    apply_point,
    baseline_trials,
    first_points,
    load_space,
    of_method,
    point_of,
)
from sweeps.shell.optuna_space import to_optuna

TEMPLATE = finetune_config("cpu-quick")


def test_default_space_matches_the_issue_and_starts_at_the_authors_values():
    assert DISTILL_SPACE["fka_weight"] == Range(0.01, 10.0, True) and DISTILL_SPACE["lka_weight"] == Range(
        0.001, 1.0, True
    )
    assert DISTILL_SPACE["fka_tau"] == Range(1.0, 10.0) and DISTILL_SPACE["lka_tau"] == Range(1.0, 10.0)
    assert first_points(DISTILL_SPACE, TEMPLATE, authors_defaults(1)) == authors_defaults(1)
    dist = to_optuna(DISTILL_SPACE)
    assert dist["fka_weight"].log and dist["lka_tau"].low == 1.0
    # the default space adds the fine-tune's learning rate around the profile's, which starts every candidate
    space = load_space(None, TEMPLATE)
    assert space == {**DISTILL_SPACE, "optim.lr": Range(TEMPLATE.optim.lr / 5, TEMPLATE.optim.lr * 5, True)}
    assert first_points(space, TEMPLATE, authors_defaults(1)) == {**authors_defaults(1), "optim.lr": TEMPLATE.optim.lr}
    assert load_space(None, finetune_config("paper"))["optim.lr"] == Range(0.001 / 5, 0.001 * 5, True)


def test_a_baseline_searches_only_what_it_uses_and_varies():
    space = load_space(None, TEMPLATE)
    assert baseline_trials(space, "tfa", 12) == 3 and baseline_trials(space, "plain", 4) == 1  # 1: its start alone
    assert baseline_trials(DISTILL_SPACE, "tfa", 12) == 1  # no key of its own: one fixed run
    fixed = {**space, "optim.lr": Choice((0.01,))}  # a single choice fixes the value: nothing to search
    assert baseline_trials(fixed, "tfa", 12) == 1


def test_file_overrides_ranges_and_adds_any_config_key(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("fka_tau: {low: 2, high: 4}\noptim.lr: {low: 0.001, high: 0.05, log: true}\n"
                 "optim.iterations: {low: 5, high: 40}\ndistill.lka_student: {choices: [scaled, raw]}\n"
                 "distill.lka_weight: {low: 0.001, high: 0.1, log: true}\n")
    space = load_space(f, TEMPLATE)
    assert space["fka_tau"] == Range(2.0, 4.0) and space["lka_tau"] == DISTILL_SPACE["lka_tau"]
    assert space["lka_weight"] == Range(0.001, 0.1, True)  # distill.lka_weight is the same key as lka_weight
    assert space["optim.lr"] == Range(0.001, 0.05, True) and space["optim.iterations"] == Range(5, 40, False, True)
    assert space["distill.lka_student"] == Choice(("scaled", "raw"))
    start = first_points(space, TEMPLATE, authors_defaults(1))
    assert start["fka_tau"] == 4.0 and start["optim.lr"] == 0.01 and start["optim.iterations"] == 40  # clipped
    assert start["distill.lka_student"] == "scaled"
    # the baselines have no teacher: only the keys they use are theirs to search
    assert set(of_method(space, "tfa")) == {"optim.lr", "optim.iterations"}  # no distill.*
    assert set(of_method(space, "dkan")) == set(space)
    dists = to_optuna(space)
    assert type(dists["optim.iterations"]).__name__ == "IntDistribution"
    assert dists["distill.lka_student"].choices == ("scaled", "raw")
    cfg = apply_point(TEMPLATE, {"optim.iterations": 20, "optim.lr": 0.02, "distill.lka_student": "raw",
                                  "fka_tau": 3.0})
    assert (cfg.optim.iterations, cfg.optim.lr_steps, cfg.optim.lr) == (20, [16], 0.02)  # the steps moved
    assert cfg.distill.lka_student == "raw" and cfg.distill.fka_tau == 3.0
    assert point_of({"optim.iterations": 20.0, "fka_tau": 3, "other": 1}, space) == {"optim.iterations": 20,
                                                                                       "fka_tau": 3.0}


@pytest.mark.parametrize(
    "text, match",
    [
        ("fka_temp: {low: 1, high: 2}\n", r"fka_temp is not a key of the fine-tune config"),
        ("optim.lrr: {low: 0.1, high: 0.2}\n", r"optim.lrr is not a key .*known in optim: .*'lr'"),
        ("fka_tau: {low: 5, high: 1}\n", "inverted or empty bounds"),
        ("lka_weight: {low: 0, high: 1, log: true}\n", "log range needs low > 0"),
        ("fka_tau: {low: a, high: 2}\n", "must be numbers"),
        ("fka_tau: 3\n", r"must be \{low: L, high: H\}.*\{choices: \[value\]\}"),
        ("- 1\n", "expected a mapping"),
        ("optim.iterations: {low: 1.5, high: 3}\n", "its bounds must be whole numbers"),
        ("distill.lka_student: {low: 1, high: 2}\n", r"is a str: it takes \{choices"),
        ("distill.lka_student: {choices: []}\n", "non-empty list"),
        ("distill.lka_student: {choices: [scaled, 3]}\n", r"must all be strs, got \[3\]"),
        ("model.cosine_norm: {choices: [graph, graph]}\n", "repeat a value"),
        ("optim.lr: {low: 0, high: 0.1}\n", r"0.0 is not a valid value .*optim.lr"),
        ("distill.lka_student: {choices: [scaled, bogus]}\n", "'bogus' is not a valid value"),
        ("distill.method: {choices: [dkan, tfa]}\n", "not searched: the sweep sets it.*--candidates"),
        ("shots: {low: 1, high: 5}\n", r"not searched.*--shots"),
        ("model.anchor_sizes: {choices: [1]}\n", "is a list, not a number"),
        ("optim: {low: 1, high: 2}\n", "is a OptimConfig, not a number"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(SearchSpaceError, match=match):
        load_space(f, TEMPLATE)


def test_a_missing_file_is_named():
    with pytest.raises(SearchSpaceError, match="not found"):
        load_space("none.yaml", TEMPLATE)
