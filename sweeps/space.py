"""The search space over DKAN's distillation weights and temperatures.

Defaults (overridable by a YAML file of the same shape, e.g. ``--search-space space.yaml``)::

    fka_weight: {low: 0.01, high: 10, log: true}
    lka_weight: {low: 0.001, high: 1, log: true}
    fka_tau: {low: 1, high: 10}
    lka_tau: {low: 1, high: 10}

The authors' values (1, 0.01, 5, 5) are always evaluated first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dkan.config import authors_defaults, read_yaml
from dkan.errors import DkanError
from dkan.names import HPARAMS


class SearchSpaceError(DkanError, ValueError):
    pass


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False


DEFAULT_SPACE: dict[str, Range] = {
    "fka_weight": Range(0.01, 10.0, log=True),
    "lka_weight": Range(0.001, 1.0, log=True),
    "fka_tau": Range(1.0, 10.0),
    "lka_tau": Range(1.0, 10.0),
}


def load_space(path: Path | None) -> dict[str, Range]:
    """The default space with a YAML file's ranges over it; unknown keys or bad bounds are errors."""
    space = dict(DEFAULT_SPACE)
    if path is None:
        return space
    path = Path(path)
    data = read_yaml(path, "search-space file", SearchSpaceError)
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{path}: expected a mapping of parameter -> {{low, high, log}}")
    unknown = sorted(set(data) - set(DEFAULT_SPACE))
    if unknown:
        raise SearchSpaceError(f"{path}: unknown parameter(s) {unknown}. Fix: use only {sorted(DEFAULT_SPACE)}")
    for name, spec in data.items():
        space[name] = _range(path, name, spec)
    return space


def _range(path: Path, name: str, spec: object) -> Range:
    if not isinstance(spec, dict) or set(spec) - {"low", "high", "log"} or not {"low", "high"} <= set(spec):
        raise SearchSpaceError(f"{path}: {name} must be {{low: L, high: H}} with optional log: true, got {spec!r}")
    try:
        r = Range(float(spec["low"]), float(spec["high"]), bool(spec.get("log", False)))
    except (TypeError, ValueError) as e:
        raise SearchSpaceError(f"{path}: {name} bounds must be numbers, got {spec!r}") from e
    if not (math.isfinite(r.low) and math.isfinite(r.high)) or r.low >= r.high:
        raise SearchSpaceError(
            f"{path}: {name} has inverted or empty bounds (low {r.low} >= high {r.high}). Fix: low must be below high"
        )
    if r.log and r.low <= 0:
        raise SearchSpaceError(f"{path}: {name} is log-scaled but low is {r.low}. Fix: a log range needs low > 0")
    return r


def point_of(config: Mapping[str, Any]) -> dict[str, float]:
    """The hyperparameters of a Tune trial's config (or any mapping holding them): the one conversion."""
    return {k: float(config[k]) for k in HPARAMS if k in config}


def first_points(space: dict[str, Range], defaults: dict[str, float] | None = None) -> list[dict[str, float]]:
    """The authors' defaults (``defaults``: a split's own, ``dkan.config.authors_defaults``; split 1's when
    not given), clipped into the space (so Optuna accepts them)."""
    d = defaults or authors_defaults()
    return [{k: min(max(d[k], r.low), r.high) for k, r in space.items()}]


def to_optuna(space: dict[str, Range]) -> dict:
    """Optuna distributions for ``OptunaSearch(space=...)``."""
    from optuna.distributions import FloatDistribution

    return {k: FloatDistribution(r.low, r.high, log=r.log) for k, r in space.items()}


def describe(space: dict[str, Range]) -> str:
    return ", ".join(f"{k} {'log ' if r.log else ''}[{r.low:g}, {r.high:g}]" for k, r in space.items())


def sample_points(n: int, seed: int, space: dict[str, Range] = DEFAULT_SPACE) -> list[dict[str, float]]:
    """The authors' defaults and then ``n - 1`` seeded uniform (log-uniform) points: fixed trials
    that benchmarks and recordings run under every scheduler alike."""
    import random

    rng = random.Random(seed)
    pts = first_points(space)
    while len(pts) < n:
        pts.append({k: (r.low * (r.high / r.low) ** rng.random()) if r.log else rng.uniform(r.low, r.high)
                    for k, r in space.items()})
    return pts
