"""The search space: any value of the fine-tune config, by its dotted key, checked against the config's types.

Defaults (a YAML file of the same shape, ``--search-space space.yaml``, adds keys or replaces ranges)::

    fka_weight: {low: 0.01, high: 10, log: true}     # DKAN's distillation weights and temperatures
    lka_weight: {low: 0.001, high: 1, log: true}     # (short for distill.fka_weight, ...)
    fka_tau: {low: 1, high: 10}
    lka_tau: {low: 1, high: 10}
    optim.lr: {low: LR / 5, high: LR * 5, log: true}  # the fine-tune's learning rate, LR the profile's

The learning rate is in it because it decided the one real-data study measured (NEU-DET split 1, K = 5:
without it TFA was chosen and the authors' defaults beat it on test; with it a tuned DKAN at about half
the profile's rate was chosen and test confirmed; docs/benchmarks.md). ``optim.lr: {choices: [0.01]}``
fixes it again. More, for example::

    optim.lr: {low: 0.001, high: 0.05, log: true}     # a float
    optim.iterations: {low: 100, high: 400}            # an int (the lr steps move with it: OptimConfig.rescaled)
    distill.lka_student: {choices: [scaled, raw]}      # a categorical (a single choice fixes a value)
    model.cosine_norm: {choices: [graph, inplace]}

A key must name a leaf of ``dkan.config.FinetuneConfig``; a float or int takes ``{low, high, log}`` or
``{choices}``, a string or bool ``{choices}`` of its type; every bound and choice must pass the config's
own checks. What the sweep decides elsewhere cannot be searched (the method: ``--candidates``; K:
``--shots``; the seeds, the data, paths, devices). DKAN's keys (``distill.*``) are searched for DKAN
only; the baselines (TFA, plain) get their own search over the other keys, if any.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dkan.config import ConfigError, FinetuneConfig, read_yaml, with_values
from dkan.errors import DkanError, shown
from dkan.names import HPARAMS


class SearchSpaceError(DkanError, ValueError):
    pass


@dataclass(frozen=True)
class Range:
    """A number in [low, high] (log-uniform when ``log``), an integer when ``integer``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class Choice:
    choices: tuple


Dimension = Range | Choice
Space = dict[str, Dimension]  # key (a distillation hyperparameter's short name, else dotted) -> its range

DISTILL_SPACE: Space = {
    "fka_weight": Range(0.01, 10.0, log=True),
    "lka_weight": Range(0.001, 1.0, log=True),
    "fka_tau": Range(1.0, 10.0),
    "lka_tau": Range(1.0, 10.0),
}
LR_SPAN = 5.0  # the default space's learning rates: the profile's, divided or multiplied by up to this


def default_space(template: FinetuneConfig) -> Space:
    """DKAN's distillation values and the fine-tune's learning rate around the profile's (module docstring)."""
    lr = float(template.optim.lr)
    return {**DISTILL_SPACE, "optim.lr": Range(lr / LR_SPAN, lr * LR_SPAN, log=True)}


# fixed by the sweep itself, with the flag that sets them
NOT_SEARCHABLE = {
    "distill.method": "the methods are candidates: --candidates", "shots": "--shots", "fewshot_seed": "--seeds",
    "base_checkpoint": "--base-checkpoint", "out": "--out", "eval_split": "--protocol", "data.root": "--data",
    "data.split": "--splits / --base", "data.base": "--base", "data.novel": "--novel", "device": "--gpus-per-worker",
    "threads": "--cpus-per-worker", "provenance": "nothing", "checkpoint_every": "nothing",
}


def config_key(key: str) -> str:
    """The dotted config key of a space key (``fka_weight`` -> ``distill.fka_weight``)."""
    return f"distill.{key}" if key in HPARAMS else key


def space_key(key: str) -> str:
    """The space's name of a config key: the distillation hyperparameters by their short names."""
    short = key.removeprefix("distill.")
    return short if short in HPARAMS else key


