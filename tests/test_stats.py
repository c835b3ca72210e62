"""Seed statistics: hand-computed values, scipy's own tests, the edge cases, and the sentence."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from dkan.evaluation.stats import describe, paired, retention, retention_per_seed, verdict


def test_describe_sample_sd_and_t_interval_by_hand():
    r = describe([0.50, 0.52, 0.54, float("nan")])  # NaN left out
    # mean 0.52; sample sd = sqrt((0.02^2 + 0 + 0.02^2) / 2) = 0.02; t(0.975, 2) = 4.302653
    assert r["n"] == 3 and r["mean"] == pytest.approx(0.52) and r["std"] == pytest.approx(0.02)
    half = 4.302652730 * 0.02 / math.sqrt(3)
    assert r["ci95_low"] == pytest.approx(0.52 - half) and r["ci95_high"] == pytest.approx(0.52 + half)
    one = describe([0.4])
    assert one["mean"] == 0.4 and one["n"] == 1 and math.isnan(one["std"]) and math.isnan(one["ci95_low"])
    assert describe([])["n"] == 0 and math.isnan(describe([])["mean"])


def test_paired_difference_interval_and_wilcoxon_match_scipy():
    a = {1: 0.60, 2: 0.55, 3: 0.62, 4: 0.58, 5: 0.61, 6: 0.57, 7: 0.59}
    b = {1: 0.50, 2: 0.52, 3: 0.57, 4: 0.50, 5: 0.60, 6: 0.49, 7: 0.55, 8: 0.9}  # seed 8 unpaired
    d = [a[s] - b[s] for s in range(1, 8)]
    r = paired(a, b)
    assert r["n"] == 7 and r["seeds"] == list(range(1, 8)) and r["diffs"] == pytest.approx(d)
    assert r["mean_diff"] == pytest.approx(sum(d) / 7)
    lo, hi = sps.t.interval(0.95, 6, loc=sum(d) / 7, scale=sps.sem(d))
    assert (r["ci95_low"], r["ci95_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert r["p_value"] == pytest.approx(sps.wilcoxon(d).pvalue)
    assert r["p_value"] == pytest.approx(2 / 2**7)  # all 7 differences positive: exact two-sided p = 2 / 128
    assert r["note"] == ""


def test_paired_edge_cases_are_graceful():
    one = paired({1: 0.5}, {1: 0.4, 2: 0.3})
    assert one["n"] == 1 and math.isnan(one["p_value"]) and "no test possible" in one["note"]
    zero = paired({1: 0.5, 2: 0.6, 3: 0.7}, {1: 0.5, 2: 0.6, 3: 0.7})
    assert zero["p_value"] == 1.0 and zero["mean_diff"] == 0.0 and "all paired differences are zero" in zero["note"]
    nan = paired({1: float("nan"), 2: 0.6, 3: 0.7}, {1: 0.5, 2: 0.5, 3: 0.5})
    assert nan["seeds"] == [2, 3]
    five = paired({s: 0.6 + s / 100 for s in range(1, 6)}, {s: 0.5 for s in range(1, 6)})
    assert five["p_value"] == pytest.approx(0.0625) and "cannot reach p < 0.05" in five["note"]


def test_verdict_sentences():
    a = {s: 0.55 + 0.012 + 0.001 * (s % 3) for s in range(1, 11)}
    b = {s: 0.55 for s in range(1, 11)}
    r = paired(a, b)
    text = verdict("tuned", "the authors' defaults", r, "AP_all")
    assert text.startswith("tuned beats the authors' defaults by +1.3 AP_all (95% CI ")
    assert text.endswith(f"p = {r['p_value']:.2g}, 10 seeds)")
    worse = verdict("tuned", "the authors' defaults", paired(b, a), "AP_all")
    assert worse.startswith("tuned falls short of the authors' defaults by -1.3 AP_all")
    noise = {s: 0.55 + (0.01 if s % 2 else -0.01) for s in range(1, 11)}
    same = verdict("tuned", "the authors' defaults", paired(noise, b), "AP_all", keep="the defaults")
    assert same.startswith("no significant difference over 10 seeds (tuned minus the authors' defaults: +0.0 AP_all")
    assert same.endswith(": keep the defaults")


def test_retention():
    assert retention(0.45, 0.60) == pytest.approx(0.75)
    assert math.isnan(retention(0.45, 0.0)) and math.isnan(retention(float("nan"), 0.6))
    assert retention_per_seed({1: {"AP_base": 0.3}, 2: {"AP_base": 0.6}}, 0.6) == {
        1: pytest.approx(0.5),
        2: pytest.approx(1.0),
    }
