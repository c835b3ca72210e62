"""The reaper (sweeps/shell/reaper.py) kills what a local Ray left however its driver ends: its decisions on a
made-up process table, then the real process with a stand-in for Ray (sleeping processes), no Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps.shell.reaper import driver_gone, follow, to_kill

REPO = Path(__file__).resolve().parents[1]

# driver 100; its Ray: gcs 200 and raylet 300 (roots), the raylet's agent 310 and worker 320 (and the
# worker's child 321); an unrelated process 400 with children, and the reaper 500
TABLE = {100: (1, 1.0), 200: (100, 2.0), 300: (100, 3.0), 310: (300, 3.1), 320: (300, 3.2), 321: (320, 3.3),
         400: (1, 4.0), 410: (400, 4.1), 500: (100, 5.0)}


def test_follow_takes_the_roots_and_everything_below_them_only():
    known = follow([200, 300], TABLE, {})
    assert known == {200: 2.0, 300: 3.0, 310: 3.1, 320: 3.2, 321: 3.3}
    assert to_kill(known, TABLE, me=500) == [200, 300, 310, 320, 321]


def test_what_was_seen_is_still_killed_once_re_parented():
    known = follow([200, 300], TABLE, {})
    after = {pid: v for pid, v in TABLE.items() if pid not in (100, 200, 300)}  # driver, gcs, raylet gone
    after[310] = (1, 3.1)  # the agent, orphaned: re-parented to init, still listening
    known = follow([200, 300], after, known)
    assert to_kill(known, after, me=500) == [310, 320, 321]


def test_a_pid_taken_by_another_process_is_neither_followed_nor_killed():
    known = follow([200, 300], TABLE, {})
    later = dict(TABLE)
    later[310] = (1, 9.0)  # the agent ended; its number now belongs to someone else's process
    later[300] = (1, 9.5)  # so does the raylet's (a root): its new children are not Ray's
    later[330] = (300, 9.6)
    known = follow([200, 300], later, known)
    assert 330 not in known and to_kill(known, later, me=500) == [200, 320, 321]


def test_the_reaper_never_kills_itself_and_acts_once_the_driver_is_gone():
    assert to_kill({500: 5.0, 200: 2.0}, TABLE, me=500) == [200]
    assert not driver_gone(100, 100) and driver_gone(100, 1) and driver_gone(100, 4242)


# ---------------------------------------------------------------- the real reaper, a stand-in for Ray

DRIVER = """
import os, shutil, signal, subprocess, sys, tempfile, time
from sweeps.shell.reaper import start_reaper
end = sys.argv[1]
if end == "cwd-removed":  # the driver's working folder removed before it starts the reaper, then it ends
    d = tempfile.mkdtemp(); os.chdir(d); shutil.rmtree(d)
# a 'raylet' and its 'agent', in their own session: a signal to the driver's group leaves them running
ray = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300"], start_new_session=True)
time.sleep(0.3)
reaper = start_reaper([ray.pid])
print(ray.pid, reaper.pid, flush=True)
if end != "exception-at-once":
    time.sleep(1.0)  # the reaper has looked at least once (a sweep's driver lives much longer)
if end == "stop":  # stop_local_ray: SIGTERM tells it to reap now
    reaper.terminate(); reaper.wait(timeout=10); print("reaped", flush=True); time.sleep(300)
elif end.startswith("exception"):
    raise RuntimeError("the sweep failed")
elif end in ("SIGKILL", "SIGTERM", "SIGINT"):
    time.sleep(300)
"""


def _ray_of(pid: int) -> list[int]:
    import psutil

    root = psutil.Process(pid)
    return [root.pid, *(c.pid for c in root.children(recursive=True))]


def _gone(pids: list[int], within: float = 20.0) -> bool:
    import psutil

    deadline = time.time() + within
    while time.time() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("end", ["normal", "exception", "exception-at-once", "cwd-removed", "SIGKILL", "SIGTERM",
                                 "SIGINT", "stop"])
def test_the_reaper_kills_what_the_driver_left_however_it_ends(end):
    import psutil

    driver = subprocess.Popen([sys.executable, "-c", DRIVER, end], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)},
                              start_new_session=True)  # its own group: a group signal reaches it and the reaper only
    try:
        ray_pid, reaper_pid = map(int, driver.stdout.readline().split())
        ray = _ray_of(ray_pid)
        assert len(ray) >= 2  # sh and its sleeps
        assert psutil.Process(reaper_pid).cwd() == "/"  # it holds no folder of the driver's
        if end == "stop":
            assert driver.stdout.readline().strip() == "reaped"  # at once, while the driver still runs
        elif end.startswith("SIG"):
            os.killpg(driver.pid, getattr(signal, end))  # the whole group, as a terminal or a scheduler sends it
        assert _gone(ray), f"left running after '{end}'"
        assert _gone([reaper_pid])  # and the reaper is done
    finally:
        driver.kill()
        driver.wait()
