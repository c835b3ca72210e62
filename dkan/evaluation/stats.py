"""Seed statistics a team can act on: mean, sample sd and 95% t interval per row; paired
differences over seeds with their interval and the Wilcoxon signed-rank test; one plain sentence.

AP values are fractions (0..1) throughout; sentences print them in points (x 100).
NaN values (a class without ground truth, a failed seed) are left out, pairwise for paired tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

ALPHA = 0.05
CONFIDENCE = 0.95


def describe(values: Sequence[float]) -> dict[str, float]:
    """{mean, std (sample, ddof=1), n, ci95_low, ci95_high} of the non-NaN values (t interval).

    One value: std and the interval are NaN (no spread can be estimated); none: all NaN, n 0."""
    x = _finite(values)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    sd = float(x.std(ddof=1)) if n >= 2 else math.nan
    low, high = _t_interval(mean, sd, n)
    return {"mean": mean, "std": sd, "n": n, "ci95_low": low, "ci95_high": high}


def paired(a: Mapping[int, float], b: Mapping[int, float], wilcoxon: bool = True) -> dict[str, object]:
    """A minus B over the seeds both have (NaN on either side drops the seed). ``wilcoxon`` False: no p-value
    (NaN; a bootstrap's tied seeds make scipy permute, 0.7 s a call, for a p nobody reads).

    Returns mean_diff, std, ci95_low / ci95_high (t interval of the mean difference), p_value
    (two-sided Wilcoxon signed-rank, scipy.stats.wilcoxon), n, seeds, per-seed diffs, and a note
    when the test cannot say much: fewer than 2 seeds (p NaN) or all differences zero (p 1).
    """
    seeds = sorted(s for s in set(a) & set(b) if _ok(a[s]) and _ok(b[s]))
    d = np.array([float(a[s]) - float(b[s]) for s in seeds], dtype=float)
    row = describe(d)
    note = ""
    if not wilcoxon:
        p = math.nan
    elif len(d) < 2:
        p, note = math.nan, f"{len(d)} paired seed(s): no test possible"
    elif np.all(d == 0):
        p, note = 1.0, "all paired differences are zero"
    else:
        from scipy import stats as sps  # lazily: importing scipy.stats takes most of a second

        p = float(sps.wilcoxon(d).pvalue)
        note = wilcoxon_floor(len(d))
    return {
        "mean_diff": row["mean"],
        "std": row["std"],
        "ci95_low": row["ci95_low"],
        "ci95_high": row["ci95_high"],
        "p_value": p,
        "n": len(d),
        "seeds": seeds,
        "diffs": [float(v) for v in d],
        "note": note,
    }


def wilcoxon_floor(n: int, alpha: float = ALPHA) -> str:
    """The note that ``n`` paired seeds cannot reach ``p < alpha`` with the exact two-sided Wilcoxon test
    (its smallest p with n pairs is 2 / 2**n); "" when they can."""
    smallest = 2 / 2**n
    if n < 1 or smallest < alpha:
        return ""
    return f"with {n} seeds the Wilcoxon test cannot reach p < {alpha} (smallest p = {smallest:.3g})"


def significant(diff: Mapping[str, object], alpha: float = ALPHA) -> bool:
    p = diff["p_value"]
    return isinstance(p, float) and not math.isnan(p) and p < alpha


def verdict(
    name_a: str,
    name_b: str,
    diff: Mapping[str, object],
    metric: str,
    keep: str | None = None,
    alpha: float = ALPHA,
    scale: float = 100.0,
) -> str:
    """One plain sentence about ``diff = paired(A, B)`` on ``metric`` (e.g. "AP_all").

    Significant (Wilcoxon p < alpha): "A beats B by +1.2 AP_all (95% CI 0.3 to 2.1, p = 0.02, 10 seeds)"
    (or "A falls short of B by -1.2 ..."). Otherwise "no significant difference over 10 seeds ...:
    keep B" (``keep`` names what to keep; default B, the baseline).
    """
    n = int(diff["n"])
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    mean, low, high = (float(diff[k]) * scale for k in ("mean_diff", "ci95_low", "ci95_high"))
    stats_text = f"95% CI {_num(low)} to {_num(high)}, p {_p(float(diff['p_value']))}, {seeds}"
    if significant(diff, alpha):
        verb = "beats" if mean > 0 else "falls short of"
        return f"{name_a} {verb} {name_b} by {mean:+.1f} {metric} ({stats_text})"
    note = f"; {diff['note']}" if diff.get("note") else ""
    return (
        f"no significant difference over {seeds} ({name_a} minus {name_b}: {_num(mean, sign=True)} {metric}, "
        f"{stats_text}{note}): keep {keep or name_b}"
    )


def retention(ap_base_after: float, ap_base_of_base_model: float) -> float:
    """AP_B retention: the base classes' AP after fine-tuning over the base model's (NaN when undefined)."""
    if not (_ok(ap_base_after) and _ok(ap_base_of_base_model)) or ap_base_of_base_model == 0:
        return math.nan
    return float(ap_base_after) / float(ap_base_of_base_model)


def retention_per_seed(
    per_seed: Mapping[int, Mapping[str, float]], base_ap: float, key: str = "AP_base"
) -> dict[int, float]:
    """{seed: retention} of a row's per-seed metrics against the base model's ``key`` (AP_base or voc07/AP_base)."""
    return {s: retention(m.get(key, math.nan), base_ap) for s, m in per_seed.items()}


def _t_interval(mean: float, sd: float, n: int) -> tuple[float, float]:
    if n < 2 or math.isnan(sd):
        return math.nan, math.nan
    from scipy import stats as sps

    half = float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def _ok(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.array([float(v) for v in values if _ok(v)], dtype=float)


def _num(v: float, sign: bool = False) -> str:
    return "n/a" if math.isnan(v) else (f"{v:+.1f}" if sign else f"{v:.1f}")


def _p(p: float) -> str:
    if math.isnan(p):
        return "= n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.2g}"
