"""Write one report of a sweep's run folder: RUN_DIR/report.html (self-contained) and RUN_DIR/report.md.

python scripts/report.py runs/sweep [--no-plots]      # the same as: dkan report runs/sweep
"""

from __future__ import annotations

import sys

from dkan.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
