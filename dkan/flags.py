"""Command-line values checked before any work, the same way for every command: numbers in range, and
output paths that are writable, of the right kind, and never an input (or a folder holding inputs)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from dkan.errors import DkanError, check_writable


class FlagError(DkanError, ValueError):
    pass


def at_least(value: int | float | None, flag: str, low: int | float) -> None:
    """``value`` (None: the flag was not given) at least ``low``."""
    if value is not None and not value >= low:
        raise FlagError(f"{flag} {value}: must be at least {low}. Fix: pass {flag} {low} or more, or leave it out")


def fraction(value: float | None, flag: str) -> None:
    """A score threshold: a finite number in [0, 1]."""
    if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
        raise FlagError(f"{flag} {value}: a score threshold lies in [0, 1]. Fix: e.g. {flag} 0.3")


def _resolved(paths: Iterable[str | Path]) -> list[Path]:
    return [Path(p).resolve() for p in paths]


def output_file(path: str | Path, flag: str, inputs: Iterable[str | Path] = ()) -> Path:
    """A file the command will write: not a folder, not one of its inputs, in a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise FlagError(f"{flag} {path}: is a folder. Fix: name a file, e.g. {flag} {path / 'out.json'}")
    if path.resolve() in _resolved(inputs):
        raise FlagError(f"{flag} {path}: is one of the inputs; it would be overwritten. Fix: name another file")
    check_writable(path, flag)
    return path


def output_folder(path: str | Path, flag: str, inputs: Iterable[str | Path] = ()) -> Path:
    """A folder the command will write into: not a file, writable, holding none of its inputs (written files
    would overwrite them or be read as inputs next time)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FlagError(f"{flag} {path}: is a file, not a folder. Fix: name a new or existing folder")
    root = path.resolve()
    held = [p for p in _resolved(inputs) if p == root or root in p.parents]
    if held:
        raise FlagError(f"{flag} {path}: holds the inputs (e.g. {held[0]}); what is written there could overwrite "
                        f"them. Fix: name a folder apart from the inputs, e.g. {flag} {path.parent / 'drawn'}")
    check_writable(path, flag)
    return path
