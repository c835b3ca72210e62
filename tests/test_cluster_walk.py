"""clusters/README.md walked as far as one machine allows: a head started with `ray start` on
loopback with token auth, the sweep's CLI submitted with `ray job submit`, the head stopped.

Only this test's own Ray processes are stopped (found by its private --temp-dir), never with
`ray stop`, which would stop every Ray on the machine."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sweeps.shell.localray import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def _pids_using(marker: str) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                if marker in open(f"/proc/{d}/cmdline").read():
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def _stop(marker: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_using(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


@pytest.fixture
def head():
    """A Ray head on 127.0.0.1 with token auth; its environment for clients; stopped afterwards."""
    temp = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # short: Ray's socket paths must stay short
    port, dash = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    # the job agent's port too: its fixed default (52365) is taken while any other Ray runs on the machine
    agent = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
             f"--runtime-env-agent-port={free_port()}"]
    cmd = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={dash}", "--num-cpus=1", f"--temp-dir={temp}", "--disable-usage-stats", *agent]
    try:
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=180)
        yield env, f"http://127.0.0.1:{dash}"
    finally:
        _stop(temp)


def _submit(cmd: list[str], env: dict, wait_s: float = 180.0) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the new head's job agent is still starting (slow on a busy machine)."""
    deadline = time.time() + wait_s
    while True:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if "No available agent to submit job" not in done.stdout + done.stderr or time.time() > deadline:
            return done
        time.sleep(5)


def test_job_submit_runs_the_sweep_cli_on_a_token_protected_head(head):
    env, dashboard = head
    submit = [RAY, "job", "submit", "--address", dashboard, "--", sys.executable, str(REPO / "sweeps" / "run_tune.py")]
    done = _submit([*submit, "--help"], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--tracking-uri" in done.stdout and "succeeded" in done.stdout
    # a bad value fails the job with the sweep's own message (exit 2), not a traceback
    bad = _submit([*submit, "--trials", "0"], env)
    assert bad.returncode != 0 and "--trials 0: must be at least 1" in bad.stdout + bad.stderr
    # without the token the head refuses the client
    no_token = {**env, "RAY_AUTH_TOKEN": "wrong" + env["RAY_AUTH_TOKEN"]}
    denied = subprocess.run([RAY, "job", "list", "--address", dashboard], env=no_token, capture_output=True,
                            text=True, timeout=120)
    assert denied.returncode != 0
