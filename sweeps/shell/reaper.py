"""What a local Ray leaves listening when its driver ends, stopped within a second or two, however it ends.

After a SIGKILL of the sweep's driver (the OOM killer, ``kill -9``), Ray's GCS, raylet, dashboard and
workers die with it, but its dashboard agent and runtime-env agent, seeing the raylet gone, first
report that to the dead GCS (Ray 2.60's ``publish_error_to_driver``, a fixed 60 s timeout) and keep
their ports open meanwhile, one on all interfaces (measured: 60-65 s). The same two were seen for about
two minutes after a driver whose working folder had been removed was interrupted: its ``ray.shutdown``
did not stop them. The reaper is a small process beside the driver: it follows the processes the local
Ray started (the driver's new children and everything below them) and kills those still alive when

- the driver is gone, whatever ended it (exit, exception, a signal, SIGKILL): it is re-parented; or
- it is told to (SIGTERM): ``stop_local_ray`` does so after ``ray.shutdown``, whether that returned,
  raised or was interrupted, then waits for it.

It runs in its own session with ``/`` as its working folder, so a Ctrl+C, a hang-up or a SIGTERM sent
to the driver's process group, or the driver's folder removed, cannot stop it before it has reaped. Run
by path (``python reaper.py DRIVER_PID ROOT_PID...``), it needs only psutil (a dependency of Ray).
The decisions (what to follow, what to kill, when) are plain functions of a process table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

INTERVAL_S = 0.5
SCRIPT = os.path.abspath(__file__)  # resolved at import, while the working folder exists
Table = dict[int, tuple[int, float]]  # pid -> (parent pid, create time): the processes of the machine now


class _Stop(Exception):
    """SIGTERM: reap now."""


def start_reaper(roots: list[int]) -> subprocess.Popen:
    """Watch this process; when it ends, or the reaper gets SIGTERM, kill what ``roots`` and their
    descendants still run. Returns once the reaper is ready (its signal handlers set)."""
    proc = subprocess.Popen([sys.executable, SCRIPT, str(os.getpid()), *map(str, roots)], cwd="/",
                            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    proc.stdout.readline()  # "ready" (or "" if it could not start: then there is nothing to wait for)
    proc.stdout.close()
    return proc


def follow(roots: list[int], table: Table, known: dict[int, float]) -> dict[int, float]:
    """``known`` (pid -> create time) with the roots and all their descendants in ``table`` added. What was
    seen before is kept (re-parented when its parent died, it is still Ray's); a root whose pid now belongs
    to another process (another create time) is not followed."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, seen = dict(known), set()
    stack = [r for r in roots if r in table and known.get(r, table[r][1]) == table[r][1]]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out[pid] = table[pid][1]
        stack.extend(children.get(pid, ()))
    return out


def to_kill(known: dict[int, float], table: Table, me: int) -> list[int]:
    """The followed processes still alive: the same pid with the same create time (not a new process that
    got the number), never the reaper itself."""
    return sorted(pid for pid, created in known.items() if pid != me and table.get(pid, (0, None))[1] == created)


def driver_gone(driver: int, parent_now: int) -> bool:
    """The driver has ended, however: this process was re-parented (to init or a subreaper)."""
    return parent_now != driver


def process_table() -> Table:
    import psutil

    table: Table = {}
    for p in psutil.process_iter(["pid", "ppid", "create_time"]):
        if p.info["ppid"] is not None and p.info["create_time"] is not None:
            table[p.info["pid"]] = (p.info["ppid"], p.info["create_time"])
    return table


def _kill(pids: list[int], known: dict[int, float]) -> None:
    import psutil

    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.create_time() == known[pid]:  # checked again just before the kill
                p.kill()
        except psutil.Error:
            continue


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stop


def _watch(driver: int, roots: list[int]) -> None:
    known: dict[int, float] = {}
    try:
        while not driver_gone(driver, os.getppid()):
            known = follow(roots, process_table(), known)
            time.sleep(INTERVAL_S)
    except _Stop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the reaping short
    table = process_table()
    known = follow(roots, table, known)  # what started since the last look
    _kill(to_kill(known, table, os.getpid()), known)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl+C and shuts Ray down itself
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    import psutil  # noqa: F401  (loaded before "ready": a reaper that cannot run says nothing)

    print("ready", flush=True)
    sys.stdout.close()
    _watch(int(sys.argv[1]), [int(x) for x in sys.argv[2:]])
