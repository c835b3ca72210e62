"""Results over seeds: mean and std per metric, as one table (markdown and JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import numpy as np

HEADLINE = ("AP_base", "AP_novel", "AP_all")


def aggregate_seeds(per_seed: Mapping[int, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """{seed: metrics} -> {metric: {mean, std, n}} over the numeric metrics; NaN seeds are left out
    of a metric (std is the population std)."""
    def numeric(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    metrics = sorted({m for r in per_seed.values() for m, v in r.items() if numeric(v)}, key=lambda m: (m not in HEADLINE, HEADLINE.index(m) if m in HEADLINE else 0, m))
    out = {}
    for m in metrics:
        vals = np.array([r[m] for r in per_seed.values() if numeric(r.get(m)) and not math.isnan(r[m])], dtype=float)
        out[m] = {"mean": float(vals.mean()) if len(vals) else math.nan, "std": float(vals.std()) if len(vals) else math.nan, "n": int(len(vals))}
    return out


def to_markdown(rows: Mapping[str, Mapping[str, Mapping[str, float]]], metrics: Sequence[str] | None = None, scale: float = 100.0) -> str:
    """{row name (e.g. method): aggregate} -> markdown table of ``mean ± std`` (AP in points by default)."""
    metrics = list(metrics or next(iter(rows.values())).keys())
    lines = ["| method | " + " | ".join(m.removeprefix("AP/") for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, agg in rows.items():
        cells = [f"{agg[m]['mean'] * scale:.1f} ± {agg[m]['std'] * scale:.1f}" if m in agg and not math.isnan(agg[m]["mean"]) else "n/a" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_json(rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """JSON with NaN written as null (valid JSON for any reader)."""
    def clean(x):
        if isinstance(x, float) and math.isnan(x):
            return None
        return {k: clean(v) for k, v in x.items()} if isinstance(x, Mapping) else x

    return json.dumps(clean(rows), indent=2)
