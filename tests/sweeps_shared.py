"""The tiny real sweeps the slow tests share, run once per session (``conftest.shared_sweep``).

Sweep A (candidates TFA, plain and DKAN's defaults, then 2 DKAN search trials; K = 2, seeds 1-2, a tiny
ResNet-18 FPN; a selection margin no candidate can reach, so TFA, the simplest, is recommended and shipped)
is the one whose outputs the end-to-end,
bundle, registry and MLflow UI tests read. It is made the hard way: started as a command, Ctrl+C'd
once its first seed is done (Tune saves, exit 130), resumed as a command and its driver alone SIGKILLed
once the next seed is done (a crash: what its Ray leaves running is watched), then resumed here to its end. Sweep B
(2 trials) runs beside it from the start, with its own Ray: two sweeps on one machine. The resume
tests and the two-sweeps test read what happened from ``SharedSweep``; the others read A's run folder,
which must equal an uninterrupted sweep's in everything they check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY = "prepared_split1_2shot"
SEED_DONE = "seeds), AP_all"  # the console's line for a trial's finished seed: "seed 1 done (1/2 seeds), AP_all ..."


def tiny_args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    """A sweep small enough for a test: K = 2, seeds 1-2, 2 trials, 3 base and 2 fine-tune iterations."""
    from tests.conftest import tiny_model_config

    model = [f"model.{k}={json.dumps(v, separators=(',', ':'))}" for k, v in vars(tiny_model_config()).items()
             if k not in ("box_head", "weights")]
    sets = [x for m in model for x in ("--set", m, "--base-set", m)]
    return ["--data", str(data), "--out", str(out), "--cache-dir", str(cache), "--profile", "cpu-quick",
            "--shots", "2", "--seeds", "1-2", "--trials", "2", "--base-iterations", "3", "--finetune-iterations", "2",
            "--grace-seeds", "1", "--reduction-factor", "2", "--num-cpus", "4", *sets,
            "--set", "optim.batch_size=2", "--base-set", "optim.batch_size=2", *extra]


@dataclass
class SharedSweep:
    out: Path  # sweep A's run folder
    args: list[str]  # its command line (without --resume)
    ctrl_c: dict = field(default_factory=dict)  # {"seen": line, "code": exit code, "output": tail}
    sigkill: dict = field(default_factory=dict)  # {"seen": line, "code": exit code, what Ray left: _kill_driver_only}
    other_out: Path | None = None  # sweep B's run folder
    other_code: int | None = None
    other_log: str = ""  # the end of its console
    other_console: str = ""  # all of it


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}


def _command(args: list[str], cwd: Path) -> subprocess.Popen:
    """The sweep as a user starts it, in its own process group (the driver and the Ray it starts)."""
    return subprocess.Popen([sys.executable, str(REPO / "sweeps" / "run_tune.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=cwd, env=_env(), start_new_session=True)


def _until(proc: subprocess.Popen, marker: str, timeout: float = 900.0) -> tuple[str | None, list[str]]:
    """Read the command's output until a line holds ``marker`` (returned) or the command ends (None)."""
    deadline, lines = time.time() + timeout, []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            return None, lines
        lines.append(line)
        if marker in line:
            return line, lines
    return None, lines


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_driver_only(proc: subprocess.Popen, wait_s: float = 30.0) -> dict:
    """SIGKILL the sweep's driver alone (as the OOM killer does) and watch the processes its Ray ran:
    {"code", "ray_processes": their names, "gone_after_s": when the last was gone (None: not within
    ``wait_s``), "left": what still ran then (killed afterwards with the process group)}."""
    import psutil

    if proc.poll() is not None:
        return {"code": proc.returncode, "ray_processes": [], "gone_after_s": None, "left": []}
    procs = psutil.Process(proc.pid).children(recursive=True)
    names = sorted({p.name() for p in procs})
    proc.send_signal(signal.SIGKILL)
    t0, gone_after = time.time(), None
    while time.time() - t0 < wait_s:
        if not any(_alive(p) for p in procs):
            gone_after = round(time.time() - t0, 2)
            break
        time.sleep(0.1)
    left = [p.name() for p in procs if _alive(p)]
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left, before the next sweep starts
    except ProcessLookupError:
        pass
    proc.communicate(timeout=60)
    return {"code": proc.returncode, "ray_processes": names, "gone_after_s": gone_after, "left": left}


def run_shared(data: Path, root: Path) -> SharedSweep:
    from sweeps.run_tune import main

    # --select-margin 99: no candidate can replace TFA, so the baseline is what A recommends and ships
    a = SharedSweep(root / "sweep", tiny_args(data, root / "sweep", root / "cache", "--trials", "3",
                                              "--select-margin", "99"))
    # B: ASHA (the default before race), which stops a trial at K = 2 with 2 seeds (a paired test cannot): a stopped
    # trial's Train run is killed beside A's Ray (tests/test_sweep_e2e.py, two sweeps); A runs the default, race
    b_args = tiny_args(data, root / "other", root / "cache_other", "--num-cpus", "2", "--scheduler", "asha")
    b_log = open(root / "other.log", "w")
    b = subprocess.Popen([sys.executable, str(REPO / "sweeps" / "run_tune.py"), *b_args], env=_env(), cwd=root,
                         stdout=b_log, stderr=subprocess.STDOUT)
    try:
        first = _command(a.args, root)
        seen, lines = _until(first, SEED_DONE)
        if first.poll() is None:
            first.send_signal(signal.SIGINT)
        rest, _ = first.communicate(timeout=300)
        a.ctrl_c = {"seen": seen, "code": first.returncode, "output": "".join(lines[-20:]) + rest[-3000:]}
        second = _command([*a.args, "--resume"], root)
        seen, _ = _until(second, SEED_DONE)
        a.sigkill = {"seen": seen, **_kill_driver_only(second)}
        assert main([*a.args, "--resume"]) == 0
    finally:
        try:
            a.other_code = b.wait(timeout=1500)
        finally:
            if b.poll() is None:
                b.terminate()
            b_log.close()
    a.other_console = (root / "other.log").read_text()
    a.other_out, a.other_log = root / "other", a.other_console[-3000:]
    return a
