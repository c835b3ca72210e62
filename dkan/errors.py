"""Errors a user can act on: each names the file or value at fault and the fix."""

from __future__ import annotations

import errno
import os
import reprlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DkanError(Exception):
    """Base class for errors the CLI reports as one clear line instead of a traceback."""


def shown(value: object, limit: int = 80) -> str:
    """``value`` for an error message: its repr cut to ``limit`` characters. A bad value read from a file can
    be megabytes (or, through YAML aliases, billions of items); reprlib looks at a few items of a few levels
    only, so the whole repr is never built."""
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 8, 8, 8, 8
    r.maxstring = r.maxother = limit
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DataError(DkanError, ValueError):
    """Bad input data: names where (file, value) and how to fix it."""

    def __init__(self, where: str, problem: str, fix: str):
        self.where, self.problem, self.fix = where, problem, fix
        super().__init__(f"{where}: {problem}. Fix: {fix}")


class StorageError(DkanError, OSError):
    """A folder that cannot be written (read-only, no permission, disk or quota full)."""


# errno values that mean "this storage cannot take the write", not a bug in the code
_STORAGE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                   errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                   errno.EPERM: "permission denied"}


def storage_error(e: OSError) -> StorageError | None:
    """``e`` as a clear StorageError naming the path and the fix, or None when it is another OSError."""
    why = _STORAGE_ERRNOS.get(e.errno)
    if why is None:
        return None
    where = e.filename or "the output folder"
    fix = "free space, or write elsewhere" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "write elsewhere"
    return StorageError(f"cannot write {where}: {why}. Fix: {fix} (a writable folder; the command's --out where it "
                        "has one); what finished before is kept (files are written whole or not at all)")


@contextmanager
def storage_errors() -> Iterator[None]:
    """Disk full, read-only or no permission inside: raised as a StorageError (one clear CLI line)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        clear = storage_error(e)
        if clear is None:
            raise
        raise clear from e


def check_writable(path: Path, flag: str = "--out", fix: str | None = None) -> None:
    """Refuse ``path`` before any work when neither it nor its nearest existing parent is a writable folder
    (``fix``: what to do instead of the default, choosing another ``flag``)."""
    p = Path(path).absolute()
    existing = next((q for q in (p, *p.parents) if q.exists()), None)
    if existing == p and p.is_file():  # an output file written over: its folder must take the new one
        existing = p.parent
    if existing is None or not existing.is_dir():
        raise StorageError(f"{flag} {path}: {existing} is not a folder. Fix: choose a folder path for {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only(existing) else "no write permission"
        raise StorageError(f"{flag} {path}: cannot write into {existing} ({why}). "
                           f"Fix: {fix or f'choose a writable {flag}'}")


def _read_only(p: Path) -> bool:
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False
