"""What a recorded grid (``sweeps.core.grid``) holds, before any strategy is replayed on it.

Per K, over the seeds every config holds: each config's val and test AP_all (mean, sd, t interval), its paired
test difference from the authors' defaults, and how well a short rung ranks the configs as the full length
does (Spearman over configs, per seed, then the mean and range over seeds). ``scripts/bench_grid.py`` prints
and plots it; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import math
from typing import Any

from dkan.evaluation.stats import describe, paired
from sweeps.core.grid import Grid

REFERENCE = "dkan_defaults"


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy import stats as sps  # lazily: the core imports no scipy.stats at module level

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(sps.spearmanr(a, b).statistic)


def _finite_mean(v: list[float]) -> float:
    v = [x for x in v if math.isfinite(x)]
    return sum(v) / len(v) if v else math.nan


def summarize_grid(grid: Grid) -> dict[str, Any]:
    """{K: {"seeds", "configs": {config: {val, test, vs_defaults}}, "rank_by_rung": {rung: {mean, low, high}},
    "val_ranks_test"}} on the complete seeds of each K (AP as fractions, as recorded)."""
    configs = list(grid.fixed) + list(grid.points)
    out: dict[str, Any] = {}
    for k in grid.shots:
        seeds = grid.seeds[k]
        rows: dict[str, Any] = {}
        ref = {s: grid.test(k, REFERENCE, s) for s in seeds} if REFERENCE in configs else None
        for c in configs:
            test = {s: grid.test(k, c, s) for s in seeds}
            row: dict[str, Any] = {"val": describe([grid.val(k, c, s) for s in seeds]),
                                   "test": describe(list(test.values()))}
            if ref and c != REFERENCE:
                d = paired(test, ref, wilcoxon=False)
                row["vs_defaults"] = {key: d[key] for key in ("mean_diff", "ci95_low", "ci95_high", "n")}
            rows[c] = row
        ranks: dict[str, Any] = {}
        for r in grid.rungs[:-1]:
            rho = [_spearman([grid.val(k, c, s, r) for c in configs], [grid.val(k, c, s) for c in configs])
                   for s in seeds]
            fin = [x for x in rho if math.isfinite(x)]
            ranks[str(r)] = {"mean": _finite_mean(rho), "low": min(fin) if fin else math.nan,
                             "high": max(fin) if fin else math.nan}
        val_means = [rows[c]["val"]["mean"] for c in configs]
        test_means = [rows[c]["test"]["mean"] for c in configs]
        out[str(k)] = {"seeds": list(seeds), "configs": rows, "rank_by_rung": ranks,
                       "val_ranks_test": _spearman(val_means, test_means) if seeds else math.nan}
    return out


def by_val(configs: dict[str, Any]) -> list[str]:
    """The configs of one K's summary, best val mean first (a config without one last)."""
    return sorted(configs, key=lambda c: -configs[c]["val"]["mean"] if math.isfinite(configs[c]["val"]["mean"])
                  else math.inf)


def grid_table(summary: dict[str, Any]) -> str:
    """A markdown table per K: each config's val and test AP_all (points, mean ± sd over seeds) and its paired
    test difference from the authors' defaults with the 95% interval; configs by val mean, best first."""
    def pts(x: float) -> str:
        return "-" if not math.isfinite(x) else f"{100 * x:.1f}"

    lines = []
    for k, s in summary.items():
        lines += [f"K = {k}: {len(s['seeds'])} seeds {s['seeds']}; a short rung ranks the configs as the full "
                  "length does (Spearman of val, mean over seeds [range]): " +
                  ", ".join(f"{r} it {v['mean']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"
                            for r, v in s["rank_by_rung"].items()) +
                  f"; val means rank test means: {s['val_ranks_test']:.2f}", "",
                  "| config | val AP_all | test AP_all | test minus the defaults [95% CI] |", "|---|---|---|---|"]
        for c in by_val(s["configs"]):
            row = s["configs"][c]
            v = row.get("vs_defaults")
            vs = "reference" if v is None else (f"{100 * v['mean_diff']:+.1f} [{pts(v['ci95_low'])}, "
                                                f"{pts(v['ci95_high'])}]")
            lines.append(f"| {c} | {pts(row['val']['mean'])} ± {pts(row['val']['std'])} | "
                         f"{pts(row['test']['mean'])} ± {pts(row['test']['std'])} | {vs} |")
        lines.append("")
    return "\n".join(lines)
