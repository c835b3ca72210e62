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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dkan import yamlio

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


@contextmanager
def exclusive(lock: Path, waiting: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (made if missing); print ``waiting`` once when
    another process (or another open of it) holds it, then wait. Local and NFSv4 file systems."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(waiting, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
