"""Atomic output: build a whole folder beside its destination, then rename it into place.

An interrupted run leaves at most a hidden ``.NAME.partial-PID`` folder and never a
half-written destination.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from dkan.errors import DataError

MANIFEST = "dataset.yaml"


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh folder next to ``out`` (same file system, so the final rename is atomic)."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def first_difference(a: Path, b: Path) -> str | None:
    """The first relative path whose presence or bytes differ between two trees, else None."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    for rel in sorted(files_a ^ files_b):
        return str(rel)
    for rel in sorted(files_a):
        if not filecmp.cmp(a / rel, b / rel, shallow=False):
            return str(rel)
    return None


def publish(staged: Path, out: Path, overwrite: bool) -> str:
    """Move a finished staging folder to ``out``; returns "written", "replaced" or "up to date"."""
    out = Path(out).absolute()
    if not out.exists():
        staged.rename(out)
        return "written"
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
        staged.rename(out)
        return "written"
    if not (out / MANIFEST).is_file():
        raise DataError(
            str(out),
            "exists and is not a folder written by `dkan prepare-data` (no dataset.yaml)",
            "choose another --out (nothing was written)",
        )
    diff = first_difference(staged, out)
    if diff is None:
        return "up to date"
    if not overwrite:
        raise DataError(
            str(out),
            f"exists with different content (first difference: {diff})",
            "choose another --out, delete this one, or pass --overwrite (nothing was written)",
        )
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    out.rename(old)
    staged.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return "replaced"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
