"""The search space (``sweeps.core.space``) as Optuna's distributions: the one place Optuna meets the space."""

from __future__ import annotations

from sweeps.core.space import Choice, Dimension, Space


def to_optuna(space: Space) -> dict:
    """Optuna distributions for ``OptunaSearch(space=...)``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    def dist(d: Dimension):
        if isinstance(d, Choice):
            return CategoricalDistribution(list(d.choices))
        if d.integer:
            return IntDistribution(int(d.low), int(d.high), log=d.log)
        return FloatDistribution(d.low, d.high, log=d.log)

    return {k: dist(d) for k, d in space.items()}
