"""What a local Ray leaves listening when its driver is killed, stopped within a second or two.

After a SIGKILL of the sweep's driver (the OOM killer, ``kill -9``), Ray's GCS, raylet, dashboard and
workers die with it, but its dashboard agent and runtime-env agent, seeing the raylet gone, first
report that to the dead GCS (Ray 2.60's ``publish_error_to_driver``, a fixed 60 s timeout) and keep
their ports open meanwhile, one on all interfaces (measured: 60-65 s). The reaper is a small process
beside the driver: it follows the processes the local Ray started (the driver's new children and
everything below them) and, once the driver is gone, kills those still alive. ``stop_local_ray``
stops it first. Run by path (``python reaper.py DRIVER_PID ROOT_PID...``), it needs only psutil
(a dependency of Ray) and ignores Ctrl+C (the driver handles that and shuts Ray down itself).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

INTERVAL_S = 0.5


def start_reaper(roots: list[int]) -> subprocess.Popen:
    """Watch this process; when it dies, kill what ``roots`` and their descendants still run."""
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), str(os.getpid()), *map(str, roots)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _follow(roots: list[int], known: dict[int, float]) -> None:
    import psutil

    for pid in roots:
        try:
            root = psutil.Process(pid)
            for p in (root, *root.children(recursive=True)):
                known.setdefault(p.pid, p.create_time())
        except psutil.Error:  # gone (or going) since: what was seen before is kept
            continue


def _reap(known: dict[int, float]) -> None:
    import psutil

    for pid, created in known.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created:  # the same process, not a new one with its number
                p.kill()
        except psutil.Error:
            continue


def _watch(driver: int, roots: list[int]) -> None:
    known: dict[int, float] = {}
    while os.getppid() == driver:  # re-parented once the driver is gone
        _follow(roots, known)
        time.sleep(INTERVAL_S)
    _reap(known)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch(int(sys.argv[1]), [int(x) for x in sys.argv[2:]])
