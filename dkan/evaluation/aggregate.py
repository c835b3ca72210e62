"""Results over seeds: mean, sample std and 95% t interval per metric, as one table (markdown and JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

from dkan.evaluation.stats import describe
from dkan.names import HEADLINE, metric_key


def aggregate_seeds(per_seed: Mapping[int, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """{seed: metrics} -> {metric: {mean, std, n, ci95_low, ci95_high}} over the numeric metrics.

    std is the sample standard deviation (ddof=1) and the interval a t interval over seeds
    (``stats.describe``): both NaN with one seed. NaN seeds are left out of a metric."""

    def numeric(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def order(m: str) -> tuple:
        return (m not in HEADLINE, HEADLINE.index(m) if m in HEADLINE else 0, m)

    metrics = sorted({m for r in per_seed.values() for m, v in r.items() if numeric(v)}, key=order)
    return {m: describe([r[m] for r in per_seed.values() if numeric(r.get(m))]) for m in metrics}


def to_markdown(
    rows: Mapping[str, Mapping[str, Mapping[str, float]]],
    metrics: Sequence[str] | None = None,
    scale: float = 100.0,
    metric: str | None = None,
    ci: bool = False,
) -> str:
    """{row name (e.g. method): aggregate} -> markdown table of ``mean ± std`` (AP in points by default).

    ``metric`` (coco | voc07) reads the names in ``metrics`` under that metric's keys and names it in
    the header; ``ci`` adds the 95% interval. A row with one value (a reference row) shows it alone."""
    names = list(metrics or next(iter(rows.values())).keys())
    keys = [metric_key(m, metric) if metric else m for m in names]
    first = f"method ({metric} AP50)" if metric else "method"
    lines = [f"| {first} | " + " | ".join(m.removeprefix("AP/") for m in names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, agg in rows.items():
        cells = [_cell(agg.get(k), scale, ci) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(s: Mapping[str, float] | None, scale: float, ci: bool) -> str:
    if not s or math.isnan(s["mean"]):
        return "n/a"
    text = f"{s['mean'] * scale:.1f}"
    if not math.isnan(s.get("std", math.nan)):
        text += f" ± {s['std'] * scale:.1f}"
    if ci and not math.isnan(s.get("ci95_low", math.nan)):
        text += f" [{s['ci95_low'] * scale:.1f}, {s['ci95_high'] * scale:.1f}]"
    return text


def to_json(rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """JSON with NaN written as null (valid JSON for any reader)."""

    def clean(x):
        if isinstance(x, float) and math.isnan(x):
            return None
        if isinstance(x, Mapping):
            return {k: clean(v) for k, v in x.items()}
        return [clean(v) for v in x] if isinstance(x, (list, tuple)) else x

    return json.dumps(clean(rows), indent=2)
