"""The MLflow UI over the session's shared tiny sweep's store, in a real browser (headless Chromium).

Starts ``mlflow server`` on 127.0.0.1, loads the experiment page and a run-comparison page with
``chromium --headless --dump-dom`` (the UI is a single-page app: the DOM is read after its scripts
ran, within a virtual-time budget) and checks that the trials, their hyperparameters and the AP
metrics are on the page; a screenshot of each page is saved beside the test's files.

Chromium is Debian's ``chromium`` package, installed here when missing (``apt-get``, as root, as in
CI). Where it cannot be installed the test is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

HPARAMS = ("fka_weight", "lka_weight", "fka_tau", "lka_tau")
BUDGET_MS = 20000  # virtual time the page's scripts get before the DOM is read


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _chromium() -> str:
    """The chromium binary, installed with apt-get when missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    why = "apt-get is not available"
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if p.returncode != 0:
                why = f"{' '.join(cmd)} failed: {p.stderr.strip()[-500:]}"
                break
        found = shutil.which("chromium")
        if found:
            return found
    elif shutil.which("apt-get"):
        why = "not root, so apt-get cannot install it"
    if _in_ci():
        pytest.fail(f"chromium is needed for the MLflow UI test under CI=true and could not be installed: {why}")
    pytest.skip(f"chromium not installed and cannot be installed here: {why}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited with {proc.returncode}")
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).read().strip() == b"OK":
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow server at {url} did not answer /health within {timeout:.0f} s")


def _browse(chromium: str, url: str, screenshot: Path, tmp: Path) -> str:
    """The page's text after its scripts ran; a screenshot of it saved to ``screenshot``."""
    def common(profile: str) -> list[str]:  # a fresh profile each time: no UI state kept in local storage
        return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1800,1000", f"--virtual-time-budget={BUDGET_MS}", f"--user-data-dir={tmp / profile}"]

    dom = subprocess.run([*common(f"{screenshot.stem}-dom"), "--dump-dom", url], capture_output=True, text=True,
                         timeout=240)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = subprocess.run([*common(f"{screenshot.stem}-shot"), f"--screenshot={screenshot}", url],
                          capture_output=True, text=True, timeout=240)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    return _text(dom.stdout)


def _text(dom: str) -> str:
    """The visible text of a DOM dump (tags, scripts and styles dropped; whitespace collapsed)."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


@pytest.fixture
def chromium() -> str:
    return _chromium()


def test_mlflow_ui_shows_trials_params_and_metrics(chromium, shared_sweep, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # anything written to the working directory lands here
    out = shared_sweep.out
    store = f"sqlite:///{out / 'mlflow.db'}"
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("prepared")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get("dkan.run_kind") == "trial"]
    study = next(r for r in runs if r.data.tags.get("dkan.run_kind") == "sweep")
    assert len(trials) == 2  # the DKAN search's (the fixed candidates are runs of kind candidate)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=tmp_path, stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait_health(url, server)
        # the experiment's runs table: the study's run, its trials nested under it (collapsed), every run counted
        page = _browse(chromium, f"{url}/#/experiments/{exp.experiment_id}/runs", tmp_path / "experiment.png", tmp_path)
        assert "Training runs" in page and study.info.run_name in page
        assert f"{len(runs)} matching runs" in page
        ids = [r.info.run_id for r in trials]
        query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([exp.experiment_id])})
        compare = _browse(chromium, f"{url}/#/compare-runs?{query}", tmp_path / "compare.png", tmp_path)
        for r in trials:
            assert r.info.run_name in compare
        for name in (*HPARAMS, "val_AP_all"):
            assert name in compare, f"{name} not on the run-comparison page"
        for r in trials:  # each trial's own values, as the UI prints them
            assert r.data.params["fka_weight"] in compare and r.info.run_id in compare
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
