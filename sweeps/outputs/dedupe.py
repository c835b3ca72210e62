"""Model files a run folder holds twice are one file: identical large files (a split's base model in every
study's bundle and logged MLflow model, a model logged and bundled) become hard links of the first.

Only inside ``--out`` and only for regular files (links are left alone); each replacement is atomic
(a link made beside the file, then renamed over it): an interrupted pass leaves every file whole.
Where hard links are not possible (another file system, a file system without them) the copies stay.
"""

from __future__ import annotations

import os
from pathlib import Path

from dkan.bundle import CHECKPOINT_SUFFIXES
from dkan.model.checkpoint import file_sha256

MIN_BYTES = 1 << 20  # smaller files are not worth a hash


def link_duplicates(root: Path, min_bytes: int = MIN_BYTES) -> int:
    """Replace duplicate files under ``root`` by hard links of one; returns the bytes freed."""
    by_size: dict[int, list[Path]] = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if p.suffix not in CHECKPOINT_SUFFIXES or p.is_symlink() or not p.is_file():
                continue  # model files only: never a database or state file that is written in place
            size = p.stat().st_size
            if size >= min_bytes:
                by_size.setdefault(size, []).append(p)
    freed = 0
    for size, paths in by_size.items():
        if len(paths) < 2:
            continue
        first: dict[str, Path] = {}
        for p in sorted(paths):
            digest = file_sha256(p)
            keep = first.setdefault(digest, p)
            if keep == p or os.path.samefile(keep, p):
                continue
            tmp = p.with_name(f".{p.name}.link-{os.getpid()}")
            try:
                os.link(keep, tmp)
                os.replace(tmp, p)
                freed += size
            except OSError:  # another file system, or no hard links there: the copy stays
                tmp.unlink(missing_ok=True)
    return freed
