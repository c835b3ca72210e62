"""A study's shape, written once: its candidates (names, methods, labels, order) and its runs on the
selection split (which Tune runs, in order, how many trials each, which candidates run side by side).
The plan, the runs on val (``sweeps.study``), the selection, the test phase, the outcome, the figures
and the estimate all read it here.

A new candidate is one row of ``CANDIDATES`` (its method must be one ``dkan`` trains).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeps.core.space import Space, baseline_trials, of_method


@dataclass(frozen=True)
class CandidateKind:
    """One kind of candidate a study compares. ``role``: ``baseline`` (the method's profile values, or the best
    of its own search where the space varies keys it uses), ``defaults`` (the authors' values of the method,
    a fixed candidate) or ``tuned`` (the best of the method's search, told the defaults' result)."""

    name: str  # the candidate's name: Tune configs, test rows, result files
    method: str  # what dkan trains (--candidates names methods)
    label: str  # its row in the results
    title: str  # the method as a sentence names it
    role: str  # baseline | defaults | tuned
    tag: str = ""  # after the title and its values: " (tuned)"

    def sentence(self, point: dict[str, Any]) -> str:
        """"DKAN fka_weight 1, lka_weight 0.01 (authors' defaults)", "TFA", ..."""
        values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in point.items())
        return f"{self.title} {values}{self.tag}" if values else f"{self.title}{self.tag}"


# simplest first: a candidate replaces a simpler one only when it beats it on the selection split
CANDIDATES = (
    CandidateKind("tfa", "tfa", "TFA", "TFA", "baseline"),
    CandidateKind("plain", "plain", "plain (DKAN's trainable parts, no teacher)", "plain", "baseline"),
    CandidateKind("dkan_defaults", "dkan", "DKAN (authors' defaults)", "DKAN", "defaults", " (authors' defaults)"),
    CandidateKind("dkan", "dkan", "DKAN (tuned)", "DKAN", "tuned", " (tuned)"),
)
KINDS = {c.name: c for c in CANDIDATES}
NAMES = tuple(KINDS)  # the candidates' order
METHODS = tuple(dict.fromkeys(c.method for c in CANDIDATES))  # --candidates, simplest first
LABELS = {c.name: c.label for c in CANDIDATES}
ROW_NAMES = {**LABELS, "base": "base model"}  # the test table's rows
SIMPLEST = CANDIDATES[0]


@dataclass(frozen=True)
class RunSpec:
    """One Tune run of a study: fixed candidates side by side, or one method's Optuna search."""

    name: str  # candidates | search | search_<method>: names its Tune state and MLflow runs
    method: str = "dkan"  # the searched method (a search)
    space: Space = field(default_factory=dict)  # the keys searched (a search)
    trials: int = 1
    points: tuple[dict[str, Any], ...] = ()  # evaluated first (a search)
    prior: tuple[tuple[dict[str, Any], float], ...] = ()  # already evaluated elsewhere: (point, objective)
    fixed: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # candidate -> (method, point)
    base_ap: float | None = None  # the base model's AP_base on the selection split (for the retention)
    rivals: dict[str, dict[int, float]] = field(default_factory=dict)  # runs before: name -> seed -> AP (race)


@dataclass(frozen=True)
class RunShape:
    """One of a study's Tune runs on the selection split, before its points are known."""

    name: str  # candidates | search | search_<method>
    method: str  # the searched method (``dkan`` for the fixed candidates' run, as RunSpec's default)
    trials: int
    fixed: tuple[CandidateKind, ...] = ()  # the candidates that run side by side (the ``candidates`` run)
    space: Space = field(default_factory=dict)  # the keys searched (a search)


@dataclass(frozen=True)
class StudyShape:
    candidates: tuple[CandidateKind, ...]  # this study's, simplest first
    runs: tuple[RunShape, ...]  # its Tune runs on the selection split, in the order they run

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.candidates]

    @property
    def trials(self) -> list[int]:
        """The trials of each run, in order (the estimate's count)."""
        return [r.trials for r in self.runs]

    def trials_by_method(self) -> dict[str, int]:
        """Each method's trials over every run (a fixed candidate is one trial of its method)."""
        out: dict[str, int] = {}
        for r in self.runs:
            for m, n in ([(c.method, 1) for c in r.fixed] if r.fixed else [(r.method, r.trials)]):
                out[m] = out.get(m, 0) + n
        return out

    def of_role(self, role: str) -> list[CandidateKind]:
        return [c for c in self.candidates if c.role == role]


def study_shape(space: Space, wanted: Sequence[str], trials: int) -> StudyShape:
    """The candidates of the methods ``wanted`` and the runs that find them: the fixed candidates side by side
    (a baseline with no search of its own or its start alone, each method's authors' defaults), each tuned
    method's search (``trials`` - 1 after its defaults), each baseline's own search."""
    cands = tuple(c for c in CANDIDATES if c.method in wanted)
    searched = {c.method: baseline_trials(space, c.method, trials) for c in cands if c.role == "baseline"}
    fixed = tuple(c for c in cands if (c.role == "baseline" and searched[c.method] <= 1) or c.role == "defaults")
    runs = [RunShape("candidates", "dkan", len(fixed), fixed)] if fixed else []
    runs += [RunShape("search", c.method, trials - 1, space=space) for c in cands if c.role == "tuned" and trials > 1]
    runs += [RunShape(f"search_{m}", m, n, space=of_method(space, m)) for m, n in searched.items() if n > 1]
    return StudyShape(cands, tuple(runs))
