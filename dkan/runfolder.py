"""A run folder's conventions, in one place: file names, atomic writes, "is this run done".

``fit`` writes ``config.yaml`` first, ``last.pt`` while training (resumable), ``progress.json`` for
watchers, then ``model_final.pt`` and, last of all, ``metrics.json``: a run (a seed of a sweep)
is done exactly when its ``metrics.json`` can be read. Every file is written to a temporary name
and renamed into place, so a crash or a full disk never leaves a half-written one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

from dkan import yamlio
from dkan.errors import DkanError

CONFIG = "config.yaml"
LAST = "last.pt"
FINAL = "model_final.pt"
METRICS = "metrics.json"
PROGRESS = "progress.json"
HISTORY = "history.jsonl"  # {iteration, loss, lr} lines while training: the loss curve
CACHE = "cache.json"  # frozen-feature cache counts (training set, and the evaluation set across seeds)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=True))


def write_yaml(path: Path, data: Any) -> Path:
    return write_text_atomic(path, yamlio.dumps(data))


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """One JSON line appended (a cut-off last line is skipped by ``read_jsonl``)."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The readable JSON lines of ``path`` ([] when it is missing)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def read_json(path: Path) -> Any | None:
    """A JSON file's content, or None when it is missing or unreadable (e.g. cut off)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def done_metrics(out: str | Path) -> dict[str, Any] | None:
    """A finished run's metrics (``<out>/metrics.json``), or None while it is not finished."""
    m = read_json(Path(out) / METRICS)
    return m if isinstance(m, dict) else None


class LockHeld(DkanError):
    """A lock another live process holds; ``holder`` names it (pid, host, since, command)."""

    def __init__(self, lock: Path, holder: str):
        self.lock, self.holder = lock, holder
        super().__init__(f"{lock}: held by {holder}")


@contextmanager
def exclusive(lock: Path, waiting: str | None = None,
              busy: Callable[[str], Exception] | None = None) -> Iterator[str | None]:
    """Hold an exclusive lock on the file ``lock`` (made if missing), with this process recorded in it.

    Another process holding it: print ``waiting`` once and wait for it; or, with no ``waiting``, raise
    ``busy(holder)`` (default ``LockHeld``) at once, naming that process. Yields the holder a process
    recorded and never cleared (it ended without releasing: a stale lock, now taken over), else None.
    The kernel releases the lock when its process ends in any way, SIGKILL included; the record is
    cleared on release. Local and NFSv4 file systems."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644), "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is None:
                holder = _holder(f) or "another process (not yet recorded)"
                raise (busy or partial(LockHeld, lock))(holder) from None
            print(waiting, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        stale = _holder(f)
        _record(f, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%H:%M:%S"),
                               "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}))
        try:
            yield stale
        finally:
            _record(f, "")
            fcntl.flock(f, fcntl.LOCK_UN)


def _record(f: IO[str], text: str) -> None:
    f.seek(0)
    f.truncate()
    f.write(text)
    f.flush()


def _holder(f: IO[str]) -> str | None:
    """Who a lock file says holds it: ``pid 12 on host (since 21:40:05): dkan sweep ...``; None when clear."""
    f.seek(0)
    try:
        h = json.loads(f.read(4096) or "null")
        return None if h is None else f"pid {int(h['pid'])} on {h['host']} (since {h['since']}): {h['command']}"
    except (ValueError, TypeError, KeyError):
        return "an unknown process (its record is unreadable)"
