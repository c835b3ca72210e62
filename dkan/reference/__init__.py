"""The DKAN paper's published numbers (Table I, NEU-DET), shipped as ``dkan_table1.csv``.

A labelled reference row wherever our results are compared. Their protocol differs from ours
(see the CSV's header): K = 5, 10, 30; one few-shot seed; VOC07 11-point AP50; the best
checkpoint chosen on test; ImageNet-pretrained ResNet-101. Compare them with our ``voc07`` metric.
"""

from __future__ import annotations

import csv
import io
import math
from functools import cache
from importlib import resources

from dkan.names import HEADLINE, metric_key

TABLE = "dkan_table1.csv"
METRIC = "voc07"  # the interpolation the paper's numbers use (mmdet 'mAP')
SOURCE = "DKAN paper, Table I (Chan-Sun/DKAN resources/results.png)"


@cache
def _table() -> tuple[str, tuple[dict[str, str], ...]]:
    text = resources.files(__package__).joinpath(TABLE).read_text()
    header = "\n".join(line[2:] for line in text.splitlines() if line.startswith("#"))
    body = "\n".join(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return header, tuple(csv.DictReader(io.StringIO(body)))


def protocol() -> str:
    """The CSV's comment header: source and protocol of the numbers."""
    return _table()[0]


def reference_rows(split: int | None, shots: int) -> dict[str, dict[str, float]]:
    """{method: {AP_base, AP_novel, AP_all}} (fractions, VOC07 11-point AP50) for one NEU-DET split
    and K; {} when the paper has no such (split, K) (it reports K = 5, 10, 30 only)."""
    return {
        r["method"]: {k: float(r[k]) for k in HEADLINE}
        for r in _table()[1]
        if r["split"] == str(split) and r["shots"] == str(shots)
    }


def reference_table_rows(split: int | None, shots: int, methods: tuple[str, ...] = ("TFA", "DKAN")) -> dict[str, dict]:
    """The reference rows as ``aggregate.to_markdown`` rows under voc07 keys, labelled "<method> (paper, ...)".

    One value each (n 1): tables show it without a spread."""
    rows = reference_rows(split, shots)
    return {
        f"{m} (paper: 1 seed, best on test)": {
            metric_key(k, METRIC): {"mean": v, "std": math.nan, "n": 1, "ci95_low": math.nan, "ci95_high": math.nan}
            for k, v in rows[m].items()
        }
        for m in methods
        if m in rows
    }
