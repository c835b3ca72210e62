"""The one reader of YAML a user hands in: search spaces, points files, class-splits files, dataset.yaml,
configs (``--config``, ``--set`` values) and bundles' config.yaml.

Plain data only (safe loading: a python tag is refused, never built), and bounded: a file over
``MAX_BYTES`` is refused before it is read, and anchors and aliases (``&a``, ``*a``, ``<<: *a``) are
refused before anything is built. An alias makes one node stand for another, so a 1 KB file of nested
aliases ("billion laughs") reads as a value of billions of items, and the first error message that
prints it, or the first check that walks it, takes gigabytes. Nesting is capped too (a recursive
composer would end in a RecursionError). libyaml's parser does the work when PyYAML has it (a 1 MB
file in well under a second); the pure-Python one otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dkan.errors import DataError

MAX_BYTES = 1 << 20  # 1 MiB: the files read here are a few KB (a prepared NEU-DET's dataset.yaml: 1.8 KB)
MAX_DEPTH = 32  # nested mappings and lists; a config is 3 deep
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class BadYaml(DataError):
    """YAML refused: ``problem`` says why in one line; ``reason`` without "not plain YAML (...)" around it."""

    def __init__(self, where: str, problem: str, fix: str, reason: str | None = None):
        self.reason = reason or problem
        super().__init__(where, problem, fix)


def loads(text: str, where: str, fix: str = "correct the file") -> Any:
    """``text`` as plain data, or BadYaml naming ``where``: malformed, tagged, aliased or nested too deep."""
    try:
        _check_events(text, where)
        return yaml.load(text, Loader=_LOADER)
    except BadYaml:
        raise
    except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: a date like 2026-13-45, a 5000-digit int
        why = one_line(e) if isinstance(e, yaml.YAMLError) else f"{type(e).__name__}: {one_line(e)}"
        raise BadYaml(where, f"not plain YAML ({why})", fix, why) from e


def read(path: Path, what: str = "YAML file") -> Any:
    """The file's content, or BadYaml naming it (missing, too large, not UTF-8, refused by ``loads``)."""
    path = Path(path)
    if not path.is_file():
        raise BadYaml(str(path), f"{what} not found", "check the path")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise BadYaml(str(path), f"{what} of {size / 2**20:.1f} MiB, above the {MAX_BYTES // 2**20} MiB limit of "
                      "YAML files read here", "a file of this kind holds a few KB: list fewer values (a search "
                      "range {low, high} instead of a long choices list), or give the right file")
    with open(path, "rb") as f:
        raw = f.read(MAX_BYTES + 1)  # a file grown since stat() is still cut at the limit
    if len(raw) > MAX_BYTES:
        raise BadYaml(str(path), f"{what} above the {MAX_BYTES // 2**20} MiB limit", "give the right file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadYaml(str(path), f"{what} is not UTF-8 text (byte {e.start})", "give a YAML text file") from e
    return loads(text, str(path))


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # a value held twice is written twice: read back as it was
        return True


def dumps(data: Any) -> str:
    """``data`` as YAML the reader here takes back: plain types, keys in order, never an anchor or alias."""
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False)


def _check_events(text: str, where: str) -> None:
    """Refuse anchors, aliases and deep nesting from the event stream, before any value is built."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "an alias (*name)" if isinstance(event, yaml.AliasEvent) else "an anchor (&name)"
            raise BadYaml(where, f"{kind} at line {_line(event)}: anchors and aliases are not accepted (a few "
                          "nested ones stand for billions of values)", "write each value out in full")
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise BadYaml(where, f"nested more than {MAX_DEPTH} levels deep at line {_line(event)}",
                              "write a flat mapping of keys to values")
        elif isinstance(event, _CLOSE):
            depth -= 1


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else 0


def one_line(e: BaseException, limit: int = 200) -> str:
    """An error's text on one line, cut to ``limit`` characters (PyYAML's run over several lines)."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