def uses(method: str, key: str) -> bool:
    """Whether a fine-tune of ``method`` reads ``key``: the baselines have no teacher, so no ``distill.*``."""
    return method == "dkan" or not config_key(key).startswith("distill.")


def of_method(space: Space, method: str) -> Space:
    return {k: d for k, d in space.items() if uses(method, k)}


def load_space(path: Path | None, template: FinetuneConfig) -> Space:
    """The default space with a YAML file's keys over it, every one checked against ``template``'s types."""
    space = default_space(template)
    if path is None:
        return space
    path = Path(path)
    data = read_yaml(path, "search-space file", SearchSpaceError)
    if not isinstance(data, dict) or not data:
        raise SearchSpaceError(f"{path}: expected a mapping of config key -> {{low, high, log}} or {{choices}}")
    for key, spec in data.items():
        name = space_key(str(key))
        space[name] = dimension(path, name, spec, template)
    return space


def field_type(key: str, template: FinetuneConfig, where: str) -> type:
    """The scalar type of a leaf of the config (``int | None`` -> int); lists and sections are refused."""
    if key in NOT_SEARCHABLE:
        raise SearchSpaceError(f"{where}: {key} is not searched: the sweep sets it. Fix: set it with "
                               f"{NOT_SEARCHABLE[key]}")
    node: Any = template
    *parents, leaf = key.split(".")
    for part in parents:
        node = getattr(node, part, None)
        if not dataclasses.is_dataclass(node):
            break
    fields = {f.name for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else set()
    if leaf not in fields:
        section = ".".join(parents) or "the config"
        raise SearchSpaceError(f"{where}: {key} is not a key of the fine-tune config (known in {section}: "
                               f"{sorted(fields)}). Fix: name a key `dkan finetune --print-config` shows")
    tp = typing.get_type_hints(type(node))[leaf]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp not in (float, int, str, bool):
        raise SearchSpaceError(f"{where}: {key} is a {getattr(tp, '__name__', tp)}, not a number, string or bool. "
                               "Fix: search scalar keys only (a list is set with --set)")
    return tp


def dimension(path: Path, key: str, spec: object, template: FinetuneConfig) -> Dimension:
    where = f"{path}: {key}"
    tp = field_type(config_key(key), template, str(path))
    if isinstance(spec, dict) and set(spec) == {"choices"}:
        d: Dimension = _choice(where, spec["choices"], tp)
    elif isinstance(spec, dict) and {"low", "high"} <= set(spec) <= {"low", "high", "log"}:
        d = _range(where, spec, tp)
    else:
        raise SearchSpaceError(f"{where} must be {{low: L, high: H}} (optional log: true) or {{choices: [...]}}, "
                               f"got {shown(spec)}. Fix: e.g. {{low: 0.001, high: 0.05, log: true}}; to fix a value, "
                               "{choices: [value]}")
    values = d.choices if isinstance(d, Choice) else (d.low, d.high)
    for v in values:  # every value must pass the config's own checks (lr > 0, ...)
        try:
            apply_point(template, {key: v})
        except ConfigError as e:
            raise SearchSpaceError(f"{where}: {shown(v)} is not a valid value ({e}). Fix: keep the range inside "
                                   "it") from e
    return d


def _choice(where: str, choices: object, tp: type) -> Choice:
    if not isinstance(choices, list) or not choices:
        raise SearchSpaceError(f"{where}: choices must be a non-empty list, got {shown(choices)}")
    ok = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)) if tp is float else \
        (lambda v: isinstance(v, tp) and not (tp is int and isinstance(v, bool)))
    bad = [v for v in choices if not ok(v)]
    if bad:
        raise SearchSpaceError(f"{where}: choices must all be {tp.__name__}s, got {shown(bad)}. Fix: one type, "
                               "the key's")
    if len(set(map(json.dumps, choices))) != len(choices):
        raise SearchSpaceError(f"{where}: choices repeat a value ({shown(choices)}). Fix: list each value once")
    return Choice(tuple(float(v) if tp is float else v for v in choices))


