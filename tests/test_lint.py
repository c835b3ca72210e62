"""The code stays within the house rules: ruff (lines <= 120, pyflakes, import order) and no sys.path edits."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = ["dkan", "sweeps", "scripts", "tests"]


def test_ruff_passes_on_all_code():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    r = subprocess.run([ruff, "check", *CODE], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_no_sys_path_edits():
    edits = [f"{p.relative_to(REPO)}:{i}" for d in CODE for p in (REPO / d).rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"sys\.path\.(insert|append)|sys\.path\s*=", line) and "re.search" not in line]
    assert edits == []