def _range(where: str, spec: dict, tp: type) -> Range:
    if tp not in (float, int):
        raise SearchSpaceError(f"{where} is a {tp.__name__}: it takes {{choices: [...]}}, not low/high")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise SearchSpaceError(f"{where} bounds must be numbers, got {shown(spec)}")
    if tp is int and not all(float(v).is_integer() for v in (low, high)):
        raise SearchSpaceError(f"{where} is an integer: its bounds must be whole numbers, got {shown(spec)}")
    if not isinstance(log, bool):
        raise SearchSpaceError(f"{where}: log must be true or false, got {shown(log)}")
    r = Range(float(low), float(high), log, tp is int)
    if not (math.isfinite(r.low) and math.isfinite(r.high)) or r.low >= r.high:
        raise SearchSpaceError(f"{where} has inverted or empty bounds (low {r.low:g} >= high {r.high:g}). "
                               "Fix: low must be below high")
    if r.log and r.low <= 0:
        raise SearchSpaceError(f"{where} is log-scaled but low is {r.low:g}. Fix: a log range needs low > 0")
    return r


def apply_point(template: FinetuneConfig, point: Mapping[str, Any]) -> FinetuneConfig:
    """``template`` with a point's values, checked as ``--set`` values are; ``optim.iterations`` rescales the
    schedule first (its lr steps and warm-up move with it)."""
    cfg = template
    if "optim.iterations" in point:
        cfg = dataclasses.replace(cfg, optim=cfg.optim.rescaled(int(point["optim.iterations"])))
    values = {config_key(k): v for k, v in point.items() if k != "optim.iterations"}
    return with_values(cfg, values, "search point") if values else cfg


def value_in(d: Dimension, v: Any) -> bool:
    if isinstance(d, Choice):
        return v in d.choices
    return isinstance(v, (int, float)) and not isinstance(v, bool) and d.low <= float(v) <= d.high and (
        not d.integer or float(v).is_integer())


def point_of(config: Mapping[str, Any], space: Space) -> dict[str, Any]:
    """The searched values of a Tune trial's config (or any mapping holding them): the one conversion."""
    return {k: _typed(space[k], config[k]) for k in space if k in config}


def _typed(d: Dimension, v: Any) -> Any:
    if isinstance(d, Range):
        return int(round(float(v))) if d.integer else float(v)
    return v


def first_points(space: Space, template: FinetuneConfig, defaults: Mapping[str, float] | None = None) -> dict:
    """The point a candidate starts from: the authors' distillation values (``defaults``: a split's own,
    ``dkan.config.authors_defaults``) and the template's value of every other key, each brought into
    the space (clipped into a range; the first choice when the value is not among the choices)."""
    out = {}
    for k, d in space.items():
        v = defaults[k] if defaults and k in defaults else _get(template, config_key(k))
        if isinstance(d, Choice):
            out[k] = v if v in d.choices else d.choices[0]
        else:
            out[k] = _typed(d, min(max(float(v), d.low), d.high))
    return out


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def describe_space(space: Space) -> str:
    def one(k: str, d: Dimension) -> str:
        if isinstance(d, Choice):
            return f"{k} {{{', '.join(map(str, d.choices))}}}"
        return f"{k} {'log ' if d.log else ''}{'int ' if d.integer else ''}[{d.low:g}, {d.high:g}]"

    return ", ".join(one(k, d) for k, d in space.items()) or "nothing"


def baseline_trials(space: Space, method: str, trials: int) -> int:
    """A baseline's trials: its own search (a quarter of ``--trials``: it varies fewer keys than DKAN, usually
    the learning rate alone; its profile values first) where the space varies keys it uses, else 1. One trial
    is its profile values (or the single choices) alone: it runs with the fixed candidates."""
    varied = [d for d in of_method(space, method).values() if not (isinstance(d, Choice) and len(d.choices) == 1)]
    return max(1, math.ceil(trials / 4)) if varied else 1
